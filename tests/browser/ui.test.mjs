// The web UI in a real browser against a real two-node federation (see run.sh): a researcher
// flow (log in, find the peer's panel, submit, watch the job finish live, download a result),
// the admin pages and their guard, the audit log, keyboard access and a narrow screen.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { A_URL, A_CA, ADMIN_PASSWORD, TARGETS, TWO_POP_TARGETS, SCREENSHOTS, CHROMIUM, NEXT_CONFIG } = process.env;
let browser;
let page;
const pageErrors = [];

/** The node's API, trusting only its certificate, as a script would use it. */
function request(method, url, { token, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method, ca: fs.readFileSync(A_CA),
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    // A string is sent as it is (a signed document must keep its bytes).
    if (body) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

async function apiToken() {
  const res = await request('POST', `${A_URL}/api/v1/auth/login`, { body: { username: 'admin', password: ADMIN_PASSWORD } });
  return JSON.parse(res.body).access_token;
}

/** Runs a test body; on failure, saves a screenshot of the page as it was. */
function withScreenshot(name, body) {
  return async () => {
    try {
      await body();
    } catch (err) {
      await page?.screenshot({ path: path.join(SCREENSHOTS, `failed-${name}.png`), fullPage: true }).catch(() => {});
      throw err;
    }
  };
}

async function shot(name) {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function logIn(username, password) {
  await page.goto(`${A_URL}/#/login`);
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

async function logOut() {
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
}

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(msg.text()); });
});

after(async () => {
  await browser?.close();
});

test('a researcher flow: log in, find the peer panel, submit, watch it finish live, download', { timeout: 420_000 }, withScreenshot('researcher', async () => {
  await logIn('admin', ADMIN_PASSWORD);
  await page.getByRole('heading', { name: 'Federation' }).waitFor();
  // Both members, and B's panel in the catalog.
  await page.getByRole('cell', { name: 'Browser Host B', exact: true }).first().waitFor();
  // How B is reached: on one machine, directly (a relayed member would say "relayed via ...").
  await page.getByRole('row').filter({ hasText: 'Browser Host B' }).first().getByText('direct').waitFor();
  const catalog = page.getByRole('table', { name: 'Reference panels in the federation' });
  await catalog.getByText('sim-afr').waitFor();
  assert.ok(await catalog.getByText('reachable', { exact: true }).first().isVisible());
  await shot('federation');

  await page.getByRole('link', { name: 'New job' }).click();
  await page.getByRole('heading', { name: 'New job' }).waitFor();
  // Validation next to the fields before anything is sent.
  await page.getByRole('button', { name: 'Submit' }).click();
  await page.getByText('Choose at least one VCF file.').waitFor();
  await page.getByText('Choose at least one panel.').waitFor();
  await page.locator('#files').setInputFiles(TARGETS);
  await page.getByLabel(/sim-afr .* at Browser Host B/).check();
  await page.getByLabel('Genome build').selectOption('hg19');
  await page.getByLabel('Job name').fill('browser test chr20');
  await shot('new-job');
  await page.getByRole('button', { name: 'Submit' }).click();

  // The job page follows the job live: no reload until it completes.
  await page.waitForURL(/#\/jobs\/[0-9a-f]+$/);
  const jobId = page.url().split('/').pop();
  await page.getByRole('heading', { name: 'browser test chr20' }).waitFor();
  await page.locator('dl.facts .badge.state-completed').waitFor({ timeout: 360_000 });
  await page.getByRole('table', { name: 'Result files' }).waitFor();
  await page.getByText('Runs at').waitFor();
  assert.ok(await page.getByText('Browser Host B').first().isVisible());
  await page.getByRole('img', { name: /Mean estimated r2 by minor allele frequency/ }).waitFor();
  // The test panel fits in one 20 Mb chunk (20,000,001-40,000,000), which ran.
  await page.getByRole('table', { name: 'Chunks by chromosome' }).waitFor();
  await page.getByLabel('chr20.chunk2 done').waitFor();
  await shot('job');

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download chr20.dose.vcf.gz', exact: true }).click(),
  ]);
  const saved = path.join(os.tmpdir(), `ui-${jobId}.vcf.gz`);
  await download.saveAs(saved);
  const token = await apiToken();
  const viaApi = await request('GET', `${A_URL}/api/v1/jobs/${jobId}/results/chr20.dose.vcf.gz`, { token });
  assert.equal(viaApi.status, 200);
  assert.ok(viaApi.body.length > 100_000);
  assert.ok(fs.readFileSync(saved).equals(viaApi.body), 'the browser download has the bytes the API serves');

  await page.getByRole('link', { name: 'Jobs', exact: true }).click();
  await page.getByRole('link', { name: 'browser test chr20' }).waitFor();
  await shot('jobs');
}));

