// kinema's web UI: the library (list, upload, delete) and the watch page.
// Plain DOM and fetch, no framework: the page is small and its job is to
// show the server's behaviour plainly. `/?v={id}` is the watch page; any
// other `/` is the library.
import { attachPlayer, describeQuality, formatBitrate, mediaSourceAvailable } from './player.js';
import { loadThumbnails } from './thumbnails.js';

const TOKEN_KEY = 'kinema.apiToken';
const PROTOCOL_KEY = 'kinema.protocol';
const JOB_POLL_MS = 1000;

const app = document.getElementById('app');
takeTokenFromFragment();
setUpTokenForm();
const videoId = new URLSearchParams(location.search).get('v');
if (videoId) {
  showWatchPage(videoId);
} else {
  showLibrary();
}

// ---------------------------------------------------------------- admin API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(method, path) {
  const response = await fetch(path, { method, headers: { Accept: 'application/json', ...authHeaders() } });
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response.status === 204 ? null : response.json();
}

async function errorText(response) {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    return body.error ?? body.message ?? text;
  } catch {
    return text.trim() || `${response.status} ${response.statusText}`;
  }
}

function describeApiError(error) {
  if (error.status === 401 || error.status === 403) {
    return 'the admin api refused this request; paste a valid token under "API token"';
  }
  return error.message;
}

// `/#token=SECRET` (the link scripts/demo prints) stores the token like the
// token field does. A fragment never leaves the browser, and it is wiped
// from the address bar at once so it is not bookmarked or shared.
function takeTokenFromFragment() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, '', location.pathname + location.search);
}

function setUpTokenForm() {
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  document.getElementById('token-toggle').addEventListener('click', () => {
    form.hidden = !form.hidden;
    input.value = localStorage.getItem(TOKEN_KEY) ?? '';
    if (!form.hidden) input.focus();
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
    form.hidden = true;
    location.reload();
  });
  document.getElementById('token-clear').addEventListener('click', () => {
    localStorage.removeItem(TOKEN_KEY);
    form.hidden = true;
    location.reload();
  });
}

// The list endpoint may answer a bare array or an object holding one.
function videosOf(body) {
  if (Array.isArray(body)) return body;
  return body?.videos ?? body?.items ?? [];
}

// ------------------------------------------------------------------ library

function showLibrary() {
  app.replaceChildren(document.getElementById('library-template').content.cloneNode(true));
  document.getElementById('library-refresh').addEventListener('click', refreshLibrary);
  document.getElementById('upload-form').addEventListener('submit', onUpload);
  refreshLibrary();
}

async function refreshLibrary() {
  const list = document.getElementById('video-list');
  const message = document.getElementById('library-message');
  try {
    const videos = videosOf(await api('GET', '/api/videos'));
    list.replaceChildren(...videos.map(videoCard));
    showMessage(message, videos.length === 0 ? 'No videos yet: upload one above, or run `kinema ingest FILE`.' : null);
  } catch (error) {
    list.replaceChildren();
    showMessage(message, `could not list videos: ${describeApiError(error)}`, true);
    // Without a token the library is empty; offer the field right away.
    if (error.status === 401) document.getElementById('token-form').hidden = false;
  }
}

function videoCard(video) {
  const card = document.getElementById('video-card-template').content.firstElementChild.cloneNode(true);
  const watchUrl = `/?v=${encodeURIComponent(video.id)}`;
  card.dataset.videoId = video.id;
  card.querySelector('.poster-link').href = watchUrl;
  const poster = card.querySelector('.poster');
  // The list names the poster only when the video has one.
  if (video.urls?.poster) poster.src = video.urls.poster;
  else poster.classList.add('missing');
  poster.addEventListener('error', () => poster.classList.add('missing'));
  card.querySelector('.duration').textContent = formatDuration(durationOf(video));
  const title = card.querySelector('.title');
  title.href = watchUrl;
  title.textContent = video.title || video.id;
  card.querySelector('.meta').textContent = describeLadder(video);
  card.querySelector('.delete').addEventListener('click', async () => {
    if (!confirm(`Delete "${video.title || video.id}"? Viewers lose it at once.`)) return;
    try {
      await api('DELETE', `/api/videos/${encodeURIComponent(video.id)}`);
      card.remove();
    } catch (error) {
      alert(`could not delete: ${describeApiError(error)}`);
    }
  });
  return card;
}

