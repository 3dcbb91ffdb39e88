// The one way the page talks to the API: JSON in and out, problem+json errors as ApiError,
// the stored API key (if any) sent as a bearer token on every call.

const KEY_STORAGE = 'weightscope.apiKey';

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && (problem.detail || problem.title);
    super(detail || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem || null;
  }
}

export function getApiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch { /* storage disabled: the key lives for this call only */ }
}

function authHeaders() {
  const key = getApiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) value.forEach((v) => u.searchParams.append(name, String(v)));
    else u.searchParams.set(name, String(value));
  }
  return u.pathname + u.search;
}

async function problemOf(response) {
  const text = await response.text();
  try { return JSON.parse(text); } catch { return { title: response.statusText || text }; }
}

export async function api(path, { method = 'GET', query, json, form, signal } = {}) {
  const headers = { Accept: 'application/json, application/problem+json', ...authHeaders() };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // FormData: the browser sets the multipart boundary
  }
  const response = await fetch(url(path, query), { method, headers, body, signal });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

// Upload one file as multipart (field "file"); XMLHttpRequest because fetch has no upload
// progress. Resolves with the checkpoint (201 new, 200 already stored).
export function upload(file, { query, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url('/v1/checkpoints', query));
    xhr.setRequestHeader('Accept', 'application/json, application/problem+json');
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    if (onProgress) {
      xhr.upload.addEventListener('progress', (e) => {
        if (e.lengthComputable) onProgress(e.loaded / e.total, e.loaded, e.total);
      });
      xhr.upload.addEventListener('load', () => onProgress(1, file.size, file.size));
    }
    xhr.addEventListener('load', () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = { title: xhr.statusText } }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, { title: 'network error: the upload did not reach the server' })));
    xhr.addEventListener('abort', () => reject(new ApiError(0, { title: 'upload aborted' })));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

// Parse a text/event-stream body into {event, data, id} records.
export function parseSse(buffer) {
  const events = [];
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    let event = 'message';
    let id = null;
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
    if (data.length) events.push({ event, id, data: data.join('\n') });
  }
  return { events, rest };
}

// Follow GET /v1/jobs/{id}/events with fetch (EventSource cannot send the Authorization
// header). onEvent(job, eventName) per `job` event (and `deleted`), onEnd() when the stream
// ends, onError(err) on failure. Returns close().
export function jobEvents(jobId, { onEvent, onEnd, onError } = {}) {
  const controller = new AbortController();
  let closed = false;
  (async () => {
    try {
      const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
        headers: { Accept: 'text/event-stream', ...authHeaders() },
        signal: controller.signal,
      });
      if (!response.ok) throw new ApiError(response.status, await problemOf(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const parsed = parseSse(buffer);
        buffer = parsed.rest;
        for (const e of parsed.events) {
          let payload;
          try { payload = JSON.parse(e.data); } catch { payload = e.data; }
          if (onEvent) onEvent(payload, e.event);
        }
      }
      if (!closed && onEnd) onEnd();
    } catch (err) {
      if (closed || err.name === 'AbortError') return;
      if (onError) onError(err);
    }
  })();
  return () => { closed = true; controller.abort(); };
}

const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

export function isTerminal(job) {
  return Boolean(job && TERMINAL.has(job.status));
}

// Resolve with the job once terminal (following its event stream); onEvent(job) per change.
export function waitJob(jobId, onEvent) {
  return new Promise((resolve, reject) => {
    let last = null;
    const close = jobEvents(jobId, {
      onEvent: (job, name) => {
        if (name === 'deleted') { close(); reject(new ApiError(404, job)); return; }
        if (name !== 'job') return;
        last = job;
        if (onEvent) onEvent(job);
        if (isTerminal(job)) { close(); resolve(job); }
      },
      onEnd: async () => {
        if (isTerminal(last)) { resolve(last); return; }
        try { resolve(await api(`/v1/jobs/${jobId}`)); } catch (err) { reject(err); }
      },
      onError: reject,
    });
  });
}

// Save a file the API serves (a plain link could not carry the API key): fetched as a blob
// with the key, then handed to the browser's download.
export async function download(path, filename) {
  const response = await fetch(url(path), { headers: authHeaders() });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  const blob = await response.blob();
  const objectUrl = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = objectUrl;
  a.download = filename || '';
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(objectUrl), 10000);
}
