import { historyTable } from '../history.js';
import { el, fmt, fmtPct, link, timeEl } from '../format.js';

export function answer(p) {
  if (p.task === 'classification' || p.label != null) {
    const prob = p.probabilities && p.label != null ? p.probabilities[p.label] : null;
    return `${p.label ?? '\u2014'}${prob != null ? ` (${fmtPct(prob)})` : ''}`;
  }
  if (p.value != null) {
    const interval = p.interval_low != null ? ` [${fmt(p.interval_low)}, ${fmt(p.interval_high)}]` : '';
    return `accuracy ${fmt(p.value)}${interval}`;
  }
  return '\u2014';
}

export function verdict(inDomain) {
  if (inDomain === true) return el('span', { class: 'badge verdict-in' }, 'in domain');
  if (inDomain === false) return el('span', { class: 'badge verdict-out' }, 'outside domain');
  return '\u2014';
}

export async function render(root, params) {
  root.append(
    el('h1', null, 'Predictions'),
    el('p', null, 'What metanetworks answered about checkpoints, newest first.'));
  return historyTable(root, {
    title: 'Predictions',
    path: '/v1/predictions',
    hashPath: '/predictions',
    query: params.query,
    filters: [
      { name: 'checkpoint_id', label: 'Checkpoint id', type: 'number', size: 8 },
      { name: 'metanetwork', label: 'Metanetwork', size: 16 },
      { name: 'created_after', label: 'Created after', type: 'datetime-local' },
      { name: 'created_before', label: 'Created before', type: 'datetime-local' },
    ],
    columns: [
      { label: 'Id', value: (p) => link(`#/predictions/${p.id}`, `#${p.id}`), numeric: true },
      { label: 'Checkpoint', value: (p) => link(`#/checkpoints/${p.checkpoint_id}`, `#${p.checkpoint_id}`) },
      { label: 'Metanetwork', value: (p) => p.metanetwork },
      { label: 'Task', value: (p) => p.task },
      { label: 'Answer', value: (p) => answer(p) },
      { label: 'Domain', value: (p) => verdict(p.in_domain) },
      { label: 'Answered', value: (p) => timeEl(p.created_at) },
    ],
    empty: 'No predictions yet.',
  });
}
