// Jobs: the list, a new submission, and one job followed live.

import { api, download, events, me, upload } from './api.js';
import { badge, bytes, duration, errorBox, field, fieldError, h, mount, table, when } from './dom.js';

const LIVE = ['pending', 'validating', 'received', 'queued', 'transferring', 'running', 'fetching_results'];

export async function jobsPage(main) {
  const jobs = await api('/jobs?limit=500');
  const state = h('select', {}, h('option', { value: '' }, 'any'),
    ['queued', 'transferring', 'running', 'fetching_results', 'completed', 'failed', 'cancelled', 'purged'].map((s) => h('option', { value: s }, s.replace('_', ' '))));
  const text = h('input', { type: 'search', placeholder: 'name, panel or id' });
  const list = h('div', { 'aria-live': 'polite' });
  const show = () => {
    const q = text.value.trim().toLowerCase();
    const rows = jobs
      .filter((j) => !state.value || j.state === state.value)
      .filter((j) => !q || [j.name, j.params.panel_id, j.id].some((x) => String(x).toLowerCase().includes(q)))
      .map((j) => h('tr', {},
        h('td', {}, h('a', { href: `#/jobs/${j.id}` }, j.name)),
        h('td', {}, badge(j.state)),
        h('td', {}, j.params.panel_id),
        h('td', {}, j.role === 'origin' ? (j.peer_institution || 'another node') : j.role === 'host' ? `for ${j.peer_institution || 'another node'}` : j.role === 'parent' ? 'several' : 'this node'),
        h('td', {}, when(j.created_at)),
        h('td', {}, duration(j.started_at || j.created_at, j.finished_at))));
    mount(list, table(['Job', 'State', 'Panel(s)', 'Runs at', 'Submitted', 'Duration'], rows, `${rows.length} of ${jobs.length} jobs`));
  };
  state.addEventListener('change', show);
  text.addEventListener('input', show);
  const canSubmit = ['admin', 'researcher'].includes(me().role);
  mount(main, h('h1', {}, 'Jobs'),
    canSubmit ? h('p', {}, h('a.button', { href: '#/jobs/new' }, 'New job')) : null,
    h('form.filters', { on: { submit: (e) => e.preventDefault() } }, field('State', state), field('Search', text)), list);
  show();
}

