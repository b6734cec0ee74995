// The imesh web page: a client of the server's /v1 API, the one imesh generate uses.
//
// The token (when the server has one) comes from ?token= once or from the login form and is
// kept in this tab's sessionStorage; it travels only in Authorization headers. Files are
// fetched with it and shown or downloaded through blob: URLs, so no URL ever carries it.
// Progress is polled from GET /v1/jobs/{id}; the gallery from GET /v1/jobs.

const TOKEN_KEY = 'imesh-token';
const OPTIONS_KEY = 'imesh-options';
const POLL_MS = 600;
const GALLERY_MS = 2500;
const HEALTH_MS = 5000;
const ACTIVE_POLLS = 6;
const GALLERY_READS = 24;
// The page's option fields (a subset of imesh generate's flags, as GET /v1/fields describes them).
const SHOWN = ['model', 'seed', 'steps', 'texture-size', 'format', 'refine-texture', 'refine-steps', 'preview'];
// Server stages → the steps the page shows.
const STEPS = [
  { label: 'Cut-out', stages: ['read', 'prepare'] },
  { label: 'Views', stages: ['load', 'multiview'] },
  { label: 'Mesh', stages: ['reconstruct', 'mesh'] },
  { label: 'Texture', stages: ['texture', 'refine'] },
  { label: 'Check', stages: ['quality'] },
  { label: 'Export', stages: ['export', 'preview'] },
];

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  health: null,
  fields: new Map(),
  jobs: new Map(), // id -> Job, in the server's order (oldest first)
  selected: null,
  viewer: undefined, // MeshViewer once made; null when this browser cannot draw WebGL
  viewerJob: null,
  started: false,
};

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = 'GET', body, raw = false, allow = [] } = {}) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(path, { method, body, headers, cache: 'no-store' });
  } catch {
    throw new ApiError('cannot reach the imesh server', 0);
  }
  if (!response.ok && !allow.includes(response.status)) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error || message;
    } catch { /* not our JSON: the status line says it */ }
    if (response.status === 401) askToken(state.token ? 'wrong token' : null);
    throw new ApiError(oneLine(message), response.status);
  }
  return raw ? response : response.json();
}

const blobOf = async (path) => (await api(path, { raw: true })).blob();

function oneLine(text) {
  return String(text).replace(/\s+/g, ' ').trim();
}

// ------------------------------------------------------------------ the one-line error

function showError(message) {
  $('error-text').textContent = oneLine(message);
  $('error').hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
}

// ------------------------------------------------------------------ token

function takeTokenFromAddress() {
  const url = new URL(window.location.href);
  if (!url.searchParams.has('token')) return;
  state.token = url.searchParams.get('token');
  sessionStorage.setItem(TOKEN_KEY, state.token);
  url.searchParams.delete('token');
  history.replaceState(null, '', url.pathname + url.search + url.hash);
}

function askToken(problem) {
  const dialog = $('login');
  $('login-error').hidden = !problem;
  $('login-error').textContent = problem || '';
  if (!dialog.open) dialog.showModal();
  $('login-token').focus();
}

async function login(event) {
  event.preventDefault();
  state.token = $('login-token').value.trim();
  $('login-error').hidden = true;
  try {
    await api('/v1/health', { allow: [503] });
  } catch (error) {
    if (error.status !== 401) askToken(error.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('login').close();
  $('login-token').value = '';
  start();
}

// ------------------------------------------------------------------ server state

async function refreshHealth() {
  const box = $('server');
  try {
    const h = await api('/v1/health', { allow: [503] });
    state.health = h;
    const workers = `${h.workers.ready}/${h.workers.total} worker${h.workers.total === 1 ? '' : 's'} ready`;
    const queue = h.queue_depth ? ` · ${h.queue_depth} queued` : '';
    box.dataset.status = h.status === 'ok' ? 'ok' : 'warn';
    // The model and device go on wide screens only; the workers' state always shows.
    const long = document.createElement('span');
    long.className = 'srv-long';
    long.textContent = `${h.model} · ${h.device} · `;
    const short = document.createElement('span');
    short.textContent = h.status === 'ok' ? `${workers}${queue}` : `${h.status} · ${workers}`;
    $('server-text').replaceChildren(long, short);
    $('footer-version').textContent = `imesh ${h.version}`;
    $('footer-ttl').textContent = duration(h.limits.ttl_seconds);
    $('drop-limit').textContent = `PNG, JPEG, WebP… up to ${megabytes(h.limits.max_upload_bytes)} each`;
    return true;
  } catch (error) {
    box.dataset.status = 'down';
    $('server-text').textContent = error.status === 401 ? 'token needed' : 'server unreachable';
    return false;
  }
}

// ------------------------------------------------------------------ options

async function loadFields() {
  const { fields } = await api('/v1/fields');
  state.fields = new Map(fields.map((f) => [f.name, f]));
  const model = $('opt-model');
  model.replaceChildren(...state.fields.get('model').choices.map((name) => {
    const loaded = name === state.health.model;
    const option = new Option(loaded ? name : `${name} (not loaded)`, name, loaded, loaded);
    option.disabled = !loaded;
    return option;
  }));
  model.title = `This server's workers loaded ${state.health.model}; another model needs imesh serve --model NAME.`;
  $('opt-format').replaceChildren(...state.fields.get('format').choices.map((f) => new Option(f.toUpperCase(), f)));
  for (const name of SHOWN) {
    const input = $(`opt-${name}`);
    const field = state.fields.get(name);
    if (input && field && field.help) input.closest('label').title = field.help;
  }
  const steps = state.fields.get('steps');
  const match = /euler-a (\d+)/.exec(steps.help || '');
  $('opt-steps').placeholder = match ? match[1] : 'default';
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(OPTIONS_KEY) || '{}');
  } catch { /* a broken entry is the defaults */ }
  setOptions(saved);
}

