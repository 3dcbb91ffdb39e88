import { historyTable } from '../history.js';
import { el, fmtInt, link, timeEl } from '../format.js';

export async function render(root, params) {
  root.append(
    el('h1', null, 'Zoos'),
    el('p', null, 'Collections of labelled checkpoints that metanetworks are trained on. ',
      'Build one with ', el('code', null, 'weightscope zoo build'), ' and push it with ',
      el('code', null, 'weightscope zoo push'), '.'));
  return historyTable(root, {
    title: 'Zoos',
    path: '/v1/zoos',
    hashPath: '/zoos',
    query: params.query,
    columns: [
      { label: 'Id', value: (z) => link(`#/zoos/${z.id}`, `#${z.id}`), numeric: true },
      { label: 'Name', value: (z) => link(`#/zoos/${z.id}`, z.name) },
      { label: 'Task', value: (z) => z.task },
      { label: 'Items', value: (z) => fmtInt(z.size), numeric: true },
      { label: 'Classes', value: (z) => (z.classes ? z.classes.join(', ') : '') },
      { label: 'Created', value: (z) => timeEl(z.created_at) },
    ],
    empty: 'No zoos yet.',
  });
}