export async function newJobPage(main) {
  const [panels, services] = await Promise.all([api('/catalog/panels'), api('/catalog/services').catch(() => [])]);
  // Imputation servers wrapped by members (Cloudgene) are engines too, named by their id.
  const external = [...new Map(services.filter((s) => !['beagle', 'minimac4'].includes(s.kind))
    .map((s) => [s.id, s])).values()];
  const files = h('input', { type: 'file', multiple: true, accept: '.vcf,.vcf.gz,.gz,.bgz', name: 'files' });
  const chosen = h('ul.files', { 'aria-live': 'polite' });
  let picked = [];
  const showFiles = () => mount(chosen, picked.map((f) => h('li', {}, `${f.name} (${bytes(f.size)})`)));
  files.addEventListener('change', () => { picked = [...files.files]; showFiles(); fieldError(files, ''); });
  const drop = h('div.drop', {
    tabindex: '0', role: 'button', 'aria-label': 'Drop .vcf or .vcf.gz files here, or press Enter to pick them',
    on: {
      click: () => files.click(),
      keydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); files.click(); } },
      dragover: (e) => { e.preventDefault(); drop.classList.add('over'); },
      dragleave: () => drop.classList.remove('over'),
      drop: (e) => { e.preventDefault(); drop.classList.remove('over'); picked = [...e.dataTransfer.files]; showFiles(); },
    },
  }, 'Drop VCF files here (.vcf or .vcf.gz; one per chromosome, or all chromosomes in one), or click to choose.');

  // Every (panel, host) pair of the catalog; the value names the host so the job goes there.
  const choices = panels.flatMap((p) => p.hosts.map((hst) => ({ value: `${hst.peer_id}/${p.id}`, panel: p, host: hst })));
  const panelBox = h('fieldset.panels', {}, h('legend', {}, 'Reference panel(s)'),
    choices.length ? choices.map((c, i) => h('label.check', {},
      h('input', { type: 'checkbox', name: 'panel', value: c.value, id: `panel-${i}`, 'data-build': c.panel.build }),
      ` ${c.panel.id} — ${c.panel.name} (${c.panel.build}, ${Number(c.panel.samples).toLocaleString()} samples) at ${c.host.institution}${c.host.reachable ? '' : ' (unreachable)'}`))
      : h('p', {}, 'No panel in the federation catalog yet.'),
    h('span.field-error', { id: 'panel-error', role: 'alert' }));
  const build = h('select', { name: 'build' }, h('option', {}, 'hg19'), h('option', {}, 'hg38'));
  const engine = h('select', { name: 'engine' }, h('option', { value: 'beagle' }, 'Beagle 5.4'), h('option', { value: 'minimac4' }, 'Minimac4'),
    external.map((s) => h('option', { value: s.id }, `${s.id} (${s.kind} server at ${s.host?.institution || 'a member'})`)));
  const phasing = h('select', { name: 'phasing' }, h('option', { value: 'beagle' }, 'Beagle'), h('option', { value: 'no_phasing' }, 'none (input is phased)'));
  const population = h('input', { name: 'population', placeholder: 'e.g. AFR (optional)' });
  const r2 = h('select', { name: 'r2_filter' }, ['0', '0.001', '0.1', '0.2', '0.3'].map((v) => h('option', { value: v }, v === '0' ? 'keep all' : `r2 ≥ ${v}`)));
  const combine = h('select', { name: 'combine' },
    h('option', { value: 'best_r2' }, 'Best r2 per variant'),
    h('option', { value: 'meta' }, 'Meta-imputation (Minimac4; per sample, weights learnt from each panel)'));
  // Meta-imputation runs with Minimac4 at every host.
  combine.addEventListener('change', () => { if (combine.value === 'meta') engine.value = 'minimac4'; });
  const mode = h('select', { name: 'mode' }, h('option', { value: 'imputation' }, 'QC and imputation'), h('option', { value: 'qc_only' }, 'QC only'));
  const name = h('input', { name: 'name', placeholder: 'optional' });
  const resubmit = h('input', { type: 'checkbox', name: 'allow_resubmit' });
  const repair = h('input', { type: 'checkbox', name: 'repair', checked: true });
  const progress = h('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  const status = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Submit');

  const form = h('form.card', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        mount(status);
        const panelsChosen = [...panelBox.querySelectorAll('input[name=panel]:checked')];
        let ok = true;
        fieldError(files, picked.length ? '' : 'Choose at least one VCF file.');
        if (!picked.length) ok = false;
        const bad = picked.find((f) => !/\.vcf(\.b?gz)?$/.test(f.name));
        if (bad) { fieldError(files, `${bad.name} is not a VCF (.vcf or .vcf.gz).`); ok = false; }
        const panelError = document.getElementById('panel-error');
        panelError.textContent = panelsChosen.length ? '' : 'Choose at least one panel.';
        if (!panelsChosen.length) ok = false;
        const wrongBuild = panelsChosen.find((p) => p.dataset.build !== build.value);
        fieldError(build, wrongBuild ? `A chosen panel is ${wrongBuild.dataset.build}; the input must match it.` : '');
        if (wrongBuild) ok = false;
        if (!ok) return;
        const data = new FormData();
        for (const f of picked) data.append('files', f, f.name);
        data.append('panel', panelsChosen.map((p) => p.value).join(','));
        for (const el of [build, engine, phasing, population, r2, mode, name]) if (el.value.trim()) data.append(el.name, el.value.trim());
        if (panelsChosen.length > 1) data.append('combine', combine.value);
        data.append('allow_resubmit', resubmit.checked ? 'true' : 'false');
        data.append('repair', repair.checked ? 'true' : 'false');
        submit.disabled = true;
        progress.hidden = false;
        try {
          const job = await upload('/jobs', data, (p) => { progress.value = p; });
          location.hash = `#/jobs/${job.id}`;
        } catch (err) {
          mount(status, h('p.error', { role: 'alert' }, `Refused: ${err.message}`));
        } finally {
          submit.disabled = false;
          progress.hidden = true;
        }
      },
    },
  },
  h('div.field', {}, h('span.label', {}, 'Input files'), drop, files, chosen, h('span.field-error', { id: `${files.id || 'files'}-error` })),
  panelBox,
  h('div.grid', {}, field('Genome build', build), field('Engine', engine), field('Phasing', phasing),
    field('Population', population), field('r2 filter', r2), field('Mode', mode),
    field('Several panels combined by', combine), field('Job name', name)),
  h('label.check', {}, repair, ' Repair common problems (plain VCF, unsorted, chr20 vs 20, several chromosomes in one file) and list each repair in the QC report'),
  h('label.check', {}, resubmit, ' If the host becomes unreachable, move the job to another host of the panel'),
  progress, status, submit);
  // The file input's message slot is tied to its id.
  files.id = 'files';
  form.querySelector('.field-error').id = 'files-error';
  files.setAttribute('aria-describedby', 'files-error');
  mount(main, h('h1', {}, 'New job'), form);
}

