// The watch page's one set of player controls, drawn over the <video>
// (which has no `controls` attribute, so the browser draws no second seek
// bar): play, a seek bar with trickplay thumbnails, time, mute and volume,
// captions, a settings panel (quality, audio, subtitles, stats) and full
// screen, plus the keyboard shortcuts YouTube viewers already know. It
// drives the <video> element only; what needs the streaming player
// (captions, throughput) comes through the hooks app.js passes in.
import { formatBitrate, formatDuration } from './format.js';

// Inline icons: no font or image to fetch, and they scale with the text.
const ICONS = {
  play: '<path d="M8 5v14l11-7z"/>',
  pause: '<path d="M6 5h4v14H6zm8 0h4v14h-4z"/>',
  volume: '<path d="M3 9v6h4l5 5V4L7 9H3zm13.5 3A4.5 4.5 0 0 0 14 8v8a4.5 4.5 0 0 0 2.5-4z"/>',
  muted: '<path d="M3 9v6h4l5 5V4L7 9H3zm13.6 3 2.7-2.7-1.4-1.4-2.7 2.7-2.7-2.7-1.4 1.4 2.7 2.7-2.7 2.7 1.4 1.4 2.7-2.7 2.7 2.7 1.4-1.4z"/>',
  captions:
    '<path d="M19 4H5a2 2 0 0 0-2 2v12a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zm-8 7H9.5v-.5h-2v3h2V13H11v1a1 1 0 0 1-1 1H7a1 1 0 0 1-1-1v-4a1 1 0 0 1 1-1h3a1 1 0 0 1 1 1v1zm7 0h-1.5v-.5h-2v3h2V13H18v1a1 1 0 0 1-1 1h-3a1 1 0 0 1-1-1v-4a1 1 0 0 1 1-1h3a1 1 0 0 1 1 1v1z"/>',
  settings:
    '<path d="M19.4 13a7.5 7.5 0 0 0 0-2l2.1-1.6-2-3.5-2.5 1a7.3 7.3 0 0 0-1.7-1L15 3h-4l-.4 2.7a7.3 7.3 0 0 0-1.7 1l-2.5-1-2 3.5L6.6 11a7.5 7.5 0 0 0 0 2l-2.1 1.6 2 3.5 2.5-1a7.3 7.3 0 0 0 1.7 1L11 21h4l.4-2.7a7.3 7.3 0 0 0 1.7-1l2.5 1 2-3.5zM13 15.5a3.5 3.5 0 1 1 0-7 3.5 3.5 0 0 1 0 7z"/>',
  fullscreen: '<path d="M5 5h5v2H7v3H5zm9 0h5v5h-2V7h-3zM5 14h2v3h3v2H5zm12 0h2v5h-5v-2h3z"/>',
  exitFullscreen: '<path d="M8 5h2v5H5V8h3zm6 0h2v3h3v2h-5zM5 14h5v5H8v-3H5zm9 0h5v2h-3v3h-2z"/>',
};
const IDLE_MS = 3000;
const STATS_REFRESH_MS = 500;

function setIcon(button, name) {
  button.querySelector('svg').innerHTML = ICONS[name];
}

/**
 * Wires the controls inside `root` (the watch template's #player) to
 * `video`. hooks: toggleCaptions() → whether captions are now on, or null
 * when the video has none; playerStats() → {engine, quality, throughput}.
 * Returns {showThumbnails(map)}, for the trickplay map once it is loaded.
 */
