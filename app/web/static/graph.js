// The picture of a checkpoint's parameter graph (GET /v1/checkpoints/{id}/graph), as SVG.
//
// * detail "full": neurons as circles in one column per depth, every weight a line coloured
//   on a diverging purple (negative) / orange (positive) scale, stronger = darker and wider.
//   Hover a line or a neuron, or focus the drawing and move with the arrow keys, to read
//   values in the panel under it. Past a few thousand weights the lines are drawn as one
//   path per colour step (fast), and the per-weight hover gives way to the neuron panel.
// * detail "layers": one box per input/op with its output shape and parameter count, and
//   arrows between them labelled with the target's weight count and norm.
//
// Text alternatives: a summary (aria) and a visually hidden table of columns or layers.

import { el, fmt } from './format.js';
import { dataTable, svg } from './charts.js';

const NEG = [94, 60, 153]; // #5e3c99 purple (PuOr: readable with colour-vision deficiencies)
const POS = [230, 97, 1]; // #e66101 orange
const MID = [215, 215, 215];
const STEPS = 10; // colour steps per sign
const PER_EDGE_LIMIT = 6000; // above: bucketed paths, no per-line hover
const INK = '#222';
export const NODE_STYLE = {
  input: { fill: '#56B4E9', label: 'input feature' },
  hidden: { fill: '#ffffff', label: 'hidden neuron' },
  output: { fill: '#009E73', label: 'output neuron' },
  norm: { fill: '#F0E442', label: 'normalization (per-neuron scale and shift)' },
  join: { fill: '#CC79A7', label: 'residual join (add)' },
};

function int(n) {
  return Number(n).toLocaleString('en-US');
}

function mix(a, b, t) {
  return `rgb(${a.map((v, i) => Math.round(v + (b[i] - v) * t)).join(',')})`;
}

// Weight -> {step in -STEPS..STEPS, colour}: the diverging scale, saturating at `scaleMax`.
export function weightColour(w, scaleMax) {
  const t = scaleMax > 0 ? Math.max(-1, Math.min(1, w / scaleMax)) : 0;
  const step = Math.round(t * STEPS);
  const colour = step < 0 ? mix(MID, NEG, -step / STEPS) : mix(MID, POS, step / STEPS);
  return { step, colour };
}

function quantileAbs(values, q) {
  if (!values.length) return 0;
  const abs = values.map(Math.abs).sort((a, b) => a - b);
  return abs[Math.min(abs.length - 1, Math.floor(q * (abs.length - 1)))];
}

function scaleLegend(scaleMax, perLayer = false) {
  const W = 260;
  const s = svg('svg', { width: W, height: 42, viewBox: `0 0 ${W} 42`, 'aria-hidden': 'true', class: 'ws-graph-scale' });
  const n = 2 * STEPS + 1;
  for (let i = 0; i < n; i += 1) {
    const step = i - STEPS;
    s.appendChild(svg('rect', { x: 30 + (i * (W - 60)) / n, y: 4, width: (W - 60) / n + 0.5, height: 12, fill: weightColour((step / STEPS) * scaleMax, scaleMax).colour }));
  }
  const ticks = perLayer ? [['\u2212max', 30], ['0', W / 2], ['+max', W - 30]]
    : [[`${fmt(-scaleMax)}`, 30], ['0', W / 2], [`+${fmt(scaleMax)}`, W - 30]];
  for (const [text, x] of ticks) {
    s.appendChild(svg('text', { x, y: 32, 'text-anchor': 'middle', 'font-size': 11, fill: INK }, text));
  }
  return el('div', { class: 'ws-graph-legend-scale' },
    s,
    el('span', null, perLayer
      ? 'Weight: purple negative, grey near 0, orange positive; darker and wider = larger, relative to the largest weights into the same layer (98th percentile of their magnitude)'
      : `Weight: purple negative, grey near 0, orange positive; darker and wider = larger (saturates at \u00b1${fmt(scaleMax)}, the 98th percentile of all weights\u2019 magnitude)`));
}

