// Unit tests of the words the UI shows (node --test; run by
// crates/kinema/tests/players.rs with the browser tests).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  describeLadder,
  explainPlaybackError,
  formatDuration,
  qualityMenuEntries,
  rungName,
} from '../src/format.js';

test('rungs are named by their short side, portrait or landscape', () => {
  assert.equal(rungName(1280, 720), '720p');
  assert.equal(rungName(720, 1280), '720p');
  assert.equal(rungName(240, 426), '240p');
  assert.equal(rungName(0, 0), 'audio');
});

test('a portrait ladder reads as its landscape twin would', () => {
  const portrait = [
    { width: 240, height: 426 },
    { width: 360, height: 640 },
    { width: 720, height: 1280 },
  ];
  assert.equal(describeLadder(portrait), '240p–720p · 3 qualities');
  assert.equal(describeLadder([{ width: 640, height: 360 }]), '360p · 1 quality');
  // An AV1 twin of a rung is the same quality, not another one.
  assert.equal(describeLadder([{ width: 640, height: 360 }, { width: 640, height: 360 }]), '360p · 1 quality');
  assert.equal(describeLadder([]), '');
});

test('the quality menu lists the highest rung first and names codecs only to tell twins apart', () => {
  const entries = qualityMenuEntries([
    { key: 0, width: 426, height: 240, bitrate: 300_000, codec: 'avc1.64001e' },
    { key: 1, width: 640, height: 360, bitrate: 420_000, codec: 'av01.0.05M.08' },
    { key: 2, width: 640, height: 360, bitrate: 700_000, codec: 'avc1.64001e' },
    { key: 3, width: 720, height: 1280, bitrate: 2_800_000, codec: 'avc1.640020' },
  ]);
  assert.deepEqual(
    entries.map((entry) => [entry.key, entry.label]),
    [
      [3, '720p · 2.8 Mbit/s'],
      [2, '360p H.264 · 700 kbit/s'],
      [1, '360p AV1 · 420 kbit/s'],
      [0, '240p · 300 kbit/s'],
    ],
  );
});

test('durations read as a clock', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(65.9), '1:05');
  assert.equal(formatDuration(3723), '1:02:03');
  assert.equal(formatDuration(NaN), '');
});

test('playback errors are told in plain words, with the player jargon kept as detail', () => {
  const manifest404 = { source: 'hls.js', type: 'networkError', detail: 'manifestLoadError', message: 'A network error (status 404) occurred while loading manifest' };
  assert.equal(explainPlaybackError(manifest404, 404).summary, 'This video does not exist.');
  assert.match(explainPlaybackError(manifest404, 404).detail, /manifestLoadError/);
  assert.equal(explainPlaybackError(manifest404, 403).summary, 'This video is private.');
  assert.equal(explainPlaybackError(manifest404, 403, 'missing-token').summary, 'This video is private.');
  assert.equal(explainPlaybackError(manifest404, 403, 'expired').summary, 'This link has expired. Ask for a new one.');
  assert.equal(explainPlaybackError(manifest404, 401).summary, 'This video is private.');
  assert.match(explainPlaybackError(manifest404, 'unreachable').summary, /^The network connection was lost/);
  assert.match(explainPlaybackError(manifest404, 503).summary, /busy/);
  const decode = { source: 'video', type: 'mediaError', detail: 'code 3', fatal: true };
  assert.equal(explainPlaybackError(decode, 200).summary, 'This video cannot be played in this browser.');
  for (const status of [404, 403, 'unreachable', 503, 500, 200]) {
    assert.doesNotMatch(explainPlaybackError(manifest404, status).summary, /manifest|status|error/i);
  }
});
