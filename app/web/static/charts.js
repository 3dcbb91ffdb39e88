// Charts as plain SVG (no library, no CDN): line charts with live updates, grouped bar
// charts, probability bars and an interval on a 0..1 axis.
//
// Every chart is a <figure class="ws-chart">: a visible caption (its title), an SVG with
// role="img", <title> and <desc> summarising the data in words, a legend in text (never
// colour alone: series also differ by dash pattern and point shape), and a visually hidden
// table of every number. Numbers are shown to 3 significant digits (format.js `fmt`).
// The SVG carries its own presentation attributes, so it reads right without charts.css;
// charts.css only sizes the figure and styles the legend.

import { el, fmt } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];
const DASHES = [null, '6 4', '2 3', '8 3 2 3'];
const SHAPES = ['circle', 'square', 'triangle', 'diamond'];
const INK = '#222';
const GRID = '#ddd';
const FONT = 'system-ui, -apple-system, "Segoe UI", sans-serif';

let counter = 0;
function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// "Loss (nats)", or the label alone without a unit.
export function axisTitle(axis) {
  if (!axis) return '';
  return axis.unit ? `${axis.label} (${axis.unit})` : (axis.label || '');
}

function withUnit(value, axis) {
  const unit = axis && axis.unit;
  return unit ? `${fmt(value)} ${unit}` : fmt(value);
}

// A tick label: 3 significant digits without trailing zeros (0.2, not 0.200).
export function tickFmt(t) {
  const s = fmt(t);
  return /^-?\d+\.\d+$/.test(s) ? s.replace(/\.?0+$/, '') : s;
}

// Labels for a row of ticks: 3 significant digits, more only where that would print two
// ticks alike (2.305 and 2.31 on a narrow loss axis).
export function tickLabels(ticks) {
  const labels = ticks.map(tickFmt);
  if (new Set(labels).size === labels.length) return labels;
  for (let digits = 4; digits <= 12; digits += 1) {
    const more = ticks.map((t) => String(Number(t.toPrecision(digits))));
    if (new Set(more).size === more.length) return more;
  }
  return labels;
}

// About `count` round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten).
export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (lo === hi) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  const start = Math.ceil(lo / step - 1e-9) * step;
  for (let v = start; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

// Ticks of an axis; `integer: true` (epochs, counts) keeps whole numbers only.
function axisTicks(domain, count, axis) {
  const ticks = niceTicks(domain[0], domain[1], count);
  if (!axis || !axis.integer) return ticks;
  const whole = ticks.filter((t) => Number.isInteger(t));
  return whole.length >= 2 ? whole : [Math.ceil(domain[0]), Math.floor(domain[1])].filter((t, i, a) => a.indexOf(t) === i && t >= domain[0] && t <= domain[1]);
}

// [lo, hi] widened to round numbers, with room around a flat series.
function niceDomain(values, pad = 0.05) {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (lo === hi) {
    const d = Math.abs(lo) * 0.1 || 1;
    lo -= d;
    hi += d;
  }
  const span = hi - lo;
  return [lo - span * pad, hi + span * pad];
}

function scale([d0, d1], [r0, r1]) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

function pointShape(shape, x, y, r, colour) {
  const common = { fill: colour, stroke: '#fff', 'stroke-width': 1 };
  switch (shape) {
    case 'square':
      return svg('rect', { x: x - r, y: y - r, width: 2 * r, height: 2 * r, ...common });
    case 'triangle':
      return svg('path', { d: `M${x},${y - r * 1.2}L${x + r * 1.1},${y + r * 0.8}L${x - r * 1.1},${y + r * 0.8}Z`, ...common });
    case 'diamond':
      return svg('path', { d: `M${x},${y - r * 1.3}L${x + r * 1.3},${y}L${x},${y + r * 1.3}L${x - r * 1.3},${y}Z`, ...common });
    default:
      return svg('circle', { cx: x, cy: y, r, ...common });
  }
}

// The figure every chart lives in; returns {figure, svgNode, legend} to fill.
function frame(container, { title, kind, width, height, summary }) {
  const titleId = uid('ws-chart-title');
  const descId = uid('ws-chart-desc');
  const svgNode = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': `${titleId} ${descId}`,
    class: `ws-chart-svg ws-${kind}`, 'font-family': FONT, 'font-size': 12, fill: INK,
    preserveAspectRatio: 'xMidYMid meet', width: '100%',
  },
  svg('title', { id: titleId }, title || kind),
  svg('desc', { id: descId }, summary));
  const figure = el('figure', { class: `ws-chart ws-chart-${kind}`, 'data-chart': kind });
  if (title) figure.appendChild(el('figcaption', { class: 'ws-chart-title' }, title));
  figure.appendChild(svgNode);
  container.replaceChildren(figure);
  return { figure, svgNode };
}

