import { api, upload } from '../api.js';
import { announce } from '../app.js';
import { el, errorBox, fmtBytes, fmtInt, fmtPct, link, table, timeEl } from '../format.js';
import { liveStatus } from '../job_view.js';
import { answer } from './predictions.js';

const ACTIVATIONS = ['relu', 'gelu', 'gelu(tanh)', 'silu', 'tanh', 'sigmoid', 'leaky_relu(0.2)', 'sine(30)'];

export async function render(root) {
  root.append(
    el('h1', null, 'Weightscope'),
    el('p', { class: 'lead' }, 'Upload a neural-network checkpoint to see its architecture and parameter graph, ',
      'ask metanetworks what it is and how well it will generalize, and merge it with others.'));
  const metanetworks = api('/v1/metanetworks').catch(() => []);
  root.append(await uploadPanel(metanetworks));
  const recent = el('section', { 'aria-labelledby': 'recent-heading' }, el('h2', { id: 'recent-heading' }, 'Recent activity'));
  root.append(recent);
  const closers = [];
  await recentActivity(recent, closers);
  return () => closers.forEach((close) => close());
}

async function uploadPanel(metanetworksPromise) {
  const input = el('input', { type: 'file', id: 'upload-file', name: 'file', multiple: true, accept: '.safetensors,.pt,.pth,.bin,.ckpt' });
  const zone = el('label', { class: 'dropzone', for: 'upload-file', id: 'dropzone' },
    el('strong', null, 'Drop checkpoints here'),
    el('span', null, ' or choose a file (safetensors, or a PyTorch weights-only zip)'),
    input);
  const ask = el('select', { id: 'upload-ask', name: 'ask' },
    el('option', { value: '*' }, 'every metanetwork'), el('option', { value: '' }, 'no metanetwork (just store it)'));
  const activation = el('select', { id: 'upload-activation', name: 'activation' },
    el('option', { value: '' }, 'as read from the file'), ACTIVATIONS.map((a) => el('option', { value: a }, a)));
  const inputShape = el('input', { id: 'upload-input-shape', name: 'input_shape', placeholder: 'e.g. 1,28,28', size: 12, pattern: '\\d{1,6}(,\\d{1,6}){0,3}' });
  const progress = el('progress', { id: 'upload-progress', max: 1, value: 0, 'aria-label': 'Upload progress', hidden: true });
  const status = el('p', { id: 'upload-status', role: 'status', 'aria-live': 'polite' });
  const errors = el('div', { 'aria-live': 'assertive' });

  metanetworksPromise.then((list) => {
    for (const name of [...new Set((list || []).filter((m) => m.status === 'ready').map((m) => m.name))]) {
      ask.append(el('option', { value: name }, name));
    }
  });

  let busy = false;
  async function sendOne(file, index, count) {
    const which = count > 1 ? ` (${index + 1} of ${count})` : '';
    progress.hidden = false;
    progress.value = 0;
    status.textContent = `Uploading ${file.name}${which}, ${fmtBytes(file.size)}\u2026`;
    let lastSaid = -1;
    const checkpoint = await upload(file, {
      query: { activation: activation.value, input_shape: inputShape.value.trim() },
      onProgress: (fraction) => {
        progress.value = fraction;
        const tenth = Math.floor(fraction * 10);
        if (tenth !== lastSaid) { // said in steps of 10 %, not on every event
          lastSaid = tenth;
          status.textContent = fraction >= 1 ? `Uploaded ${file.name}${which}; reading it\u2026` : `Uploading ${file.name}${which}: ${fmtPct(fraction)}`;
        }
      },
    });
    progress.value = 1;
    status.textContent = `Stored ${file.name} as checkpoint #${checkpoint.id} (${fmtInt(checkpoint.parameter_count)} parameters).`;
    const { jobs, refused } = await askMetanetworks(checkpoint, ask.value, await metanetworksPromise);
    if (refused.length) rememberRefusals(checkpoint.id, refused);
    return { checkpoint, jobs };
  }

  async function send(files) {
    if (busy || !files.length) return;
    busy = true;
    errors.replaceChildren();
    const stored = [];
    try {
      for (const [index, file] of files.entries()) {
        try {
          stored.push(await sendOne(file, index, files.length));
        } catch (err) {
          status.textContent = `Upload of ${file.name} failed.`;
          errors.append(errorBox(err, `${file.name}: `));
        }
      }
    } finally {
      busy = false;
      input.value = '';
    }
    if (!stored.length) return;
    announce(stored.length === 1 ? `Checkpoint ${stored[0].checkpoint.id} stored` : `${stored.length} checkpoints stored`);
    if (files.length === 1) {
      const { checkpoint, jobs } = stored[0];
      window.location.hash = `#/checkpoints/${checkpoint.id}${jobs.length ? `?jobs=${jobs.join(',')}` : ''}`;
    } else {
      errors.prepend(el('p', { class: 'notice' }, `Stored ${stored.length} of ${files.length} files: `,
        stored.map(({ checkpoint }, i) => [i ? ', ' : '', link(`#/checkpoints/${checkpoint.id}`, `#${checkpoint.id}`)])));
    }
  }

  input.addEventListener('change', () => send([...input.files]));
  for (const name of ['dragenter', 'dragover']) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add('dragover'); });
  }
  for (const name of ['dragleave', 'dragend']) zone.addEventListener(name, () => zone.classList.remove('dragover'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragover');
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) send([...files]);
  });

  return el('section', { class: 'card upload', 'aria-labelledby': 'upload-heading' },
    el('h2', { id: 'upload-heading' }, 'Upload a checkpoint'),
    zone,
    el('div', { class: 'upload-options' },
      el('div', { class: 'field' }, el('label', { for: 'upload-ask' }, 'Then ask'), ask),
      el('div', { class: 'field' }, el('label', { for: 'upload-activation' }, 'Activation (inferred architectures)'), activation),
      el('div', { class: 'field' }, el('label', { for: 'upload-input-shape' }, 'Input shape (inferred architectures)'), inputShape)),
    el('div', { class: 'upload-row' }, progress, status, errors));
}