function durationOf(video) {
  return video.duration_seconds ?? video.duration ?? null;
}

// "360p–720p · 3 qualities", from whatever rendition list the API gives.
function describeLadder(video) {
  const heights = (video.renditions ?? [])
    .map((rendition) => rendition.height)
    .filter((height) => height > 0)
    .sort((a, b) => a - b);
  if (heights.length === 0) return video.id;
  const range = heights.length === 1 ? `${heights[0]}p` : `${heights[0]}p–${heights[heights.length - 1]}p`;
  return `${range} · ${heights.length} ${heights.length === 1 ? 'quality' : 'qualities'}`;
}

// ------------------------------------------------------------------- upload

function onUpload(event) {
  event.preventDefault();
  const file = document.getElementById('upload-file').files[0];
  if (!file) return;
  const title = document.getElementById('upload-title').value.trim();
  const button = document.getElementById('upload-button');
  const status = document.getElementById('upload-status');
  status.hidden = false;
  button.disabled = true;
  setProgress(0, `uploading ${file.name}…`);

  const form = new FormData();
  if (title) form.append('title', title);
  form.append('file', file, file.name);
  // XMLHttpRequest rather than fetch: only it reports upload progress.
  const request = new XMLHttpRequest();
  request.open('POST', '/api/videos');
  for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
  request.upload.addEventListener('progress', (progress) => {
    if (progress.lengthComputable) {
      setProgress(progress.loaded / progress.total, `uploading ${file.name}: ${percent(progress.loaded / progress.total)}`);
    }
  });
  request.addEventListener('load', () => {
    if (request.status < 200 || request.status >= 300) {
      finishUpload(`upload failed: ${describeApiError(new ApiError(request.status, xhrErrorText(request)))}`, true);
      return;
    }
    // 202 {"job": JobView, "location": "/api/jobs/{id}"}
    let jobId;
    try {
      jobId = JSON.parse(request.responseText).job.id;
    } catch {
      finishUpload('upload accepted, but the server did not say which job processes it', true);
      return;
    }
    setProgress(0, 'queued for processing…');
    pollJob(jobId);
  });
  request.addEventListener('error', () => finishUpload('upload failed: the connection to the server broke', true));
  request.send(form);
}

function xhrErrorText(request) {
  try {
    const body = JSON.parse(request.responseText);
    return body.error ?? body.message ?? request.responseText;
  } catch {
    return request.responseText.trim() || `${request.status} ${request.statusText}`;
  }
}

async function pollJob(jobId) {
  let job;
  try {
    ({ job } = await api('GET', `/api/jobs/${encodeURIComponent(jobId)}`));
  } catch (error) {
    finishUpload(`could not follow job ${jobId}: ${describeApiError(error)}`, true);
    return;
  }
  // A job (kinema_media::JobView): state queued|running|done|failed|cancelled,
  // progress {stage, percent 0–100, eta_seconds}, video_id, error.
  const progress = job.progress ?? {};
  const fraction = typeof progress.percent === 'number' ? progress.percent / 100 : null;
  switch (job.state) {
    case 'done':
      finishUpload('published', false, job.video_id);
      refreshLibrary();
      return;
    case 'failed':
    case 'cancelled':
      finishUpload(`processing ${job.state}: ${job.error ?? 'no reason given'}`, true);
      return;
    default: {
      const stage = progress.stage && progress.stage !== job.state ? progress.stage : job.state;
      const eta = progress.eta_seconds > 0 ? `, about ${formatDuration(progress.eta_seconds)} left` : '';
      setProgress(fraction, `${stage}${fraction === null ? '' : ` ${percent(fraction)}`}${eta}`);
      setTimeout(() => pollJob(jobId), JOB_POLL_MS);
    }
  }
}

function setProgress(fraction, label) {
  document.getElementById('upload-bar').style.width = `${Math.round((fraction ?? 0) * 100)}%`;
  document.getElementById('upload-label').textContent = label;
}