// An accessible SVG chart (role img, labelled) and `mk`, which adds an element to it from
// attributes and text only, never markup.
function svgChart(width, height, label, ...classes) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.classList.add('chart', ...classes);
  const mk = (tag, attrs, text) => {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text) el.textContent = text;
    svg.append(el);
    return el;
  };
  return { svg, mk };
}

function r2Chart(summary) {
  const bins = ['<1%', '1-5%', '>5%'].filter((b) => summary.imputed_by_maf?.[b]);
  if (!bins.length) return null;
  const w = 320, barH = 28, gap = 12, left = 60;
  const { svg, mk } = svgChart(w, bins.length * (barH + gap) + 20,
    'Mean estimated r2 by minor allele frequency: ' + bins.map((b) => `${b} ${(summary.imputed_by_maf[b].mean_r2 ?? 0).toFixed(2)}`).join(', '));
  bins.forEach((b, i) => {
    const r2 = summary.imputed_by_maf[b].mean_r2 ?? 0;
    const y = i * (barH + gap) + 10;
    mk('text', { x: 0, y: y + barH * 0.7 }, `MAF ${b}`);
    mk('rect', { x: left, y, width: (w - left - 50) * r2, height: barH, class: 'bar' });
    mk('text', { x: left + (w - left - 50) * r2 + 6, y: y + barH * 0.7 }, r2.toFixed(2));
  });
  return h('figure', {}, svg, h('figcaption', {}, 'Mean estimated r2 of imputed variants, by minor allele frequency'));
}

// Each sample's mean weight for each panel, as stacked bars drawn from the report's numbers.
function weightsChart(report) {
  const samples = Array.isArray(report.samples) ? report.samples : [];
  if (!samples.length) return null;
  // A legend line per panel (their names can be long: host/panel), then a bar per sample.
  const w = 420, barH = 12, gap = 3, left = 90, top = 8 + 16 * report.panels.length;
  const { svg, mk } = svgChart(w, top + samples.length * (barH + gap) + 4,
    `Mean weight of each panel (${report.panels.join(', ')}) for each of ${samples.length} samples`, 'weights');
  report.panels.forEach((p, k) => {
    mk('rect', { x: 0, y: 4 + 16 * k, width: 10, height: 10, class: `panel-${k % 4}` });
    mk('text', { x: 14, y: 13 + 16 * k, class: 'small' }, p);
  });
  samples.forEach((s, i) => {
    const y = top + i * (barH + gap);
    mk('text', { x: 0, y: y + barH - 2, class: 'small' }, s.sample);
    let x = left;
    s.mean_weights.forEach((weight, k) => {
      const width = (w - left) * Math.max(0, Math.min(1, Number(weight) || 0));
      mk('rect', { x, y, width, height: barH, class: `panel-${k % 4}` })
        .append(Object.assign(document.createElementNS('http://www.w3.org/2000/svg', 'title'), { textContent: `${s.sample}: ${report.panels[k]} ${(Number(weight) || 0).toFixed(3)}` }));
      x += width;
    });
  });
  return h('figure', {}, svg, h('figcaption', {}, 'Mean weight of each panel per sample, over the training sites'));
}

