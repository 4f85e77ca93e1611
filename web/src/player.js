// One interface over the three ways kinema's streams are played in a
// browser: hls.js (HLS through Media Source Extensions), the browser's own
// HLS (Safari, iOS, where MSE may be missing) and dash.js (DASH through MSE).
// The watch page and the browser tests both use it, so the tests exercise
// the very code viewers run. It knows nothing of the page around it: it
// reports through callbacks and never touches the DOM beyond its <video>.
//
// hls.js and dash.js are loaded as classic scripts (web/dist/vendor) that
// define the globals `Hls` and `dashjs`.

/** Whether Media Source Extensions exist here (hls.js and dash.js need them). */
export function mediaSourceAvailable() {
  return typeof window.ManagedMediaSource === 'function' || typeof window.MediaSource === 'function';
}

/** Whether the browser plays HLS by itself (Safari). */
export function nativeHlsAvailable(video) {
  return video.canPlayType('application/vnd.apple.mpegurl') !== '';
}

// hls.js reports a stall as a non-fatal "error"; it recovers by itself and
// the stream is not at fault, so these are warnings rather than errors. So
// is its own abort of a fragment load (`aborted`): on a thin link the ABR
// gives up a download that would arrive too late and fetches a lower rung.
// And so is a fragment appended without growing the buffer
// (`bufferAppendNoProgress`, seen on a loaded machine when a rung switch
// overlaps what is buffered): hls.js's error controller gives it the same
// do-nothing action as the stalls and loads on; if it persists, the gap it
// leaves is a stall, which is what viewers feel and tests count.
const HLS_RECOVERED_DETAILS = new Set([
  'bufferStalledError',
  'bufferNudgeOnStall',
  'bufferSeekOverHole',
  'bufferAppendNoProgress',
  'aborted',
]);

// Phones report pixel ratios of 3 and more; past 2 the eye cannot tell the
// extra rung apart on a small screen, but the data plan can.
const MAX_PIXEL_RATIO = 2;

/**
 * Attaches a player for `url` to `video`.
 *
 * options:
 *   protocol: 'hls' | 'dash'
 *   startAt: 'auto' | 'lowest' — 'lowest' pins the lowest video rung from the
 *            first segment on (what a viewer on the thinnest link gets)
 *   startPosition: seconds to start playing at (0 by default)
 *   onLevels(levels)   — the video rungs, lowest first: {key, width, height, bitrate, codec}
 *   onQuality(quality) — the rung now on screen: {key, width, height, bitrate, codec, auto}
 *   onAudioTracks(tracks) — the audio languages to choose from, in the
 *            stream's order: {key, language, name, default}
 *   onAudioTrack(track)   — the audio track now playing (same shape)
 *   onSubtitleTracks(tracks) — the subtitle tracks: {key, language, name}
 *            (the browser renders the chosen one's cues on the video)
 *   onError(error), onWarning(warning) — {source, type, detail, fatal}
 *
 * Returns {engine, levels(), setLevel(key | 'auto'), audioTracks(),
 * setAudioTrack(key), subtitleTracks(), setSubtitleTrack(key | 'off'),
 * throughput() (bits/s the player measured, or null), destroy()}.
 *
 * At the automatic quality, the rung is capped to the <video>'s size on
 * screen (times the device's pixel ratio, at most 2): a phone-sized player
 * neither starts at nor climbs to a rung it would only shrink. The cap
 * follows the element, so going full screen lifts it. A rung chosen by hand
 * is never capped.
 */
