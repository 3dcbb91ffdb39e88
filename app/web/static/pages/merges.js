// Merge history: every merge of the tenant, newest first, filtered by checkpoint or job.
import { historyTable } from '../history.js';
import { el, fmt, link, timeEl } from '../format.js';

export const METHOD_NAMES = {
  weight: 'weight matching',
  activation: 'activation matching',
  ste: 'straight-through estimator',
  ot: 'optimal-transport fusion',
  clafusion: 'CLAFusion (different depths)',
};

export function checkpointLinks(ids) {
  return (ids || []).flatMap((id, i) => [i ? ', ' : '', link(`#/checkpoints/${id}`, `#${id}`)]);
}

export async function render(root, params) {
  root.append(
    el('h1', null, 'Merges'),
    el('p', null, 'Checkpoints aligned modulo permutation symmetry and merged, newest first. ',
      el('a', { class: 'btn', href: '#/merges/new' }, 'New merge')));
  return historyTable(root, {
    title: 'Merges',
    path: '/v1/merges',
    hashPath: '/merges',
    query: params.query,
    filters: [
      { name: 'checkpoint_id', label: 'Checkpoint id (input or result)', type: 'number', size: 8 },
      { name: 'job_id', label: 'Job id', type: 'number', size: 8 },
    ],
    columns: [
      { label: 'Id', value: (m) => link(`#/merges/${m.id}`, `#${m.id}`), numeric: true },
      { label: 'Inputs (reference first)', value: (m) => el('span', null, checkpointLinks(m.checkpoints)) },
      { label: 'Method', value: (m) => METHOD_NAMES[m.method] || m.method },
      { label: '\u03bb', value: (m) => (m.lam == null ? null : fmt(m.lam)), numeric: true },
      { label: 'Dataset', value: (m) => (m.dataset_id == null ? 'none' : `#${m.dataset_id}`) },
      { label: 'Loss barrier (aligned)', value: (m) => (m.barrier == null ? null : fmt(m.barrier)), numeric: true },
      { label: 'Merged checkpoint', value: (m) => (m.result_checkpoint_id ? link(`#/checkpoints/${m.result_checkpoint_id}`, `#${m.result_checkpoint_id}`) : null) },
      { label: 'Created', value: (m) => timeEl(m.created_at) },
    ],
    empty: 'No merges yet.',
  });
}
