// One prediction drawn for a person: the answer in words, the chart that shows it
// (probability bars or the interval), and the domain verdict in words.
import { probabilityBars, intervalPlot } from './charts.js';
import { el, fmt, fmtPct, link, timeEl } from './format.js';

// Accepts a prediction record (interval_low/high) or a predict job's result (interval).
export function predictionCard(p, { heading = 'h3', showCheckpoint = false } = {}) {
  const low = p.interval_low ?? (p.interval ? p.interval[0] : null);
  const high = p.interval_high ?? (p.interval ? p.interval[1] : null);
  const card = el('article', { class: 'card prediction', 'aria-label': `Prediction by ${p.metanetwork}` });
  const title = p.id != null ? link(`#/predictions/${p.id}`, `Prediction #${p.id}`) : 'Prediction';
  card.append(el(heading, null, title, ` \u00b7 ${p.metanetwork}`));
  let headline;
  const chart = el('div', { class: 'chart' });
  if (p.probabilities && Object.keys(p.probabilities).length) {
    const prob = p.label != null ? p.probabilities[p.label] : null;
    headline = `Predicted class: ${p.label}${prob != null ? ` with probability ${fmtPct(prob)}` : ''}`;
    const bars = Object.entries(p.probabilities)
      .map(([label, value]) => ({ label, p: value }))
      .sort((a, b) => b.p - a.p);
    probabilityBars(chart, bars, { title: `Class probabilities (${p.metanetwork})` });
  } else if (p.value != null) {
    const cov = p.coverage != null ? `${fmtPct(p.coverage)} ` : '';
    headline = `Predicted test accuracy: ${fmt(p.value)}`
      + (low != null ? ` (${cov}interval ${fmt(low)} to ${fmt(high)})` : '');
    intervalPlot(chart, {
      value: p.value, low, high, label: 'predicted test accuracy', unit: 'accuracy (fraction)',
      title: `Predicted test accuracy${p.coverage != null ? ` with its ${fmtPct(p.coverage)} interval` : ''}`,
    });
  } else {
    headline = 'No answer recorded.';
  }
  card.append(el('p', { class: 'headline' }, headline), chart);
  card.append(domainVerdict(p));
  const facts = [
    ['Task', p.task],
    ['Metanetwork version', p.metanetwork_version],
    showCheckpoint ? ['Checkpoint', link(`#/checkpoints/${p.checkpoint_id}`, `#${p.checkpoint_id}`)] : null,
    p.created_at ? ['Answered', timeEl(p.created_at)] : null,
    p.job_id ? ['Job', link(`#/jobs/${p.job_id}`, `#${p.job_id}`)] : null,
  ].filter(Boolean);
  card.append(el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', null, k), el('dd', null, v ?? '\u2014')])));
  return card;
}

export function domainVerdict(p) {
  if (p.in_domain === true) {
    return el('p', { class: 'verdict verdict-in' },
      `Inside the domain: this checkpoint is like the networks ${p.metanetwork} was trained on, so the answer can be trusted as far as its measured metrics go.`);
  }
  if (p.in_domain === false) {
    const issues = p.domain_issues || [];
    return el('div', { class: 'verdict verdict-out' },
      el('p', null, `Outside the domain: this checkpoint is unlike the networks ${p.metanetwork} was trained on, so treat the answer as a guess.`),
      issues.length ? el('ul', null, issues.map((i) => el('li', null, i))) : null);
  }
  return el('p', { class: 'muted' }, 'No domain verdict recorded.');
}