function nodeLegend(kinds) {
  return el('ul', { class: 'ws-legend', 'aria-label': 'Neuron kinds' },
    kinds.map((k) => el('li', null,
      svg('svg', { width: 16, height: 16, viewBox: '0 0 16 16', 'aria-hidden': 'true', class: 'ws-swatch' },
        svg('circle', { cx: 8, cy: 8, r: 6, fill: NODE_STYLE[k].fill, stroke: INK, 'stroke-width': 1.2 })),
      el('span', null, NODE_STYLE[k].label))));
}

// --- every neuron and weight ------------------------------------------------------------

function drawFull(container, view, perLayer = false) {
  const { columns, nodes, edges } = view;
  const byLayer = new Map(columns.map((c, i) => [c.index, i]));
  const tallest = Math.max(1, ...columns.map((c) => c.size));
  const W = Math.max(640, Math.min(1400, 220 * columns.length));
  const top = 44;
  const bottom = 16;
  const inner = Math.max(160, Math.min(560, tallest * 12)); // fits the 75vh scroll box
  const H = top + inner + bottom;
  const left = 60;
  const right = W - 60;
  const colX = (i) => (columns.length === 1 ? W / 2 : left + (i * (right - left)) / (columns.length - 1));
  const place = nodes.map((n) => {
    const c = columns[byLayer.get(n.layer)];
    const size = c ? c.size : 1;
    const gap = inner / size;
    return [colX(byLayer.get(n.layer) ?? 0), top + gap * (n.position + 0.5)];
  });
  const r = Math.max(1.5, Math.min(7, (inner / tallest) * 0.38));
  const weights = edges.filter((e) => e.type !== 'residual' && e.type !== 'norm').map((e) => e.weight);
  const scaleMax = quantileAbs(weights, 0.98) || 1;
  // per layer: each target column's own scale, so a deep layer of small weights shows too
  const columnMax = new Map();
  if (perLayer) {
    for (const c of columns) {
      const into = edges.filter((e) => nodes[e.target].layer === c.index && e.type !== 'residual' && e.type !== 'norm').map((e) => e.weight);
      columnMax.set(c.index, quantileAbs(into, 0.98) || scaleMax);
    }
  }
  const edgeScale = (e) => (perLayer ? columnMax.get(nodes[e.target].layer) : scaleMax);
  const thin = edges.length > 1500 ? 0.6 : 1; // many lines: thinner, so they do not merge
  const summary = `Parameter graph with every neuron and weight: ${int(nodes.length)} neurons in ${columns.length} columns (${columns.map((c) => `${c.size} ${c.types.join('/')}`).join(', ')}) and ${int(edges.length)} weights, from ${fmt(Math.min(...weights, 0))} to ${fmt(Math.max(...weights, 0))}. Focus the drawing and use the arrow keys to read each neuron's bias and weights.`;
  const titleId = `ws-graph-${Math.random().toString(36).slice(2)}`;
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, class: 'ws-graph-svg ws-graph-full', role: 'img', tabindex: 0,
    'aria-labelledby': titleId, 'font-family': 'system-ui, sans-serif', 'font-size': 11, 'data-detail': 'full',
    'data-nodes': nodes.length, 'data-edges': edges.length,
  }, svg('title', { id: titleId }, summary));
  columns.forEach((c, i) => {
    root.appendChild(svg('text', { x: colX(i), y: 16, 'text-anchor': 'middle', 'font-weight': 600, fill: INK }, c.types.join(' / ')));
    root.appendChild(svg('text', { x: colX(i), y: 31, 'text-anchor': 'middle', fill: '#555' }, `${int(c.size)} neuron${c.size === 1 ? '' : 's'}`));
  });
  const edgeLayer = svg('g', { class: 'ws-edges', 'stroke-linecap': 'round' });
  root.appendChild(edgeLayer);
  const order = edges.map((_, i) => i).sort((a, b) => Math.abs(edges[a].weight) / edgeScale(edges[a]) - Math.abs(edges[b].weight) / edgeScale(edges[b]));
  const perEdge = edges.length <= PER_EDGE_LIMIT;
  const lines = new Array(edges.length);
  if (perEdge) {
    for (const i of order) {
      const e = edges[i];
      const [x1, y1] = place[e.source];
      const [x2, y2] = place[e.target];
      const { step, colour } = weightColour(e.weight, edgeScale(e));
      const strength = Math.abs(step) / STEPS;
      const line = svg('line', {
        x1: x1.toFixed(1), y1: y1.toFixed(1), x2: x2.toFixed(1), y2: y2.toFixed(1), stroke: colour,
        'stroke-width': (thin * (0.6 + 2 * strength)).toFixed(2), 'stroke-opacity': (0.35 + 0.65 * strength).toFixed(2),
        'data-i': i, class: 'ws-edge',
      });
      lines[i] = line;
      edgeLayer.appendChild(line);
    }
  } else { // one path per colour step: a few dozen elements however many weights
    const buckets = new Map();
    for (const i of order) {
      const e = edges[i];
      const { step, colour } = weightColour(e.weight, edgeScale(e));
      if (!buckets.has(step)) buckets.set(step, { colour, d: [] });
      const [x1, y1] = place[e.source];
      const [x2, y2] = place[e.target];
      buckets.get(step).d.push(`M${x1.toFixed(1)},${y1.toFixed(1)}L${x2.toFixed(1)},${y2.toFixed(1)}`);
    }
    for (const step of [...buckets.keys()].sort((a, b) => Math.abs(a) - Math.abs(b))) {
      const { colour, d } = buckets.get(step);
      const strength = Math.abs(step) / STEPS;
      edgeLayer.appendChild(svg('path', { d: d.join(''), stroke: colour, fill: 'none', 'stroke-width': (0.5 + 1.5 * strength).toFixed(2), 'stroke-opacity': (0.3 + 0.6 * strength).toFixed(2), class: 'ws-edge-bucket', 'data-step': step }));
    }
  }
  const nodeLayer = svg('g', { class: 'ws-nodes' });
  root.appendChild(nodeLayer);
  const circles = nodes.map((n, i) => {
    const [x, y] = place[i];
    const c = svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1), fill: (NODE_STYLE[n.kind] || NODE_STYLE.hidden).fill, stroke: INK, 'stroke-width': 1, 'data-n': i, class: `ws-node ws-node-${n.kind}` });
    nodeLayer.appendChild(c);
    return c;
  });
  const incoming = nodes.map(() => []);
  const outgoing = nodes.map(() => []);
  edges.forEach((e, i) => {
    incoming[e.target].push(i);
    outgoing[e.source].push(i);
  });
  const info = el('p', { class: 'ws-graph-info', 'aria-live': 'polite' }, 'Hover or focus a neuron or weight to read its value.');
  let current = null;
  const highlighted = [];
  function clearHighlight() {
    for (const node of highlighted) node.classList.remove('ws-on');
    highlighted.length = 0;
  }
  function describeNeuron(i) {
    const n = nodes[i];
    const strongest = (list, end) => list.slice().sort((a, b) => Math.abs(edges[b].weight) - Math.abs(edges[a].weight)).slice(0, 3)
      .map((k) => `${nodes[edges[k][end]].label} ${fmt(edges[k].weight)}`).join(', ');
    const parts = [`${n.label} (${NODE_STYLE[n.kind] ? NODE_STYLE[n.kind].label : n.kind}, ${n.type}, column ${n.layer}, position ${n.position})`];
    if (n.kind !== 'input') parts.push(`bias ${fmt(n.bias)}`);
    if (incoming[i].length) parts.push(`${incoming[i].length} weights in (largest: ${strongest(incoming[i], 'source')})`);
    if (outgoing[i].length) parts.push(`${outgoing[i].length} weights out (largest: ${strongest(outgoing[i], 'target')})`);
    return parts.join('; ');
  }
  function showNeuron(i) {
    clearHighlight();
    current = i;
    circles[i].classList.add('ws-on');
    highlighted.push(circles[i]);
    if (perEdge) {
      for (const k of [...incoming[i], ...outgoing[i]]) {
        lines[k].classList.add('ws-on');
        highlighted.push(lines[k]);
      }
    }
    info.textContent = describeNeuron(i);
  }
  function showEdge(k) {
    clearHighlight();
    const e = edges[k];
    lines[k].classList.add('ws-on');
    highlighted.push(lines[k]);
    info.textContent = `weight ${nodes[e.source].label} \u2192 ${nodes[e.target].label}: ${fmt(e.weight)} (${e.type}${e.type === 'conv' || e.type === 'flatten_linear' ? ', mean of its kernel' : ''})`;
  }
  root.addEventListener('mouseover', (event) => {
    const t = event.target;
    if (t.dataset && t.dataset.n !== undefined) showNeuron(Number(t.dataset.n));
    else if (t.dataset && t.dataset.i !== undefined) showEdge(Number(t.dataset.i));
  });
  const byColumn = columns.map((c) => nodes.map((n, i) => [n, i]).filter(([n]) => n.layer === c.index).map(([, i]) => i));
  root.addEventListener('focus', () => { if (current === null && nodes.length) showNeuron(0); });
  root.addEventListener('keydown', (event) => {
    if (current === null) return;
    const n = nodes[current];
    const col = byLayer.get(n.layer);
    let next = null;
    if (event.key === 'ArrowDown') next = byColumn[col][Math.min(byColumn[col].length - 1, n.position + 1)];
    else if (event.key === 'ArrowUp') next = byColumn[col][Math.max(0, n.position - 1)];
    else if (event.key === 'ArrowRight' && col + 1 < byColumn.length) next = byColumn[col + 1][Math.min(byColumn[col + 1].length - 1, Math.round((n.position / Math.max(1, byColumn[col].length)) * byColumn[col + 1].length))];
    else if (event.key === 'ArrowLeft' && col > 0) next = byColumn[col - 1][Math.min(byColumn[col - 1].length - 1, Math.round((n.position / Math.max(1, byColumn[col].length)) * byColumn[col - 1].length))];
    if (next !== null && next !== undefined) {
      event.preventDefault();
      showNeuron(next);
    }
  });
  const kinds = Object.keys(NODE_STYLE).filter((k) => nodes.some((n) => n.kind === k));
  return [
    el('div', { class: 'ws-graph-scroll' }, root),
    info,
    el('div', { class: 'ws-graph-legends' }, scaleLegend(scaleMax, perLayer), nodeLegend(kinds)),
    dataTable('Columns of the parameter graph', ['Column', 'Kinds', 'Neuron groups', 'Neurons', 'Weights in'],
      columns.map((c) => [String(c.index), c.types.join(', '), c.groups.join(', '), int(c.size),
        int(edges.filter((e) => nodes[e.target].layer === c.index).length)]), 'ws-graph-data'),
  ];
}

