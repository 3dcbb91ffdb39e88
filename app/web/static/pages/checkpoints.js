import { historyTable } from '../history.js';
import { el, fmtBytes, fmtInt, link, timeEl } from '../format.js';

export async function render(root, params) {
  root.append(
    el('h1', null, 'Checkpoints'),
    el('p', null, 'Every checkpoint uploaded (or made by a merge), newest first. ',
      el('a', { href: '#/' }, 'Upload one'), ' from the home page.'));
  return historyTable(root, {
    title: 'Checkpoints',
    path: '/v1/checkpoints',
    hashPath: '/checkpoints',
    query: params.query,
    filters: [
      { name: 'format', label: 'Format', type: 'select', options: [['safetensors', 'safetensors'], ['pytorch', 'PyTorch']] },
      { name: 'sha256_prefix', label: 'sha256 starts with', size: 16 },
      { name: 'created_after', label: 'Created after', type: 'datetime-local' },
      { name: 'created_before', label: 'Created before', type: 'datetime-local' },
    ],
    columns: [
      { label: 'Id', value: (c) => link(`#/checkpoints/${c.id}`, `#${c.id}`), numeric: true },
      { label: 'File', value: (c) => link(`#/checkpoints/${c.id}`, c.filename || '(no name)') },
      { label: 'Format', value: (c) => c.format },
      { label: 'Architecture', value: (c) => (c.architecture ? provenance(c) : el('span', { class: 'muted' }, 'none')) },
      { label: 'Parameters', value: (c) => fmtInt(c.parameter_count), numeric: true },
      { label: 'Size', value: (c) => fmtBytes(c.size), numeric: true },
      { label: 'sha256', value: (c) => el('span', { class: 'mono', title: c.sha256 }, c.sha256.slice(0, 12)) },
      { label: 'Uploaded', value: (c) => timeEl(c.created_at) },
    ],
    empty: 'No checkpoints yet.',
  });
}

function provenance(c) {
  const p = c.reading && c.reading.provenance;
  return p ? `${p}` : 'attached';
}
