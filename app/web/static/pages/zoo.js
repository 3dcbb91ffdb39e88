import { api } from '../api.js';
import { historyTable } from '../history.js';
import { el, errorBox, fmt, fmtInt, link, timeEl } from '../format.js';

export async function render(root, params) {
  root.append(el('h1', null, `Zoo #${params.id}`));
  let zoo;
  try {
    zoo = await api(`/v1/zoos/${encodeURIComponent(params.id)}`);
  } catch (err) {
    root.append(errorBox(err));
    return undefined;
  }
  root.querySelector('h1').textContent = `Zoo #${zoo.id} \u00b7 ${zoo.name}`;
  const facts = [
    ['Task', zoo.task], ['Items', fmtInt(zoo.size)], ['Classes', zoo.classes ? zoo.classes.join(', ') : '\u2014'],
    ['Split seed', zoo.seed],
    ['Split asked for', Object.entries(zoo.split_fractions || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')],
    ['Created', timeEl(zoo.created_at)],
  ];
  root.append(el('section', { class: 'card', 'aria-label': 'Summary' },
    el('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)]))));
  root.append(el('h2', null, 'Items'));
  return historyTable(root, {
    title: 'Items',
    path: `/v1/zoos/${zoo.id}/items`,
    hashPath: `/zoos/${zoo.id}`,
    query: params.query,
    columns: [
      { label: 'Position', value: (i) => String(i.position), numeric: true },
      { label: 'Checkpoint', value: (i) => link(`#/checkpoints/${i.checkpoint_id}`, `#${i.checkpoint_id}`) },
      { label: zoo.task === 'classification' ? 'Label' : 'Target', value: (i) => (i.label != null ? i.label : fmt(i.target)) },
      { label: 'Group', value: (i) => i.group || '' },
      { label: 'Split', value: (i) => i.split },
    ],
    empty: 'This zoo has no items.',
  });
}