// --- one box per layer ------------------------------------------------------------------

function shapeText(shape) {
  return shape && shape.length ? `[${shape.map((d) => (d === null ? '?' : d)).join('\u00d7')}]` : '';
}

function drawLayers(container, view) {
  const { layers, links } = view;
  const index = new Map(layers.map((l, i) => [l.id, i]));
  const depth = layers.map(() => 0);
  for (const link of links) { // layers come in topological order: one pass is enough
    const s = index.get(link.source);
    const t = index.get(link.target);
    if (s !== undefined && t !== undefined) depth[t] = Math.max(depth[t], depth[s] + 1);
  }
  const rows = [];
  layers.forEach((l, i) => { (rows[depth[i]] = rows[depth[i]] || []).push(i); });
  const boxW = 190;
  const boxH = 50;
  const gapX = 30;
  const rowH = 92;
  const widest = Math.max(...rows.map((r) => r.length));
  const W = Math.max(520, widest * (boxW + gapX) + 220);
  const H = rows.length * rowH + 20;
  const pos = [];
  rows.forEach((r, d) => {
    const total = r.length * boxW + (r.length - 1) * gapX;
    r.forEach((i, k) => { pos[i] = [(W - 200 - total) / 2 + k * (boxW + gapX), 10 + d * rowH]; });
  });
  const outputs = new Set(view.outputs || []);
  const counts = links.map((l) => l.weight_count).filter((c) => c > 0);
  const maxCount = Math.max(1, ...counts);
  const summary = `Layer diagram: ${layers.length} layers (${layers.filter((l) => l.op === 'input').length} inputs), ${int(view.parameter_count)} parameters; the network is too large (${int(view.neuron_count)} neurons, ${int(view.weight_count)} weights) to draw every weight.`;
  const titleId = `ws-graph-${Math.random().toString(36).slice(2)}`;
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, class: 'ws-graph-svg ws-graph-layers', role: 'img', tabindex: 0,
    'aria-labelledby': titleId, 'font-family': 'system-ui, sans-serif', 'font-size': 12, 'data-detail': 'layers',
    'data-layers': layers.length,
  }, svg('title', { id: titleId }, summary));
  const markerId = `${titleId}-arrow`;
  root.appendChild(svg('defs', null, svg('marker', { id: markerId, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 10, markerHeight: 10, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' },
    svg('path', { d: 'M0,0L10,5L0,10Z', fill: '#555' }))));
  const linkLayer = svg('g', { class: 'ws-links' });
  root.appendChild(linkLayer);
  for (const link of links) {
    const s = index.get(link.source);
    const t = index.get(link.target);
    if (s === undefined || t === undefined) continue;
    const [sx, sy] = [pos[s][0] + boxW / 2, pos[s][1] + boxH];
    const [tx, ty] = [pos[t][0] + boxW / 2, pos[t][1]];
    const width = link.weight_count > 0 ? 1.5 + 3.5 * (Math.log1p(link.weight_count) / Math.log1p(maxCount)) : 1.2;
    const midY = (sy + ty) / 2;
    const g = svg('g', { class: 'ws-link', 'data-source': link.source, 'data-target': link.target });
    g.appendChild(svg('path', { d: `M${sx},${sy}C${sx},${midY} ${tx},${midY} ${tx},${ty - 2}`, fill: 'none', stroke: link.weight_count > 0 ? '#0072B2' : '#888', 'stroke-width': width.toFixed(2), 'marker-end': `url(#${markerId})` },
      svg('title', null, link.weight_count > 0 ? `${link.source} \u2192 ${link.target}: ${int(link.weight_count)} weights, norm ${fmt(link.weight_norm)}` : `${link.source} \u2192 ${link.target}`)));
    if (link.weight_count > 0) {
      g.appendChild(svg('text', { x: (sx + tx) / 2 + 8, y: midY + 4, fill: '#0b4f7c', 'font-size': 11, stroke: '#fff', 'stroke-width': 3, 'paint-order': 'stroke' },
        `${int(link.weight_count)} w \u00b7 \u2016w\u2016 ${fmt(link.weight_norm)}`));
    }
    linkLayer.appendChild(g);
  }
  const opFill = (l) => (l.op === 'input' ? '#d6ecfa' : outputs.has(l.id) ? '#d4efe6' : l.parameter_count > 0 ? '#fff4d6' : '#f2f2f2');
  layers.forEach((l, i) => {
    const [x, y] = pos[i];
    const g = svg('g', { class: 'ws-layer', 'data-layer': l.id, 'data-op': l.op });
    g.appendChild(svg('rect', { x, y, width: boxW, height: boxH, rx: 6, fill: opFill(l), stroke: INK, 'stroke-width': outputs.has(l.id) ? 2 : 1 }));
    const name = l.id.length > 24 ? `${l.id.slice(0, 23)}\u2026` : l.id;
    g.appendChild(svg('text', { x: x + 8, y: y + 18, 'font-weight': 600, fill: INK }, `${l.op} \u00b7 ${name}`));
    g.appendChild(svg('text', { x: x + 8, y: y + 36, fill: '#444' }, `${shapeText(l.shape)}${l.parameter_count ? `  ${int(l.parameter_count)} params` : ''}`));
    g.appendChild(svg('title', null, `${l.id}: ${l.op}, output ${shapeText(l.shape) || 'shape unknown'}, ${int(l.parameter_count)} parameters${l.parameters.length ? ` (${l.parameters.map((p) => `${p.role} ${shapeText(p.shape)}`).join(', ')})` : ''}`));
    root.appendChild(g);
  });
  const info = el('p', { class: 'ws-graph-info', 'aria-live': 'polite' }, 'Hover a layer or an arrow to read its parameters.');
  root.addEventListener('mouseover', (event) => {
    const g = event.target.closest && event.target.closest('.ws-layer, .ws-link');
    const title = g && g.querySelector('title');
    if (title) info.textContent = title.textContent;
  });
  const key = el('ul', { class: 'ws-legend', 'aria-label': 'Box colours' },
    [['#d6ecfa', 'input'], ['#fff4d6', 'op with parameters'], ['#f2f2f2', 'op without parameters'], ['#d4efe6', 'output']].map(([fill, text]) => el('li', null,
      svg('svg', { width: 22, height: 14, viewBox: '0 0 22 14', 'aria-hidden': 'true', class: 'ws-swatch' }, svg('rect', { x: 1, y: 1, width: 20, height: 12, rx: 3, fill, stroke: INK })),
      el('span', null, text))));
  return [
    el('div', { class: 'ws-graph-scroll' }, root),
    info,
    el('div', { class: 'ws-graph-legends' }, key,
      el('p', { class: 'ws-graph-note' }, 'Arrows: wider = more weights in the target layer; labels give their count and Frobenius norm \u2016w\u2016.')),
    dataTable('Layers', ['Layer', 'Op', 'Output shape', 'Parameters', 'Reads'],
      layers.map((l) => [l.id, l.op, shapeText(l.shape), int(l.parameter_count),
        links.filter((k) => k.target === l.id).map((k) => k.source).join(', ')]), 'ws-graph-data'),
  ];
}