function finishUpload(label, failed, publishedId) {
  const labelElement = document.getElementById('upload-label');
  document.getElementById('upload-button').disabled = false;
  document.getElementById('upload-status').classList.toggle('failed', failed);
  if (!failed) {
    setProgress(1, '');
    document.getElementById('upload-form').reset();
  }
  labelElement.textContent = label;
  if (publishedId) {
    const link = document.createElement('a');
    link.href = `/?v=${encodeURIComponent(publishedId)}`;
    link.textContent = 'watch it';
    labelElement.append(' · ', link);
  }
}

// -------------------------------------------------------------- watch page

function showWatchPage(id) {
  app.replaceChildren(document.getElementById('watch-template').content.cloneNode(true));
  const base = `/v/${encodeURIComponent(id)}`;
  const urls = { hls: `${base}/master.m3u8`, dash: `${base}/manifest.mpd` };
  document.getElementById('link-hls').href = urls.hls;
  document.getElementById('link-dash').href = urls.dash;
  // The progressive MP4, if ingest wrote one (its download setting): a
  // link for saving the video, which also plays where MSE does not.
  fetch(`${base}/download.mp4`, { method: 'HEAD' })
    .then((response) => {
      if (!response.ok) return;
      const link = document.createElement('a');
      link.id = 'link-download';
      link.href = `${base}/download.mp4`;
      link.download = `${id}.mp4`;
      link.textContent = 'download';
      document.getElementById('link-dash').after(' · ', link);
    })
    .catch(() => {});
  document.getElementById('watch-title').textContent = id;
  document.title = `${id} · kinema`;
  const video = document.getElementById('video');
  const scrubBar = setUpScrubBar(video);
  // Title, poster and thumbnails come from the admin API, which may want a
  // token; the video plays without it. Without the API the conventional
  // thumbnail URLs are tried; with it, only those the video has.
  api('GET', `/api/videos/${encodeURIComponent(id)}`)
    .catch(() => null)
    .then((info) => {
      const title = info?.title || id;
      document.getElementById('watch-title').textContent = title;
      document.title = `${title} · kinema`;
      const poster = info ? info.urls?.poster : `${base}/thumbs/poster.jpg`;
      if (poster) video.poster = poster;
      const thumbnails = info ? info.urls?.thumbnails : `${base}/thumbs/thumbs.vtt`;
      if (thumbnails) {
        loadThumbnails(thumbnails)
          .then(scrubBar.showThumbnails)
          .catch(() => {
            // A video without thumbnails still seeks; the preview shows time only.
          });
      }
    });
  const select = document.getElementById('quality-select');
  const audioSelect = document.getElementById('audio-select');
  const audioChoice = document.getElementById('audio-choice');
  const subtitleSelect = document.getElementById('subtitle-select');
  const subtitleChoice = document.getElementById('subtitle-choice');
  const message = document.getElementById('watch-message');
  let player = null;

  const start = (protocol, resumeAt) => {
    if (player) player.destroy();
    showMessage(message, null);
    for (const button of document.querySelectorAll('[data-protocol]')) {
      button.setAttribute('aria-pressed', String(button.dataset.protocol === protocol));
    }
    select.replaceChildren(new Option('Auto', 'auto'));
    audioSelect.replaceChildren();
    audioChoice.hidden = true;
    subtitleSelect.replaceChildren(new Option('Off', 'off'));
    subtitleChoice.hidden = true;
    document.getElementById('quality-now').textContent = '—';
    document.getElementById('quality-mode').textContent = '';
    try {
      player = attachPlayer(video, {
        protocol,
        url: urls[protocol],
        startPosition: resumeAt,
        onLevels: (levels) => {
          // Highest first, as people read a quality menu.
          const options = [...levels].reverse().map((level) => new Option(describeQuality(level), String(level.key)));
          select.replaceChildren(new Option('Auto', 'auto'), ...options);
          select.disabled = levels.length === 0;
        },
        onAudioTracks: (tracks) => {
          // A menu only when there is a choice to make.
          audioSelect.replaceChildren(
            ...tracks.map((track) => new Option(track.name || track.language, String(track.key), false, track.default)),
          );
          audioChoice.hidden = tracks.length < 2;
        },
        onSubtitleTracks: (tracks) => {
          subtitleSelect.replaceChildren(
            new Option('Off', 'off'),
            ...tracks.map((track) => new Option(track.name || track.language, String(track.key))),
          );
          subtitleChoice.hidden = tracks.length === 0;
        },
        onAudioTrack: (track) => {
          // What is playing, not only what was asked for.
          audioSelect.value = String(track.key);
          audioSelect.dataset.playing = String(track.key);
        },
        onQuality: (quality) => {
          document.getElementById('quality-now').textContent = quality.bitrate
            ? `${quality.width}×${quality.height} · ${formatBitrate(quality.bitrate)}`
            : `${quality.width}×${quality.height}`;
          document.getElementById('quality-mode').textContent = quality.auto ? '(auto)' : '(fixed)';
        },
        onError: (error) => {
          if (error.fatal) {
            showMessage(message, `playback error (${error.source}): ${error.message ?? error.detail ?? error.type}`, true);
          }
        },
      });
    } catch (error) {
      showMessage(message, error.message, true);
      return;
    }
    document.getElementById('engine').textContent = player.engine;
    localStorage.setItem(PROTOCOL_KEY, protocol);
    video.play().catch(() => {
      // Autoplay may be refused until the viewer interacts; the controls remain.
    });
  };

  select.addEventListener('change', () => {
    if (!player) return;
    const value = select.value;
    // hls.js names rungs by number, dash.js by representation id.
    const key = value === 'auto' ? 'auto' : (player.levels().find((level) => String(level.key) === value)?.key ?? 'auto');
    player.setLevel(key);
  });
  subtitleSelect.addEventListener('change', () => {
    if (!player) return;
    const value = subtitleSelect.value;
    const track = player.subtitleTracks().find((candidate) => String(candidate.key) === value);
    player.setSubtitleTrack(track ? track.key : 'off');
  });
  audioSelect.addEventListener('change', () => {
    if (!player) return;
    // hls.js numbers its tracks, dash.js names them by AdaptationSet id.
    const track = player.audioTracks().find((candidate) => String(candidate.key) === audioSelect.value);
    if (track) player.setAudioTrack(track.key);
  });
  for (const button of document.querySelectorAll('[data-protocol]')) {
    button.addEventListener('click', () => start(button.dataset.protocol, video.currentTime));
  }
  if (!mediaSourceAvailable()) document.getElementById('protocol-dash').disabled = true;
  const remembered = localStorage.getItem(PROTOCOL_KEY);
  start(remembered === 'dash' && mediaSourceAvailable() ? 'dash' : 'hls', 0);
}

