// A history table: the API's filters as a form, the list newest first, cursor pagination.
// Filters live in the address (#/path?name=value) so a filtered view can be shared; the
// cursors already passed are kept here to go back a page.
import { api } from './api.js';
import { el, errorBox, pager, table } from './format.js';

// filters: [{name, label, type: 'text'|'number'|'select'|'datetime-local', options?: [[value, text]]}]
export function historyTable(root, { title, path, filters = [], columns, query = {}, limit = 20, hashPath, empty }) {
  const values = Object.fromEntries(filters.map((f) => [f.name, query[f.name] || '']));
  // ?limit= in the address sets the page size (the API allows 1 to 200)
  const asked = Number.parseInt(query.limit, 10);
  if (Number.isFinite(asked)) limit = Math.min(200, Math.max(1, asked));
  const previous = [];
  let cursor = null;
  let controller = null;
  const region = el('section', { class: 'history', 'aria-label': title });
  const status = el('p', { class: 'visually-hidden', 'aria-live': 'polite' });

  const form = filters.length ? el('form', { class: 'filters', role: 'search', 'aria-label': `Filter ${title.toLowerCase()}` },
    filters.map((f) => {
      const id = `filter-${f.name}`;
      const input = f.type === 'select'
        ? el('select', { id, name: f.name }, el('option', { value: '' }, 'any'),
          (f.options || []).map(([v, text]) => el('option', { value: v, selected: values[f.name] === v }, text)))
        : el('input', { id, name: f.name, type: f.type || 'text', value: values[f.name], inputmode: f.type === 'number' ? 'numeric' : null, min: f.type === 'number' ? 1 : null, size: f.size || 12 });
      return el('div', { class: 'field' }, el('label', { for: id }, f.label), input);
    }),
    el('button', { type: 'submit', class: 'btn' }, 'Apply filters'),
    el('button', { type: 'reset', class: 'btn secondary' }, 'Clear')) : null;

  if (form) {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      for (const f of filters) values[f.name] = form.elements[f.name].value.trim();
      const q = new URLSearchParams(Object.entries(values).filter(([, v]) => v));
      if (query.limit) q.set('limit', String(limit));
      const target = `#${hashPath}${q.toString() ? `?${q}` : ''}`;
      if (window.location.hash !== target) window.location.hash = target; // the router re-renders
      else { previous.length = 0; cursor = null; load(); }
    });
    form.addEventListener('reset', () => {
      window.setTimeout(() => { // after the browser has emptied the fields
        for (const f of filters) { values[f.name] = ''; form.elements[f.name].value = ''; }
        if (window.location.hash !== `#${hashPath}`) window.location.hash = `#${hashPath}`;
        else { previous.length = 0; cursor = null; load(); }
      }, 0);
    });
  }

  function apiQuery() {
    const q = { limit, cursor };
    for (const f of filters) {
      let v = values[f.name];
      if (v && f.type === 'datetime-local') v = new Date(v).toISOString();
      q[f.name] = v;
    }
    return q;
  }

  const body = el('div', { class: 'history-body' });
  async function load(focusButton) {
    if (controller) controller.abort();
    controller = new AbortController();
    body.setAttribute('aria-busy', 'true');
    try {
      const page = await api(path, { query: apiQuery(), signal: controller.signal });
      const nav = pager({
        next_cursor: page.next_cursor,
        previous,
        label: `${title} pages`,
        onNext: (next) => { previous.push(cursor); cursor = next; load('next'); },
        onPrevious: () => { cursor = previous.pop() ?? null; load('previous'); },
      });
      body.replaceChildren(
        table({ caption: `${title} (page ${previous.length + 1}, newest first)`, columns, rows: page.items, empty }),
        nav);
      status.textContent = `Page ${previous.length + 1}: ${page.items.length} ${page.items.length === 1 ? 'record' : 'records'}`;
      if (focusButton) {
        const buttons = nav.querySelectorAll('button');
        const want = focusButton === 'next' ? buttons[1] : buttons[0];
        (want.disabled ? (focusButton === 'next' ? buttons[0] : buttons[1]) : want).focus();
      }
    } catch (err) {
      if (err.name === 'AbortError') return;
      body.replaceChildren(errorBox(err));
    } finally {
      body.removeAttribute('aria-busy');
    }
  }

  region.append(form || '', status, body);
  root.append(region);
  load();
  return () => { if (controller) controller.abort(); };
}