export function setUpControls(root, video, hooks) {
  const $ = (id) => root.querySelector(`#${id}`);
  const playButton = $('play-button');
  const muteButton = $('mute-button');
  const volume = $('volume');
  const captionsButton = $('captions-button');
  const settingsButton = $('settings-button');
  const settings = $('settings');
  const fullscreenButton = $('fullscreen-button');
  const time = $('time');
  const statsPanel = $('stats');
  const statsToggle = $('stats-toggle');
  for (const button of root.querySelectorAll('.control-bar button')) {
    button.insertAdjacentHTML('afterbegin', '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"></svg>');
  }

  const togglePlay = () => {
    if (video.paused || video.ended) video.play().catch(() => {});
    else video.pause();
  };
  const seekTo = (seconds) => {
    if (!Number.isFinite(video.duration)) return;
    video.currentTime = Math.min(video.duration, Math.max(0, seconds));
  };
  const seekBy = (delta) => seekTo(video.currentTime + delta);
  const toggleMute = () => {
    video.muted = !video.muted;
  };
  const toggleFullscreen = () => {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else root.requestFullscreen?.().catch(() => {});
  };
  const toggleCaptions = () => {
    const on = hooks.toggleCaptions();
    if (on !== null) captionsButton.setAttribute('aria-pressed', String(on));
  };

  // Play state, time and volume follow the element, whoever changed them.
  const showPlayState = () => {
    const playing = !video.paused && !video.ended;
    setIcon(playButton, playing ? 'pause' : 'play');
    playButton.setAttribute('aria-label', playing ? 'Pause (k)' : 'Play (k)');
    root.classList.toggle('paused', !playing);
  };
  const showVolume = () => {
    const silent = video.muted || video.volume === 0;
    setIcon(muteButton, silent ? 'muted' : 'volume');
    muteButton.setAttribute('aria-label', silent ? 'Unmute (m)' : 'Mute (m)');
    volume.value = String(video.muted ? 0 : video.volume);
  };
  const showFullscreen = () => {
    const full = document.fullscreenElement === root;
    setIcon(fullscreenButton, full ? 'exitFullscreen' : 'fullscreen');
    fullscreenButton.setAttribute('aria-label', full ? 'Exit full screen (f)' : 'Full screen (f)');
  };
  setIcon(captionsButton, 'captions');
  setIcon(settingsButton, 'settings');
  video.addEventListener('play', showPlayState);
  video.addEventListener('pause', showPlayState);
  video.addEventListener('ended', showPlayState);
  video.addEventListener('volumechange', showVolume);
  document.addEventListener('fullscreenchange', showFullscreen);
  showPlayState();
  showVolume();
  showFullscreen();

  playButton.addEventListener('click', togglePlay);
  video.addEventListener('click', togglePlay);
  video.addEventListener('dblclick', toggleFullscreen);
  muteButton.addEventListener('click', toggleMute);
  volume.addEventListener('input', () => {
    video.volume = Number(volume.value);
    video.muted = video.volume === 0;
  });
  captionsButton.addEventListener('click', toggleCaptions);
  fullscreenButton.addEventListener('click', toggleFullscreen);
  const openSettings = (open) => {
    settings.hidden = !open;
    settingsButton.setAttribute('aria-expanded', String(open));
  };
  settingsButton.addEventListener('click', () => openSettings(settings.hidden));
  $('settings-close').addEventListener('click', () => {
    openSettings(false);
    settingsButton.focus();
  });
  root.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !settings.hidden) {
      openSettings(false);
      settingsButton.focus();
    }
  });
  document.addEventListener('pointerdown', (event) => {
    if (!settings.hidden && !settings.contains(event.target) && !settingsButton.contains(event.target)) {
      openSettings(false);
    }
  });

  const seekBar = setUpSeekBar(root, video, seekTo);
  const showTime = () => {
    time.textContent = `${formatDuration(video.currentTime)} / ${formatDuration(video.duration) || '0:00'}`;
    seekBar.update();
  };
  for (const name of ['timeupdate', 'durationchange', 'seeking', 'progress', 'loadedmetadata']) {
    video.addEventListener(name, showTime);
  }
  showTime();

  // Controls fade while the video plays and nobody touches it.
  let idleTimer = null;
  const wake = () => {
    root.classList.remove('idle');
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      const busy = !settings.hidden || root.querySelector('.control-bar').contains(document.activeElement);
      if (!video.paused && !busy) root.classList.add('idle');
    }, IDLE_MS);
  };
  for (const name of ['pointermove', 'pointerdown', 'keydown', 'focusin']) root.addEventListener(name, wake);
  video.addEventListener('pause', wake);
  wake();

  // The shortcuts YouTube viewers know. They act on the page unless the
  // viewer is typing or choosing from a menu; space still presses a focused
  // button, as it does everywhere else.
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest?.('input, select, textarea, [contenteditable="true"]')) return;
    const onButton = target.closest?.('button, a, summary');
    const actions = {
      ' ': onButton ? null : togglePlay,
      k: togglePlay,
      j: () => seekBy(-10),
      l: () => seekBy(10),
      ArrowLeft: () => seekBy(-5),
      ArrowRight: () => seekBy(5),
      Home: () => seekTo(0),
      End: () => seekTo(video.duration),
      f: toggleFullscreen,
      m: toggleMute,
      c: toggleCaptions,
    };
    // 0–9 jump to that tenth of the video.
    if (/^[0-9]$/.test(event.key)) actions[event.key] = () => seekTo((video.duration * Number(event.key)) / 10);
    const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (!action) return;
    event.preventDefault();
    action();
    wake();
  });

  // Stats for nerds: what is playing and how well, twice a second while shown.
  let statsTimer = null;
  const showStats = () => {
    const stats = hooks.playerStats();
    const quality = video.getVideoPlaybackQuality?.();
    const buffered = bufferedAhead(video);
    const rows = {
      'stat-engine': stats.engine ?? '—',
      'stat-resolution': video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : '—',
      'stat-bitrate': formatBitrate(stats.quality?.bitrate),
      'stat-buffer': `${buffered.toFixed(1)} s`,
      'stat-dropped': quality ? `${quality.droppedVideoFrames} of ${quality.totalVideoFrames}` : '—',
      'stat-throughput': formatBitrate(stats.throughput),
    };
    for (const [id, text] of Object.entries(rows)) $(id).textContent = text;
  };
  statsToggle.addEventListener('change', () => {
    statsPanel.hidden = !statsToggle.checked;
    clearInterval(statsTimer);
    if (statsToggle.checked) {
      showStats();
      statsTimer = setInterval(showStats, STATS_REFRESH_MS);
    }
  });
  $('stats-close').addEventListener('click', () => {
    statsToggle.checked = false;
    statsToggle.dispatchEvent(new Event('change'));
  });

  return { showThumbnails: seekBar.showThumbnails };
}