function defaultOf(name) {
  const field = state.fields.get(name);
  if (name === 'format') return 'glb';
  if (name === 'model') return state.health.model;
  return field.default;
}

function setOptions(values) {
  for (const name of SHOWN) {
    const input = $(`opt-${name}`);
    const value = name in values ? values[name] : defaultOf(name);
    if (input.type === 'checkbox') input.checked = Boolean(value);
    else if (name !== 'model') input.value = value ?? '';
  }
  $('opt-refine-steps').disabled = !$('opt-refine-texture').checked;
  summarizeOptions();
}

function readOptions() {
  const out = {};
  for (const name of SHOWN) {
    if (name === 'model') continue; // the workers' model: sending it changes nothing
    const input = $(`opt-${name}`);
    const value = input.type === 'checkbox' ? input.checked : input.value.trim();
    if (value === '' || value === null) continue;
    out[name] = input.type === 'number' ? Number(value) : value;
  }
  return out;
}

function saveOptions() {
  localStorage.setItem(OPTIONS_KEY, JSON.stringify(readOptions()));
  $('opt-refine-steps').disabled = !$('opt-refine-texture').checked;
  summarizeOptions();
}

// The folded options (phones) say what the next job gets.
function summarizeOptions() {
  const o = readOptions();
  const steps = o.steps || $('opt-steps').placeholder;
  const refine = o['refine-texture'] ? `refine ${o['refine-steps'] ?? ''}`.trim() : 'no refine';
  $('options-summary').textContent = [`${steps} step${String(steps) === '1' ? '' : 's'}`, `${o['texture-size']} px`, refine,
    String(o.format || 'glb').toUpperCase(), `seed ${o.seed}`].join(' · ');
}

// ------------------------------------------------------------------ submitting

async function submitFiles(files) {
  if (!state.started || !files.length) return;
  clearError();
  const options = readOptions();
  let first = null;
  for (const file of files) {
    const limit = state.health ? state.health.limits.max_upload_bytes : Infinity;
    if (file.size > limit) {
      showError(`${file.name}: ${megabytes(file.size)} is over this server's upload limit of ${megabytes(limit)}`);
      continue;
    }
    const form = new FormData();
    form.append('image', file, file.name);
    for (const [name, value] of Object.entries(options)) {
      // The defaults are the server's: send only what differs, as imesh generate does.
      if (value !== defaultOf(name) && !(name === 'refine-steps' && !options['refine-texture'])) form.append(name, String(value));
    }
    try {
      const status = await api('/v1/jobs', { method: 'POST', body: form });
      const job = upsert(status);
      job.mine = true;
      job.photo = URL.createObjectURL(file); // the card shows the photo until the cut-out is there
      renderCard(job);
      first = first || job;
      renderGallery();
    } catch (error) {
      showError(error.message.includes(file.name) ? error.message : `${file.name}: ${error.message}`);
    }
  }
  if (first) select(first.id);
}

// ------------------------------------------------------------------ jobs

