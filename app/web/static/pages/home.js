import { api, upload } from '../api.js';
import { announce } from '../app.js';
import { el, errorBox, fmtBytes, fmtInt, fmtPct, link, statusBadge, table, timeEl } from '../format.js';

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
  await recentActivity(recent);
}

async function uploadPanel(metanetworksPromise) {
  const input = el('input', { type: 'file', id: 'upload-file', name: 'file', accept: '.safetensors,.pt,.pth,.bin,.ckpt' });
  const zone = el('label', { class: 'dropzone', for: 'upload-file', id: 'dropzone' },
    el('strong', null, 'Drop a checkpoint here'),
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
  async function send(file) {
    if (busy || !file) return;
    busy = true;
    errors.replaceChildren();
    progress.hidden = false;
    progress.value = 0;
    status.textContent = `Uploading ${file.name} (${fmtBytes(file.size)})\u2026`;
    let lastSaid = -1;
    try {
      const checkpoint = await upload(file, {
        query: { activation: activation.value, input_shape: inputShape.value.trim() },
        onProgress: (fraction) => {
          progress.value = fraction;
          const tenth = Math.floor(fraction * 10);
          if (tenth !== lastSaid) { // announce in steps, not on every event
            lastSaid = tenth;
            status.textContent = fraction >= 1 ? `Uploaded ${file.name}; reading it\u2026` : `Uploading ${file.name}: ${fmtPct(fraction)}`;
          }
        },
      });
      progress.value = 1;
      status.textContent = `Stored as checkpoint #${checkpoint.id} (${fmtInt(checkpoint.parameter_count)} parameters).`;
      const jobs = await askMetanetworks(checkpoint, ask.value, await metanetworksPromise, errors);
      announce(`Checkpoint ${checkpoint.id} stored`);
      const query = jobs.length ? `?jobs=${jobs.join(',')}` : '';
      window.location.hash = `#/checkpoints/${checkpoint.id}${query}`;
    } catch (err) {
      status.textContent = `Upload of ${file.name} failed.`;
      errors.replaceChildren(errorBox(err));
    } finally {
      busy = false;
      input.value = '';
    }
  }

  input.addEventListener('change', () => send(input.files[0]));
  for (const name of ['dragenter', 'dragover']) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add('dragover'); });
  }
  for (const name of ['dragleave', 'dragend']) zone.addEventListener(name, () => zone.classList.remove('dragover'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragover');
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) send(files[0]);
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

// Queue a prediction per chosen metanetwork; returns the job ids. A metanetwork that
// refuses the checkpoint (422: no architecture, outside its domain) is said in words.
async function askMetanetworks(checkpoint, choice, metanetworks, errors) {
  if (!choice) return [];
  const names = choice === '*'
    ? [...new Set((metanetworks || []).filter((m) => m.status === 'ready').map((m) => m.name))]
    : [choice];
  const jobs = [];
  for (const name of names) {
    try {
      const job = await api('/v1/predictions', { method: 'POST', json: { checkpoint_id: checkpoint.id, metanetwork: name } });
      jobs.push(job.id);
    } catch (err) {
      errors.append(errorBox(err));
    }
  }
  return jobs;
}

async function recentActivity(section) {
  const [jobs, checkpoints] = await Promise.allSettled([
    api('/v1/jobs', { query: { limit: 8 } }),
    api('/v1/checkpoints', { query: { limit: 5 } }),
  ]);
  const grid = el('div', { class: 'grid' });
  section.append(grid);
  if (jobs.status === 'fulfilled') {
    grid.append(el('div', null, table({
      caption: 'Latest jobs',
      columns: [
        { label: 'Job', value: (j) => link(`#/jobs/${j.id}`, `#${j.id} ${j.kind}`) },
        { label: 'Status', value: (j) => statusBadge(j.status) },
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
}
