// The hash router: `#/path?query` -> ./pages/<name>.js, whose render(root, params) draws the
// page into <main>; the cleanup it may return runs before the next page (closes streams).
import { getApiKey, setApiKey } from './api.js';
import { el } from './format.js';

const ROUTES = [
  ['/', 'home', 'Home'],
  ['/checkpoints', 'checkpoints', 'Checkpoints'],
  ['/checkpoints/:id', 'checkpoint', 'Checkpoint'],
  ['/predictions', 'predictions', 'Predictions'],
  ['/predictions/:id', 'prediction', 'Prediction'],
  ['/jobs', 'jobs', 'Jobs'],
  ['/jobs/:id', 'job', 'Job'],
  ['/zoos', 'zoos', 'Zoos'],
  ['/zoos/:id', 'zoo', 'Zoo'],
  ['/merges', 'merges', 'Merges'],
  ['/merges/new', 'merge_new', 'New merge'],
  ['/merges/:id', 'merge', 'Merge'],
  ['/metanetworks', 'metanetworks', 'Metanetworks'],
  ['/metanetworks/:ref', 'metanetwork', 'Metanetwork'],
  ['/training/:jobId', 'training', 'Training'],
];

// Which nav entry a page belongs to.
const SECTION = {
  home: 'home', checkpoints: 'checkpoints', checkpoint: 'checkpoints', predictions: 'predictions',
  prediction: 'predictions', jobs: 'jobs', job: 'jobs', zoos: 'zoos', zoo: 'zoos', merges: 'merges',
  merge_new: 'merges', merge: 'merges', metanetworks: 'metanetworks', metanetwork: 'metanetworks',
  training: 'metanetworks',
};

function parseHash(hash) {
  const raw = (hash || '').replace(/^#/, '') || '/';
  const [pathPart, queryPart = ''] = raw.split('?');
  const path = pathPart.replace(/\/+$/, '') || '/';
  const query = Object.fromEntries(new URLSearchParams(queryPart));
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, name, title] of ROUTES) {
    const want = pattern.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = { query };
    let ok = true;
    for (let i = 0; i < want.length; i += 1) {
      if (want[i].startsWith(':')) {
        try { params[want[i].slice(1)] = decodeURIComponent(parts[i]); } catch { ok = false; }
      } else if (want[i] !== parts[i]) ok = false;
    }
    if (ok) return { name, title, params };
  }
  return { name: null, title: 'Not found', params: { query, path } };
}

const main = () => document.getElementById('main');
let cleanup = null;
let generation = 0;
let navigated = false; // the first page keeps the browser's focus at the document's start

function notFound(root, path) {
  root.append(
    el('h1', null, 'Page not found'),
    el('p', null, `There is no page at ${path || 'this address'}.`),
    el('p', null, el('a', { href: '#/' }, 'Go to the home page')));
}

function markNav(section) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function focusHeading(root) {
  const heading = root.querySelector('h1') || root;
  if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
  heading.focus({ preventScroll: false });
}

export async function route() {
  const mine = ++generation;
  if (cleanup) {
    try { cleanup(); } catch (err) { console.error(err); }
    cleanup = null;
  }
  const root = main();
  root.replaceChildren();
  root.setAttribute('aria-busy', 'true');
  const { name, title, params } = parseHash(window.location.hash);
  document.title = `${title} \u00b7 Weightscope`;
  markNav(SECTION[name]);
  try {
    if (!name) {
      notFound(root, params.path);
    } else {
      const page = await import(`./pages/${name}.js`);
      if (mine !== generation) return;
      const done = await page.render(root, params);
      if (mine !== generation) { if (typeof done === 'function') done(); return; }
      if (typeof done === 'function') cleanup = done;
    }
  } catch (err) {
    if (mine !== generation) return;
    console.error(err);
    root.append(el('h1', null, title), el('div', { class: 'error', role: 'alert' }, `This page failed to load: ${err.message || err}`));
  } finally {
    if (mine === generation) {
      root.removeAttribute('aria-busy');
      const heading = root.querySelector('h1');
      if (heading) document.title = `${heading.textContent} \u00b7 Weightscope`;
      if (navigated) focusHeading(root);
      navigated = true;
      root.dispatchEvent(new CustomEvent('page-rendered', { bubbles: true }));
    }
  }
}

// Say something to screen readers once (the announcer is aria-live).
export function announce(text) {
  const box = document.getElementById('announcer');
  if (!box) return;
  box.textContent = '';
  window.setTimeout(() => { box.textContent = text; }, 50);
}

function setupKeyForm() {
  const form = document.getElementById('key-form');
  const input = document.getElementById('api-key');
  const status = document.getElementById('key-status');
  const show = () => { status.textContent = getApiKey() ? 'key saved in this browser' : 'no key'; };
  input.value = getApiKey();
  show();
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    show();
    route(); // the page again, now with (or without) the key
  });
}

function start() {
  setupKeyForm();
  document.getElementById('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    focusHeading(main());
  });
  window.addEventListener('hashchange', route);
  route();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
