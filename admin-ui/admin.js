// Account and admin pages: API tokens, users, panels and services, data policy, audit log.

import { api, changePassword, me } from './api.js';
import { badge, errorBox, field, h, mount, table, when } from './dom.js';

export async function tokensPage(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const draw = async () => {
    const tokens = await api('/me/tokens');
    mount(list, table(['Name', 'Created', 'Expires', 'Last used', ''], tokens.map((t) => h('tr', {},
      h('td', {}, t.name), h('td', {}, when(t.created_at)), h('td', {}, when(t.expires_at)), h('td', {}, when(t.last_used_at)),
      h('td', {}, t.revoked ? 'revoked' : h('button.danger', {
        type: 'button', 'aria-label': `Revoke ${t.name}`,
        on: { click: async () => { await api(`/me/tokens/${t.id}`, { method: 'DELETE' }); await draw(); } },
      }, 'Revoke')))), 'Your API tokens'));
  };
  const name = h('input', { required: true, maxlength: 100 });
  const days = h('input', { type: 'number', min: 1, max: 90, value: 30, required: true });
  const password = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form.card', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        try {
          const body = { name: name.value.trim(), expires_in_days: Number(days.value), password: password.value };
          const t = await api('/me/tokens', { method: 'POST', body });
          mount(status, h('p.ok', { role: 'status' }, 'Copy this token now; it is not shown again: ', h('code', {}, t.token)));
          name.value = '';
          password.value = '';
          await draw();
        } catch (err) { mount(status, errorBox(err)); }
      },
    },
  }, h('h2', {}, 'New token'), field('Name', name), field('Valid for (days)', days), field('Your password, to confirm', password),
  h('button', { type: 'submit' }, 'Create token'));
  mount(main, h('h1', {}, 'API tokens'), h('p', {}, 'Scripts and the fedimpute CLI use tokens instead of your password.'), form, status, list);
  await draw();
}

export async function passwordPage(main, { onChanged } = {}) {
  const status = h('div', { 'aria-live': 'polite' });
  const current = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 12 });
  const again = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 12 });
  const form = h('form.card.narrow', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        if (next.value !== again.value) { mount(status, errorBox('The two new passwords differ.')); return; }
        try {
          await changePassword(current.value, next.value);
          [current, next, again].forEach((i) => { i.value = ''; });
          mount(status, h('p.ok', { role: 'status' }, 'Password changed. Your other sessions have ended.'));
          if (onChanged) onChanged();
        } catch (err) { mount(status, errorBox(err)); }
      },
    },
  }, field('Current password', current), field('New password (at least 12 characters)', next), field('New password again', again),
  status, h('button', { type: 'submit' }, 'Change password'));
  const notice = me() && me().must_change_password
    ? h('p.error', { role: 'alert' }, 'Your password is a one-time password. Choose your own before going on.')
    : h('p', {}, 'Changing your password ends every other session of yours.');
  mount(main, h('h1', {}, 'Password'), notice, form, me() && !me().must_change_password ? mailForm() : null);
  current.focus();
}

/** The caller's e-mail address and whether a mail tells them when a job of theirs ends. */
function mailForm() {
  const status = h('div', { 'aria-live': 'polite' });
  const email = h('input', { type: 'email', autocomplete: 'email', value: me().email || '' });
  const notify = h('input', { type: 'checkbox', checked: me().email_notifications !== false });
  return h('form.card.narrow', {
    'aria-label': 'E-mail',
    on: {
      submit: async (e) => {
        e.preventDefault();
        try {
          const updated = await api('/me', { method: 'PATCH', body: { email: email.value.trim(), email_notifications: notify.checked } });
          Object.assign(me(), updated);
          mount(status, h('p.ok', { role: 'status' }, updated.email
            ? `Saved. ${updated.email_notifications ? 'A mail goes to' : 'No mails go to'} ${updated.email} when a job of yours ends.`
            : 'Saved. No address: no mails.'));
        } catch (err) { mount(status, errorBox(err)); }
      },
    },
  }, h('h2', {}, 'E-mail'),
  h('p', {}, 'If this node sends mails, one tells you when a job of yours ends: its name, state and a link. Never your data or results.'),
  field('Your e-mail address', email),
  h('label.check', {}, notify, ' Mail me when a job of mine ends'),
  status, h('button', { type: 'submit' }, 'Save'));
}

