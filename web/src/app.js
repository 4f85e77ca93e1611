// kinema's web UI: the library (list, upload, delete) and the watch page.
// Plain DOM and fetch, no framework: the page is small and its job is to
// show the server's behaviour plainly. `/?v={id}` is the watch page; any
// other `/` is the library.
import { setUpControls } from './controls.js';
import {
  describeLadder,
  explainPlaybackError,
  formatBitrate,
  formatDuration,
  qualityMenuEntries,
  rungName,
} from './format.js';
import { attachPlayer, mediaSourceAvailable } from './player.js';
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
  // The list names the poster only when the video has one. A signed
  // video's poster needs a signed URL, which this page cannot make yet:
  // the card says private instead of asking for an image it would be refused.
  const signed = video.access === 'signed';
  if (video.urls?.poster && !signed) poster.src = video.urls.poster;
  else poster.classList.add('missing');
  card.querySelector('.private').hidden = !signed;
  poster.addEventListener('error', () => poster.classList.add('missing'));
  card.querySelector('.duration').textContent = formatDuration(roundSeconds(durationOf(video)));
  const title = card.querySelector('.title');
  title.href = watchUrl;
  title.textContent = video.title || video.id;
  card.querySelector('.meta').textContent = describeLadder(video.renditions) || video.id;
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