// drawGraph(container, view): replaces the container's content with the picture. The full
// drawing has a choice of colour scale: one for the whole network, or one per layer.
export function drawGraph(container, view, { perLayer = false } = {}) {
  const figure = el('figure', { class: `ws-graph ws-graph-${view.detail}`, 'data-detail': view.detail });
  figure.appendChild(el('figcaption', { class: 'ws-chart-title' },
    view.detail === 'full' ? 'Parameter graph: every neuron and weight' : 'Parameter graph: layer diagram',
    el('span', { class: 'ws-graph-reason' }, ` \u2014 ${view.reason}`)));
  if (view.detail === 'full') {
    const id = `ws-graph-scale-${Math.random().toString(36).slice(2)}`;
    const select = el('select', { id, class: 'ws-graph-scale-mode' },
      el('option', { value: 'network' }, 'one scale for the whole network'),
      el('option', { value: 'layer' }, 'one scale per layer'));
    select.value = perLayer ? 'layer' : 'network';
    select.addEventListener('change', () => {
      drawGraph(container, view, { perLayer: select.value === 'layer' });
      const again = container.querySelector('.ws-graph-scale-mode');
      if (again) again.focus();
    });
    figure.appendChild(el('p', { class: 'ws-graph-controls' }, el('label', { for: id }, 'Weight colours: '), select));
  }
  const parts = view.detail === 'full' ? drawFull(container, view, perLayer) : drawLayers(container, view);
  for (const p of parts) figure.appendChild(p);
  container.replaceChildren(figure);
  return figure;
}