export async function usersPage(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const roles = ['researcher', 'admin', 'auditor', 'viewer'];
  const draw = async () => {
    const users = await api('/users');
    mount(list, table(['User', 'Role', 'E-mail', 'State', 'Created', 'Actions'], users.map((u) => {
      const role = h('select', { 'aria-label': `Role of ${u.username}` }, roles.map((r) => h('option', { value: r, selected: r === u.role }, r)));
      role.addEventListener('change', () => change(u, { role: role.value }));
      // Where mails about their jobs go; cleared, no mails.
      const email = h('input', { type: 'email', 'aria-label': `E-mail of ${u.username}`, value: u.email || '', placeholder: 'none' });
      email.addEventListener('change', () => change(u, { email: email.value.trim() }));
      return h('tr', {},
        h('td', {}, u.username), h('td', {}, role), h('td', {}, email), h('td', {}, u.disabled ? badge('disabled') : badge('enabled')), h('td', {}, when(u.created_at)),
        h('td.actions', {},
          h('button', { type: 'button', on: { click: () => change(u, { disabled: !u.disabled }) } }, u.disabled ? 'Enable' : 'Disable'),
          h('button', {
            type: 'button',
            on: {
              click: async () => {
                try {
                  const r = await api(`/users/${u.id}/reset-password`, { method: 'POST', body: {} });
                  mount(status, h('p.ok', { role: 'status' }, `New password for ${u.username} (shown once): `, h('code', {}, r.generated_password || '(set)')));
                } catch (err) { mount(status, errorBox(err)); }
              },
            },
          }, 'Reset password')));
    }), 'Users of this node'));
  };
  async function change(u, patch) {
    try { await api(`/users/${u.id}`, { method: 'PATCH', body: patch }); mount(status, h('p.ok', { role: 'status' }, `${u.username} updated.`)); } catch (err) { mount(status, errorBox(err)); }
    await draw();
  }
  const username = h('input', { required: true, autocomplete: 'off', name: 'new-username' });
  const role = h('select', { name: 'new-role' }, roles.map((r) => h('option', { value: r }, r)));
  const form = h('form.card', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        try {
          const u = await api('/users', { method: 'POST', body: { username: username.value.trim(), role: role.value } });
          mount(status, h('p.ok', { role: 'status' }, `Created ${u.username}. Password (shown once): `, h('code.password', {}, u.generated_password)));
          username.value = '';
          await draw();
        } catch (err) { mount(status, errorBox(err)); }
      },
    },
  }, h('h2', {}, 'New user'), field('User name', username), field('Role', role), h('button', { type: 'submit' }, 'Create user'));
  mount(main, h('h1', {}, 'Users'), form, status, list);
  await draw();
}

export async function panelsPage(main) {
  const [panels, services, node] = await Promise.all([api('/panels'), api('/catalog/services'), api('/node')]);
  const ours = services.filter((s) => s.host.peer_id === node.peer_id);
  mount(main, h('h1', {}, 'Panels and services'),
    h('p', {}, 'Panels are registered with ', h('code', {}, 'fedimpute panel add'), ' on the node, or through the API from files in the node\'s panels-incoming folder.'),
    table(['Panel', 'Status', 'Build', 'Populations', 'Chromosomes', 'Samples', 'Sites'], panels.map((p) => h('tr', {},
      h('td', {}, h('strong', {}, p.id), h('br'), p.name), h('td', {}, badge(p.status), p.error ? ` ${p.error}` : ''), h('td', {}, p.build),
      h('td', {}, p.populations.join(', ')), h('td', {}, p.chromosomes.join(', ')), h('td', {}, p.samples.toLocaleString()), h('td', {}, p.sites.toLocaleString()))),
    'Reference panels hosted here'),
    table(['Service', 'Kind', 'Status', 'Queue', 'Capacity'], ours.map((s) => h('tr', {},
      h('td', {}, s.id), h('td', {}, s.kind), h('td', {}, badge(s.status)), h('td', {}, s.queue_length), h('td', {}, s.capacity))),
    'Imputation services of this node'));
}

