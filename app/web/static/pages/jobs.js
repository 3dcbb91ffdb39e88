import { historyTable } from '../history.js';
import { el, fmtPct, link, timeEl } from '../format.js';
import { liveStatus } from '../job_view.js';

const KINDS = ['predict', 'merge', 'inspect', 'train'];
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'];

export async function render(root, params) {
  root.append(
    el('h1', null, 'Jobs'),
    el('p', null, 'Work queued for the workers: predictions, merges, inspections, training.'));
  const closers = []; // unfinished jobs' badges follow them live
  const close = historyTable(root, {
    title: 'Jobs',
    path: '/v1/jobs',
    hashPath: '/jobs',
    query: params.query,
    filters: [
      { name: 'kind', label: 'Kind', type: 'select', options: KINDS.map((k) => [k, k]) },
      { name: 'status', label: 'Status', type: 'select', options: STATUSES.map((s) => [s, s]) },
    ],
    columns: [
      { label: 'Id', value: (j) => link(`#/jobs/${j.id}`, `#${j.id}`), numeric: true },
      { label: 'Kind', value: (j) => j.kind },
      { label: 'Status', value: (j) => liveStatus(j, closers) },
      { label: 'Progress', value: (j) => fmtPct(j.progress), numeric: true },
      { label: 'Queued', value: (j) => timeEl(j.created_at) },
      { label: 'Finished', value: (j) => timeEl(j.finished_at) },
      { label: 'Error', value: (j) => j.error || '' },
    ],
    empty: 'No jobs yet.',
  });
  return () => { close(); closers.forEach((c) => c()); };
}
