// The upload page (`/?upload`): drop files or pick them, each becomes a
// card that shows its upload (bytes, speed, time left), then its processing
// (GET /api/jobs/{id}) until it is published or fails, with a Cancel button
// at either stage. The job ids live in localStorage, so the cards come back
// after a reload and carry on from what the server says. A failure is one
// sentence; the server's details fold away below it, with file paths cut.
// A finished card stays until dismissed.
import { formatDuration } from './format.js';
import { ApiError, api, authHeaders, describeApiError, errorOf, signedIn } from './session.js';

const JOBS_KEY = 'kinema.uploadJobs';
const POLL_MS = 1000;
/** Most processing cards remembered across reloads. */
const MAX_REMEMBERED = 50;

export function showUpload(app) {
  app.replaceChildren(document.getElementById('upload-template').content.cloneNode(true));
  const zone = document.getElementById('drop-zone');
  const picker = document.getElementById('upload-file');
  document.getElementById('upload-signin').hidden = signedIn();
  document.getElementById('upload-panel').hidden = !signedIn();
  if (!signedIn()) return;
  picker.addEventListener('change', () => {
    uploadAll([...picker.files]);
    picker.value = '';
  });
  for (const type of ['dragenter', 'dragover']) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add('dragging');
    });
  }
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    uploadAll([...(event.dataTransfer?.files ?? [])]);
  });
  // The whole page accepts a drop, so a near miss does not open the file.
  for (const type of ['dragover', 'drop']) document.addEventListener(type, (event) => event.preventDefault());
  for (const remembered of rememberedJobs()) followJob(newCard(remembered.name), remembered.job);
  const replacing = new URLSearchParams(location.search).get('replace');
  if (replacing) showReplacing(replacing);
}

// `/?upload&replace={id}` (the admin Videos page's Replace): the server
// publishes no upload over an existing id, so the new file becomes a video
// of its own and the old one is deleted once it is published. The form
// starts from the old video's title and access.
async function showReplacing(id) {
  const note = document.getElementById('upload-replace');
  note.hidden = false;
  note.textContent = `Replacing “${id}”: upload the new file here; once it is published, delete the old video on Admin · Videos.`;
  try {
    const video = await api('GET', `/api/videos/${encodeURIComponent(id)}`);
    note.textContent = `Replacing “${video.title}”: upload the new file here; once it is published, delete the old video on Admin · Videos.`;
    document.getElementById('upload-title').value = video.title;
    document.getElementById('upload-description').value = video.description ?? '';
    document.getElementById('upload-access').value = video.access === 'signed' ? 'signed' : 'public';
  } catch {
    // The note stands without the old video's details.
  }
}

function uploadAll(files) {
  const titleInput = document.getElementById('upload-title');
  const descriptionInput = document.getElementById('upload-description');
  // One title names one file; several files are named after themselves
  // and share the description.
  const title = files.length === 1 ? titleInput.value.trim() : '';
  const description = descriptionInput.value.trim();
  const access = document.getElementById('upload-access').value;
  titleInput.value = '';
  descriptionInput.value = '';
  for (const file of files) upload(file, title, description, access);
}

function upload(file, title, description, access) {
  const card = newCard(file.name);
  const form = new FormData();
  if (title) form.append('title', title);
  if (description) form.append('description', description);
  form.append('access', access);
  form.append('file', file, file.name);
  // XMLHttpRequest rather than fetch: only it reports upload progress.
  const request = new XMLHttpRequest();
  request.open('POST', '/api/videos');
  for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
  const started = performance.now();
  request.upload.addEventListener('progress', (progress) => {
    if (!progress.lengthComputable) return;
    const seconds = (performance.now() - started) / 1000;
    const speed = seconds > 0.2 ? progress.loaded / seconds : 0;
    const left = speed > 0 ? (progress.total - progress.loaded) / speed : null;
    setCard(card, {
      stage: 'uploading',
      fraction: progress.loaded / progress.total,
      label: [
        `Uploading ${formatBytes(progress.loaded)} of ${formatBytes(progress.total)}`,
        speed > 0 ? `${formatBytes(speed)}/s` : '',
        left !== null && progress.loaded < progress.total ? `${formatDuration(Math.ceil(left))} left` : '',
      ]
        .filter(Boolean)
        .join(' · '),
    });
  });
  request.addEventListener('load', () => {
    if (request.status < 200 || request.status >= 300) {
      const message = errorOf(request.responseText, request.status, request.statusText);
      failCard(card, `The upload was refused: ${describeApiError(new ApiError(request.status, firstSentence(message)))}.`, message);
      return;
    }
    let job;
    try {
      job = JSON.parse(request.responseText).job;
    } catch {
      failCard(card, 'The server accepted the file but did not say which job processes it.', request.responseText);
      return;
    }
    remember(job.id, file.name);
    followJob(card, job.id);
  });
  request.addEventListener('error', () => failCard(card, 'The upload stopped: the connection to the server broke.', ''));
  request.addEventListener('abort', () => failCard(card, 'Upload cancelled.', '', 'cancelled'));
  card.cancel = () => request.abort();
  request.send(form);
}