// The node's frequency check, drawn from its numbers (never from markup a host sent).
function frequencyCheck(check) {
  if (!check) return null;
  const grid = Number(check.grid) || 50;
  const size = 300, margin = 36;
  const { svg, mk } = svgChart(size + 2 * margin, size + 2 * margin,
    `Input allele frequency against the panel's at ${check.sites} sites`, 'af-plot');
  mk('rect', { x: margin, y: margin, width: size, height: size, fill: 'none', stroke: 'currentColor' });
  const cells = Array.isArray(check.cells) ? check.cells : [];
  const max = Math.max(1, ...cells.map((c) => Number(c[2]) || 0));
  const step = size / grid;
  for (const [x, y, n] of cells) {
    const opacity = 0.15 + 0.85 * (Math.log1p(Number(n) || 0) / Math.log1p(max));
    mk('rect', { x: margin + Number(x) * step, y: margin + size - (Number(y) + 1) * step, width: step, height: step, class: 'bar', 'fill-opacity': opacity.toFixed(2) });
  }
  mk('line', { x1: margin, y1: margin + size, x2: margin + size, y2: margin, stroke: '#c33', 'stroke-dasharray': '4 3' });
  mk('text', { x: margin + size / 2, y: size + 2 * margin - 6, 'text-anchor': 'middle' }, `panel ALT frequency${check.population ? ` (${check.population})` : ''}`);
  mk('text', { x: 12, y: margin + size / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${margin + size / 2})` }, 'input ALT frequency');
  const r = check.correlation == null ? '' : `, correlation ${Number(check.correlation).toFixed(3)}`;
  return h('div', {}, h('h3', {}, 'Allele frequencies against the panel'),
    h('p', {}, `${check.sites} sites compared with ${check.population || 'all panel samples'}; ${check.sites_over_threshold} with chi-square > ${check.chisq_threshold}${r}.`),
    check.warning ? h('p.error', { role: 'alert' }, check.warning) : null,
    h('figure', {}, svg, h('figcaption', {}, 'Each square: sites with that panel and input frequency; darker is more. Sites on the dashed line agree.')));
}

function repairList(repairs) {
  if (!repairs?.length) return null;
  return h('div', {}, h('h3', {}, 'Repairs made to the uploaded files'),
    h('ul.repairs', {}, repairs.map((r) => h('li', {}, `${r.file}: ${r.message}`))));
}

function qcSection(job, results, mayAct) {
  const qc = job.qc_report;
  if (!qc) return job.repairs?.length ? h('section.card', {}, h('h2', {}, 'Input QC'), repairList(job.repairs)) : null;
  const rows = Object.entries(qc.excluded || {}).map(([reason, n]) => h('tr', {}, h('td', {}, reason.replace(/_/g, ' ')), h('td', {}, n)));
  const excluded = results.find((r) => r.name === 'excluded.tsv');
  return h('section.card', {}, h('h2', {}, 'Input QC'),
    h('p', {}, badge(qc.status), ` ${qc.variants_kept} of ${qc.variants_total} variants kept, ${qc.samples} samples`,
      qc.panel_overlap != null ? `, ${(qc.panel_overlap * 100).toFixed(1)}% found in the panel` : ''),
    qc.message ? h('p.error', {}, qc.message) : null,
    repairList(qc.repairs || job.repairs),
    frequencyCheck(qc.allele_frequency),
    table(['Reason excluded', 'Variants'], rows, 'Excluded variants by reason'),
    excluded && mayAct ? h('button', { type: 'button', on: { click: () => download(`/jobs/${job.id}/results/excluded.tsv`, 'excluded.tsv') } }, 'Download the excluded variants') : null);
}

/** The name the node gives a chunk in its events: `chr20.chunk3`. */
const chunkName = (c) => `chr${c.chromosome.replace(/^chr/, '')}.chunk${c.index}`;
const CHUNK_EVENT = /^chunk (\S+): (\w+)/;

/**
 * What a chunk is doing. A completed job's chunks all ran; otherwise the node's events say, else
 * the job's state. The job's state comes first because an origin sees only some of its host's
 * events (each status push carries the newest one), so a chunk's last event may be `running`.
 */
function chunkState(job, c, seen) {
  if (c.excluded) return 'left-out';
  if (job.state === 'completed') return 'done';
  if (seen.has(chunkName(c))) return seen.get(chunkName(c));
  return LIVE.includes(job.state) ? 'waiting' : job.state;
}

/** Chromosomes x chunks, each cell with its state; updated live from the job's events. */
function chunkGrid(job, seen) {
  const chunks = job.qc_report?.chunks || [];
  if (!chunks.length || job.params.mode === 'qc_only') return null;
  const byChromosome = new Map();
  for (const c of chunks) byChromosome.set(c.chromosome, [...(byChromosome.get(c.chromosome) || []), c]);
  const rows = [...byChromosome].map(([chrom, list]) => h('tr', {}, h('th', { scope: 'row' }, chrom),
    h('td', {}, h('ol.chunks', {}, list.map((c) => {
      const state = chunkState(job, c, seen);
      const title = `${c.chromosome}:${c.start.toLocaleString()}-${c.end.toLocaleString()}, ${c.input_sites} input sites${c.excluded ? `; left out: ${c.excluded}` : ''}`;
      return h(`li.chunk.chunk-${state}`, { 'data-chunk': chunkName(c), title, 'aria-label': `${chunkName(c)} ${state.replace('-', ' ')}` }, state.replace('-', ' '));
    })))));
  const leftOut = chunks.filter((c) => c.excluded).length;
  return h('section.card', {}, h('h2', {}, 'Chunks'),
    h('p', {}, `${chunks.length} chunk${chunks.length === 1 ? '' : 's'}${leftOut ? `, ${leftOut} left out (too few input sites or too little panel overlap; hover for why)` : ''}.`),
    table(['Chromosome', 'Chunks'], rows, 'Chunks by chromosome'));
}

export async function jobPage(main, id) {
  const head = h('div');
  const body = h('div');
  const log = h('ol.log', { 'aria-label': 'Job log' });
  const bar = h('progress', { max: 1, value: 0, 'aria-label': 'Job progress' });
  const stateLine = h('p', { 'aria-live': 'polite' });
  mount(main, head, h('section.card', {}, h('h2', {}, 'Progress'), stateLine, bar, h('h3', {}, 'Log'), log), body);
  // Chunk states seen in the job's events (replayed, then live).
  const seen = new Map();

  const draw = async () => {
    const job = await api(`/jobs/${id}`);
    const results = LIVE.includes(job.state) ? [] : await api(`/jobs/${id}/results`).catch(() => []);
    // Acting on a job and reading its genotypes is for its owner and admins; auditors read.
    const mayAct = me().role === 'admin' || (me().role === 'researcher' && job.owner_id === me().id);
    const actions = [];
    if (mayAct && LIVE.includes(job.state) && job.role !== 'host') {
      actions.push(h('button.danger', { type: 'button', on: { click: async () => { await act('cancel'); } } }, 'Cancel'));
    }
    if (mayAct && ['failed', 'cancelled'].includes(job.state) && ['local', 'origin'].includes(job.role)) {
      actions.push(h('button', { type: 'button', on: { click: async () => { await act('retry'); } } }, 'Retry'));
    }
    const actionStatus = h('span', { 'aria-live': 'polite' });
    async function act(what) {
      try { await api(`/jobs/${id}/${what}`, { method: 'POST' }); await draw(); } catch (err) { mount(actionStatus, errorBox(err)); }
    }
    mount(head, h('h1', {}, job.name),
      h('dl.facts', {},
        h('dt', {}, 'State'), h('dd', {}, badge(job.state), job.stage ? ` (${job.stage.replace(/_/g, ' ')})` : ''),
        h('dt', {}, 'Panel(s)'), h('dd', {}, job.params.panel_id),
        h('dt', {}, 'Runs at'), h('dd', {}, job.role === 'origin' ? job.peer_institution || job.peer : job.role === 'parent' ? 'one job per panel (below)' : 'this node'),
        h('dt', {}, 'Engine'), h('dd', {}, `${job.params.engine}, build ${job.params.build}, ${job.params.mode.replace('_', ' ')}`),
        h('dt', {}, 'Submitted'), h('dd', {}, when(job.created_at)),
        h('dt', {}, 'Duration'), h('dd', {}, duration(job.started_at || job.created_at, job.finished_at)),
        h('dt', {}, 'Id'), h('dd.mono', {}, job.id)),
      job.error ? h('p.error', { role: 'alert' }, job.error) : null,
      h('p.actions', {}, actions, actionStatus));
    bar.value = job.progress;
    stateLine.textContent = `${job.state.replace(/_/g, ' ')}${job.stage ? ` — ${job.stage.replace(/_/g, ' ')}` : ''}: ${Math.round(job.progress * 100)}%`;
    const parts = [qcSection(job, results, mayAct), chunkGrid(job, seen)];
    if (job.summary) {
      parts.push(h('section.card', {}, h('h2', {}, 'Imputation quality'),
        h('p', {}, `${job.summary.variants_imputed.toLocaleString()} variants imputed, ${job.summary.variants_typed.toLocaleString()} typed`),
        r2Chart(job.summary)));
    }
    if (job.children?.length) {
      parts.push(h('section.card', {}, h('h2', {}, 'Panels'), table(['Panel', 'State', 'Progress', 'Job'], job.children.map((c) => h('tr', {},
        h('td', {}, `${c.panel}${{ meta_phase: ' (phasing)', meta_impute: ' (imputing)' }[c.mode] || ''}`), h('td', {}, badge(c.state), c.error ? ` ${c.error}` : ''), h('td', {}, `${Math.round(c.progress * 100)}%`),
        h('td', {}, h('a', { href: `#/jobs/${c.id}` }, c.id.slice(0, 8))))), 'One job per panel')));
    }
    if (job.merge_report) {
      const r = job.merge_report;
      const rows = ['<1%', '1-5%', '>5%'].map((bin) => h('tr', {}, h('th', { scope: 'row' }, bin), r.panels.map((p) => h('td', {}, r.wins_by_maf?.[bin]?.[p] ?? 0))));
      rows.push(h('tr', {}, h('th', { scope: 'row' }, 'all'), r.panels.map((p) => h('td', {}, r.wins?.[p] ?? 0))));
      parts.push(h('section.card', {}, h('h2', {}, 'Merged result'),
        h('p', {}, `${r.variants.toLocaleString()} variants; each keeps the call of the panel with the highest estimated r2.`),
        table(['MAF bin', ...r.panels], rows, 'Variants won by each panel')));
    }
    if (job.meta_report) {
      const r = job.meta_report;
      const rows = ['<1%', '1-5%', '>5%'].filter((bin) => r.estimated_r2_by_maf?.[bin]).map((bin) => h('tr', {},
        h('th', { scope: 'row' }, bin), h('td', {}, r.estimated_r2_by_maf[bin].variants.toLocaleString()), h('td', {}, r.estimated_r2_by_maf[bin].mean_r2.toFixed(3))));
      const chromosomes = r.chromosomes.map((c) => h('tr', {}, h('th', { scope: 'row' }, c.chromosome),
        h('td', {}, c.training_sites.toLocaleString()), h('td', {}, c.variants.toLocaleString()), h('td', {}, c.not_in_every_panel.toLocaleString())));
      parts.push(h('section.card', {}, h('h2', {}, 'Meta-imputation'),
        h('p', {}, `Panels ${r.panels.join(', ')}, combined per haplotype with weights learnt at the typed sites every panel has.`),
        table(['Chromosome', 'Training sites', 'Variants', 'Not in every panel'], chromosomes, 'Per chromosome'),
        table(['MAF bin', 'Variants', 'Mean estimated r2'], rows, 'Estimated accuracy of the combination'),
        weightsChart(r)));
    }
    if (results.length) {
      // Password-protected archives: the password is shown here once and kept nowhere.
      const archiveStatus = h('div', { 'aria-live': 'polite' });
      const makeArchives = mayAct && job.state === 'completed' && results.some((r) => r.name.endsWith('.dose.vcf.gz'))
        ? h('button', { type: 'button', on: { click: async () => {
          try {
            const made = await api(`/jobs/${id}/archives`, { method: 'POST' });
            await draw();
            mount(document.getElementById('archive-status'), h('p.notice', { role: 'alert' },
              `Made ${made.archives.join(', ')}. Password, shown only now: `, h('code', {}, made.password)));
          } catch (err) { mount(archiveStatus, errorBox(err)); }
        } } }, 'Make password-protected archives')
        : null;
      archiveStatus.id = 'archive-status';
      parts.push(h('section.card', {}, h('h2', {}, 'Results'), table(['File', 'Size', 'SHA-256', ''], results.map((r) => h('tr', {},
        h('td', {}, r.name), h('td', {}, bytes(r.size)), h('td.mono', {}, r.sha256.slice(0, 16) + '…'),
        h('td', {}, mayAct ? h('button', { type: 'button', 'aria-label': `Download ${r.name}`, on: { click: () => download(`/jobs/${id}/results/${encodeURIComponent(r.name)}`, r.name) } }, 'Download') : null))), 'Result files'),
        makeArchives, archiveStatus));
    }
    mount(body, parts);
    return job;
  };

  const job = await draw();
  const controller = new AbortController();
  // The event stream replays the job's history, then follows it live until it ends.
  let last = job.state;
  events(`/jobs/${id}/events`, (e) => {
    const at = new Date(e.at).toLocaleTimeString();
    log.append(h('li', {}, `${at} ${e.state.replace(/_/g, ' ')}${e.stage ? ` / ${e.stage}` : ''} ${Math.round(e.progress * 100)}%${e.message ? ` — ${e.message}` : ''}`));
    const chunk = e.message?.match(CHUNK_EVENT);
    if (chunk) {
      seen.set(chunk[1], chunk[2]);
      const cell = body.querySelector(`li.chunk[data-chunk="${chunk[1]}"]`);
      // A completed job's replayed history must not turn its done chunks back to running.
      if (cell && last !== 'completed') {
        cell.className = `chunk chunk-${chunk[2]}`;
        cell.textContent = chunk[2];
        cell.setAttribute('aria-label', `${chunk[1]} ${chunk[2]}`);
      }
    }
    bar.value = e.progress;
    stateLine.textContent = `${e.state.replace(/_/g, ' ')}${e.stage ? ` — ${e.stage.replace(/_/g, ' ')}` : ''}: ${Math.round(e.progress * 100)}%`;
    if (e.state !== last) { last = e.state; draw().catch(() => {}); }
  }, controller.signal).then(() => (LIVE.includes(last) ? null : draw())).catch(() => {});
  return () => controller.abort();
}
