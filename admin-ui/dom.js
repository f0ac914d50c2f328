// A small DOM builder: elements are made with text nodes, never from HTML strings, so values
// from the node or its peers cannot inject markup.

/** h('tag.class#id', {attrs, on: {click}}, ...children) */
export function h(spec, attrs = {}, ...children) {
  const [, tag = 'div', rest = ''] = spec.match(/^([a-z0-9]+)?(.*)$/i) || [];
  const el = document.createElement(tag || 'div');
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the content of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A labelled form field: the label is tied to the input for screen readers. */
let fieldCount = 0;
export function field(label, input, hint) {
  const id = input.id || `f${++fieldCount}`;
  input.id = id;
  const msg = h('span.field-error', { id: `${id}-error`, role: 'alert' });
  input.setAttribute('aria-describedby', `${id}-error`);
  return h('div.field', {}, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null, msg);
}

/** Shows (or clears) a validation message next to a field made by `field`. */
export function fieldError(input, message) {
  const msg = document.getElementById(`${input.id}-error`);
  if (msg) msg.textContent = message || '';
  input.setAttribute('aria-invalid', message ? 'true' : 'false');
}

export function table(headers, rows, caption) {
  return h('div.table-wrap', {},
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length }, 'None.')))));
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function duration(fromIso, toIso) {
  if (!fromIso) return '—';
  const ms = (toIso ? new Date(toIso) : new Date()) - new Date(fromIso);
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

/** An alert box for an error (role=alert so it is announced). */
export function errorBox(err) {
  return h('p.error', { role: 'alert' }, err instanceof Error ? err.message : String(err));
}

export function badge(state) {
  const text = String(state ?? 'unknown');
  const el = h('span.badge', {}, text.replace(/_/g, ' '));
  el.classList.add(`state-${text.toLowerCase().replace(/[^a-z0-9_]+/g, '-')}`);
  return el;
}