// Queue a prediction per chosen metanetwork; returns the job ids and, per metanetwork that
// refused (422: no architecture, outside its domain), its reason in words.
async function askMetanetworks(checkpoint, choice, metanetworks) {
  const jobs = [];
  const refused = [];
  if (!choice) return { jobs, refused };
  const names = choice === '*'
    ? [...new Set((metanetworks || []).filter((m) => m.status === 'ready').map((m) => m.name))]
    : [choice];
  for (const name of names) {
    try {
      const job = await api('/v1/predictions', { method: 'POST', json: { checkpoint_id: checkpoint.id, metanetwork: name } });
      jobs.push(job.id);
    } catch (err) {
      refused.push({ metanetwork: name, detail: err.message });
    }
  }
  return { jobs, refused };
}

// The checkpoint page says which metanetworks were not asked, and why (read once there).
function rememberRefusals(checkpointId, refused) {
  try { sessionStorage.setItem(`weightscope.refused.${checkpointId}`, JSON.stringify(refused)); } catch { /* no storage: not said */ }
}

async function recentActivity(section, closers) {
  const [jobs, checkpoints, predictions] = await Promise.allSettled([
    api('/v1/jobs', { query: { limit: 8 } }),
    api('/v1/checkpoints', { query: { limit: 5 } }),
    api('/v1/predictions', { query: { limit: 5 } }),
  ]);
  const grid = el('div', { class: 'grid' });
  section.append(grid);
  if (jobs.status === 'fulfilled') {
    grid.append(el('div', null, table({
      caption: 'Latest jobs',
      columns: [
        { label: 'Job', value: (j) => link(`#/jobs/${j.id}`, `#${j.id} ${j.kind}`) },
        { label: 'Status', value: (j) => liveStatus(j, closers) },
        { label: 'Queued', value: (j) => timeEl(j.created_at) },
      ],
      rows: jobs.value.items,
      empty: 'No jobs yet.',
    }), el('p', null, link('#/jobs', 'All jobs'))));
  } else grid.append(errorBox(jobs.reason));
  if (checkpoints.status === 'fulfilled') {
    grid.append(el('div', null, table({
      caption: 'Latest checkpoints',
      columns: [
        { label: 'Checkpoint', value: (c) => link(`#/checkpoints/${c.id}`, `#${c.id} ${c.filename || ''}`) },
        { label: 'Parameters', value: (c) => fmtInt(c.parameter_count), numeric: true },
        { label: 'Uploaded', value: (c) => timeEl(c.created_at) },
      ],
      rows: checkpoints.value.items,
      empty: 'No checkpoints yet.',
    }), el('p', null, link('#/checkpoints', 'All checkpoints'))));
  } else if (jobs.status === 'fulfilled') grid.append(errorBox(checkpoints.reason));
  if (predictions.status === 'fulfilled') {
    grid.append(el('div', null, table({
      caption: 'Latest predictions',
      columns: [
        { label: 'Prediction', value: (p) => link(`#/predictions/${p.id}`, `#${p.id}`) },
        { label: 'Checkpoint', value: (p) => link(`#/checkpoints/${p.checkpoint_id}`, `#${p.checkpoint_id}`) },
        { label: 'Answer', value: (p) => `${p.metanetwork}: ${answer(p)}` },
      ],
      rows: predictions.value.items,
      empty: 'No predictions yet.',
    }), el('p', null, link('#/predictions', 'All predictions'))));
  }
}

