import { api, download, isTerminal } from '../api.js';
import { announce } from '../app.js';
import { drawGraph } from '../graph.js';
import { el, errorBox, fmt, fmtBytes, fmtInt, link, table, timeEl } from '../format.js';
import { followJob, jobStatusBox } from '../job_view.js';
import { predictionCard } from '../predict_view.js';

const PROVENANCE = {
  declared: 'declared: the file carries its architecture (written by graphs.save or sent with the upload)',
  traced: 'traced: recorded from the live model by torch.fx when the file was written',
  inferred: 'inferred from tensor names and shapes: the assumptions below were made',
};

export async function render(root, params) {
  const id = params.id;
  const heading = el('h1', null, `Checkpoint #${id}`);
  root.append(heading);
  let checkpoint;
  try {
    checkpoint = await api(`/v1/checkpoints/${encodeURIComponent(id)}`);
  } catch (err) {
    root.append(errorBox(err));
    return undefined;
  }
  if (checkpoint.filename) heading.textContent = `Checkpoint #${id} \u00b7 ${checkpoint.filename}`;
  const closers = [];
  root.append(summary(checkpoint));

  const predictions = el('section', { id: 'predictions', 'aria-labelledby': 'predictions-heading' },
    el('h2', { id: 'predictions-heading' }, 'Predictions'));
  const pending = el('div', { class: 'pending-jobs' });
  const answered = el('div', { class: 'prediction-list' });
  predictions.append(refusals(checkpoint.id), pending, answered);
  const loadPredictions = () => listPredictions(answered, checkpoint.id);
  const watch = (job) => {
    const box = jobStatusBox(job, { label: `Prediction by ${job.params && job.params.metanetwork}` });
    if (isTerminal(job) && job.status === 'succeeded') return; // its answer is in the list
    pending.append(box);
    closers.push(followJob(job, (j) => {
      box.update(j);
      if (isTerminal(j)) {
        if (j.status === 'succeeded') { box.remove(); announce(`Prediction by ${j.params.metanetwork} ready`); }
        loadPredictions();
      }
    }));
  };
  predictions.append(askForm(checkpoint, watch));

  const architecture = el('section', { 'aria-labelledby': 'arch-heading' }, el('h2', { id: 'arch-heading' }, 'Architecture'));
  const groups = el('section', { 'aria-labelledby': 'groups-heading' }, el('h2', { id: 'groups-heading' }, 'Neuron groups'));
  const picture = el('section', { id: 'graph', 'aria-labelledby': 'graph-heading' }, el('h2', { id: 'graph-heading' }, 'Parameter graph'));
  const merges = el('section', { 'aria-labelledby': 'merges-heading' }, el('h2', { id: 'merges-heading' }, 'Merges'));
  root.append(predictions, architecture, picture, groups, merges);

  // jobs queued for this checkpoint by the upload (#/checkpoints/ID?jobs=1,2) are followed live
  const jobIds = (params.query.jobs || '').split(',').filter((s) => /^\d+$/.test(s));
  await Promise.all(jobIds.map(async (jobId) => {
    try { watch(await api(`/v1/jobs/${jobId}`)); } catch (err) { pending.append(errorBox(err)); }
  }));
  await Promise.all([
    loadPredictions(),
    drawArchitecture(architecture, groups, picture, checkpoint),
    listMerges(merges, checkpoint.id),
  ]);
  return () => closers.forEach((close) => close());
}

// Metanetworks the upload asked that refused this checkpoint (home page, sessionStorage).
function refusals(checkpointId) {
  let refused = [];
  try {
    const key = `weightscope.refused.${checkpointId}`;
    refused = JSON.parse(sessionStorage.getItem(key) || '[]');
    sessionStorage.removeItem(key);
  } catch { /* nothing kept */ }
  if (!refused.length) return '';
  return el('div', { class: 'notice' },
    el('p', null, `Not asked (${refused.length}): these metanetworks refused this checkpoint.`),
    el('ul', null, refused.map((r) => el('li', null, el('strong', null, `${r.metanetwork}: `), r.detail))));
}