async function followJob(card, jobId) {
  card.dataset.job = jobId;
  card.cancel = async () => {
    card.querySelector('.cancel').disabled = true;
    await api('POST', `/api/jobs/${encodeURIComponent(jobId)}/cancel`).catch(() => {});
  };
  for (;;) {
    let job;
    try {
      ({ job } = await api('GET', `/api/jobs/${encodeURIComponent(jobId)}`));
    } catch (error) {
      if (error.status === 404) {
        failCard(card, 'The server no longer knows this job.', error.message);
        return;
      }
      setCard(card, { stage: 'waiting', fraction: null, label: `Waiting for the server: ${describeApiError(error)}` });
      await sleep(POLL_MS * 3);
      continue;
    }
    const progress = job.progress ?? {};
    card.querySelector('.upload-name').textContent = job.title || card.querySelector('.upload-name').textContent;
    if (job.state === 'done') {
      finishCard(card, job.video_id);
      return;
    }
    if (job.state === 'failed' || job.state === 'cancelled') {
      if (job.state === 'cancelled') failCard(card, 'Processing cancelled.', '', 'cancelled');
      else failCard(card, `Processing failed: ${firstSentence(job.error ?? 'no reason given')}.`, [job.error, ...(job.log_tail ?? [])].join('\n'));
      return;
    }
    const fraction = typeof progress.percent === 'number' ? progress.percent / 100 : null;
    const stage = progress.stage && progress.stage !== job.state ? progress.stage : job.state;
    setCard(card, {
      stage: 'processing',
      fraction,
      label: [
        `Processing: ${stage}${fraction === null ? '' : ` ${Math.round(fraction * 100)}%`}`,
        progress.eta_seconds > 0 ? `about ${formatDuration(Math.ceil(progress.eta_seconds))} left` : '',
      ]
        .filter(Boolean)
        .join(' · '),
    });
    await sleep(POLL_MS);
  }
}

function newCard(name) {
  const card = document.getElementById('upload-card-template').content.firstElementChild.cloneNode(true);
  card.querySelector('.upload-name').textContent = name;
  card.querySelector('.cancel').addEventListener('click', () => card.cancel?.());
  card.querySelector('.cancel').setAttribute('aria-label', `Cancel ${name}`);
  document.getElementById('upload-cards').prepend(card);
  return card;
}

function setCard(card, { stage, fraction, label }) {
  card.dataset.stage = stage;
  const bar = card.querySelector('.progress-bar');
  bar.style.width = `${Math.round((fraction ?? 0) * 100)}%`;
  card.querySelector('.progress').setAttribute('aria-valuenow', String(Math.round((fraction ?? 0) * 100)));
  card.querySelector('.upload-label').textContent = label;
}

function finishCard(card, videoId) {
  setCard(card, { stage: 'published', fraction: 1, label: 'Published · ' });
  const link = document.createElement('a');
  link.href = `/?v=${encodeURIComponent(videoId)}`;
  link.textContent = 'Watch it';
  link.className = 'watch-link';
  card.querySelector('.upload-label').append(link);
  offerDismiss(card);
}

// A finished card stays (across reloads too) until it is dismissed.
function offerDismiss(card) {
  const button = card.querySelector('.cancel');
  button.textContent = 'Dismiss';
  button.disabled = false;
  button.setAttribute('aria-label', `Dismiss ${card.querySelector('.upload-name').textContent}`);
  card.cancel = () => {
    if (card.dataset.job) forget(card.dataset.job);
    card.remove();
  };
}

function failCard(card, sentence, details, stage = 'failed') {
  setCard(card, { stage, fraction: 0, label: sentence });
  card.classList.add('failed');
  offerDismiss(card);
  const folded = card.querySelector('details');
  const text = withoutPaths(details).trim();
  folded.hidden = !text;
  folded.querySelector('pre').textContent = text;
}

/**
 * What went wrong in a few words: the server message's first clause (up to
 * its first sentence end or colon), with file paths cut out. The rest is
 * the details.
 */
export function firstSentence(message) {
  const line = withoutPaths(String(message)).split('\n')[0].trim();
  const sentence = line.split(/\.\s|:\s/)[0];
  return sentence.replace(/[.\s]+$/, '');
}

/** `text` with absolute file paths replaced by "…": they name the server's disks. */
export function withoutPaths(text) {
  // A path runs to the next space, quote, bracket, colon or comma, and
  // does not take a full stop that ends the sentence.
  return String(text ?? '').replace(/(^|[\s"'(=])\/(?:[^\s"'():,]*[^\s"'():,.])?/g, '$1…');
}

function formatBytes(bytes) {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} kB`;
  return `${Math.round(bytes)} B`;
}

/** The remembered jobs, oldest first. */
function rememberedJobs() {
  try {
    const jobs = JSON.parse(localStorage.getItem(JOBS_KEY) ?? '[]');
    return Array.isArray(jobs) ? jobs.filter((entry) => typeof entry?.job === 'string') : [];
  } catch {
    return [];
  }
}

function remember(job, name) {
  const jobs = rememberedJobs().filter((entry) => entry.job !== job);
  jobs.push({ job, name });
  localStorage.setItem(JOBS_KEY, JSON.stringify(jobs.slice(-MAX_REMEMBERED)));
}

function forget(job) {
  const jobs = rememberedJobs().filter((entry) => entry.job !== job);
  localStorage.setItem(JOBS_KEY, JSON.stringify(jobs));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