class Job {
  constructor(id, name) {
    this.id = id;
    this.name = name;
    this.status = { id, name, state: 'queued' };
    this.blobs = new Map(); // file name -> Blob, fetched once
    this.urls = new Map(); // file name -> blob: URL for <img>
    this.card = makeCard(this);
    this.mine = false;
  }

  get state() {
    return this.status.state;
  }

  get finished() {
    return ['done', 'failed', 'cancelled'].includes(this.state);
  }

  file(kind) {
    return (this.status.files || []).find((f) => f.kind === kind) || null;
  }

  async blob(name) {
    if (!this.blobs.has(name)) this.blobs.set(name, await blobOf(`/v1/jobs/${this.id}/files/${encodeURIComponent(name)}`));
    return this.blobs.get(name);
  }

  async url(name) {
    if (!this.urls.has(name)) this.urls.set(name, URL.createObjectURL(await this.blob(name)));
    return this.urls.get(name);
  }

  forget() {
    if (this.photo) URL.revokeObjectURL(this.photo);
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
    this.urls.clear();
    this.blobs.clear();
    this.card.remove();
  }
}

function upsert(status) {
  let job = state.jobs.get(status.id);
  if (!job) {
    job = new Job(status.id, status.name);
    state.jobs.set(status.id, job);
  }
  if (status.state) update(job, status);
  return job;
}

function update(job, status) {
  const before = job.status.state;
  job.status = { ...job.status, ...status };
  renderCard(job);
  if (state.selected === job.id) renderDetail(job, before !== job.state);
}

// Step-by-step progress for the few jobs one can watch: the selected one, then running ones,
// then this tab's queued ones. A server with a long queue costs the page a few requests a tick.
async function pollActive() {
  const active = [...state.jobs.values()].filter((job) => !job.finished);
  const rank = (job) => (job.id === state.selected ? 0 : job.state === 'running' ? 1 : job.mine ? 2 : 3);
  for (const job of active.sort((a, b) => rank(a) - rank(b)).slice(0, ACTIVE_POLLS)) {
    if (rank(job) === 3) break;
    try {
      update(job, await api(`/v1/jobs/${job.id}`));
    } catch (error) {
      if (error.status === 404) drop(job.id);
    }
  }
  setTimeout(pollActive, POLL_MS);
}

// Every job the server holds: new ones join (other clients' too), gone ones leave, and a job
// whose state changed is read once in full (its files, record, queue position).
async function pollGallery() {
  try {
    const listed = await api('/v1/jobs');
    const ids = new Set(listed.map((j) => j.id));
    for (const id of [...state.jobs.keys()]) if (!ids.has(id)) drop(id);
    let reads = 0;
    for (const entry of listed) {
      const known = state.jobs.get(entry.id);
      if (known && known.state === entry.state) continue;
      if (reads++ >= GALLERY_READS) break; // the rest on the next round
      const status = await api(`/v1/jobs/${entry.id}`);
      upsert(status);
    }
    renderGallery();
  } catch {
    // A job deleted between the list and its read, or the server gone: the next round sees it,
    // and the health line says when the server is down.
  }
  setTimeout(pollGallery, GALLERY_MS);
}

function drop(id) {
  const job = state.jobs.get(id);
  if (!job) return;
  state.jobs.delete(id);
  job.forget();
  if (state.selected === id) closeDetail();
  renderGallery();
}

async function deleteSelected() {
  const job = state.jobs.get(state.selected);
  if (!job) return;
  try {
    await api(`/v1/jobs/${job.id}`, { method: 'DELETE' });
    drop(job.id);
  } catch (error) {
    showError(`${job.name}: ${error.message}`);
  }
}

// ------------------------------------------------------------------ gallery

function makeCard(job) {
  const card = $('card-tpl').content.firstElementChild.cloneNode(true);
  card.dataset.id = job.id;
  card.querySelector('.card-open').addEventListener('click', () => select(job.id));
  card.querySelector('.card-name').textContent = job.name;
  card.querySelector('.card-name').title = job.name;
  return card;
}

function renderCard(job) {
  const card = job.card;
  const s = job.status;
  card.dataset.state = s.state;
  card.classList.toggle('selected', state.selected === job.id);
  const badge = card.querySelector('.badge');
  badge.textContent = badgeText(s);
  badge.dataset.kind = badgeKind(s);
  card.querySelector('.bar > span').style.width = `${Math.round(fraction(s) * 100)}%`;
  const cutout = job.file('cutout');
  const img = card.querySelector('img');
  if (cutout && img.dataset.shows !== 'cutout') {
    img.dataset.shows = 'cutout';
    job.url(cutout.name).then((url) => { img.src = url; }).catch(() => {});
  } else if (!cutout && job.photo && !img.dataset.shows) {
    img.dataset.shows = 'photo';
    img.src = job.photo;
  }
}