// A card shows whole seconds, rounded: a 7.98 s clip is 0:08, not 0:07.
function roundSeconds(seconds) {
  return Number.isFinite(seconds) ? Math.round(seconds) : seconds;
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
  offerDownload(id, base);
  document.getElementById('watch-title').textContent = id;
  document.title = `${id} · kinema`;
  const video = document.getElementById('video');
  const select = document.getElementById('quality-select');
  const audioSelect = document.getElementById('audio-select');
  const audioChoice = document.getElementById('audio-choice');
  const subtitleSelect = document.getElementById('subtitle-select');
  const subtitleChoice = document.getElementById('subtitle-choice');
  const captionsButton = document.getElementById('captions-button');
  let player = null;
  let protocol = null;
  let quality = null;
  // The subtitle track `c` brings back: the last one chosen, else the first.
  let lastSubtitle = null;

  const chooseSubtitle = (value) => {
    subtitleSelect.value = value;
    if (value !== 'off') lastSubtitle = value;
    captionsButton.setAttribute('aria-pressed', String(value !== 'off'));
    if (!player) return;
    const track = player.subtitleTracks().find((candidate) => String(candidate.key) === value);
    player.setSubtitleTrack(track ? track.key : 'off');
  };
  const controls = setUpControls(document.getElementById('player'), video, {
    toggleCaptions() {
      const offered = [...subtitleSelect.options].map((option) => option.value).filter((value) => value !== 'off');
      if (offered.length === 0) return null;
      const on = subtitleSelect.value === 'off';
      chooseSubtitle(on ? (offered.includes(lastSubtitle) ? lastSubtitle : offered[0]) : 'off');
      return on;
    },
    playerStats: () => ({ engine: player?.engine, quality, throughput: player?.throughput() ?? null }),
  });
  // Title, poster and thumbnails come from the admin API, which may want a
  // token; the video plays without it. Without the API the conventional
  // thumbnail URLs are tried; with it, only those the video has.
  api('GET', `/api/videos/${encodeURIComponent(id)}`)
    .catch(() => null)
    .then((info) => {
      const title = info?.title || id;
      document.getElementById('watch-title').textContent = title;
      document.title = `${title} · kinema`;
      // A signed video's images would be refused like its stream.
      if (info?.access === 'signed') return;
      const poster = info ? info.urls?.poster : `${base}/thumbs/poster.jpg`;
      if (poster) video.poster = poster;
      const thumbnails = info ? info.urls?.thumbnails : `${base}/thumbs/thumbs.vtt`;
      if (thumbnails) {
        loadThumbnails(thumbnails)
          .then(controls.showThumbnails)
          .catch(() => {
            // A video without thumbnails still seeks; the preview shows time only.
          });
      }
    });

  // The quality menu names what Auto is playing now, as YouTube's does.
  const showQuality = () => {
    const name = quality ? rungName(quality.width, quality.height) : '';
    select.options[0].textContent = name && quality.auto ? `Auto (${name})` : 'Auto';
    document.getElementById('quality-badge').textContent = name;
  };
  const start = (chosen, resumeAt) => {
    if (player) player.destroy();
    protocol = chosen;
    quality = null;
    showError(null);
    for (const button of document.querySelectorAll('[data-protocol]')) {
      button.setAttribute('aria-pressed', String(button.dataset.protocol === protocol));
    }
    select.replaceChildren(new Option('Auto', 'auto'));
    audioSelect.replaceChildren();
    audioChoice.hidden = true;
    subtitleSelect.replaceChildren(new Option('Off', 'off'));
    subtitleChoice.hidden = true;
    captionsButton.hidden = true;
    captionsButton.setAttribute('aria-pressed', 'false');
    document.getElementById('quality-now').textContent = '—';
    document.getElementById('quality-mode').textContent = '';
    showQuality();
    try {
      player = attachPlayer(video, {
        protocol,
        url: urls[protocol],
        startPosition: resumeAt,
        onLevels: (levels) => {
          const entries = qualityMenuEntries(levels).map((entry) => new Option(entry.label, String(entry.key)));
          select.replaceChildren(new Option('Auto', 'auto'), ...entries);
          select.disabled = levels.length === 0;
          showQuality();
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
          captionsButton.hidden = tracks.length === 0;
        },
        onAudioTrack: (track) => {
          // What is playing, not only what was asked for.
          audioSelect.value = String(track.key);
          audioSelect.dataset.playing = String(track.key);
        },
        onQuality: (shown) => {
          quality = shown;
          const size = `${shown.width}×${shown.height}`;
          document.getElementById('quality-now').textContent = shown.bitrate
            ? `${size} · ${formatBitrate(shown.bitrate)}`
            : size;
          document.getElementById('quality-mode').textContent = shown.auto ? '(auto)' : '(fixed)';
          showQuality();
        },
        onError: (error) => {
          if (error.fatal) explainError(urls[protocol], error).then(showError);
        },
      });
    } catch (error) {
      showError({ summary: 'This browser cannot play this video.', detail: error.message });
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
  subtitleSelect.addEventListener('change', () => chooseSubtitle(subtitleSelect.value));
  audioSelect.addEventListener('change', () => {
    if (!player) return;
    // hls.js numbers its tracks, dash.js names them by AdaptationSet id.
    const track = player.audioTracks().find((candidate) => String(candidate.key) === audioSelect.value);
    if (track) player.setAudioTrack(track.key);
  });
  for (const button of document.querySelectorAll('[data-protocol]')) {
    button.addEventListener('click', () => start(button.dataset.protocol, video.currentTime));
  }
  document.getElementById('retry-button').addEventListener('click', () => start(protocol, video.currentTime));
  if (!mediaSourceAvailable()) document.getElementById('protocol-dash').disabled = true;
  const remembered = localStorage.getItem(PROTOCOL_KEY);
  start(remembered === 'dash' && mediaSourceAvailable() ? 'dash' : 'hls', 0);
}

// The progressive MP4, if ingest wrote one (its download setting): a link
// for saving the video, which also plays where MSE does not.
function offerDownload(id, base) {
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
}

// A player's error names its own machinery ("manifestLoadError"); the
// viewer needs to know whether the video is gone, private or the network
// is. Asking for the manifest again tells those apart, whichever player
// failed and however it words it.
async function explainError(manifestUrl, report) {
  let status;
  try {
    status = (await fetch(manifestUrl, { method: 'HEAD', cache: 'no-store' })).status;
  } catch {
    status = 'unreachable';
  }
  if (!navigator.onLine) status = 'unreachable';
  return explainPlaybackError(report, status);
}

function showError(explained) {
  const message = document.getElementById('watch-message');
  message.hidden = !explained;
  document.getElementById('watch-message-summary').textContent = explained?.summary ?? '';
  document.getElementById('watch-message-detail').textContent = explained?.detail ?? '';
}

// ------------------------------------------------------------------ helpers

function showMessage(element, text, isError = false) {
  element.hidden = !text;
  element.textContent = text ?? '';
  element.classList.toggle('error', isError);
}

function percent(fraction) {
  return `${Math.round(fraction * 100)}%`;
}