function summary(c) {
  const actions = el('div', { class: 'actions' },
    el('button', {
      type: 'button', class: 'btn', onclick: async () => {
        const stem = (c.filename || `checkpoint-${c.id}`).replace(/\.[^.]*$/, '');
        try { await download(`/v1/checkpoints/${c.id}/file`, `${stem}.safetensors`); } catch (err) { actions.append(errorBox(err)); }
      },
    }, 'Download (safetensors)'), ' ',
    el('a', { class: 'btn secondary', href: `#/merges/new?a=${c.id}` }, 'Merge with another'), ' ',
    el('button', {
      type: 'button', class: 'btn secondary', onclick: async () => {
        try {
          const job = await api(`/v1/checkpoints/${c.id}/inspect`, { method: 'POST' });
          window.location.hash = `#/jobs/${job.id}`;
        } catch (err) { actions.append(errorBox(err)); }
      },
    }, 'Tensor statistics'));
  const dtypes = Object.entries(c.dtype_summary || {}).map(([k, v]) => `${k}: ${fmtInt(v)}`).join(', ');
  const facts = [
    ['File', c.filename || '(no name)'],
    ['Format', c.format],
    ['Size', `${fmtBytes(c.size)} uploaded, ${fmtBytes(c.blob_size)} stored`],
    ['Tensors', fmtInt(c.tensor_count)],
    ['Parameters', fmtInt(c.parameter_count)],
    ['Dtypes', dtypes || '\u2014'],
    ['sha256', el('span', { class: 'mono' }, c.sha256)],
    ['Uploaded', timeEl(c.created_at)],
  ];
  if (c.lineage) {
    facts.push(['Made by a merge', `${c.lineage.method || 'merge'}${c.lineage.lam != null ? ` at \u03bb = ${fmt(c.lineage.lam)}` : ''}`]);
  }
  return el('section', { class: 'card', 'aria-label': 'Summary' },
    el('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)])), actions);
}

function askForm(c, watch) {
  const select = el('select', { id: 'ask-metanetwork', name: 'metanetwork', required: true });
  const force = el('input', { type: 'checkbox', id: 'ask-force', name: 'force' });
  const errors = el('div');
  const form = el('form', { class: 'filters', 'aria-label': 'Ask a metanetwork' },
    el('div', { class: 'field' }, el('label', { for: 'ask-metanetwork' }, 'Ask a metanetwork'), select),
    el('div', { class: 'field' }, el('label', { for: 'ask-force' }, force, ' answer even outside its domain')),
    el('button', { type: 'submit', class: 'btn' }, 'Ask'), errors);
  api('/v1/metanetworks').then((list) => {
    const names = [...new Set(list.filter((m) => m.status === 'ready').map((m) => m.name))];
    select.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
    if (!names.length) select.append(el('option', { value: '' }, 'none available'));
  }).catch((err) => errors.append(errorBox(err)));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    try {
      watch(await api('/v1/predictions', { method: 'POST', json: { checkpoint_id: c.id, metanetwork: select.value, force: force.checked } }));
    } catch (err) { errors.append(errorBox(err)); }
  });
  return form;
}

async function listPredictions(container, checkpointId) {
  try {
    const page = await api('/v1/predictions', { query: { checkpoint_id: checkpointId, limit: 20 } });
    container.replaceChildren(...(page.items.length
      ? page.items.map((p) => predictionCard(p))
      : [el('p', { class: 'muted' }, 'No predictions yet: ask a metanetwork below.')]));
    if (page.next_cursor) container.append(el('p', null, link(`#/predictions?checkpoint_id=${checkpointId}`, 'All predictions of this checkpoint')));
  } catch (err) {
    container.replaceChildren(errorBox(err));
  }
}

async function drawArchitecture(section, groupsSection, pictureSection, c) {
  const reading = c.reading || {};
  if (!c.architecture) {
    const text = 'No architecture: the file does not describe itself and its tensor names did not match a layout the service can infer. '
      + 'Save it with graphs.save (it records the architecture in the file), or upload it with the activation and input shape set.';
    for (const s of [section, groupsSection, pictureSection]) s.append(el('p', { class: 'notice' }, text));
    return;
  }
  section.append(provenance(reading, c.architecture));
  const [layers, full] = await Promise.allSettled([
    api(`/v1/checkpoints/${c.id}/graph`, { query: { detail: 'layers' } }),
    api(`/v1/checkpoints/${c.id}/graph`),
  ]);
  if (layers.status === 'fulfilled') section.append(opsTable(layers.value));
  else section.append(errorBox(layers.reason));
  if (full.status === 'fulfilled') {
    const view = full.value;
    pictureSection.append(el('p', null,
      `${fmtInt(view.neuron_count)} neurons, ${fmtInt(view.weight_count)} weights, ${fmtInt(view.parameter_count)} parameters; `,
      view.detail === 'full' ? 'every neuron and weight drawn, edges coloured by weight.' : 'one box per layer.'));
    const box = el('div', { class: 'graph-picture' });
    pictureSection.append(box);
    drawGraph(box, view);
    groupsSection.append(groupsTable(view));
  } else {
    pictureSection.append(errorBox(full.reason));
    groupsSection.append(errorBox(full.reason));
  }
}