function renderGallery() {
  const list = $('gallery');
  const jobs = [...state.jobs.values()].reverse(); // newest first
  jobs.forEach((job, i) => {
    if (list.children[i] !== job.card) list.insertBefore(job.card, list.children[i] || null);
  });
  $('empty').hidden = jobs.length > 0;
  const active = jobs.filter((j) => !j.finished).length;
  $('count').textContent = jobs.length ? `${jobs.length} job${jobs.length === 1 ? '' : 's'}${active ? ` · ${active} running or queued` : ''}` : '';
}

// ------------------------------------------------------------------ progress text

function stepIndex(stage) {
  return STEPS.findIndex((step) => step.stages.includes(stage));
}

function fraction(s) {
  if (s.state === 'done') return 1;
  if (s.state !== 'running') return 0;
  const i = Math.max(0, stepIndex(s.stage));
  const inner = s.total ? Math.min(1, s.step / s.total) : 0;
  return (i + inner) / STEPS.length;
}

function badgeText(s) {
  if (s.state === 'queued') return s.position ? `queued · ${s.position} ahead` : 'queued';
  if (s.state === 'running') return s.stage ? `${stageLabel(s)}` : 'starting';
  if (s.state === 'done') return s.result && s.result.status === 'suspect' ? 'suspect' : 'done';
  return s.state;
}

function badgeKind(s) {
  if (s.state === 'done') return s.result && s.result.status === 'suspect' ? 'warn' : 'ok';
  if (s.state === 'failed') return 'bad';
  if (s.state === 'cancelled') return 'muted';
  return 'busy';
}

function stepLabel(stage) {
  const i = stepIndex(stage);
  return i >= 0 ? STEPS[i].label : stage;
}

function stageLabel(s) {
  return s.total ? `${stepLabel(s.stage)} ${s.step}/${s.total}` : stepLabel(s.stage);
}

// What each server stage does, in words; multiview and refine also count their steps.
const DOING = {
  read: 'Reading the photo', prepare: 'Cutting out the object', load: 'Loading the models',
  multiview: 'Generating the six views', reconstruct: 'Reconstructing the shape', mesh: 'Extracting the mesh',
  texture: 'Baking the texture', refine: 'Refining the texture', quality: 'Checking the mesh against the views',
  export: 'Writing the files', preview: 'Rendering the preview sheet',
};

function progressText(s) {
  if (s.state === 'queued') return s.position ? `Waiting: ${s.position} job${s.position === 1 ? '' : 's'} ahead` : 'Waiting for a worker';
  if (s.state === 'running') {
    const doing = DOING[s.stage] || (s.stage ? `Stage ${s.stage}` : 'Starting');
    return s.total ? `${doing}: step ${s.step} of ${s.total}` : `${doing}…`;
  }
  if (s.state === 'done' && s.result) return `Done in ${s.result.total_seconds.toFixed(1)} s`;
  if (s.state === 'cancelled') return 'Cancelled';
  return '';
}

// ------------------------------------------------------------------ the selected job

function select(id) {
  const job = state.jobs.get(id);
  if (!job) return;
  const previous = state.jobs.get(state.selected);
  state.selected = id;
  if (previous) renderCard(previous);
  renderCard(job);
  $('detail').hidden = false;
  renderDetail(job, true);
  if (window.matchMedia('(max-width: 760px)').matches || job.mine) {
    $('detail').scrollIntoView({ behavior: 'smooth', block: 'start' });
  }
}

function closeDetail() {
  const job = state.jobs.get(state.selected);
  state.selected = null;
  if (job) renderCard(job);
  $('detail').hidden = true;
  if (state.viewer) state.viewer.clear();
  state.viewerJob = null;
  $('viewer').dataset.state = 'empty';
}

