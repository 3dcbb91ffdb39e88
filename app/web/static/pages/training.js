// A training job, live: the training loss and the validation metric drawn as each epoch
// ends (from the job's event stream: progress_detail carries epoch, train_loss, val, ETA),
// epoch and time-left text, a cancel button, and when it ends the metanetwork it made.
// Epochs that end between two events are filled in from the card's curves at the end.
import { api, isTerminal, jobEvents } from '../api.js';
import { announce } from '../app.js';
import { el, errorBox, fmt, link } from '../format.js';
import { jobStatusBox } from '../job_view.js';
import { METRIC_NAMES, curveCharts, facts, metricsChart } from './metanetwork.js';

function duration(seconds) {
  if (!Number.isFinite(seconds)) return '\u2014';
  if (seconds < 90) return `${fmt(seconds)} s`;
  if (seconds < 5400) return `${fmt(seconds / 60)} min`;
  return `${fmt(seconds / 3600)} h`;
}

export async function render(root, params) {
  const heading = el('h1', null, `Training job #${params.jobId}`);
  root.append(heading);
  let job;
  try {
    job = await api(`/v1/jobs/${encodeURIComponent(params.jobId)}`);
  } catch (err) {
    root.append(errorBox(err));
    return undefined;
  }
  if (job.kind !== 'train') {
    root.append(el('p', { class: 'notice' }, `Job #${job.id} is a ${job.kind} job, not a training: `, link(`#/jobs/${job.id}`, 'open it on the job page'), '.'));
    return undefined;
  }
  const p = job.params || {};
  heading.textContent = `Training ${p.name}`;
  let task = 'classification';
  try { task = (await api(`/v1/zoos/${p.zoo_id}`)).task; } catch { /* deleted zoo: the events say */ }
  const key = task === 'classification' ? 'accuracy' : 'tau_b';

  const status = jobStatusBox(job, { label: `Training of ${p.name}` });
  const epochText = el('p', { id: 'training-epoch', class: 'ws-progress-text', role: 'status', 'aria-live': 'polite' }, 'Waiting for the first epoch\u2026');
  const cancel = el('button', { type: 'button', class: 'btn secondary', id: 'training-cancel' }, 'Cancel training');
  const outcome = el('div', { id: 'training-outcome' });
  const actions = el('div', { class: 'actions' }, cancel);
  root.append(el('section', { class: 'card', 'aria-label': 'Job' },
    facts([
      ['Metanetwork', p.name],
      ['Zoo', link(`#/zoos/${p.zoo_id}`, `#${p.zoo_id}`)],
      ['Epochs (at most)', String(p.epochs)],
      ['Job', link(`#/jobs/${job.id}`, `#${job.id}`)],
    ]),
    status, epochText, actions, outcome));
  const curves = el('section', { 'aria-labelledby': 'curves-heading' }, el('h2', { id: 'curves-heading' }, 'Learning curves'),
    el('p', { class: 'muted' }, 'One point per epoch, drawn as the epoch ends.'));
  root.append(curves);
  const charts = curveCharts(curves, { task, curves: [] }, { live: true });
  const lossName = 'training loss';
  const valName = `validation ${METRIC_NAMES[key] || key}`;
  const seen = new Set();

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      await api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      epochText.textContent = 'Cancel asked for: the worker stops at its next progress point.';
    } catch (err) {
      cancel.disabled = false;
      actions.append(errorBox(err));
    }
  });

  function onProgress(j) {
    const d = j.progress_detail || {};
    if (Number.isFinite(d.epoch) && Number.isFinite(d.train_loss) && !seen.has(d.epoch)) {
      seen.add(d.epoch);
      charts.loss.append(lossName, [d.epoch, d.train_loss]);
      if (Number.isFinite(d.val)) charts.val.append(valName, [d.epoch, d.val]);
    }
    if (d.phase === 'trigger search' && Number.isFinite(d.searched)) {
      epochText.textContent = `Trigger search before training: ${d.searched} of ${d.items} networks`;
    }
    if (Number.isFinite(d.epoch) && d.epoch > 0) {
      const parts = [`Epoch ${d.epoch} of ${d.epochs ?? p.epochs}`];
      if (Number.isFinite(d.train_loss)) parts.push(`training loss ${fmt(d.train_loss)}`);
      if (Number.isFinite(d.val)) parts.push(`validation ${METRIC_NAMES[d.val_metric] || d.val_metric || ''} ${fmt(d.val)}`);
      if (Number.isFinite(d.eta_s) && !isTerminal(j)) parts.push(`about ${duration(d.eta_s)} left`);
      epochText.textContent = parts.join(' \u00b7 ');
    }
  }

  async function finish(j) {
    cancel.disabled = true;
    if (j.status !== 'succeeded') {
      announce(`Training ${j.status}`);
      outcome.replaceChildren(el('p', { class: 'error' }, `Training ${j.status}: ${j.error || 'no reason recorded'}`),
        el('p', null, link(`#/metanetworks/${encodeURIComponent(p.name)}`, `Metanetwork ${p.name}`), ' (earlier versions, if any)'));
      return;
    }
    const r = j.result || {};
    const ref = `${r.metanetwork || p.name}@${r.version}`;
    announce(`Training done: ${ref}`);
    outcome.replaceChildren(el('p', { class: 'notice' }, `Done: ${r.epochs_run} epochs run, the weights of epoch ${r.best_epoch + 1} kept. `,
      link(`#/metanetworks/${encodeURIComponent(ref)}`, `Open metanetwork ${ref}`)));
    try {
      const detail = await api(`/v1/metanetworks/${encodeURIComponent(ref)}`);
      const rows = (detail.card && detail.card.curves) || [];
      if (rows.length) { // every epoch, also those that ended between two events
        charts.loss.update([{ name: lossName, points: rows.map((row) => [row.epoch + 1, row.train_loss]) }]);
        charts.val.update([{ name: valName, points: rows.filter((row) => Number.isFinite(row[key])).map((row) => [row.epoch + 1, row[key]]) }]);
        const best = rows.find((row) => row.epoch === detail.card.best_epoch);
        if (best) charts.val.setMarkers([{ x: best.epoch + 1, y: best[key], label: 'kept (best validation)' }]);
      }
      const metrics = el('div', { id: 'training-metrics' });
      outcome.append(metrics);
      metricsChart(metrics, detail);
    } catch (err) { outcome.append(errorBox(err)); }
  }

  onProgress(job);
  if (isTerminal(job)) {
    await finish(job);
    return undefined;
  }
  let ended = false;
  const close = jobEvents(job.id, {
    onEvent: (j, name) => {
      if (name !== 'job' || ended) return;
      status.update(j);
      onProgress(j);
      if (isTerminal(j)) {
        ended = true;
        finish(j);
      }
    },
    onError: (err) => outcome.append(errorBox(err)),
  });
  return close;
}