test('a meta-imputation of two panels: the combine choice, both rounds, and each sample\'s weights', { timeout: 420_000 }, withScreenshot('meta', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New job' }).click();
  await page.getByRole('heading', { name: 'New job' }).waitFor();
  await page.locator('#files').setInputFiles(TWO_POP_TARGETS);
  await page.getByLabel(/panel_a .* at Browser Host B/).check();
  await page.getByLabel(/panel_b .* at Browser Host B/).check();
  await page.getByLabel('Genome build').selectOption('hg19');
  const engine = page.getByLabel('Engine');
  assert.equal(await engine.inputValue(), 'beagle');
  await page.getByLabel('Several panels combined by').selectOption('meta');
  assert.equal(await engine.inputValue(), 'minimac4', 'meta-imputation runs with Minimac4');
  await page.getByLabel('Job name').fill('browser meta chr20');
  await page.getByRole('button', { name: 'Submit' }).click();

  await page.waitForURL(/#\/jobs\/[0-9a-f]+$/);
  const jobId = page.url().split('/').pop();
  await page.getByRole('heading', { name: 'browser meta chr20' }).waitFor();
  await page.locator('dl.facts .badge.state-completed').waitFor({ timeout: 360_000 });
  // One job per panel and round.
  const rounds = page.getByRole('table', { name: 'One job per panel' });
  for (const round of ['phasing', 'imputing']) {
    for (const panel of ['panel_a', 'panel_b']) await rounds.getByText(new RegExp(`${panel} \\(${round}\\)`)).waitFor();
  }
  await page.getByRole('table', { name: 'Estimated accuracy of the combination' }).waitFor();
  const chart = page.getByRole('img', { name: /Mean weight of each panel \(.*panel_a.*panel_b.*\) for each of \d+ samples/ });
  await chart.waitFor();
  // The chart is the report's numbers: per sample one bar per panel, as long as its weight.
  const job = JSON.parse((await request('GET', `${A_URL}/api/v1/jobs/${jobId}`, { token: await apiToken() })).body);
  const samples = job.meta_report.samples;
  assert.ok(samples.length >= 20, `${samples.length} samples in the report`);
  const bars = await chart.locator('rect').evaluateAll((rects) => rects.map((r) => Number(r.getAttribute('width'))));
  assert.equal(bars.length, 2 + 2 * samples.length, 'a legend swatch per panel and a bar per sample and panel');
  const full = bars[2] + bars[3];
  samples.forEach((s, i) => s.mean_weights.forEach((w, k) => {
    assert.ok(Math.abs(bars[2 + 2 * i + k] - w * full) < 0.01 * full, `${s.sample}, panel ${k}: bar ${bars[2 + 2 * i + k]} for weight ${w}`);
  }));
  await page.getByRole('button', { name: 'Download chr20.meta.dose.vcf.gz', exact: true }).waitFor();
  await shot('meta-job');
}));