export function attachPlayer(video, options) {
  const callbacks = {
    onLevels: options.onLevels ?? (() => {}),
    onQuality: options.onQuality ?? (() => {}),
    onAudioTracks: options.onAudioTracks ?? (() => {}),
    onAudioTrack: options.onAudioTrack ?? (() => {}),
    onSubtitleTracks: options.onSubtitleTracks ?? (() => {}),
    onError: options.onError ?? (() => {}),
    onWarning: options.onWarning ?? (() => {}),
  };
  const startAt = options.startAt ?? 'auto';
  const startPosition = options.startPosition > 0 ? options.startPosition : 0;
  if (options.protocol === 'dash') {
    if (!mediaSourceAvailable() || typeof window.dashjs === 'undefined') {
      throw new Error('dash needs media source extensions, which this browser lacks; use hls');
    }
    return attachDash(video, options.url, startAt, startPosition, callbacks);
  }
  if (options.protocol !== 'hls') {
    throw new Error(`unknown protocol ${JSON.stringify(options.protocol)}; use hls or dash`);
  }
  if (mediaSourceAvailable() && typeof window.Hls === 'function' && window.Hls.isSupported()) {
    return attachHlsJs(video, options.url, startAt, startPosition, callbacks);
  }
  if (nativeHlsAvailable(video)) {
    return attachNativeHls(video, options.url, startPosition, callbacks);
  }
  throw new Error('this browser can play neither hls (natively) nor through media source extensions');
}

/** Bits per second hls.js assumes before it has measured the link. */
const START_BANDWIDTH_ESTIMATE = 300_000;

function attachHlsJs(video, url, startAt, startPosition, callbacks) {
  const Hls = window.Hls;
  // To pin the lowest rung, loading waits until the rung is chosen, so not
  // even the first fragment comes from another one.
  const hls = new Hls({
    enableWorker: true,
    autoStartLoad: startAt !== 'lowest',
    startPosition: startPosition > 0 ? startPosition : -1,
    capLevelToPlayerSize: true,
    maxDevicePixelRatio: MAX_PIXEL_RATIO,
    // Until its first fragment has measured the link, hls.js assumes this
    // bandwidth (its default, 500 kbit/s, starts a 250 kbit/s viewer on a
    // rung the link cannot carry, and the start stalls). A thin-link guess
    // starts on the lowest rungs; a fast link climbs after one fragment.
    abrEwmaDefaultEstimate: START_BANDWIDTH_ESTIMATE,
    // CMCD (CTA-5004) as a `CMCD=` query parameter on every request (no
    // CORS preflight, unlike its headers): the servers learn the measured
    // throughput and buffer of their viewers, and edges drop it from the
    // cache key and from what they send upstream.
    cmcd: {},
  });
  // hls.js sorts its levels by bitrate; audio-only variants (no height) are
  // left out of the quality menu, which is about picture size.
  const videoLevels = () =>
    hls.levels
      .map((level, index) => ({
        key: index,
        width: level.width,
        height: level.height,
        bitrate: level.bitrate,
        codec: level.videoCodec ?? null,
      }))
      .filter((level) => level.height > 0)
      .sort((a, b) => a.bitrate - b.bitrate);

  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    const levels = videoLevels();
    callbacks.onLevels(levels);
    if (startAt === 'lowest' && levels.length > 0) {
      // startLevel decides the first fragment; currentLevel turns automatic
      // switching off.
      hls.startLevel = levels[0].key;
      hls.currentLevel = levels[0].key;
    }
    if (startAt === 'lowest') hls.startLoad(startPosition > 0 ? startPosition : -1);
  });
  // FRAG_CHANGED fires when a fragment starts playing, so it reports what is
  // on screen rather than what is being downloaded.
  hls.on(Hls.Events.FRAG_CHANGED, (_event, data) => {
    const level = hls.levels[data.frag.level];
    if (level) {
      callbacks.onQuality({
        key: data.frag.level,
        width: level.width,
        height: level.height,
        bitrate: level.bitrate,
        codec: level.videoCodec ?? null,
        auto: hls.autoLevelEnabled,
      });
    }
  });
  // hls.js lists the audio tracks of the current variant's group; every
  // group of a kinema stream has the same tracks in the same order.
  const audioTracks = () =>
    hls.audioTracks.map((track, index) => ({
      key: index,
      language: track.lang ?? 'und',
      name: track.name,
      default: Boolean(track.default),
    }));
  hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, () => callbacks.onAudioTracks(audioTracks()));
  const subtitleTracks = () =>
    hls.subtitleTracks.map((track, index) => ({ key: index, language: track.lang ?? 'und', name: track.name }));
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => callbacks.onSubtitleTracks(subtitleTracks()));
  hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, (_event, data) => {
    const track = audioTracks()[data.id];
    if (track) callbacks.onAudioTrack(track);
  });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    const report = {
      source: 'hls.js',
      type: data.type,
      detail: data.details,
      fatal: Boolean(data.fatal),
      message: data.error ? String(data.error.message ?? data.error) : undefined,
      url: data.frag?.url ?? data.context?.url ?? data.url,
    };
    if (!report.fatal && HLS_RECOVERED_DETAILS.has(data.details)) {
      callbacks.onWarning(report);
    } else {
      callbacks.onError(report);
    }
  });
  const unwatch = watchMediaElementErrors(video, callbacks);
  hls.loadSource(url);
  hls.attachMedia(video);

  return {
    engine: 'hls.js',
    levels: videoLevels,
    setLevel(key) {
      // currentLevel switches now (flushing what is buffered); -1 is automatic.
      hls.currentLevel = key === 'auto' ? -1 : key;
    },
    audioTracks,
    setAudioTrack(key) {
      hls.audioTrack = key;
    },
    subtitleTracks,
    setSubtitleTrack(key) {
      // -1 turns subtitles off; hls.js renders the cues as a TextTrack.
      hls.subtitleTrack = key === 'off' ? -1 : key;
      hls.subtitleDisplay = key !== 'off';
    },
    throughput() {
      // The estimate its ABR decides by (a moving average of fragment loads).
      const estimate = hls.bandwidthEstimate;
      return Number.isFinite(estimate) && estimate > 0 ? estimate : null;
    },
    destroy() {
      unwatch();
      hls.destroy();
    },
  };
}

