// A job's live status: badge, progress bar and detail, updated from its event stream.
// The status line is aria-live so a screen reader hears it change.
import { isTerminal, jobEvents } from './api.js';
import { el, fmt, fmtPct, statusBadge } from './format.js';

export function jobStatusBox(job, { label } = {}) {
  const badge = el('span');
  const bar = el('progress', { max: 1, value: 0, 'aria-label': `${label || `Job #${job.id}`} progress` });
  const text = el('span', { class: 'progress-text' });
  const detail = el('span', { class: 'muted' });
  const error = el('p', { class: 'error', hidden: true });
  const live = el('p', { class: 'job-live', role: 'status', 'aria-live': 'polite' });
  const box = el('div', { class: 'job-status', dataset: { jobId: job.id } },
    el('div', { class: 'job-progress' }, badge, bar, text), detail, live, error);
  box.update = (j) => {
    badge.replaceChildren(statusBadge(j.status));
    bar.value = j.status === 'succeeded' ? 1 : (j.progress || 0);
    text.textContent = fmtPct(j.status === 'succeeded' ? 1 : (j.progress || 0));
    detail.textContent = describeDetail(j.progress_detail);
    live.textContent = `${label || `Job #${j.id}`}: ${j.status}${isTerminal(j) ? '' : `, ${fmtPct(j.progress || 0)} done`}`;
    box.dataset.status = j.status;
    if (j.error) { error.hidden = false; error.textContent = j.error; } else error.hidden = true;
  };
  box.update(job);
  return box;
}

function describeDetail(detail) {
  if (!detail || typeof detail !== 'object') return '';
  return Object.entries(detail)
    .filter(([, v]) => v === null || typeof v !== 'object')
    .map(([k, v]) => `${k.replace(/_/g, ' ')}: ${typeof v === 'number' ? (Number.isInteger(v) ? v : fmt(v)) : v}`)
    .join(' \u00b7 ');
}

// Follow a job until terminal: onChange(job) on every event. Returns close().
export function followJob(job, onChange, onFailure) {
  if (isTerminal(job)) return () => {};
  return jobEvents(job.id, {
    onEvent: (j, name) => { if (name === 'job') onChange(j); },
    onError: (err) => { if (onFailure) onFailure(err); },
  });
}

// A job's badge that follows the job while it is unfinished; close() goes into `closers`.
export function liveStatus(job, closers) {
  const cell = el('span', { class: 'live-status' }, statusBadge(job.status));
  closers.push(followJob(job, (j) => cell.replaceChildren(statusBadge(j.status))));
  return cell;
}