function renderDetail(job, changed) {
  const s = job.status;
  const detail = $('detail');
  detail.dataset.id = job.id;
  detail.dataset.state = s.state;
  $('d-name').textContent = job.name;
  $('d-badge').textContent = badgeText(s);
  $('d-badge').dataset.kind = badgeKind(s);

  const at = s.state === 'done' ? STEPS.length : s.state === 'running' ? Math.max(0, stepIndex(s.stage)) : -1;
  $('d-stages').replaceChildren(...STEPS.map((step, i) => {
    const li = document.createElement('li');
    li.textContent = step.label;
    li.dataset.at = i < at ? 'done' : i === at ? 'now' : 'todo';
    return li;
  }));
  $('d-bar').style.width = `${Math.round(fraction(s) * 100)}%`;
  $('d-progress-text').textContent = progressText(s);
  $('d-progress').dataset.state = s.state;

  $('d-failed').hidden = s.state !== 'failed';
  $('d-failed').textContent = s.state === 'failed' ? oneLine(s.error || 'failed') : '';
  const r = s.result;
  const suspect = s.state === 'done' && r && r.status === 'suspect';
  $('d-suspect').hidden = !suspect;
  $('d-suspect').textContent = suspect
    ? 'Suspect: the mesh matches its six views less well than the job asked (min-psnr / min-iou). Look before you use it.'
    : '';

  $('d-delete').textContent = job.finished ? 'Delete this job' : 'Cancel this job';
  renderNumbers(s);
  // Files, pictures and the mesh change only with the state: a progress tick leaves them alone.
  if (!changed && detail.dataset.rendered === `${job.id}:${s.state}`) return;
  detail.dataset.rendered = `${job.id}:${s.state}`;
  renderDownloads(job);
  renderPictures(job);
  if (s.state === 'done') showMesh(job);
  else if (state.viewerJob !== job.id) {
    if (state.viewer) state.viewer.clear();
    state.viewerJob = null;
    $('viewer').dataset.state = 'waiting';
    $('viewer-msg').textContent = s.state === 'failed' || s.state === 'cancelled' ? 'No mesh' : 'The mesh shows here when it is done';
  }
}

function renderNumbers(s) {
  const r = s.result;
  const rows = [];
  if (r && s.state === 'done') {
    rows.push(['Faces', r.faces.toLocaleString()], ['Vertices', r.vertices.toLocaleString()]);
    if (r.quality) {
      rows.push(['View PSNR', r.quality.psnr === null ? 'exact' : `${r.quality.psnr.toFixed(2)} dB`]);
      rows.push(['Silhouette IoU', r.quality.iou === null ? 'exact' : r.quality.iou.toFixed(3)]);
    }
    if (r.psnr_after !== null) rows.push(['Texture fit', `${r.psnr_before.toFixed(1)} → ${r.psnr_after.toFixed(1)} dB`]);
    rows.push(['Seed', String(r.seed)], ['Time', `${r.total_seconds.toFixed(1)} s`]);
    for (const warning of r.warnings || []) rows.push(['Note', warning]);
  }
  $('d-numbers').replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
}

function renderDownloads(job) {
  const box = $('d-downloads');
  box.replaceChildren();
  if (job.state !== 'done') return;
  const mesh = job.file('mesh');
  const parts = (job.status.files || []).filter((f) => f.kind === 'mesh-part');
  const buttons = [];
  if (mesh) {
    const ext = mesh.name.split('.').pop().toLowerCase();
    if (parts.length) {
      const total = mesh.bytes + parts.reduce((n, f) => n + f.bytes, 0);
      buttons.push(button(`${ext.toUpperCase()} + MTL + PNG (.zip)`, total, 'mesh-zip',
        () => save(blobOf(`/v1/jobs/${job.id}/mesh.zip`), `${mesh.name.replace(/\.[^.]+$/, '')}.zip`), true));
    } else {
      buttons.push(button(ext.toUpperCase(), mesh.bytes, 'mesh', () => save(job.blob(mesh.name), mesh.name), true));
    }
  }
  for (const [kind, label] of [['views', 'Views'], ['cutout', 'Cut-out'], ['preview', 'Preview']]) {
    const file = job.file(kind);
    if (file) buttons.push(button(label, file.bytes, kind, () => save(job.blob(file.name), file.name)));
  }
  box.replaceChildren(...buttons);
}

function button(label, bytes, kind, action, primary = false) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = primary ? 'download primary' : 'download';
  b.dataset.kind = kind;
  const name = document.createElement('span');
  name.textContent = label;
  const size = document.createElement('small');
  size.textContent = megabytes(bytes);
  b.append(name, size);
  b.addEventListener('click', action);
  return b;
}

async function save(blobPromise, filename) {
  try {
    const url = URL.createObjectURL(await blobPromise);
    const a = document.createElement('a');
    a.href = url;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    showError(`${filename}: ${error.message}`);
  }
}

