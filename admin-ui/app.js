// The fedimpute web UI: a hash-routed single page served by the node itself.

import { login, logout, me, restore } from './api.js';
import { errorBox, field, h, mount } from './dom.js';
import { federationPage } from './federation.js';
import { jobPage, jobsPage, newJobPage } from './jobs.js';
import { auditPage, panelsPage, passwordPage, policyPage, tokensPage, usersPage } from './admin.js';

const main = document.getElementById('main');
let leave = null; // cleanup of the current page (live streams)

// A route is a fixed `hash` (linked from the navigation when it has `nav`), or a `pattern`
// whose groups are the view's arguments.
const routes = [
  { hash: '#/federation', title: 'Federation', view: federationPage, nav: 'Federation' },
  { hash: '#/jobs', title: 'Jobs', view: jobsPage, nav: 'Jobs' },
  { hash: '#/jobs/new', title: 'New job', view: newJobPage, nav: 'New job', roles: ['admin', 'researcher'] },
  { pattern: /^#\/jobs\/([0-9a-f]+)$/, title: 'Job', view: jobPage },
  { hash: '#/tokens', title: 'API tokens', view: tokensPage, nav: 'API tokens' },
  { hash: '#/account/password', title: 'Password', view: passwordPage, nav: 'Password' },
  { hash: '#/admin/users', title: 'Users', view: usersPage, nav: 'Users', roles: ['admin'] },
  { hash: '#/admin/panels', title: 'Panels and services', view: panelsPage, nav: 'Panels', roles: ['admin'] },
  { hash: '#/admin/policy', title: 'Data policy', view: policyPage, nav: 'Policy', roles: ['admin'] },
  { hash: '#/admin/audit', title: 'Audit log', view: auditPage, nav: 'Audit', roles: ['admin', 'auditor'] },
];

/** The view's arguments if `route` matches `hash`, else null. */
function match(route, hash) {
  if (route.hash) return route.hash === hash ? [] : null;
  const m = hash.match(route.pattern);
  return m ? m.slice(1) : null;
}

function navigation(user) {
  const nav = document.getElementById('nav');
  const current = location.hash;
  mount(nav, h('ul', {}, routes.filter((r) => r.nav && (!r.roles || r.roles.includes(user.role))).map((r) => {
    return h('li', {}, h('a', { href: r.hash, 'aria-current': current === r.hash ? 'page' : undefined }, r.nav));
  })));
  mount(document.getElementById('who'),
    h('span', {}, `${user.username} (${user.role})`),
    h('button.link', { type: 'button', on: { click: async () => { await logout(); location.hash = '#/login'; render(); } } }, 'Log out'));
}

function loginPage() {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const status = h('div', { 'aria-live': 'polite' });
  const form = h('form.card.narrow', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        mount(status);
        try {
          await login(user.value.trim(), pass.value);
          pass.value = '';
          location.hash = '#/federation';
        } catch (err) {
          mount(status, errorBox(err.status === 401 ? 'Wrong user name or password.' : err));
        }
      },
    },
  }, h('h1', {}, 'Log in'), field('User name', user), field('Password', pass), status,
  h('button', { type: 'submit' }, 'Log in'));
  mount(document.getElementById('nav'));
  mount(document.getElementById('who'));
  mount(main, form);
  user.focus();
}

async function render(event) {
  if (leave) { leave(); leave = null; }
  const user = me();
  if (!user) return loginPage();
  if (!location.hash || location.hash === '#/login') { location.hash = '#/federation'; return; }
  if (user.must_change_password) {
    // The node answers nothing else until a one-time password is changed.
    navigation(user);
    mount(document.getElementById('nav'));
    document.title = 'Password · fedimpute';
    const page = h('div.page');
    mount(main, page);
    await passwordPage(page, { onChanged: () => { location.hash = '#/federation'; render(); } });
    return;
  }
  navigation(user);
  const route = routes.find((r) => match(r, location.hash));
  if (!route) { mount(main, h('h1', {}, 'Not found'), h('p', {}, 'There is no such page.')); return; }
  document.title = `${route.title} · fedimpute`;
  if (route.roles && !route.roles.includes(user.role)) {
    mount(main, h('h1', {}, 'Not allowed'), h('p.error', { role: 'alert' }, `${route.title} is for ${route.roles.join(' and ')} accounts only.`));
    return;
  }
  const params = match(route, location.hash);
  // Each page renders into a container of its own: a slower page the user has already left
  // (say the one a login lands on) fills its own, detached, never the page shown now.
  const page = h('div.page');
  mount(main, page);
  mount(page, h('p', {}, 'Loading…'));
  try {
    const left = (await route.view(page, ...params)) || null;
    if (page.isConnected) leave = left; else if (left) left();
  } catch (err) {
    if (page.isConnected) mount(page, h('h1', {}, route.title), errorBox(err));
  }
  // After a move within the app, focus goes to the new content (screen readers announce it);
  // on first load it stays at the top, where the skip link is.
  if (event) main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', render);
restore().catch(() => null).finally(() => render());
