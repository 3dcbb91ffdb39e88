// Formatting and DOM building shared by every page. Text always goes in as text nodes:
// API data never reaches innerHTML.

export const DASH = '\u2014';

function missing(x) {
  return x === null || x === undefined || (typeof x === 'number' && !Number.isFinite(x));
}

// A number to 3 significant digits (as toPrecision(3)), written out in full for ordinary
// magnitudes; an exponent only below 1e-4 or from 1e9 on.
export function fmt(x) {
  if (missing(x)) return DASH;
  const n = Number(x);
  if (Number.isNaN(n)) return DASH;
  if (n === 0) return '0';
  const a = Math.abs(n);
  if (a < 1e-4 || a >= 1e9) {
    const [mantissa, exponent] = n.toExponential(2).split('e');
    return `${mantissa}\u00d710${superscript(exponent)}`;
  }
  const text = n.toPrecision(3);
  if (!/e/.test(text)) return text;
  return String(Number(text)); // 12345 -> "1.23e+4" -> "12300"
}

const SUPERSCRIPTS = { '-': '\u207b', '+': '', 0: '\u2070', 1: '\u00b9', 2: '\u00b2', 3: '\u00b3', 4: '\u2074', 5: '\u2075', 6: '\u2076', 7: '\u2077', 8: '\u2078', 9: '\u2079' };

function superscript(exponent) {
  return [...String(Number(exponent))].map((c) => SUPERSCRIPTS[c] ?? c).join('');
}

// A fraction as a percentage to 3 significant digits: 0.9731 -> "97.3 %".
export function fmtPct(x) {
  if (missing(x)) return DASH;
  return `${fmt(Number(x) * 100)} %`;
}

// Counts stay exact (a parameter count rounded to 3 digits would say less than it knows).
export function fmtInt(n) {
  if (missing(n)) return DASH;
  return Number(n).toLocaleString('en-US');
}

export function fmtBytes(n) {
  if (missing(n)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${fmt(value)} ${units[unit]}`;
}

// An ISO time as the reader's local date and time (UTC in the tooltip of timeEl).
export function fmtTime(iso) {
  if (!iso) return DASH;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (v) => String(v).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeEl(iso) {
  return iso ? el('time', { datetime: iso, title: iso }, fmtTime(iso)) : DASH;
}

// el('a', {href: '#/x', class: 'btn', onclick: fn, 'aria-label': 'x'}, 'text', node, [more])
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'value' || name === 'checked' || name === 'selected') node[name] = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

// table({caption, columns: [{label, value: row => node|string, numeric?}], rows, empty})
export function table({ caption, columns, rows, empty = 'Nothing here yet.' }) {
  const head = el('thead', null,
    el('tr', null, columns.map((c) => el('th', { scope: 'col', class: c.numeric ? 'num' : null }, c.label))));
  const body = el('tbody', null, rows.length
    ? rows.map((row) => el('tr', null, columns.map((c) => el('td', { class: c.numeric ? 'num' : null }, cell(c.value(row))))))
    : el('tr', null, el('td', { colspan: columns.length, class: 'empty' }, empty)));
  return el('div', { class: 'table-wrap' },
    el('table', null, caption ? el('caption', null, caption) : null, head, body));
}

function cell(value) {
  if (value === null || value === undefined || value === '') return DASH;
  return value;
}

// Cursor pagination controls. The API pages newest first with an opaque `next_cursor`
// (null on the last page); going back needs the cursors already seen, which the caller
// keeps (`previous`: the stack). onNext(cursor) / onPrevious() re-render the list.
export function pager({ next_cursor, previous = [], page = previous.length + 1, onNext, onPrevious, label = 'Pages' }) {
  return el('nav', { class: 'pager', 'aria-label': label },
    el('button', { type: 'button', class: 'btn', disabled: previous.length === 0, onclick: () => onPrevious && onPrevious() }, '\u2190 Previous'),
    el('span', { class: 'page-no', 'aria-live': 'polite' }, `Page ${page}`),
    el('button', { type: 'button', class: 'btn', disabled: !next_cursor, onclick: () => onNext && onNext(next_cursor) }, 'Next \u2192'));
}

// A job's status as a coloured badge with words (never colour alone).
export function statusBadge(status) {
  return el('span', { class: `badge status-${status}` }, status || DASH);
}

export function link(href, ...children) {
  return el('a', { href }, ...children);
}

export function errorBox(err, prefix = '') {
  const problem = err && err.problem;
  return el('div', { class: 'error', role: 'alert' },
    el('strong', null, `${prefix}${err && err.status ? `Error ${err.status}: ` : 'Error: '}`),
    (err && err.message) || String(err),
    err && err.status === 401 ? el('p', null, 'This server asks for an API key: paste yours into the \u201cAPI key\u201d field at the top of the page and save it.') : null,
    problem && problem.errors ? el('ul', null, problem.errors.map((e) => el('li', null, `${(e.loc || []).join('.')}: ${e.msg}`))) : null);
}
