// Unit tests of the trickplay map parser (node --test; run by
// crates/kinema/tests/players.rs with the browser tests).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseThumbnailVtt } from '../src/thumbnails.js';

const base = new URL('http://127.0.0.1:8080/v/clip/thumbs/thumbs.vtt');

test('cues map time ranges to sprite regions resolved against the map', () => {
  const vtt = 'WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90\n\n' +
    '00:00:02.000 --> 00:01:04.500\nsprite.jpg#xywh=160,0,160,90\n';
  assert.deepEqual(parseThumbnailVtt(vtt, base), [
    { start: 0, end: 2, image: 'http://127.0.0.1:8080/v/clip/thumbs/sprite.jpg', x: 0, y: 0, width: 160, height: 90 },
    { start: 2, end: 64.5, image: 'http://127.0.0.1:8080/v/clip/thumbs/sprite.jpg', x: 160, y: 0, width: 160, height: 90 },
  ]);
});

test('short timestamps, CRLF line ends and cue identifiers are accepted', () => {
  const vtt = 'WEBVTT\r\n\r\n1\r\n01:02.000 --> 01:04.000\r\n/other/sheet.jpg#xywh=1,2,3,4\r\n';
  assert.deepEqual(parseThumbnailVtt(vtt, base), [
    { start: 62, end: 64, image: 'http://127.0.0.1:8080/other/sheet.jpg', x: 1, y: 2, width: 3, height: 4 },
  ]);
});

test('cues without a usable region are skipped', () => {
  const vtt = 'WEBVTT\n\n00:00.000 --> 00:02.000\nsprite.jpg\n\n00:02.000 --> 00:04.000\nsprite.jpg#xywh=a,0,1,1\n';
  assert.deepEqual(parseThumbnailVtt(vtt, base), []);
});
