// One merge: the interpolation curves (loss and accuracy against lambda, naive vs aligned,
// the barrier marked), the method and what the permutations moved, the merged scores and
// the merged checkpoint's file.
import { api, download } from '../api.js';
import { lineChart } from '../charts.js';
import { el, errorBox, fmt, fmtInt, fmtPct, link, table, timeEl } from '../format.js';
import { METHOD_NAMES, checkpointLinks } from './merges.js';

const LAMBDA = { label: '\u03bb, weight of the second checkpoint', unit: '0 = first, 1 = second' };

// Where a path rises most above the straight line between its endpoints (a loss barrier),
// or drops most below it (sign -1: an accuracy barrier): [lambda, value on the curve].
export function barrierPoint(lambdas, values, sign = 1) {
  if (!lambdas || !values || values.length < 2) return null;
  const first = values[0];
  const last = values[values.length - 1];
  let best = null;
  lambdas.forEach((l, i) => {
    const rise = sign * (values[i] - ((1 - l) * first + l * last));
    if (Number.isFinite(rise) && (best === null || rise > best.rise)) best = { rise, l, v: values[i] };
  });
  return best ? [best.l, best.v] : null;
}

function curveSeries(curves, key) {
  return ['naive', 'aligned'].filter((name) => curves[name] && curves[name][key])
    .map((name) => ({
      name: name === 'naive' ? 'naive (as uploaded)' : 'aligned (permuted to the reference)',
      points: curves[name].lambdas.map((l, i) => [l, curves[name][key][i]]),
      dashed: name === 'naive', // aligned solid, naive dashed: told apart without colour
    }));
}

function curveMarkers(curves, key, barrierKey, sign) {
  const markers = [];
  for (const name of ['naive', 'aligned']) {
    const path = curves[name];
    if (!path || !path[key] || path[barrierKey] == null) continue;
    const at = barrierPoint(path.lambdas, path[key], sign);
    if (at) markers.push({ x: at[0], y: at[1], label: `${name} barrier ${fmt(path[barrierKey])}` });
  }
  return markers;
}

function drawCurves(section, result) {
  const curves = result.curves;
  if (!curves || (!curves.naive && !curves.aligned)) {
    section.append(el('p', { class: 'notice' }, result.dataset_id == null
      ? 'This merge had no evaluation dataset, so there are no interpolation curves. Merge again with a dataset to see them.'
      : 'No interpolation curves: they are measured for merges of two checkpoints.'));
    return;
  }
  const any = curves.aligned || curves.naive;
  section.append(el('p', null,
    `Each curve evaluates (1 \u2212 \u03bb)\u00b7A + \u03bb\u00b7B at ${any.lambdas.length} values of \u03bb on dataset #${result.dataset_id}. `
    + 'Naive interpolates the checkpoints as uploaded; aligned first permutes B\u2019s neurons to match A. '
    + 'The barrier is the largest rise of the loss above the straight line between the endpoints (for accuracy, the largest drop below it); a diamond marks where it is.'));
  const lossBox = el('div', { class: 'chart', id: 'merge-loss-chart' });
  const accBox = el('div', { class: 'chart', id: 'merge-accuracy-chart' });
  section.append(lossBox, accBox);
  lineChart(lossBox, {
    title: 'Loss along the interpolation path',
    x: LAMBDA,
    y: { label: 'Test loss', unit: 'cross-entropy, nats' },
    series: curveSeries(curves, 'losses'),
    markers: curveMarkers(curves, 'losses', 'barrier', 1),
    xDomain: [0, 1],
  });
  lineChart(accBox, {
    title: 'Accuracy along the interpolation path',
    x: LAMBDA,
    y: { label: 'Test accuracy', unit: 'fraction, 0 to 1' },
    series: curveSeries(curves, 'accuracies'),
    markers: curveMarkers(curves, 'accuracies', 'accuracy_barrier', -1),
    xDomain: [0, 1],
    yDomain: [0, 1],
  });
  const rows = ['naive', 'aligned'].filter((n) => curves[n]).map((n) => ({ name: n, ...curves[n] }));
  section.append(table({
    caption: 'Paths',
    columns: [
      { label: 'Path', value: (p) => p.name },
      { label: 'Loss barrier', value: (p) => fmt(p.barrier), numeric: true },
      { label: 'Accuracy barrier (fraction)', value: (p) => (p.accuracy_barrier == null ? null : fmt(p.accuracy_barrier)), numeric: true },
      { label: '\u2016\u03b8A \u2212 \u03b8B\u2016', value: (p) => fmt(p.distance), numeric: true },
      { label: 'BatchNorm statistics', value: (p) => p.bn },
    ],
    rows,
  }));
}