export async function policyPage(main) {
  const node = await api('/node');
  const list = (xs) => (xs.length ? xs.join(', ') : 'every member');
  const p = node.policy;
  mount(main, h('h1', {}, 'Data policy'),
    h('p', {}, 'Set in the [policy] and [jobs] sections of node.toml (read-only here).'),
    h('dl.facts.card', {},
      h('dt', {}, 'Node'), h('dd', {}, `${node.name} (${node.institution})`),
      h('dt', {}, 'Accepts jobs from'), h('dd', {}, list(p.accept_from)),
      h('dt', {}, 'Sends data only to'), h('dd', {}, list(p.send_to)),
      h('dt', {}, 'Jobs of one member at once'), h('dd', {}, p.max_concurrent_per_origin || 'no limit beyond capacity'),
      h('dt', {}, 'Jobs of one member per 30 days'), h('dd', {}, p.max_jobs_per_origin_per_month || 'no limit'),
      h('dt', {}, 'Largest input file'), h('dd', {}, `${node.jobs.max_upload_bytes.toLocaleString()} bytes`),
      h('dt', {}, 'Results kept'), h('dd', {}, `${node.jobs.results_retention_days} days`),
      h('dt', {}, 'Jobs per user per 30 days'), h('dd', {}, node.jobs.max_jobs_per_month),
      h('dt', {}, 'Peer timeout'), h('dd', {}, `${node.transfer.peer_timeout_secs} s`)));
}

export async function auditPage(main) {
  const action = h('input', { placeholder: 'e.g. job. or auth.login' });
  const actor = h('input', { placeholder: 'e.g. user:alice' });
  const outcome = h('select', {}, h('option', { value: '' }, 'any'), ['success', 'failure', 'denied'].map((o) => h('option', {}, o)));
  const list = h('div', { 'aria-live': 'polite' });
  const verify = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    const q = new URLSearchParams({ limit: '200' });
    if (action.value.trim()) q.set('action', action.value.trim());
    if (actor.value.trim()) q.set('actor', actor.value.trim());
    if (outcome.value) q.set('outcome', outcome.value);
    const page = await api(`/audit?${q}`);
    mount(list, table(['#', 'When', 'Action', 'Outcome', 'Actor', 'Target', 'Details'], page.entries.map((e) => h('tr', {},
      h('td', {}, e.seq), h('td', {}, when(typeof e.at === 'number' ? new Date(e.at).toISOString() : e.at)), h('td', {}, e.action),
      h('td', {}, badge(e.outcome)), h('td.mono', {}, e.actor), h('td.mono', {}, e.target), h('td.details', {}, e.details))), 'Audit log, newest first'));
  };
  const check = async () => {
    try {
      const v = await api('/audit/verify');
      mount(verify, v.ok
        ? h('p.ok', { role: 'status' }, `Chain intact: ${v.rows_verified} entries verified.`)
        : h('p.error', { role: 'alert' }, `Chain broken at entry ${v.first_bad_seq}: ${v.reason}`));
    } catch (err) { mount(verify, errorBox(err)); }
  };
  mount(main, h('h1', {}, 'Audit log'),
    h('section.card', {}, h('button', { type: 'button', on: { click: check } }, 'Verify the hash chain'), verify),
    h('form.filters', { on: { submit: (e) => { e.preventDefault(); load(); } } },
      field('Action', action), field('Actor', actor), field('Outcome', outcome), h('button', { type: 'submit' }, 'Filter')), list);
  await Promise.all([load(), check()]);
}
