// The federation: members and their connections, the config, and the panel catalog.

import { api } from './api.js';
import { badge, field, h, mount, table, when } from './dom.js';

// A member is named as the signed member list names it; what its own advert says about itself
// is shown beside that only when it differs, as a warning.
function selfDescribed(advertised) {
  if (!advertised?.differs) return null;
  return h('span.self-described', { title: 'Not signed by the federation admins' },
    ` calls itself “${advertised.node_name}” of “${advertised.institution}”, unlike the member list`);
}

export async function federationPage(main) {
  const fed = await api('/federation');
  const members = (fed.members || []).map((m) => h('tr', {},
    h('td', {}, m.institution, m.connection === 'self' ? ' (this node)' : '', selfDescribed(m.advertised)),
    h('td', {}, badge(m.connection === 'self' ? 'this node' : m.connection),
      m.refused_because ? h('span.refused', {}, ` ${m.refused_because}`) : null,
      m.reached ? h('span.route', {}, m.relayed_via
        ? ` relayed via ${m.relayed_via.institution || m.relayed_via.peer_id.slice(0, 16) + '…'}`
        : ' direct') : null),
    h('td', {}, when(m.last_seen)),
    h('td', {}, m.rtt_ms == null ? '—' : `${Number(m.rtt_ms).toFixed(1)} ms`),
    h('td', {}, m.reachable ? 'yes' : 'no'),
    h('td.mono', {}, m.peer_id.slice(0, 16) + '…')));

  const build = h('select', {}, h('option', { value: '' }, 'any'), h('option', {}, 'hg19'), h('option', {}, 'hg38'));
  const population = h('input', { placeholder: 'e.g. AFR' });
  const host = h('input', { placeholder: 'institution or PeerId' });
  const results = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    const q = new URLSearchParams();
    if (build.value) q.set('build', build.value);
    if (population.value.trim()) q.set('population', population.value.trim());
    if (host.value.trim()) q.set('node', host.value.trim());
    const panels = await api(`/catalog/panels?${q}`);
    const rows = panels.flatMap((p) => p.hosts.map((hst) => h('tr', {},
      h('td', {}, h('strong', {}, p.id), h('br'), p.name),
      h('td', {}, p.build),
      h('td', {}, (p.populations || []).join(', ')),
      h('td', {}, Number(p.samples).toLocaleString()),
      h('td', {}, Number(p.sites).toLocaleString()),
      h('td', {}, (p.chromosomes || []).join(', ')),
      h('td', {}, hst.institution, selfDescribed(hst.advertised)),
      h('td', {}, badge(hst.reachable ? 'reachable' : 'unreachable')))));
    mount(results, table(['Panel', 'Build', 'Populations', 'Samples', 'Sites', 'Chromosomes', 'Host', 'Host health'], rows, 'Reference panels in the federation'));
  };
  for (const el of [build, population, host]) el.addEventListener('change', load);
  const filters = h('form.filters', { on: { submit: (e) => { e.preventDefault(); load(); } } },
    field('Build', build), field('Population', population), field('Host', host), h('button', { type: 'submit' }, 'Filter'));

  mount(main,
    h('h1', {}, 'Federation'),
    fed.expiry_warning ? h('p.notice', { role: 'alert' }, fed.expiry_warning) : null,
    h('section.card', {},
      h('h2', {}, 'Config'),
      h('dl.facts', {},
        h('dt', {}, 'Status'), h('dd', {}, badge(fed.status || 'unknown'), fed.reason ? ` ${fed.reason}` : ''),
        h('dt', {}, 'Federation'), h('dd', {}, fed.federation_id || '—'),
        h('dt', {}, 'Version'), h('dd', {}, fed.version ?? '—'),
        h('dt', {}, 'Expires'), h('dd', {}, when(fed.expires_at)))),
    h('section', {}, h('h2', {}, 'Members'),
      table(['Institution', 'Connection', 'Last seen', 'Round trip', 'Reachable', 'PeerId'], members, 'Members of the federation')),
    h('section', {}, h('h2', {}, 'Panel catalog'), filters, results));
  await load();
}