// The numbers behind a picture, for screen readers: hidden, with a caption and column heads.
export function dataTable(caption, columns, rows, className = 'ws-chart-data') {
  return el('table', { class: `visually-hidden ${className}` },
    el('caption', null, caption),
    el('thead', null, el('tr', null, columns.map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', null, rows.map((r) => el('tr', null, r.map((v) => el('td', null, v))))));
}

// dashed: true -> dashed, false -> solid, unset -> the series' own pattern (by index).
function dashPattern(dashed, index) {
  if (dashed === true) return '6 4';
  if (dashed === false) return null;
  return DASHES[index % DASHES.length];
}

function swatch(index, { dashed, box = false } = {}) {
  const colour = PALETTE[index % PALETTE.length];
  const s = svg('svg', { width: 30, height: 12, viewBox: '0 0 30 12', 'aria-hidden': 'true', class: 'ws-swatch' });
  if (box) {
    s.appendChild(svg('rect', { x: 3, y: 1, width: 24, height: 10, fill: colour, stroke: INK, 'stroke-width': 0.5 }));
  } else {
    s.appendChild(svg('line', {
      x1: 1, y1: 6, x2: 29, y2: 6, stroke: colour, 'stroke-width': 2.5,
      'stroke-dasharray': dashPattern(dashed, index),
    }));
    s.appendChild(pointShape(SHAPES[index % SHAPES.length], 15, 6, 3.5, colour));
  }
  return s;
}

function legend(entries) {
  return el('ul', { class: 'ws-legend', 'aria-label': 'Legend' },
    entries.map((e) => el('li', { 'data-series': e.name }, e.swatch, el('span', null, e.name))));
}

function axes(root, { xs, ys, xTicks, yTicks, xLabels, yLabels, box, xTitle, yTitle }) {
  const [left, top, right, bottom] = box;
  const g = svg('g', { class: 'ws-axes' });
  const yText = yLabels ? yTicks.map(yLabels) : tickLabels(yTicks);
  const xText = xLabels ? xTicks.map(xLabels) : tickLabels(xTicks);
  yTicks.forEach((t, i) => {
    const y = ys(t);
    g.appendChild(svg('line', { x1: left, x2: right, y1: y, y2: y, stroke: GRID, 'stroke-width': 1 }));
    g.appendChild(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'ws-tick' }, yText[i]));
  });
  xTicks.forEach((t, i) => {
    const x = xs(t);
    g.appendChild(svg('line', { x1: x, x2: x, y1: bottom, y2: bottom + 5, stroke: INK }));
    g.appendChild(svg('text', { x, y: bottom + 18, 'text-anchor': 'middle', class: 'ws-tick' }, xText[i]));
  });
  g.appendChild(svg('line', { x1: left, x2: right, y1: bottom, y2: bottom, stroke: INK }));
  g.appendChild(svg('line', { x1: left, x2: left, y1: top, y2: bottom, stroke: INK }));
  if (xTitle) {
    g.appendChild(svg('text', { x: (left + right) / 2, y: bottom + 38, 'text-anchor': 'middle', class: 'ws-axis-title', 'font-weight': 600 }, xTitle));
  }
  if (yTitle) {
    const cy = (top + bottom) / 2;
    g.appendChild(svg('text', { x: 14, y: cy, transform: `rotate(-90 14 ${cy})`, 'text-anchor': 'middle', class: 'ws-axis-title', 'font-weight': 600 }, yTitle));
  }
  root.appendChild(g);
}

// --- line chart ------------------------------------------------------------------------

function lineSummary(spec) {
  const parts = [`Line chart of ${axisTitle(spec.y) || 'y'} against ${axisTitle(spec.x) || 'x'}.`];
  for (const s of spec.series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) {
      parts.push(`${s.name}: no points yet.`);
      continue;
    }
    const ys = pts.map((p) => p[1]);
    const last = pts[pts.length - 1];
    parts.push(`${s.name}: ${pts.length} point${pts.length === 1 ? '' : 's'}, from ${fmt(Math.min(...ys))} to ${fmt(Math.max(...ys))}; last ${fmt(last[1])} at ${withUnit(last[0], spec.x)}.`);
  }
  for (const m of spec.markers || []) parts.push(`Marked: ${m.label} at ${withUnit(m.x, spec.x)}, ${withUnit(m.y, spec.y)}.`);
  return parts.join(' ');
}

