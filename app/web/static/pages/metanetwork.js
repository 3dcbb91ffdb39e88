// One metanetwork: its card (metrics beside the baseline, coverage, domain), its versions,
// the training curve of the version shown, and a form to train a new version from a zoo
// (POST /v1/metanetworks, then the live training page). The card helpers are shared with
// the catalog page (metanetworks.js).
import { api } from '../api.js';
import { barChart, lineChart } from '../charts.js';
import { el, errorBox, fmt, fmtInt, fmtPct, link, table, timeEl } from '../format.js';

export const METRIC_NAMES = {
  accuracy: 'accuracy',
  tau_b: "Kendall's \u03c4b",
  r2: 'R\u00b2',
  mae: 'mean absolute error',
};

// The test metrics worth a bar (ties are diagnostics, not scores), in a stable order.
function chartedMetrics(test) {
  return Object.keys(test || {}).filter((k) => Number.isFinite(test[k]) && !k.endsWith('_ties'))
    .sort((a, b) => Object.keys(METRIC_NAMES).indexOf(a) - Object.keys(METRIC_NAMES).indexOf(b));
}

// Metrics on the held-out test split beside the baseline measured on the same split.
export function metricsChart(container, detail, { compact = false } = {}) {
  const card = detail.card || {};
  const metrics = card.metrics || detail.metrics || {};
  const test = metrics.test || {};
  const baseline = card.baseline && card.baseline.test ? card.baseline : null;
  const names = chartedMetrics(test);
  if (!names.length) {
    container.append(el('p', { class: 'muted' }, 'This card records no test metrics.'));
    return;
  }
  const baselineName = baseline ? `baseline: ${baseline.name === 'statnn' ? 'weight statistics (StatNN)' : baseline.name}` : null;
  const box = el('div', { class: 'chart', 'data-metanetwork': detail.name });
  container.append(box);
  const values = names.flatMap((m) => [test[m], metrics.val && metrics.val[m], baseline && baseline.test[m]]).filter(Number.isFinite);
  barChart(box, {
    yDomain: [Math.min(0, ...values), Math.max(1, ...values)], // scores live on 0..1 (tau down to -1)
    ...(compact ? { width: 400, height: 260 } : {}),
    title: `${detail.name}: test metrics${baseline ? ' beside its baseline' : ''}`,
    y: { label: 'Score', unit: 'unitless' },
    groups: names.map((m) => ({
      name: METRIC_NAMES[m] || m,
      bars: [
        { name: 'this metanetwork (test)', value: test[m] },
        ...(metrics.val && Number.isFinite(metrics.val[m]) ? [{ name: 'this metanetwork (validation)', value: metrics.val[m] }] : []),
        ...(baseline && Number.isFinite(baseline.test[m]) ? [{ name: baselineName, value: baseline.test[m] }] : []),
      ],
    })),
  });
  if (names.includes('mae')) container.append(el('p', { class: 'muted' }, 'Mean absolute error: lower is better; the other scores: higher is better.'));
  if (!baseline) container.append(el('p', { class: 'muted' }, 'This card records no baseline measured on the same split, so none is drawn.'));
}

export function coverageFacts(detail) {
  const card = detail.card || {};
  const c = card.conformal;
  if (!c) return [['Coverage', 'no conformal calibration on this card']];
  const rows = [['Interval coverage', `${fmtPct(c.coverage)} asked, ${c.test_coverage != null ? fmtPct(c.test_coverage) : '\u2014'} measured on test`]];
  if (c.half_width != null) rows.push(['Interval half-width', fmt(c.half_width)]);
  if (c.mean_set_size != null) rows.push(['Mean prediction-set size', `${fmt(c.mean_set_size)} classes`]);
  return rows;
}

export function domainFacts(domain) {
  const d = domain || {};
  const io = (d.io || []).map((s) => {
    try {
      const o = JSON.parse(s);
      return `inputs ${JSON.stringify(o.inputs)} \u2192 outputs ${JSON.stringify(o.outputs)}`;
    } catch { return String(s); }
  }).join('; ');
  return [
    ['Trained on', d.checkpoints != null ? `${fmtInt(d.checkpoints)} networks` : '\u2014'],
    ['Op families', (d.families || []).join(', ') || '\u2014'],
    ['Ops', (d.ops || []).join(', ') || '\u2014'],
    ['Inputs and outputs', io || '\u2014'],
    ['Largest graph', d.max_nodes != null ? `${fmtInt(d.max_nodes)} neurons, ${fmtInt(d.max_edges)} weights, depth ${d.max_depth ?? '\u2014'}` : '\u2014'],
  ];
}

export function facts(rows) {
  return el('dl', { class: 'facts' }, rows.flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)]));
}