// A timeline under the video: click to seek, hover to see the frame there
// (the sprite sheet and thumbs.vtt map written at ingest, once given to
// the returned showThumbnails).
function setUpScrubBar(video) {
  const bar = document.getElementById('scrub');
  const played = document.getElementById('scrub-played');
  const preview = document.getElementById('preview');
  const previewImage = document.getElementById('preview-image');
  const previewTime = document.getElementById('preview-time');
  let thumbnails = null;

  const timeAt = (event) => {
    const box = bar.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    return { fraction, time: fraction * (video.duration || 0) };
  };
  video.addEventListener('timeupdate', () => {
    played.style.width = video.duration ? `${(video.currentTime / video.duration) * 100}%` : '0';
  });
  bar.addEventListener('click', (event) => {
    if (video.duration) video.currentTime = timeAt(event).time;
  });
  bar.addEventListener('mousemove', (event) => {
    if (!video.duration) return;
    const { fraction, time } = timeAt(event);
    const cue = thumbnails?.at(time);
    preview.hidden = false;
    preview.style.left = `${fraction * 100}%`;
    previewTime.textContent = formatDuration(time);
    if (cue) {
      previewImage.hidden = false;
      previewImage.style.width = `${cue.width}px`;
      previewImage.style.height = `${cue.height}px`;
      previewImage.style.backgroundImage = `url("${cue.image}")`;
      previewImage.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
    } else {
      previewImage.hidden = true;
    }
  });
  bar.addEventListener('mouseleave', () => (preview.hidden = true));
  return {
    showThumbnails(loaded) {
      thumbnails = loaded;
    },
  };
}

// ------------------------------------------------------------------ helpers

function showMessage(element, text, isError = false) {
  element.hidden = !text;
  element.textContent = text ?? '';
  element.classList.toggle('error', isError);
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

function percent(fraction) {
  return `${Math.round(fraction * 100)}%`;
}
