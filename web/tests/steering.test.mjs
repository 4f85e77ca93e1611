// The multivariant playlist kinema-steering writes for three pathways,
// read by hls.js's own parser (node --test; run by
// crates/kinema-steering/tests/hls_js.rs). The file is the hand-written
// expectation the Rust unit test compares the rewriter's output with, so
// this checks that what kinema writes is what hls.js understands.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { M3U8Parser } from 'hls.js';

const fixture = new URL(
  '../../crates/kinema-steering/tests/fixtures/steered-master.m3u8',
  import.meta.url,
);
const text = readFileSync(fixture, 'utf8');
// The player fetched the master from the first edge, under a signed prefix.
const masterUrl = 'http://10.0.0.2:8080/s/T0k-_/v/clip/master.m3u8';
const bases = {
  n00000000aa: 'http://10.0.0.2:8080/s/T0k-_/v/clip/',
  n00000000bb: 'http://10.0.0.3:8080/s/T0k-_/v/clip/',
  n00000000cc: 'https://origin.example:8443/s/T0k-_/v/clip/',
};

test('hls.js finds the steering server and the initial pathway', () => {
  const parsed = M3U8Parser.parseMasterPlaylist(text, masterUrl);
  assert.equal(parsed.playlistParsingError, null);
  assert.deepEqual(parsed.contentSteering, {
    uri: 'http://10.0.0.3:8080/steer/clip?session=P.S',
    pathwayId: 'n00000000aa',
  });
});

test('hls.js sees one full variant set per pathway, on that pathway', () => {
  const parsed = M3U8Parser.parseMasterPlaylist(text, masterUrl);
  assert.equal(parsed.levels.length, 6);
  const byPathway = {};
  for (const level of parsed.levels) {
    const pathway = level.attrs['PATHWAY-ID'];
    assert.ok(level.url.startsWith(bases[pathway]), `${level.url} on ${pathway}`);
    (byPathway[pathway] ??= []).push(level.attrs['STABLE-VARIANT-ID']);
  }
  assert.deepEqual(Object.keys(byPathway).sort(), Object.keys(bases));
  for (const ids of Object.values(byPathway)) {
    assert.deepEqual(ids, ['v360', 'v720']);
  }
  assert.equal(parsed.iframeVariants.length, 6);
  for (const variant of parsed.iframeVariants) {
    assert.ok(variant.url.startsWith(bases[variant.attrs['PATHWAY-ID']]), variant.url);
  }
});

test('every variant finds its audio and subtitles on its own pathway', () => {
  const parsed = M3U8Parser.parseMasterPlaylist(text, masterUrl);
  const media = M3U8Parser.parseMasterPlaylistMedia(text, masterUrl, parsed);
  assert.equal(media.AUDIO.length, 3);
  assert.equal(media.SUBTITLES.length, 3);
  for (const level of parsed.levels) {
    const pathway = level.attrs['PATHWAY-ID'];
    for (const [type, attribute] of [['AUDIO', 'AUDIO'], ['SUBTITLES', 'SUBTITLES']]) {
      const group = media[type].filter((track) => track.groupId === level.attrs[attribute]);
      assert.equal(group.length, 1, `${type} group ${level.attrs[attribute]}`);
      assert.ok(group[0].url.startsWith(bases[pathway]), `${group[0].url} on ${pathway}`);
    }
  }
  const renditionIds = new Set(media.AUDIO.map((track) => track.attrs['STABLE-RENDITION-ID']));
  assert.deepEqual([...renditionIds], ['a64']);
});