export function cardFacts(detail) {
  const labels = detail.labels || [];
  return [
    ['Task', detail.task],
    ['Version', `${detail.name}@${detail.version_number} (${detail.version})`],
    ['Origin', detail.builtin ? 'built in' : el('span', null, 'trained on ', detail.zoo_id ? link(`#/zoos/${detail.zoo_id}`, `zoo #${detail.zoo_id}`) : 'a zoo', detail.job_id ? el('span', null, ' by ', link(`#/training/${detail.job_id}`, `job #${detail.job_id}`)) : '')],
    ...(labels.length ? [['Classes', labels.join(', ')]] : []),
    ...coverageFacts(detail),
    ['Registered', timeEl(detail.created_at)],
  ];
}

// Training curves a trained card keeps (one row per epoch): loss and validation metric.
export function curveCharts(container, card, { live = false } = {}) {
  const rows = card.curves || [];
  const key = card.task === 'classification' || (rows[0] && 'accuracy' in rows[0]) ? 'accuracy' : 'tau_b';
  const lossBox = el('div', { class: 'chart', id: 'train-loss-chart' });
  const valBox = el('div', { class: 'chart', id: 'val-metric-chart' });
  container.append(lossBox, valBox);
  const loss = lineChart(lossBox, {
    title: 'Training loss per epoch',
    x: { label: 'Epoch', unit: 'number', integer: true },
    y: { label: 'Training loss', unit: key === 'accuracy' ? 'cross-entropy, nats' : 'squared error + ranking' },
    series: [{ name: 'training loss', points: rows.map((r) => [r.epoch + 1, r.train_loss]) }],
    empty: live ? 'Waiting for the first epoch to end' : 'No epochs recorded',
  });
  const val = lineChart(valBox, {
    title: `Validation ${METRIC_NAMES[key] || key} per epoch`,
    x: { label: 'Epoch', unit: 'number', integer: true },
    y: { label: `Validation ${METRIC_NAMES[key] || key}`, unit: key === 'accuracy' ? 'fraction, 0 to 1' : '\u22121 to 1' },
    series: [{ name: `validation ${METRIC_NAMES[key] || key}`, points: rows.filter((r) => Number.isFinite(r[key])).map((r) => [r.epoch + 1, r[key]]) }],
    yDomain: key === 'accuracy' ? [0, 1] : undefined,
    markers: card.best_epoch != null && rows.length ? [{ x: card.best_epoch + 1, y: (rows.find((r) => r.epoch === card.best_epoch) || {})[key], label: 'kept (best validation)' }] : [],
    empty: live ? 'Waiting for the first epoch to end' : 'No epochs recorded',
  });
  return { loss, val, key };
}

// The form: a name, a zoo of the caller's, epochs and a few sizes; goes to the live page.
export function trainForm({ name = '', fixedName = false } = {}) {
  const errors = el('div', { role: 'alert' });
  const nameInput = el('input', { id: 'train-name', name: 'name', required: true, value: name, readonly: fixedName, pattern: '[A-Za-z0-9_][A-Za-z0-9_.\\-]{0,127}', maxlength: 128, title: 'letters, digits, _ . - (not starting with . or -)', size: 24 });
  const zoo = el('select', { id: 'train-zoo', name: 'zoo_id', required: true }, el('option', { value: '' }, 'loading zoos\u2026'));
  const epochs = el('input', { id: 'train-epochs', name: 'epochs', type: 'number', min: 1, max: 1000, value: 20, required: true });
  const knob = (id, label, attrs) => {
    const input = el('input', { id: `train-${id}`, name: id, type: 'number', placeholder: 'default', ...attrs });
    return [input, el('div', { class: 'field' }, el('label', { for: input.id }, label), input)];
  };
  const [hidden, hiddenField] = knob('hidden', 'Node feature width', { min: 4, max: 256 });
  const [layers, layersField] = knob('layers', 'Message-passing layers', { min: 1, max: 8 });
  const [batch, batchField] = knob('batch_size', 'Networks per step', { min: 1, max: 1024 });
  const [seed, seedField] = knob('seed', 'Seed', { min: 0 });
  const submit = el('button', { type: 'submit', class: 'btn' }, 'Train');
  const form = el('form', { class: 'card', id: 'train-form', 'aria-labelledby': 'train-heading' },
    el('h2', { id: 'train-heading' }, fixedName ? `Train a new version of ${name}` : 'Train a metanetwork'),
    el('p', { class: 'muted' }, 'On one of your zoos: the zoo\u2019s train split fits it, validation picks the epoch kept, test measures the card beside a weight-statistics baseline.'),
    el('div', { class: 'filters' },
      el('div', { class: 'field' }, el('label', { for: nameInput.id }, 'Name'), nameInput),
      el('div', { class: 'field' }, el('label', { for: zoo.id }, 'Zoo'), zoo),
      el('div', { class: 'field' }, el('label', { for: epochs.id }, 'Epochs (at most)'), epochs)),
    el('details', null, el('summary', null, 'Size and seed (optional)'),
      el('div', { class: 'filters' }, hiddenField, layersField, batchField, seedField)),
    submit, errors);
  api('/v1/zoos', { query: { limit: 200 } }).then((page) => {
    zoo.replaceChildren(...page.items.map((z) => el('option', { value: z.id }, `#${z.id} ${z.name} \u2014 ${fmtInt(z.size)} networks, ${z.task}`)));
    if (!page.items.length) {
      zoo.append(el('option', { value: '' }, 'no zoos yet'));
      submit.disabled = true;
      errors.append(el('p', { class: 'muted' }, 'You have no zoo to train on: make one with POST /v1/zoos or weightscope zoo push.'));
    }
  }).catch((err) => errors.append(errorBox(err)));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    const config = {};
    for (const [input, key] of [[hidden, 'hidden'], [layers, 'layers'], [batch, 'batch_size'], [seed, 'seed']]) {
      if (input.value !== '') config[key] = Number(input.value);
    }
    const body = { name: nameInput.value.trim(), zoo_id: Number(zoo.value), epochs: Number(epochs.value) };
    if (Object.keys(config).length) body.config = config;
    submit.disabled = true;
    try {
      const job = await api('/v1/metanetworks', { method: 'POST', json: body });
      window.location.hash = `#/training/${job.id}`;
    } catch (err) {
      submit.disabled = false;
      errors.append(errorBox(err));
    }
  });
  return form;
}