async function renderPictures(job) {
  const pictures = [['cutout', 'd-cutout'], ['views', 'd-views'], ['preview', 'd-preview']];
  $('d-pictures').hidden = job.state !== 'done';
  for (const [kind, id] of pictures) {
    const img = $(id);
    const file = job.file(kind);
    img.closest('figure').hidden = !file;
    img.removeAttribute('src');
    if (!file) continue;
    try {
      const url = await job.url(file.name);
      if (state.selected === job.id) img.src = url;
    } catch (error) {
      showError(`${file.name}: ${error.message}`);
    }
  }
}

async function showMesh(job) {
  if (state.viewerJob === job.id) return;
  state.viewerJob = job.id;
  const host = $('viewer');
  const message = $('viewer-msg');
  if (state.viewer === undefined) {
    try {
      const { MeshViewer } = await import('./viewer.js');
      state.viewer = new MeshViewer(host);
    } catch (error) {
      state.viewer = null;
      console.warn('3D view unavailable:', error);
    }
  }
  if (!state.viewer) {
    host.dataset.state = 'unavailable';
    message.textContent = 'This browser cannot draw 3D (no WebGL); the downloads work.';
    return;
  }
  host.dataset.state = 'loading';
  message.textContent = 'Loading the mesh…';
  try {
    const mesh = job.file('mesh');
    const names = (job.status.files || []).filter((f) => f.kind === 'mesh' || f.kind === 'mesh-part').map((f) => f.name);
    const files = new Map();
    for (const name of names) files.set(name, await job.blob(name));
    if (state.viewerJob !== job.id) return;
    const shown = await state.viewer.show({ format: mesh.name.split('.').pop().toLowerCase(), main: mesh.name, files });
    if (state.viewerJob !== job.id) return;
    Object.assign(host.dataset, {
      state: 'loaded', job: job.id, triangles: String(shown.triangles), textured: String(shown.textured),
      textureSize: shown.textureSize ? shown.textureSize.join('x') : '',
    });
    message.textContent = '';
    host.dispatchEvent(new CustomEvent('load', { detail: { job: job.id, ...shown } }));
  } catch (error) {
    host.dataset.state = 'error';
    message.textContent = 'The mesh could not be shown';
    showError(`${job.name}: the 3D view failed: ${error.message || error}`);
  }
}

// ------------------------------------------------------------------ small things

function megabytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 2 ** 20) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MB`;
}

function duration(seconds) {
  if (seconds >= 7200) return `${Math.round(seconds / 3600)} hours`;
  if (seconds >= 120) return `${Math.round(seconds / 60)} minutes`;
  return `${Math.round(seconds)} seconds`;
}

function wireDrop() {
  const drop = $('drop');
  const pick = $('pick');
  drop.addEventListener('click', (e) => {
    if (e.target !== pick) pick.click(); // the input's own click bubbles up here
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      pick.click();
    }
  });
  pick.addEventListener('change', () => {
    const files = [...pick.files];
    pick.value = '';
    submitFiles(files);
  });
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    submitFiles([...e.dataTransfer.files]);
  });
  // A photo dropped anywhere else on the page is a job too, not the browser opening the file.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) submitFiles([...e.dataTransfer.files]);
  });
}

async function start() {
  if (state.started) return;
  if (!(await refreshHealth())) {
    if (!$('login').open) showError(`${$('server-text').textContent}: reload the page once the server runs`);
    return;
  }
  try {
    await loadFields();
  } catch (error) {
    showError(error.message);
    return;
  }
  state.started = true;
  document.body.dataset.ready = 'true';
  setInterval(refreshHealth, HEALTH_MS);
  pollGallery();
  pollActive();
}

takeTokenFromAddress();
wireDrop();
if (window.matchMedia('(max-width: 760px)').matches) $('options-details').open = false;
$('options').addEventListener('change', saveOptions);
$('options').addEventListener('input', saveOptions);
$('opt-reset').addEventListener('click', () => {
  localStorage.removeItem(OPTIONS_KEY);
  setOptions({});
});
$('error-close').addEventListener('click', clearError);
$('d-close').addEventListener('click', closeDetail);
$('d-delete').addEventListener('click', deleteSelected);
$('login-form').addEventListener('submit', login);
for (const id of ['d-cutout', 'd-views', 'd-preview']) {
  $(id).addEventListener('click', (e) => {
    if (!e.target.src) return;
    $('zoom-img').src = e.target.src;
    $('zoom-img').alt = e.target.alt;
    $('zoom').showModal();
  });
}
$('zoom').addEventListener('click', () => $('zoom').close());
start();