function attachNativeHls(video, url, startPosition, callbacks) {
  // The browser chooses the rung itself and tells us only the picture size.
  const report = () =>
    callbacks.onQuality({ key: 'native', width: video.videoWidth, height: video.videoHeight, bitrate: 0, auto: true });
  video.addEventListener('resize', report);
  const unwatch = watchMediaElementErrors(video, callbacks);
  // A media fragment URI is how a native player is told where to start.
  video.src = startPosition > 0 ? `${url}#t=${startPosition}` : url;
  callbacks.onLevels([]);
  return {
    engine: 'native',
    levels: () => [],
    setLevel() {},
    audioTracks: () => [],
    setAudioTrack() {},
    subtitleTracks: () => [],
    setSubtitleTrack() {},
    throughput: () => null,
    destroy() {
      unwatch();
      video.removeEventListener('resize', report);
      video.removeAttribute('src');
      video.load();
    },
  };
}

function attachDash(video, url, startAt, startPosition, callbacks) {
  const dashjs = window.dashjs;
  const player = dashjs.MediaPlayer().create();
  const events = dashjs.MediaPlayer.events;
  const automatic = startAt !== 'lowest';
  player.updateSettings({
    debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
    streaming: {
      abr: {
        autoSwitchBitrate: { video: automatic, audio: true },
        // The size cap (see attachPlayer); dash.js takes the full pixel
        // ratio, so the element's size is what bounds it.
        limitBitrateByPortal: true,
        usePixelRatioInLimitBitrateByPortal: true,
        // 1 kbit/s is below every rung, so dash.js starts at the lowest.
        ...(automatic ? {} : { initialBitrate: { video: 1 } }),
      },
      // CMCD as a query parameter, as hls.js sends it (see attachHlsJs).
      cmcd: { enabled: true },
    },
  });
  const videoLevels = () =>
    player
      .getRepresentationsByType('video')
      .map((representation) => ({
        key: representation.id,
        width: representation.width,
        height: representation.height,
        bitrate: representation.bandwidth,
        codec: representation.codecs ?? null,
      }))
      .sort((a, b) => a.bitrate - b.bitrate);

  player.on(events.STREAM_INITIALIZED, () => {
    const levels = videoLevels();
    callbacks.onLevels(levels);
    if (!automatic && levels.length > 0) {
      player.setRepresentationForTypeById('video', levels[0].key, true);
    }
  });
  // dash.js offers one track per audio AdaptationSet; kinema writes one per
  // source track and codec, so sets of a codec this browser cannot play
  // are not offered by dash.js at all.
  const describeTrack = (track) => ({
    key: String(track.id ?? track.index),
    language: track.lang ?? 'und',
    name: track.labels?.[0]?.text ?? track.lang ?? 'audio',
    default: (track.roles ?? []).some((role) => (role.value ?? role) === 'main'),
  });
  const audioTracks = () => player.getTracksFor('audio').map(describeTrack);
  player.on(events.STREAM_INITIALIZED, () => callbacks.onAudioTracks(audioTracks()));
  const subtitleTracks = () =>
    player.getTracksFor('text').map((track, index) => ({
      key: index,
      language: track.lang ?? 'und',
      name: track.labels?.[0]?.text ?? track.lang ?? 'subtitles',
    }));
  player.on(events.TEXT_TRACKS_ADDED, () => callbacks.onSubtitleTracks(subtitleTracks()));
  player.on(events.TRACK_CHANGE_RENDERED, (event) => {
    if (event.mediaType !== 'audio' || !event.newMediaInfo) return;
    callbacks.onAudioTrack(describeTrack(event.newMediaInfo));
  });
  player.on(events.QUALITY_CHANGE_RENDERED, (event) => {
    if (event.mediaType !== 'video' || !event.newRepresentation) return;
    const representation = event.newRepresentation;
    callbacks.onQuality({
      key: representation.id,
      width: representation.width,
      height: representation.height,
      bitrate: representation.bandwidth,
      codec: representation.codecs ?? null,
      auto: player.getSettings().streaming.abr.autoSwitchBitrate.video,
    });
  });
  const reportError = (event) => {
    const error = event.error ?? event;
    callbacks.onError({
      source: 'dash.js',
      type: event.type,
      detail: error.code !== undefined ? String(error.code) : undefined,
      fatal: true,
      message: error.message ? String(error.message) : undefined,
    });
  };
  player.on(events.ERROR, reportError);
  player.on(events.PLAYBACK_ERROR, reportError);
  const unwatch = watchMediaElementErrors(video, callbacks);
  player.initialize(video, url, true, startPosition > 0 ? startPosition : undefined);

  return {
    engine: 'dash.js',
    levels: videoLevels,
    setLevel(key) {
      const auto = key === 'auto';
      player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: auto } } } });
      if (!auto) player.setRepresentationForTypeById('video', key, true);
    },
    subtitleTracks,
    setSubtitleTrack(key) {
      // dash.js numbers its text tracks in the order it lists them.
      player.enableText(key !== 'off');
      if (key !== 'off') player.setTextTrack(key);
    },
    audioTracks,
    setAudioTrack(key) {
      const track = player.getTracksFor('audio').find((candidate) => describeTrack(candidate).key === key);
      if (track) player.setCurrentTrack(track);
    },
    throughput() {
      // dash.js reports kbit/s, NaN before the first segment.
      const kbits = player.getAverageThroughput('video');
      return Number.isFinite(kbits) && kbits > 0 ? kbits * 1000 : null;
    },
    destroy() {
      unwatch();
      player.destroy();
    },
  };
}

// A media element error (decode failure, unsupported format) is fatal
// whatever library feeds the element. Returns the function that stops
// watching, called before a player lets go of the element (emptying its
// source is no error).
function watchMediaElementErrors(video, callbacks) {
  const onError = () => {
    const error = video.error;
    if (!error) return;
    callbacks.onError({
      source: 'video',
      type: 'mediaError',
      detail: `code ${error.code}`,
      fatal: true,
      message: error.message || undefined,
    });
  };
  video.addEventListener('error', onError);
  return () => video.removeEventListener('error', onError);
}
