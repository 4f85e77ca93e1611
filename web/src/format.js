// The words the UI shows for numbers and failures: rung names, ladder
// ranges, durations, bit rates and playback errors in plain language. Pure
// functions with no DOM, so node's test runner checks them
// (web/tests/format.test.mjs).

/**
 * A rung's name, "720p": the short side, as the ladder names its rungs, so a
 * portrait 720×1280 rung is 720p (not "1280p") like its landscape twin.
 */
export function rungName(width, height) {
  const sides = [width, height].filter((side) => side > 0);
  return sides.length === 0 ? 'audio' : `${Math.min(...sides)}p`;
}

/** "360p–720p · 3 qualities" for a list of renditions ({width, height}). */
export function describeLadder(renditions) {
  const shortSides = [
    ...new Set(
      (renditions ?? [])
        .filter((rendition) => rendition.height > 0)
        .map((rendition) => Math.min(...[rendition.width, rendition.height].filter((side) => side > 0))),
    ),
  ].sort((a, b) => a - b);
  if (shortSides.length === 0) return '';
  const range =
    shortSides.length === 1 ? `${shortSides[0]}p` : `${shortSides[0]}p–${shortSides[shortSides.length - 1]}p`;
  return `${range} · ${shortSides.length} ${shortSides.length === 1 ? 'quality' : 'qualities'}`;
}

/** "H.264" or "AV1" from a codecs string ("avc1.64001f", "av01.0.05M.08"). */
export function codecName(codec) {
  const family = (codec ?? '').split('.')[0];
  return { avc1: 'H.264', avc3: 'H.264', av01: 'AV1', hvc1: 'HEVC', hev1: 'HEVC', vp09: 'VP9' }[family] ?? family;
}

/**
 * The quality menu's entries for the video rungs ({key, width, height,
 * bitrate, codec}), highest first as people read a quality menu. The codec
 * is named only where two rungs would otherwise read the same.
 */
export function qualityMenuEntries(levels) {
  const names = levels.map((level) => rungName(level.width, level.height));
  return levels
    .map((level, index) => {
      const twins = names.filter((name) => name === names[index]).length > 1;
      const codec = twins && level.codec ? ` ${codecName(level.codec)}` : '';
      const rate = level.bitrate ? ` · ${formatBitrate(level.bitrate)}` : '';
      return { key: level.key, label: `${names[index]}${codec}${rate}`, bitrate: level.bitrate };
    })
    .sort((a, b) => b.bitrate - a.bitrate);
}

export function formatBitrate(bitsPerSecond) {
  if (!(bitsPerSecond > 0)) return '—';
  if (bitsPerSecond >= 1_000_000) return `${(bitsPerSecond / 1_000_000).toFixed(1)} Mbit/s`;
  return `${Math.round(bitsPerSecond / 1000)} kbit/s`;
}

/** "1:05", "1:02:03"; '' for an unknown duration. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const whole = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

/**
 * Says what went wrong in words a viewer understands, from the player's
 * error report ({source, type, detail, message}) and what the server said
 * when asked for the manifest again afterwards: its HTTP status, or
 * 'unreachable' when no answer came. Returns {summary, detail}; the detail
 * keeps the player's own words for whoever debugs it.
 */
export function explainPlaybackError(report, manifestStatus, refusal = null) {
  const detail = [report.source, report.detail ?? report.type, report.message].filter(Boolean).join(': ');
  const say = (summary) => ({ summary, detail });
  if (manifestStatus === 404 || manifestStatus === 410) return say('This video does not exist.');
  // The signed URL's token is past its lifetime (the server's refusal
  // header says so): a share link that ran out, not a private video.
  if (manifestStatus === 403 && refusal === 'expired') return say('This link has expired. Ask for a new one.');
  if (manifestStatus === 401 || manifestStatus === 403) return say('This video is private.');
  if (manifestStatus === 'unreachable') return say('The network connection was lost. Check it, then try again.');
  if (manifestStatus === 429 || manifestStatus === 503) {
    return say('The server is busy right now. Try again in a moment.');
  }
  if (manifestStatus >= 500) return say('The server could not send this video. Try again later.');
  if (report.source === 'video' || report.type === 'mediaError') {
    return say('This video cannot be played in this browser.');
  }
  if (report.type === 'networkError') return say('The video stopped loading. Check the connection, then try again.');
  return say('Something went wrong while playing this video. Try again.');
}