/** Seconds buffered past the playhead. */
function bufferedAhead(video) {
  const ranges = video.buffered;
  for (let i = 0; i < ranges.length; i++) {
    if (ranges.start(i) <= video.currentTime + 0.1 && video.currentTime < ranges.end(i)) {
      return ranges.end(i) - video.currentTime;
    }
  }
  return 0;
}

// The seek bar: a slider (arrow keys reach it through the page's shortcuts),
// played and buffered fills, and on hover the frame at that time from the
// sprite sheet and thumbs.vtt written at ingest.
function setUpSeekBar(root, video, seekTo) {
  const bar = root.querySelector('#scrub');
  const played = root.querySelector('#scrub-played');
  const loaded = root.querySelector('#scrub-buffered');
  const preview = root.querySelector('#preview');
  const previewImage = root.querySelector('#preview-image');
  const previewTime = root.querySelector('#preview-time');
  let thumbnails = null;

  const timeAt = (event) => {
    const box = bar.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    return { fraction, box, time: fraction * (video.duration || 0) };
  };
  let dragging = false;
  bar.addEventListener('pointerdown', (event) => {
    if (!video.duration) return;
    dragging = true;
    bar.setPointerCapture(event.pointerId);
    seekTo(timeAt(event).time);
  });
  bar.addEventListener('pointerup', () => (dragging = false));
  bar.addEventListener('pointermove', (event) => {
    if (!video.duration) return;
    const { fraction, box, time } = timeAt(event);
    if (dragging) seekTo(time);
    const cue = thumbnails?.at(time);
    preview.hidden = false;
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
    // Keep the preview inside the player at either end of the bar.
    const half = (cue?.width ?? 40) / 2 + 2;
    const x = Math.min(box.width - half, Math.max(half, fraction * box.width));
    preview.style.left = `${x}px`;
  });
  bar.addEventListener('pointerleave', () => {
    if (!dragging) preview.hidden = true;
  });

  return {
    update() {
      const duration = video.duration;
      const known = Number.isFinite(duration) && duration > 0;
      played.style.width = known ? `${(video.currentTime / duration) * 100}%` : '0';
      loaded.style.width = known ? `${((video.currentTime + bufferedAhead(video)) / duration) * 100}%` : '0';
      bar.setAttribute('aria-valuemax', known ? String(Math.round(duration)) : '0');
      bar.setAttribute('aria-valuenow', String(Math.round(video.currentTime)));
      bar.setAttribute(
        'aria-valuetext',
        `${formatDuration(video.currentTime)} of ${formatDuration(known ? duration : 0)}`,
      );
    },
    showThumbnails(map) {
      thumbnails = map;
      // Fetch the sprite sheets now, so the first hover shows a frame
      // rather than an empty box while the image loads.
      for (const image of new Set(map.cues.map((cue) => cue.image))) new Image().src = image;
    },
  };
}
