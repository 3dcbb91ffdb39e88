import { api, isTerminal } from '../api.js';
import { el, errorBox, fmt, fmtInt, link, table, timeEl } from '../format.js';
import { followJob, jobStatusBox } from '../job_view.js';

export async function render(root, params) {
  const id = params.id;
  root.append(el('h1', null, `Job #${id}`));
  let job;
  try {
    job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
  } catch (err) {
    root.append(errorBox(err));
    return undefined;
  }
  const status = jobStatusBox(job);
  const facts = el('dl', { class: 'facts' });
  const actions = el('div', { class: 'actions' });
  const outcome = el('section', { 'aria-label': 'Outcome' });
  root.append(el('section', { class: 'card', 'aria-label': 'Status' }, el('h2', null, `${job.kind} job`), status, facts, actions), outcome);

  const draw = (j) => {
    status.update(j);
    facts.replaceChildren(...[
      ['Kind', j.kind], ['Queued', timeEl(j.created_at)], ['Started', timeEl(j.started_at)],
      ['Finished', timeEl(j.finished_at)], ['Attempts', `${j.attempts} of ${j.max_attempts}`],
      ['Worker', j.worker_id || '\u2014'],
    ].flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)]));
    actions.replaceChildren();
    if (!isTerminal(j) && !j.cancel_requested) {
      actions.append(el('button', {
        type: 'button', class: 'btn secondary', onclick: async (e) => {
          e.target.disabled = true;
          try { draw(await api(`/v1/jobs/${j.id}/cancel`, { method: 'POST' })); } catch (err) { actions.append(errorBox(err)); }
        },
      }, 'Cancel job'));
    }
    if (j.kind === 'train') actions.append(' ', el('a', { class: 'btn secondary', href: `#/training/${j.id}` }, 'Training curves'));
    if (isTerminal(j)) drawOutcome(outcome, j);
  };
  draw(job);
  return followJob(job, draw, (err) => root.append(errorBox(err)));
}

async function drawOutcome(section, job) {
  section.replaceChildren(el('h2', null, 'Outcome'));
  const r = job.result;
  if (job.status !== 'succeeded') {
    section.append(el('p', null, `The job ${job.status}${job.error ? `: ${job.error}` : '.'}`));
  } else if (r && r.metanetwork && 'in_domain' in r) { // a prediction's result
    section.append(el('p', null, 'Answered about ', link(`#/checkpoints/${r.checkpoint_id}`, `checkpoint #${r.checkpoint_id}`),
      ` by ${r.metanetwork}: `, r.label != null ? `class ${r.label}` : `test accuracy ${fmt(r.value)}`, '.'));
  } else if (job.kind === 'merge') {
    try {
      const page = await api('/v1/merges', { query: { job_id: job.id, limit: 1 } });
      const m = page.items[0];
      if (m) section.append(el('p', null, 'Merged into ', link(`#/merges/${m.id}`, `merge #${m.id}`),
        m.result_checkpoint_id ? [' (checkpoint ', link(`#/checkpoints/${m.result_checkpoint_id}`, `#${m.result_checkpoint_id}`), ')'] : null, '.'));
    } catch (err) { section.append(errorBox(err)); }
  } else if (job.kind === 'inspect' && r && r.tensors) {
    section.append(table({
      caption: `Tensors of checkpoint #${r.checkpoint_id}`,
      columns: [
        { label: 'Tensor', value: (t) => el('span', { class: 'mono' }, t.name) },
        { label: 'Shape', value: (t) => t.shape.join('\u00d7') || 'scalar' },
        { label: 'Elements', value: (t) => fmtInt(t.numel), numeric: true },
        { label: 'Mean', value: (t) => fmt(t.mean), numeric: true },
        { label: 'Std', value: (t) => fmt(t.std), numeric: true },
        { label: 'Min', value: (t) => fmt(t.min), numeric: true },
        { label: 'Max', value: (t) => fmt(t.max), numeric: true },
      ],
      rows: r.tensors,
    }));
  }
  if (r) section.append(el('details', null, el('summary', null, 'Result as JSON'), el('pre', { class: 'json' }, JSON.stringify(r, null, 2))));
  section.append(el('details', null, el('summary', null, 'Parameters as JSON'), el('pre', { class: 'json' }, JSON.stringify(job.params, null, 2))));
}