export async function render(root, params) {
  const heading = el('h1', null, `Metanetwork ${params.ref}`);
  root.append(heading);
  let detail;
  try {
    detail = await api(`/v1/metanetworks/${encodeURIComponent(params.ref)}`);
  } catch (err) {
    root.append(errorBox(err), el('p', null, el('a', { href: '#/metanetworks' }, 'All metanetworks')));
    return undefined;
  }
  heading.textContent = `Metanetwork ${detail.name}@${detail.version_number}`;
  const card = detail.card || {};
  root.append(el('section', { class: 'card', 'aria-label': 'Card' }, facts(cardFacts(detail))));
  const metrics = el('section', { 'aria-labelledby': 'metrics-heading' }, el('h2', { id: 'metrics-heading' }, 'Metrics'));
  root.append(metrics);
  metricsChart(metrics, detail);
  root.append(el('section', { 'aria-labelledby': 'domain-heading' }, el('h2', { id: 'domain-heading' }, 'Domain'),
    el('p', { class: 'muted' }, 'A prediction on a network outside this domain is refused unless forced, and marked outside domain.'),
    facts(domainFacts(detail.domain))));
  if (card.curves && card.curves.length) {
    const curves = el('section', { 'aria-labelledby': 'curves-heading' }, el('h2', { id: 'curves-heading' }, 'Training curves'),
      el('p', { class: 'muted' }, `${fmtInt(card.epochs_run)} epochs run; stopped: ${typeof card.stopped === 'string' ? card.stopped : JSON.stringify(card.stopped)}.`));
    root.append(curves);
    curveCharts(curves, card);
  }
  const versions = el('section', { 'aria-labelledby': 'versions-heading' }, el('h2', { id: 'versions-heading' }, 'Versions'));
  root.append(versions);
  try {
    const list = await api(`/v1/metanetworks/${encodeURIComponent(detail.name)}/versions`);
    versions.append(table({
      caption: `Versions of ${detail.name}, oldest first`,
      columns: [
        { label: 'Version', value: (v) => link(`#/metanetworks/${encodeURIComponent(`${v.name}@${v.version_number}`)}`, `${v.name}@${v.version_number}`) },
        { label: 'Label', value: (v) => v.version },
        { label: 'Test metric', value: (v) => testHeadline(v.metrics), numeric: true },
        { label: 'Zoo', value: (v) => (v.zoo_id ? link(`#/zoos/${v.zoo_id}`, `#${v.zoo_id}`) : (v.builtin ? 'built in' : null)) },
        { label: 'Training', value: (v) => (v.job_id ? link(`#/training/${v.job_id}`, `job #${v.job_id}`) : null) },
        { label: 'Status', value: (v) => v.status },
        { label: 'Registered', value: (v) => timeEl(v.created_at) },
      ],
      rows: list,
    }));
  } catch (err) { versions.append(errorBox(err)); }
  root.append(trainForm(detail.builtin ? { name: `${detail.name}-mine` } : { name: detail.name, fixedName: true }));
  return undefined;
}

export function testHeadline(metrics) {
  const test = (metrics && metrics.test) || {};
  const key = ['accuracy', 'tau_b', 'r2'].find((k) => Number.isFinite(test[k]));
  return key ? `${METRIC_NAMES[key]} ${fmt(test[key])}` : null;
}