function provenance(reading, summary) {
  const source = reading.provenance;
  const items = [el('dt', null, 'How it was obtained'), el('dd', null, PROVENANCE[source] || source || 'unknown')];
  const shapes = (o) => Object.entries(o || {}).map(([k, v]) => `${k} (${v.length ? v.join('\u00d7') : 'scalar'})`).join(', ');
  if (summary.op_counts) items.push(el('dt', null, 'Ops'), el('dd', null, Object.entries(summary.op_counts).map(([k, v]) => `${v} ${k}`).join(', ')));
  if (summary.inputs) items.push(el('dt', null, 'Inputs'), el('dd', null, shapes(summary.inputs)));
  if (summary.outputs) items.push(el('dt', null, 'Outputs'), el('dd', null, shapes(summary.outputs)));
  const add = (label, value) => { if (value !== null && value !== undefined && value !== '' && !(Array.isArray(value) && !value.length) && !(typeof value === 'object' && !Array.isArray(value) && !Object.keys(value).length)) items.push(el('dt', null, label), el('dd', null, value)); };
  const kv = (o) => (o ? Object.entries(o).map(([k, v]) => `${k} = ${Array.isArray(v) ? v.join(',') : v}`).join('; ') : '');
  add('Assumptions', kv(reading.assumptions));
  add('Settled at upload', kv(reading.settled));
  add('Notes', reading.notes && reading.notes.length ? el('ul', null, reading.notes.map((n) => el('li', null, n))) : null);
  add('State dict found under', reading.nested_under);
  add('Prefix stripped', reading.prefix_stripped);
  add('Training extras ignored', reading.ignored_keys && reading.ignored_keys.length ? reading.ignored_keys.join(', ') : null);
  return el('dl', { class: 'facts card' }, items);
}

function opsTable(view) {
  const inputsOf = {};
  for (const link of view.links || []) (inputsOf[link.target] ||= []).push(link.source);
  const shape = (s) => (s && s.length ? s.map((d) => (d === null ? 'any' : d)).join('\u00d7') : 'scalar');
  return table({
    caption: `Inputs and ops in order (outputs: ${(view.outputs || []).join(', ')})`,
    columns: [
      { label: 'Name', value: (l) => el('span', { class: 'mono' }, l.id) },
      { label: 'Op', value: (l) => l.op },
      { label: 'Reads', value: (l) => (inputsOf[l.id] || []).join(', ') },
      { label: 'Output shape', value: (l) => shape(l.shape) },
      { label: 'Parameter tensors', value: (l) => l.parameters.map((p) => `${p.role} ${shape(p.shape)}`).join('; ') },
      { label: 'Parameters', value: (l) => fmtInt(l.parameter_count), numeric: true },
    ],
    rows: view.layers,
  });
}

function groupsTable(view) {
  if (view.detail !== 'full') {
    return el('p', { class: 'muted' }, 'This network is drawn layer by layer; its neuron groups are listed for networks small enough to draw neuron by neuron.');
  }
  const byGroup = new Map();
  for (const n of view.nodes) {
    const g = byGroup.get(n.group) || { group: n.group, count: 0, kinds: new Set(), types: new Set(), columns: new Set() };
    g.count += 1; g.kinds.add(n.kind); g.types.add(n.type); g.columns.add(n.layer);
    byGroup.set(n.group, g);
  }
  const permutable = (g) => !(g.kinds.has('input') || g.kinds.has('output'));
  return table({
    caption: 'Neuron groups: each permutable group can be reordered without changing the function',
    columns: [
      { label: 'Group', value: (g) => el('span', { class: 'mono' }, g.group) },
      { label: 'Neurons', value: (g) => fmtInt(g.count), numeric: true },
      { label: 'Kind', value: (g) => [...g.kinds].join(', ') },
      { label: 'Node types', value: (g) => [...g.types].join(', ') },
      { label: 'Columns', value: (g) => [...g.columns].sort((a, b) => a - b).join(', ') },
      { label: 'Permutable', value: (g) => (permutable(g) ? 'yes' : 'no (fixed input/output)') },
    ],
    rows: [...byGroup.values()],
  });
}

async function listMerges(section, checkpointId) {
  try {
    const page = await api('/v1/merges', { query: { checkpoint_id: checkpointId, limit: 20 } });
    section.append(table({
      caption: 'Merges this checkpoint took part in (as an input or the result)',
      columns: [
        { label: 'Merge', value: (m) => link(`#/merges/${m.id}`, `#${m.id}`) },
        { label: 'Method', value: (m) => m.method },
        { label: 'Inputs', value: (m) => m.checkpoints.map((id, i) => [i ? ', ' : '', link(`#/checkpoints/${id}`, `#${id}`)]) },
        { label: 'Result', value: (m) => (m.result_checkpoint_id ? link(`#/checkpoints/${m.result_checkpoint_id}`, `#${m.result_checkpoint_id}`) : '') },
        { label: 'Barrier', value: (m) => fmt(m.barrier), numeric: true },
        { label: 'Made', value: (m) => timeEl(m.created_at) },
      ],
      rows: page.items,
      empty: 'No merges yet.',
    }));
  } catch (err) {
    section.append(errorBox(err));
  }
}
