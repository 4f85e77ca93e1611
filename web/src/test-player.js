// Drives one player for a browser test and publishes what it sees on
// window.kinemaTest, which web/tests/play.mjs reads. Errors are collected,
// not thrown, so the test can report all of them at once.
import { attachPlayer } from './player.js';

const params = new URLSearchParams(location.search);
const state = {
  started: false,
  engine: null,
  levels: [],
  quality: null,
  // Every rung seen on screen, so a test can tell the lowest was held.
  heightsPlayed: [],
  // Every video codec seen on screen (avc1, av01).
  codecsPlayed: [],
  audioTracks: [],
  subtitleTracks: [],
  // The audio track playing, and every language heard, in order.
  audioTrack: null,
  languagesPlayed: [],
  // Rebuffering as a viewer feels it: each time playback, once started,
  // waits for data (the video's `waiting` event), and for how long.
  stalls: 0,
  stalledSeconds: 0,
  // performance.now() when the stall going on began, or null.
  stalledAt: null,
  errors: [],
  warnings: [],
};
window.kinemaTest = state;

const video = document.getElementById('video');
// A `waiting` before the first `playing` is the startup, not a stall; the
// one at the very end of the stream is not one either.
let playedOnce = false;
video.addEventListener('playing', () => {
  playedOnce = true;
  if (state.stalledAt !== null) {
    state.stalledSeconds += (performance.now() - state.stalledAt) / 1000;
    state.stalledAt = null;
  }
});
video.addEventListener('waiting', () => {
  if (!playedOnce || video.ended || state.stalledAt !== null) return;
  if (video.duration - video.currentTime < 0.5) return;
  state.stalls += 1;
  state.stalledAt = performance.now();
});
try {
  const player = attachPlayer(video, {
    protocol: params.get('player'),
    url: params.get('url'),
    startAt: params.get('lowest') === '1' ? 'lowest' : 'auto',
    onLevels: (levels) => {
      state.levels = levels;
      // ?codec=av01: hold the lowest rung of that codec.
      const codec = params.get('codec');
      const wanted = codec ? levels.find((level) => (level.codec ?? '').startsWith(codec)) : undefined;
      if (codec && !wanted) state.errors.push({ source: 'page', type: 'codec', message: `no rung in ${codec}` });
      // Levels arrive after attachPlayer has returned (the manifest loads
      // asynchronously), so the player is there to be told.
      if (wanted) window.kinemaPlayer.setLevel(wanted.key);
    },
    onQuality: (quality) => {
      state.quality = quality;
      const family = (quality.codec ?? '').split('.')[0];
      if (family && !state.codecsPlayed.includes(family)) state.codecsPlayed.push(family);
      if (!state.heightsPlayed.includes(quality.height)) state.heightsPlayed.push(quality.height);
    },
    onAudioTracks: (tracks) => {
      state.audioTracks = tracks;
    },
    onSubtitleTracks: (tracks) => {
      state.subtitleTracks = tracks;
    },
    onAudioTrack: (track) => {
      state.audioTrack = track;
      if (!state.languagesPlayed.includes(track.language)) state.languagesPlayed.push(track.language);
    },
    onError: (error) => state.errors.push(error),
    onWarning: (warning) => state.warnings.push(warning),
  });
  state.engine = player.engine;
  window.kinemaPlayer = player;
  // Muted autoplay is allowed everywhere; play() is still called because
  // native HLS does not start by itself.
  video.play().catch((error) => {
    // The players call play() themselves too; an interrupted call is no fault.
    if (error.name !== 'AbortError') state.errors.push({ source: 'video', type: 'play', message: String(error) });
  });
  state.started = true;
} catch (error) {
  state.errors.push({ source: 'page', type: 'setup', message: String(error.message ?? error) });
}
