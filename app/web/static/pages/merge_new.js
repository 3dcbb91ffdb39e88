// The merge form: two or more of the tenant's checkpoints (the first picked is the
// reference the others are aligned to), a method, an optional evaluation dataset and the
// method's options; submits POST /v1/merges, follows the job live and then opens the merge.
import { api, isTerminal, jobEvents } from '../api.js';
import { announce } from '../app.js';
import { el, errorBox, fmtInt } from '../format.js';
import { jobStatusBox } from '../job_view.js';
import { METHOD_NAMES } from './merges.js';

const METHODS = [
  ['weight', 'Weight matching: align by weights alone (same architecture)'],
  ['activation', 'Activation matching: align by activations on the dataset (same architecture)'],
  ['ste', 'Straight-through estimator: learn the alignment on the dataset (same architecture; needs a dataset)'],
  ['ot', 'Optimal-transport fusion: networks of different widths'],
  ['clafusion', 'CLAFusion: MLPs of different depths'],
];
const FUSIONS = new Set(['ot', 'clafusion']);
const MAX_INPUTS = 8;

async function everything(path, pages = 5) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < pages; i += 1) {
    const page = await api(path, { query: { limit: 200, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

function describe(c) {
  const arch = c.architecture;
  const families = arch && arch.families ? arch.families.join(', ') : 'no architecture';
  return `#${c.id} ${c.filename || '(no name)'} \u2014 ${fmtInt(c.parameter_count)} parameters, ${families}`;
}

export async function render(root, params) {
  root.append(el('h1', null, 'New merge'),
    el('p', null, 'Pick two or more checkpoints. The first one picked is the reference: the others are aligned to it (permutations of their hidden neurons) before the weights are averaged. With a dataset the merge also measures loss and accuracy along the interpolation path, naive and aligned.'));
  const errors = el('div', { role: 'alert' });
  let checkpoints;
  let datasets;
  try {
    [checkpoints, datasets] = await Promise.all([everything('/v1/checkpoints'), everything('/v1/datasets')]);
  } catch (err) {
    root.append(errorBox(err));
    return undefined;
  }
  if (checkpoints.length < 2) {
    root.append(el('p', { class: 'notice' }, 'A merge needs at least two checkpoints: ', el('a', { href: '#/' }, 'upload some first'), '.'));
    return undefined;
  }

  const picked = []; // ids in the order they were picked: the first is the reference
  const order = el('p', { id: 'merge-order', class: 'muted', 'aria-live': 'polite' });
  const boxes = new Map();
  const showOrder = () => {
    order.textContent = picked.length
      ? `Order: ${picked.map((id, i) => `#${id}${i === 0 ? ' (reference)' : ''}`).join(', ')}`
      : 'Nothing picked yet.';
    for (const [id, box] of boxes) box.disabled = !box.checked && picked.length >= MAX_INPUTS;
    syncOptions();
  };
  const list = el('div', { class: 'ws-checkpoint-picks' }, checkpoints.map((c) => {
    const id = `merge-pick-${c.id}`;
    const box = el('input', { type: 'checkbox', id, name: 'checkpoint', value: c.id, 'data-id': c.id });
    box.addEventListener('change', () => {
      const at = picked.indexOf(c.id);
      if (box.checked && at < 0) picked.push(c.id);
      if (!box.checked && at >= 0) picked.splice(at, 1);
      showOrder();
    });
    boxes.set(c.id, box);
    return el('div', null, box, ' ', el('label', { for: id }, describe(c)));
  }));

  const method = el('select', { id: 'merge-method', name: 'method' },
    METHODS.map(([value, text]) => el('option', { value }, text)));
  const dataset = el('select', { id: 'merge-dataset', name: 'dataset_id' },
    el('option', { value: '' }, 'none (no curves, no barrier)'),
    datasets.map((d) => el('option', { value: d.id }, `#${d.id} ${d.filename || ''} \u2014 ${fmtInt(d.num_samples)} samples, ${d.num_classes} classes`)));
  if (datasets.length) dataset.value = String(datasets[0].id);
  const lam = el('input', { id: 'merge-lam', name: 'lam', type: 'number', min: 0, max: 1, step: 0.05, value: 0.5, 'aria-describedby': 'merge-lam-help' });
  const points = el('input', { id: 'merge-points', name: 'curve_points', type: 'number', min: 2, max: 101, step: 1, value: 11 });
  const canonical = el('input', { id: 'merge-canonical', name: 'canonical', type: 'checkbox' });
  const solver = el('select', { id: 'merge-solver', name: 'solver' },
    el('option', { value: 'emd' }, 'exact (emd)'), el('option', { value: 'sinkhorn' }, 'entropic (sinkhorn)'));
  const target = el('select', { id: 'merge-target', name: 'target' });

  function syncOptions() {
    const m = method.value;
    const two = picked.length <= 2;
    lam.disabled = !two;
    canonical.disabled = m !== 'weight';
    if (canonical.disabled) canonical.checked = false;
    solver.disabled = !FUSIONS.has(m);
    target.disabled = !FUSIONS.has(m);
    const keep = target.value;
    target.replaceChildren(...picked.map((id, i) => el('option', { value: i }, `#${id}`)));
    if (keep && Number(keep) < picked.length) target.value = keep;
    for (const option of method.options) {
      option.disabled = !two && !['weight', 'ot', 'clafusion'].includes(option.value);
    }
    if (method.selectedOptions[0] && method.selectedOptions[0].disabled) method.value = 'weight';
  }
  method.addEventListener('change', syncOptions);

  const submit = el('button', { type: 'submit', class: 'btn' }, 'Merge');
  const field = (input, label, help) => el('div', { class: 'field' }, el('label', { for: input.id }, label), input, help || null);
  const form = el('form', { class: 'ws-chart-form', 'aria-label': 'New merge', novalidate: true },
    el('fieldset', null, el('legend', null, `Checkpoints (2 to ${MAX_INPUTS})`), list, order),
    el('div', { class: 'filters' },
      field(method, 'Method'),
      field(dataset, 'Evaluation dataset (optional)'),
      field(lam, '\u03bb: weight of the second checkpoint', el('span', { id: 'merge-lam-help', class: 'muted' }, 'two inputs; more are averaged uniformly')),
      field(points, '\u03bb values on each curve'),
      el('div', { class: 'field' }, el('label', { for: canonical.id }, canonical, ' canonical forms first (weight matching)')),
      field(solver, 'Transport solver (fusions)'),
      field(target, 'Take the widths of (fusions)')),
    submit, errors);
  const progress = el('div', { class: 'merge-progress' });
  root.append(form, progress);

  for (const key of ['a', 'b', 'c', 'd']) {
    const id = Number(params.query[key]);
    if (boxes.has(id) && !picked.includes(id)) {
      boxes.get(id).checked = true;
      picked.push(id);
    }
  }
  showOrder();

  let close = null;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    if (picked.length < 2) {
      errors.append(el('p', { class: 'error' }, 'Pick at least two checkpoints.'));
      return;
    }
    const body = { checkpoints: [...picked], method: method.value, curve_points: Number(points.value) || 11 };
    if (!lam.disabled) body.lam = Number(lam.value);
    if (dataset.value) body.dataset_id = Number(dataset.value);
    if (!canonical.disabled && canonical.checked) body.canonical = true;
    if (!solver.disabled) {
      body.solver = solver.value;
      body.target = Number(target.value) || 0;
    }
    submit.disabled = true;
    let job;
    try {
      job = await api('/v1/merges', { method: 'POST', json: body });
    } catch (err) {
      submit.disabled = false;
      errors.append(errorBox(err));
      return;
    }
    const box = jobStatusBox(job, { label: `Merge of ${body.checkpoints.map((id) => `#${id}`).join(', ')} (${METHOD_NAMES[body.method]})` });
    progress.replaceChildren(el('h2', null, 'Merging'), box,
      el('p', null, el('a', { href: `#/jobs/${job.id}` }, `Job #${job.id}`)));
    const finish = async (j) => {
      box.update(j);
      if (!isTerminal(j)) return;
      if (close) { close(); close = null; }
      submit.disabled = false;
      if (j.status !== 'succeeded') {
        announce(`Merge ${j.status}`);
        progress.append(el('p', { class: 'error' }, `The merge ${j.status}: ${j.error || 'no reason recorded'}`));
        return;
      }
      try {
        const found = await api('/v1/merges', { query: { job_id: j.id, limit: 1 } });
        if (found.items.length) {
          announce('Merge done');
          window.location.hash = `#/merges/${found.items[0].id}`;
        } else {
          progress.append(el('p', { class: 'error' }, `Job #${j.id} succeeded but no merge names it (deleted meanwhile?).`));
        }
      } catch (err) { progress.append(errorBox(err)); }
    };
    if (isTerminal(job)) { finish(job); return; }
    close = jobEvents(job.id, {
      onEvent: (j, name) => { if (name === 'job') finish(j); },
      onError: (err) => progress.append(errorBox(err)),
    });
  });
  return () => { if (close) close(); };
}

