// Unit tests of the upload page's failure wording: one sentence, no paths.
// Run: node --test web/tests/upload.test.mjs
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { firstSentence, withoutPaths } from '../src/upload.js';

test('absolute paths are cut from server messages', () => {
  assert.equal(
    withoutPaths('cannot open /srv/kinema/ingest/uploads/j123: No such file'),
    'cannot open …: No such file',
  );
  assert.equal(withoutPaths('"/tmp/clip.mp4" is bad (/srv/x)'), '"…" is bad (…)');
  assert.equal(withoutPaths('ratio 1/2 stays'), 'ratio 1/2 stays');
  assert.equal(withoutPaths('https://example.org/x stays a URL'), 'https://example.org/x stays a URL');
});

test('a failure is summarised in its first sentence', () => {
  assert.equal(
    firstSentence('the source has no video stream. ffprobe said so\nline 2\nline 3'),
    'the source has no video stream',
  );
  assert.equal(firstSentence('ffmpeg failed (exit status 1): Conversion failed!'), 'ffmpeg failed (exit status 1)');
  assert.equal(
    firstSentence('source is not a video or audio file: file:<ingest workspace>/uploads/j18: Invalid data found'),
    'source is not a video or audio file',
  );
  assert.equal(firstSentence('no reason given'), 'no reason given');
  assert.equal(firstSentence('cannot read /var/lib/kinema/x.mp4. Try again'), 'cannot read …');
});