function drawLine(container, spec) {
  const W = 640;
  const H = 340;
  const box = [72, 14, W - 18, H - 58];
  const [left, top, right, bottom] = box;
  const { figure, svgNode } = frame(container, { title: spec.title, kind: 'line', width: W, height: H, summary: lineSummary(spec) });
  const all = spec.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const markers = (spec.markers || []).filter((m) => Number.isFinite(m.x));
  const xDomain = spec.xDomain || niceDomain([...all.map((p) => p[0]), ...markers.map((m) => m.x)], 0);
  const yDomain = spec.yDomain || niceDomain([...all.map((p) => p[1]), ...markers.map((m) => m.y).filter(Number.isFinite)]);
  const xs = scale(xDomain, [left, right]);
  const ys = scale(yDomain, [bottom, top]);
  axes(svgNode, {
    xs, ys, box, xTicks: axisTicks(xDomain, 6, spec.x), yTicks: axisTicks(yDomain, 5, spec.y),
    xTitle: axisTitle(spec.x), yTitle: axisTitle(spec.y),
  });
  const clipId = uid('ws-clip');
  svgNode.appendChild(svg('clipPath', { id: clipId }, svg('rect', { x: left, y: top - 4, width: right - left, height: bottom - top + 8 })));
  const plot = svg('g', { class: 'ws-plot', 'clip-path': `url(#${clipId})` });
  svgNode.appendChild(plot);
  spec.series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const pts = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${xs(p[0]).toFixed(1)},${ys(p[1]).toFixed(1)}`).join('');
    const g = svg('g', { class: 'ws-series', 'data-series': s.name, 'data-points': pts.length });
    g.appendChild(svg('path', {
      d: d || 'M0,0', fill: 'none', stroke: colour, 'stroke-width': 2.5, 'stroke-linejoin': 'round',
      'stroke-dasharray': dashPattern(s.dashed, i), class: 'ws-line', 'data-series': s.name,
      visibility: d ? 'visible' : 'hidden',
    }));
    if (pts.length <= 80) {
      for (const p of pts) {
        const mark = pointShape(SHAPES[i % SHAPES.length], xs(p[0]), ys(p[1]), 3.5, colour);
        mark.setAttribute('class', 'ws-point');
        mark.appendChild(svg('title', null, `${s.name}: ${axisTitle(spec.x)} ${fmt(p[0])}, ${axisTitle(spec.y)} ${fmt(p[1])}`));
        g.appendChild(mark);
      }
    }
    plot.appendChild(g);
  });
  const placed = []; // label boxes already drawn: a later label moves down until clear
  for (const m of markers) {
    const x = xs(m.x);
    const g = svg('g', { class: 'ws-marker', 'data-label': m.label });
    g.appendChild(svg('line', { x1: x, x2: x, y1: top, y2: bottom, stroke: INK, 'stroke-width': 1, 'stroke-dasharray': '3 3' }));
    let anchorY = top + 12;
    if (Number.isFinite(m.y)) {
      const y = ys(m.y);
      g.appendChild(svg('path', { d: `M${x},${y - 7}L${x + 7},${y}L${x},${y + 7}L${x - 7},${y}Z`, fill: '#fff', stroke: INK, 'stroke-width': 2 }));
      anchorY = Math.max(top + 12, y - 12);
    }
    const nearRight = x > (left + right) / 2;
    const width = 7 * String(m.label).length;
    const x0 = nearRight ? x - 9 - width : x + 9;
    const clash = (y) => placed.some((b) => Math.abs(b.y - y) < 15 && x0 < b.x1 && b.x0 < x0 + width);
    while (clash(anchorY) && anchorY < bottom - 4) anchorY += 15;
    placed.push({ x0, x1: x0 + width, y: anchorY });
    g.appendChild(svg('text', {
      x: nearRight ? x - 9 : x + 9, y: anchorY, 'text-anchor': nearRight ? 'end' : 'start',
      class: 'ws-marker-label', 'font-weight': 600, stroke: '#fff', 'stroke-width': 3, 'paint-order': 'stroke',
    }, m.label));
    g.appendChild(svg('title', null, `${m.label}: ${axisTitle(spec.x)} ${fmt(m.x)}${Number.isFinite(m.y) ? `, ${axisTitle(spec.y)} ${fmt(m.y)}` : ''}`));
    svgNode.appendChild(g);
  }
  if (!all.length) {
    svgNode.appendChild(svg('text', { x: (left + right) / 2, y: (top + bottom) / 2, 'text-anchor': 'middle', class: 'ws-empty', fill: '#666' }, spec.empty || 'No points yet'));
  }
  figure.appendChild(legend([
    ...spec.series.map((s, i) => ({ name: s.name, swatch: swatch(i, { dashed: s.dashed }) })),
    ...markers.map((m) => ({ name: m.label, swatch: svg('svg', { width: 30, height: 12, viewBox: '0 0 30 12', 'aria-hidden': 'true', class: 'ws-swatch' }, svg('path', { d: 'M15,1L20,6L15,11L10,6Z', fill: '#fff', stroke: INK, 'stroke-width': 1.5 })) })),
  ]));
  const rows = spec.series.flatMap((s) => s.points.map((p) => [s.name, fmt(p[0]), fmt(p[1])]));
  for (const m of markers) rows.push([m.label, fmt(m.x), Number.isFinite(m.y) ? fmt(m.y) : '']);
  figure.appendChild(dataTable(spec.title || 'Data', ['Series', axisTitle(spec.x) || 'x', axisTitle(spec.y) || 'y'], rows));
}

// lineChart(container, {title, x: {label, unit}, y: {label, unit}, series: [{name, points:
// [[x, y], ...], dashed?}], markers?: [{x, y, label}], yDomain?: [lo, hi], xDomain?, empty?})
// -> {update(series), append(seriesName, point), setMarkers(markers), spec}
export function lineChart(container, spec) {
  const state = { ...spec, series: (spec.series || []).map((s) => ({ ...s, points: [...(s.points || [])] })) };
  let pending = false;
  const redraw = () => drawLine(container, state);
  redraw();
  return {
    spec: state,
    update(series) {
      state.series = series.map((s) => ({ ...s, points: [...(s.points || [])] }));
      redraw();
    },
    append(name, point) {
      let s = state.series.find((x) => x.name === name);
      if (!s) {
        s = { name, points: [] };
        state.series.push(s);
      }
      s.points.push(point);
      if (!pending) { // many points in one tick (a replayed event stream) draw once
        pending = true;
        queueMicrotask(() => { pending = false; redraw(); });
      }
    },
    setMarkers(markers) {
      state.markers = markers;
      redraw();
    },
  };
}

// --- bar chart -------------------------------------------------------------------------

// barChart(container, {title, y: {label, unit}, groups: [{name, bars: [{name, value, low?,
// high?}]}], yDomain?, width?, height?}): bars of one name share a colour across groups (legend by name);
// low/high draw an error bar.
export function barChart(container, spec) {
  const groups = spec.groups || [];
  const names = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const W = spec.width || 640; // a card's chart: narrower, so its text stays readable
  const H = spec.height || 320;
  const box = [72, 14, W - 18, H - 58];
  const [left, top, right, bottom] = box;
  const summary = [`Bar chart of ${axisTitle(spec.y) || 'values'}.`,
    ...groups.map((g) => `${g.name}: ${g.bars.map((b) => `${b.name} ${withUnit(b.value, spec.y)}${Number.isFinite(b.low) && Number.isFinite(b.high) ? ` (${fmt(b.low)} to ${fmt(b.high)})` : ''}`).join(', ')}.`)].join(' ');
  const { figure, svgNode } = frame(container, { title: spec.title, kind: 'bar', width: W, height: H, summary });
  const values = groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.low, b.high])).filter(Number.isFinite);
  const [lo, hi] = spec.yDomain || niceDomain([0, ...values], 0.08);
  const yDomain = [Math.min(0, lo), hi];
  const ys = scale(yDomain, [bottom, top]);
  const groupWidth = (right - left) / Math.max(1, groups.length);
  axes(svgNode, { xs: () => 0, ys, box, xTicks: [], yTicks: niceTicks(...yDomain, 5), yTitle: axisTitle(spec.y) });
  groups.forEach((g, gi) => {
    const gx = left + gi * groupWidth;
    const barW = Math.min(90, (groupWidth * 0.8) / Math.max(1, g.bars.length));
    const inner = barW * g.bars.length;
    const gNode = svg('g', { class: 'ws-bar-group', 'data-group': g.name });
    g.bars.forEach((b, bi) => {
      const i = names.indexOf(b.name);
      const x = gx + (groupWidth - inner) / 2 + bi * barW;
      const y0 = ys(0);
      const y1 = ys(Number.isFinite(b.value) ? b.value : 0);
      const rect = svg('rect', {
        x: x + 2, y: Math.min(y0, y1), width: Math.max(1, barW - 4), height: Math.abs(y0 - y1),
        fill: PALETTE[i % PALETTE.length], stroke: INK, 'stroke-width': 0.5, class: 'ws-bar', 'data-bar': b.name,
      }, svg('title', null, `${g.name}, ${b.name}: ${withUnit(b.value, spec.y)}`));
      gNode.appendChild(rect);
      const cx = x + barW / 2;
      if (Number.isFinite(b.low) && Number.isFinite(b.high)) {
        const [ya, yb] = [ys(b.low), ys(b.high)];
        gNode.appendChild(svg('path', { d: `M${cx},${ya}L${cx},${yb}M${cx - 5},${ya}L${cx + 5},${ya}M${cx - 5},${yb}L${cx + 5},${yb}`, stroke: INK, 'stroke-width': 1.5, fill: 'none', class: 'ws-error-bar' }));
      }
      const top2 = Math.min(y1, Number.isFinite(b.high) ? ys(b.high) : y1);
      gNode.appendChild(svg('text', { x: cx, y: top2 - 4, 'text-anchor': 'middle', class: 'ws-bar-value', 'font-size': 11 }, fmt(b.value)));
    });
    gNode.appendChild(svg('text', { x: gx + groupWidth / 2, y: bottom + 18, 'text-anchor': 'middle', class: 'ws-tick' }, g.name));
    svgNode.appendChild(gNode);
  });
  figure.appendChild(legend(names.map((n, i) => ({ name: n, swatch: swatch(i, { box: true }) }))));
  figure.appendChild(dataTable(spec.title || 'Data', ['Group', 'Bar', axisTitle(spec.y) || 'value', 'low', 'high'],
    groups.flatMap((g) => g.bars.map((b) => [g.name, b.name, fmt(b.value), Number.isFinite(b.low) ? fmt(b.low) : '', Number.isFinite(b.high) ? fmt(b.high) : '']))));
  return { figure };
}

// --- probability bars ------------------------------------------------------------------

function pct(p) {
  return `${fmt(p * 100)} %`;
}

// probabilityBars(container, [{label, p}], {title}): one horizontal bar per class on a
// 0..1 axis, most likely first.
export function probabilityBars(container, items, { title = 'Class probabilities', sort = true } = {}) {
  const rows = sort ? [...items].sort((a, b) => b.p - a.p) : [...items];
  const W = 640;
  const rowH = 26;
  const labelW = Math.min(220, 16 + 7 * Math.max(4, ...rows.map((r) => String(r.label).length)));
  const H = 44 + rows.length * rowH + 36;
  const left = labelW;
  const right = W - 70;
  const top = 10;
  const bottom = top + rows.length * rowH;
  const summary = `Probability of each class: ${rows.map((r) => `${r.label} ${pct(r.p)}`).join(', ')}.`;
  const { figure, svgNode } = frame(container, { title, kind: 'probabilities', width: W, height: H, summary });
  const xs = scale([0, 1], [left, right]);
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    svgNode.appendChild(svg('line', { x1: xs(t), x2: xs(t), y1: top, y2: bottom, stroke: GRID }));
    svgNode.appendChild(svg('text', { x: xs(t), y: bottom + 16, 'text-anchor': 'middle', class: 'ws-tick' }, tickFmt(t)));
  }
  svgNode.appendChild(svg('text', { x: (left + right) / 2, y: bottom + 34, 'text-anchor': 'middle', class: 'ws-axis-title', 'font-weight': 600 }, 'Probability (0 to 1)'));
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const g = svg('g', { class: 'ws-prob', 'data-label': r.label });
    g.appendChild(svg('text', { x: left - 8, y: y + rowH / 2 + 4, 'text-anchor': 'end', 'font-weight': i === 0 ? 700 : 400 }, String(r.label)));
    g.appendChild(svg('rect', { x: left, y: y + 4, width: Math.max(0, xs(r.p) - left), height: rowH - 8, fill: i === 0 ? PALETTE[0] : PALETTE[5], stroke: INK, 'stroke-width': 0.5, class: 'ws-bar' },
      svg('title', null, `${r.label}: ${pct(r.p)}`)));
    g.appendChild(svg('text', { x: xs(r.p) + 6, y: y + rowH / 2 + 4, class: 'ws-bar-value' }, pct(r.p)));
    svgNode.appendChild(g);
  });
  svgNode.appendChild(svg('line', { x1: left, x2: left, y1: top, y2: bottom, stroke: INK }));
  figure.appendChild(dataTable(title, ['Class', 'Probability'], rows.map((r) => [String(r.label), pct(r.p)])));
  return { figure };
}

// --- interval on 0..1 -------------------------------------------------------------------

// intervalPlot(container, {value, low, high, label, unit, title, domain?}): the value as a
// point on a 0..1 axis (or `domain`), its interval as a bar with end caps.
export function intervalPlot(container, { value, low, high, label = 'Value', unit = '', title = label, domain = [0, 1] }) {
  const W = 640;
  const H = 120;
  const left = 30;
  const right = W - 30;
  const y = 44;
  const axisY = 72;
  const hasInterval = Number.isFinite(low) && Number.isFinite(high);
  const axis = { label, unit };
  const summary = `${label}: ${withUnit(value, axis)}${hasInterval ? `, interval ${withUnit(low, axis)} to ${withUnit(high, axis)}` : ''}, on an axis from ${fmt(domain[0])} to ${fmt(domain[1])}.`;
  const { figure, svgNode } = frame(container, { title, kind: 'interval', width: W, height: H, summary });
  const xs = scale(domain, [left, right]);
  const clamp = (v) => Math.min(right, Math.max(left, xs(v)));
  svgNode.appendChild(svg('line', { x1: left, x2: right, y1: axisY, y2: axisY, stroke: INK }));
  for (const t of niceTicks(domain[0], domain[1], 5)) {
    svgNode.appendChild(svg('line', { x1: xs(t), x2: xs(t), y1: axisY, y2: axisY + 5, stroke: INK }));
    svgNode.appendChild(svg('text', { x: xs(t), y: axisY + 18, 'text-anchor': 'middle', class: 'ws-tick' }, tickFmt(t)));
  }
  svgNode.appendChild(svg('text', { x: W / 2, y: axisY + 38, 'text-anchor': 'middle', class: 'ws-axis-title', 'font-weight': 600 }, axisTitle(axis)));
  if (hasInterval) {
    const [a, b] = [clamp(low), clamp(high)];
    svgNode.appendChild(svg('rect', { x: a, y: y - 7, width: Math.max(1, b - a), height: 14, fill: PALETTE[5], 'fill-opacity': 0.45, stroke: PALETTE[0], class: 'ws-interval' },
      svg('title', null, `interval ${fmt(low)} to ${fmt(high)}`)));
    svgNode.appendChild(svg('path', { d: `M${a},${y - 11}L${a},${y + 11}M${b},${y - 11}L${b},${y + 11}`, stroke: PALETTE[0], 'stroke-width': 2 }));
    svgNode.appendChild(svg('text', { x: a, y: y - 14, 'text-anchor': 'middle', 'font-size': 11 }, fmt(low)));
    svgNode.appendChild(svg('text', { x: b, y: y - 14, 'text-anchor': 'middle', 'font-size': 11 }, fmt(high)));
  }
  if (Number.isFinite(value)) {
    const x = clamp(value);
    svgNode.appendChild(svg('circle', { cx: x, cy: y, r: 7, fill: PALETTE[1], stroke: '#fff', 'stroke-width': 2, class: 'ws-value' },
      svg('title', null, `${label}: ${withUnit(value, axis)}`)));
    svgNode.appendChild(svg('text', { x, y: y + 24, 'text-anchor': 'middle', 'font-weight': 700 }, fmt(value)));
  }
  const legendEntries = [{ name: `${label} (point)`, swatch: svg('svg', { width: 30, height: 12, viewBox: '0 0 30 12', 'aria-hidden': 'true', class: 'ws-swatch' }, svg('circle', { cx: 15, cy: 6, r: 5, fill: PALETTE[1] })) }];
  if (hasInterval) legendEntries.push({ name: 'interval (bar)', swatch: swatch(5, { box: true }) });
  figure.appendChild(legend(legendEntries));
  figure.appendChild(dataTable(title, ['Quantity', axisTitle(axis)],
    [[label, fmt(value)], ...(hasInterval ? [['low', fmt(low)], ['high', fmt(high)]] : [])]));
  return { figure };
}