function matchesTable(result) {
  const matches = result.matches || [];
  if (!matches.length) return el('p', { class: 'muted' }, result.fusion ? 'A fusion: the neurons are matched by optimal transport, not permuted.' : 'No permutations were computed.');
  const rows = matches.map((m, i) => ({ ...m, input: result.checkpoints[i + 1] }));
  const out = [table({
    caption: `Alignment to the reference #${result.checkpoints[0]}`,
    columns: [
      { label: 'Input', value: (m) => link(`#/checkpoints/${m.input}`, `#${m.input}`) },
      { label: 'Method', value: (m) => m.method },
      { label: 'Neurons moved', value: (m) => `${fmtInt(m.permutations.moved)} of ${fmtInt(m.permutations.neurons)}`, numeric: true },
      { label: 'Objective before', value: (m) => fmt(m.objective_before), numeric: true },
      { label: 'Objective after', value: (m) => fmt(m.objective_after), numeric: true },
      { label: 'Sweeps', value: (m) => fmtInt(m.sweeps), numeric: true },
      { label: 'Time', value: (m) => `${fmt(m.seconds)} s`, numeric: true },
    ],
    rows,
  })];
  rows.forEach((m) => {
    const groups = Object.entries(m.permutations.groups || {}).map(([name, g]) => ({ name, ...g }));
    out.push(el('details', null, el('summary', null, `Per neuron group, input #${m.input} (${groups.length} groups)`),
      table({
        caption: `Permutation of each neuron group, input #${m.input}`,
        columns: [
          { label: 'Group', value: (g) => g.name },
          { label: 'Neurons', value: (g) => fmtInt(g.size), numeric: true },
          { label: 'Moved', value: (g) => fmtInt(g.moved), numeric: true },
        ],
        rows: groups,
      })));
  });
  return out;
}

export async function render(root, params) {
  const heading = el('h1', null, `Merge #${params.id}`);
  root.append(heading);
  let merge;
  try {
    merge = await api(`/v1/merges/${encodeURIComponent(params.id)}`);
  } catch (err) {
    root.append(errorBox(err));
    return undefined;
  }
  const result = merge.result || {};
  heading.textContent = `Merge #${merge.id}: ${METHOD_NAMES[merge.method] || merge.method}`;
  const actions = el('div', { class: 'actions' });
  if (merge.result_checkpoint_id) {
    const file = `/v1/checkpoints/${merge.result_checkpoint_id}/file`;
    actions.append(
      el('a', {
        class: 'btn', href: file, id: 'merge-download', download: `merge-${merge.id}.safetensors`,
        onclick: async (event) => { // through api.js, so a stored API key goes with it
          event.preventDefault();
          try { await download(file, `merge-${merge.id}.safetensors`); } catch (err) { actions.append(errorBox(err)); }
        },
      }, 'Download the merged checkpoint (safetensors)'), ' ',
      el('a', { class: 'btn secondary', href: `#/checkpoints/${merge.result_checkpoint_id}` }, 'Open the merged checkpoint'));
  }
  if (merge.checkpoints.length >= 2) {
    actions.append(' ', el('a', { class: 'btn secondary', href: `#/merges/new?a=${merge.checkpoints[0]}&b=${merge.checkpoints[1]}` }, 'Merge these again'));
  }
  const facts = [
    ['Inputs (reference first)', el('span', null, checkpointLinks(merge.checkpoints))],
    ['Method', METHOD_NAMES[merge.method] || merge.method],
    ['\u03bb (weight of the second)', merge.lam == null ? 'uniform average' : fmt(merge.lam)],
    ['Dataset', merge.dataset_id == null ? 'none' : `#${merge.dataset_id}`],
    ['Merged checkpoint', merge.result_checkpoint_id ? link(`#/checkpoints/${merge.result_checkpoint_id}`, `#${merge.result_checkpoint_id}`) : '\u2014'],
    ['Loss barrier, aligned', fmt(result.barrier ?? merge.barrier)],
    ['Loss barrier, naive', fmt(result.naive_barrier)],
  ];
  if (result.merged) {
    facts.push(['Merged network', `loss ${fmt(result.merged.loss)}, accuracy ${fmtPct(result.merged.accuracy)}`]);
  }
  if (result.bn_stats) facts.push(['BatchNorm statistics', result.bn_stats]);
  if (result.fusion) facts.push(['Fusion', `solver ${result.fusion.solver}, widths of input #${result.checkpoints[result.fusion.target]}, ${fmt(result.fusion.seconds)} s`]);
  if (result.rounds) facts.push(['Rounds', fmtInt(result.rounds)]);
  const timings = merge.timings || result.timings;
  if (timings && timings.total_ms != null) facts.push(['Time', `${fmt(timings.total_ms / 1000)} s on ${timings.device || 'the worker'}`]);
  facts.push(['Job', merge.job_id ? link(`#/jobs/${merge.job_id}`, `#${merge.job_id}`) : '\u2014'], ['Created', timeEl(merge.created_at)]);
  root.append(el('section', { class: 'card', 'aria-label': 'Summary' },
    el('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)])), actions));

  const curves = el('section', { id: 'curves', 'aria-labelledby': 'curves-heading' }, el('h2', { id: 'curves-heading' }, 'Interpolation curves'));
  root.append(curves);
  drawCurves(curves, { ...result, dataset_id: result.dataset_id ?? merge.dataset_id });
  root.append(el('section', { 'aria-labelledby': 'perm-heading' }, el('h2', { id: 'perm-heading' }, 'Permutations'), matchesTable({ ...result, checkpoints: merge.checkpoints })));
  return undefined;
}
