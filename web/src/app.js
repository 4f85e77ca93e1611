// kinema's web UI: the public catalogue, the watch page, the upload page
// and the admin pages. Plain DOM and fetch, no framework: the page is small
// and its job is to show the server's behaviour plainly. `/?v={id}` is the
// watch page (`&s={token}` plays a shared signed link), `/?upload` the
// upload page, `/?admin=…` the admin pages, any other `/` the catalogue.
import { showAdmin } from './admin.js';
import { showCatalogue } from './catalogue.js';
import { setUpControls } from './controls.js';
import {
  explainPlaybackError,
  formatBitrate,
  qualityMenuEntries,
  rungName,
} from './format.js';
import { attachPlayer, mediaSourceAvailable } from './player.js';
import { api, describeApiError, setUpSignIn, signedIn } from './session.js';
import { loadThumbnails } from './thumbnails.js';
import { showUpload } from './upload.js';

const PROTOCOL_KEY = 'kinema.protocol';
/** Lifetime of the signed URL a signed-in admin's own watch page plays. */
const OWN_PLAYBACK_TTL = '2h';

const app = document.getElementById('app');
// A player already attached to the page is not re-made in place: the watch
// page reloads when the token changes, other pages redraw.
setUpSignIn(() => (new URLSearchParams(location.search).has('v') ? location.reload() : route()));
route();

function markCurrent(id, current) {
  const link = document.getElementById(id);
  if (current) link.setAttribute('aria-current', 'page');
  else link.removeAttribute('aria-current');
}

function route() {
  const params = new URLSearchParams(location.search);
  const videoId = params.get('v');
  markCurrent('nav-library', !videoId && !params.has('upload') && !params.has('admin'));
  markCurrent('nav-upload', params.has('upload'));
  markCurrent('nav-admin', params.has('admin'));
  if (videoId) showWatchPage(videoId, params.get('s'));
  else if (params.has('upload')) showUpload(app);
  else if (params.has('admin')) showAdmin(app);
  else showCatalogue(app);
}

// -------------------------------------------------------------- watch page

async function showWatchPage(id, sharedToken) {
  app.replaceChildren(document.getElementById('watch-template').content.cloneNode(true));
  document.getElementById('watch-title').textContent = id;
  document.title = `${id} · kinema`;
  const source = await resolveSource(id, sharedToken);
  const base = source.base;
  const urls = { hls: `${base}/master.m3u8`, dash: `${base}/manifest.mpd` };
  document.getElementById('link-hls').href = urls.hls;
  document.getElementById('link-dash').href = urls.dash;
  offerDownload(id, base);
  const title = source.info?.title || id;
  document.getElementById('watch-title').textContent = title;
  const description = document.getElementById('watch-description');
  description.textContent = source.info?.description ?? '';
  description.hidden = !description.textContent;
  document.title = `${title} · kinema`;
  setUpShare(id, source);
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
  // A private video's images come through its signed URL like its stream;
  // without one they would be refused, so none is asked for.
  if (!source.private || source.signed) {
    video.poster = `${base}/thumbs/poster.jpg`;
    loadThumbnails(`${base}/thumbs/thumbs.vtt`)
      .then(controls.showThumbnails)
      .catch(() => {
        // A video without thumbnails still seeks; the preview shows time only.
      });
  }

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

// Where the watch page plays `id` from, with what is known of it:
// {base, info, private, signed}. A shared link's token (`&s=`) plays
// through /s/{token}/; a signed-in admin's page asks the server for a
// signed URL when the video is private (POST /api/tokens); anyone else
// plays the public URLs, and a private video's refusal says so.
async function resolveSource(id, sharedToken) {
  const publicBase = `/v/${encodeURIComponent(id)}`;
  if (sharedToken) {
    return { base: `/s/${encodeURIComponent(sharedToken)}${publicBase}`, info: null, private: true, signed: true, sharedToken };
  }
  if (signedIn()) {
    const info = await api('GET', `/api/videos/${encodeURIComponent(id)}`).catch(() => null);
    if (info?.access === 'signed') {
      try {
        const minted = await api('POST', '/api/tokens', { video: id, ttl: OWN_PLAYBACK_TTL });
        return { base: minted.path.replace(/\/master\.m3u8$/, ''), info, private: true, signed: true };
      } catch (error) {
        return { base: publicBase, info, private: true, signed: false, error: describeApiError(error) };
      }
    }
    if (info) return { base: publicBase, info, private: false, signed: false };
  }
  // Anyone: the public catalogue names the title (a private video is not
  // in it, and its stream is refused).
  const listed = await api('GET', `/api/catalogue?${new URLSearchParams({ q: id, per_page: '100' })}`)
    .then((body) => body.videos.find((video) => video.id === id) ?? null)
    .catch(() => null);
  return { base: publicBase, info: listed, private: Boolean(listed?.private), signed: false };
}

// The share box: the page's own address for a public video (or for a
// shared link, the link itself); for a private one a signed-in admin makes
// a link with a lifetime, which plays for whoever opens it until then.
function setUpShare(id, source) {
  const field = document.getElementById('share-url');
  const status = document.getElementById('share-status');
  const page = new URL('/', location.href);
  page.searchParams.set('v', id);
  if (source.sharedToken) page.searchParams.set('s', source.sharedToken);
  field.value = page.href;
  if (source.private && !source.sharedToken) {
    status.textContent = signedIn()
      ? 'This video is private: the page address plays only for signed-in admins.'
      : '';
    document.getElementById('share-signed').hidden = !signedIn();
  }
  document.getElementById('share-copy').addEventListener('click', async () => {
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      status.textContent = 'Link copied.';
    } catch {
      // Without clipboard permission the selected text can still be copied by hand.
      status.textContent = 'Press Ctrl+C (or ⌘C) to copy the selected link.';
    }
  });
  document.getElementById('share-make').addEventListener('click', async () => {
    const lifetime = document.getElementById('share-lifetime');
    try {
      const minted = await api('POST', '/api/tokens', { video: id, ttl: lifetime.value });
      const link = new URL('/', location.href);
      link.searchParams.set('v', id);
      link.searchParams.set('s', minted.token);
      field.value = link.href;
      const until = new Date(minted.expires_at);
      status.textContent = `Anyone with this link can watch until ${until.toLocaleString()}.`;
      field.select();
    } catch (error) {
      status.textContent = `No link was made: ${describeApiError(error)}`;
    }
  });
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
  let refusal = null;
  try {
    const response = await fetch(manifestUrl, { method: 'HEAD', cache: 'no-store' });
    status = response.status;
    refusal = response.headers.get('kinema-auth-error');
  } catch {
    status = 'unreachable';
  }
  if (!navigator.onLine) status = 'unreachable';
  return explainPlaybackError(report, status, refusal);
}

function showError(explained) {
  const message = document.getElementById('watch-message');
  message.hidden = !explained;
  document.getElementById('watch-message-summary').textContent = explained?.summary ?? '';
  document.getElementById('watch-message-detail').textContent = explained?.detail ?? '';
}