test('an admin creates a researcher, who cannot open the admin pages; the audit page lists it all', { timeout: 120_000 }, withScreenshot('admin', async () => {
  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('heading', { name: 'Users' }).waitFor();
  await page.getByLabel('User name').fill('rita');
  await page.getByLabel('Role', { exact: true }).selectOption('researcher');
  await page.getByRole('button', { name: 'Create user' }).click();
  const password = await page.locator('code.password').textContent();
  assert.ok(password && password.length >= 12, 'a generated password is shown once');
  await page.getByRole('cell', { name: 'rita', exact: true }).waitFor();
  // The admin gives her an address for the mails about her jobs.
  await page.getByLabel('E-mail of rita').fill('rita@inst-a.example');
  await page.getByLabel('E-mail of rita').press('Tab');
  await page.getByText('rita updated.').waitFor();
  await shot('users');
  await logOut();

  await logIn('rita', password);
  // A generated password is a one-time one: the UI asks for her own before anything else.
  await page.getByRole('heading', { name: 'Password' }).waitFor();
  await page.getByText('one-time password').waitFor();
  await shot('one-time-password');
  const ritaPassword = 'a passphrase of her own choosing';
  await page.getByLabel('Current password').fill(password);
  await page.getByLabel('New password (at least 12 characters)').fill(ritaPassword);
  await page.getByLabel('New password again').fill(ritaPassword);
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('heading', { name: 'Federation' }).waitFor();
  const nav = page.getByRole('navigation', { name: 'Main' });
  assert.equal(await nav.getByRole('link', { name: 'Users' }).count(), 0, 'no admin links for a researcher');
  assert.equal(await nav.getByRole('link', { name: 'Audit' }).count(), 0);
  for (const hash of ['#/admin/users', '#/admin/audit', '#/admin/policy']) {
    await page.goto(`${A_URL}/${hash}`);
    await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
  }
  // The API refuses too, whatever the page shows.
  const ritaToken = JSON.parse((await request('POST', `${A_URL}/api/v1/auth/login`, { body: { username: 'rita', password: ritaPassword } })).body).access_token;
  assert.equal((await request('GET', `${A_URL}/api/v1/users`, { token: ritaToken })).status, 403);
  // Her e-mail address, and no mails when her jobs end: set on her account page.
  await page.goto(`${A_URL}/#/account/password`);
  const mail = page.getByRole('form', { name: 'E-mail' });
  assert.equal(await mail.getByLabel('Your e-mail address').inputValue(), 'rita@inst-a.example', 'the address the admin set');
  await mail.getByLabel('Your e-mail address').fill('rita@example.org');
  await mail.getByLabel('Mail me when a job of mine ends').uncheck();
  await mail.getByRole('button', { name: 'Save' }).click();
  await mail.getByText('No mails go to rita@example.org').waitFor();
  const ritaMe = JSON.parse((await request('GET', `${A_URL}/api/v1/me`, { token: ritaToken })).body);
  assert.equal(ritaMe.email, 'rita@example.org');
  assert.equal(ritaMe.email_notifications, false);
  await logOut();

  await logIn('admin', ADMIN_PASSWORD);
  await page.goto(`${A_URL}/#/admin/audit`);
  await page.getByText(/Chain intact: \d+ entries verified/).waitFor();
  const log = page.getByRole('table', { name: 'Audit log, newest first' });
  for (const action of ['user.create', 'job.submit', 'job.forwarded', 'auth.login']) {
    await log.getByRole('cell', { name: action, exact: true }).first().waitFor();
  }
  await page.getByLabel('Action').fill('auth.login');
  await page.getByRole('button', { name: 'Filter' }).click();
  // The filtered list has rita's login and no longer the user creation.
  await log.getByRole('cell', { name: 'user.create', exact: true }).first().waitFor({ state: 'detached' });
  await log.getByText('user:rita').first().waitFor();
  await shot('audit');

  await page.goto(`${A_URL}/#/admin/policy`);
  await page.getByText('Accepts jobs from').waitFor();
  await shot('policy');
}));

test('keyboard access and a 400 px screen', { timeout: 60_000 }, withScreenshot('keyboard', async () => {
  await page.goto(`${A_URL}/#/jobs`);
  await page.reload();
  await page.getByRole('heading', { name: 'Jobs' }).waitFor();
  // The first Tab reaches the skip link; Enter moves focus to the content.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
  // Every control of the new-job form is reachable by Tab.
  await page.goto(`${A_URL}/#/jobs/new`);
  await page.getByRole('heading', { name: 'New job' }).waitFor();
  const reached = new Set();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    reached.add(await page.evaluate(() => document.activeElement?.getAttribute('name') || document.activeElement?.textContent?.trim().slice(0, 20)));
  }
  for (const name of ['panel', 'build', 'engine', 'phasing', 'population', 'r2_filter', 'mode', 'name', 'allow_resubmit', 'Submit']) {
    assert.ok(reached.has(name), `${name} is reachable by keyboard (reached: ${[...reached].join(', ')})`);
  }
  // Inputs have labels.
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select')]
    .filter((el) => el.type !== 'file' && !el.labels?.length && !el.getAttribute('aria-label')).map((el) => el.name));
  assert.deepEqual(unlabelled, []);

  await page.setViewportSize({ width: 400, height: 860 });
  for (const [hash, name] of [['#/jobs', 'jobs-400px'], ['#/federation', 'federation-400px']]) {
    await page.goto(`${A_URL}/${hash}`);
    await page.locator('main h1').waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${hash} scrolls sideways by ${overflow} px at 400 px`);
    await shot(name);
  }
  assert.deepEqual(pageErrors, [], 'no script errors in the pages');
}));

test('the federation page warns ahead of the config\'s expiry', { timeout: 60_000 }, withScreenshot('expiry', async () => {
  await page.setViewportSize({ width: 1280, height: 860 });
  await page.goto(`${A_URL}/#/federation`);
  await page.getByRole('heading', { name: 'Federation' }).waitFor();
  const expiryWarning = page.getByRole('alert').filter({ hasText: 'federation config version' });
  assert.equal(await expiryWarning.count(), 0, 'no warning while the config has a year left');

  // The admins' next version expires in 20 days; A's admin installs it.
  const installed = await request('POST', `${A_URL}/api/v1/federation/config`,
    { token: await apiToken(), body: fs.readFileSync(NEXT_CONFIG, 'utf8') });
  assert.equal(installed.status, 200, installed.body.toString());
  await page.reload();
  await expiryWarning.waitFor();
  const text = await expiryWarning.textContent();
  assert.match(text, /federation config version 2 expires in (19|20) days/);
  assert.match(text, /must sign and publish version 3/);
}));
