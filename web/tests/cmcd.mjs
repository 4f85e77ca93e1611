#!/usr/bin/env node
// Plays one HLS stream with hls.js (web/src/player.js, as the watch page
// does) in headless Chromium and reports the CMCD it sent: every request
// the page made for the stream's playlists and media, and for each the
// keys of its `CMCD` query parameter. Prints one JSON line; exits 0 when
// playback passed --seconds and at least one segment request carried CMCD
// with a measured throughput (`mtp`) and a buffer length (`bl`), 1
// otherwise (reason on stderr), 2 on bad arguments.
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/cmcd.mjs --url MASTER_URL [--seconds 3] [--timeout 60]

  --url      master.m3u8 URL (the test page is /ui/test-player.html on its origin)
  --seconds  playback position to reach (default 3)
  --timeout  seconds to wait for it, browser start included (default 60)`;

const args = parseArgs(
  process.argv.slice(2),
  { flags: [], options: ['url', 'seconds', 'timeout'], defaults: { seconds: '3', timeout: '60' } },
  USAGE,
);
if (!args.url) fail(`--url is required\n${USAGE}`);
let mediaUrl;
try {
  mediaUrl = new URL(args.url);
} catch {
  fail(`--url ${JSON.stringify(args.url)} is not an absolute url`);
}
const seconds = Number(args.seconds);
const timeoutSeconds = Number(args.timeout);
if (!(seconds >= 0)) fail(`--seconds must be a number of seconds, got ${JSON.stringify(args.seconds)}`);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);

const pageUrl = new URL('/ui/test-player.html', mediaUrl.origin);
pageUrl.searchParams.set('player', 'hls');
pageUrl.searchParams.set('url', mediaUrl.href);

const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
const result = { ok: false, url: mediaUrl.href, currentTime: 0, requests: [], errors: [] };
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, errors: [...result.errors, `still running ${timeoutSeconds} s after the start`] }),
);

/** The keys of a request's CMCD query parameter (a CTA-5004 dictionary). */
function cmcdKeys(url) {
  const value = new URL(url).searchParams.get('CMCD');
  if (value === null) return null;
  return value
    .split(',')
    .filter((member) => member.length > 0)
    .map((member) => member.split('=')[0]);
}

let reason = null;
const browser = await launchBrowser({ timeoutMs: remainingMs() }).catch((error) => {
  reason = error.message;
  return null;
});
if (browser) {
  try {
    const page = await browser.context.newPage();
    page.on('pageerror', (error) => result.errors.push(error.message));
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.pathname.startsWith('/v/')) {
        result.requests.push({ path: url.pathname, cmcd: cmcdKeys(request.url()) });
      }
    });
    const response = await page.goto(pageUrl.href, { timeout: remainingMs() });
    if (!response || !response.ok()) {
      throw new Error(`test page answered ${response?.status() ?? 'nothing'}; is web/dist served at /ui/?`);
    }
    await page
      .waitForFunction(
        (target) => {
          const state = window.kinemaTest;
          return state !== undefined && (state.errors.length > 0 || document.getElementById('video').currentTime > target);
        },
        seconds,
        { timeout: remainingMs(), polling: 100 },
      )
      .catch((error) => {
        if (error.name !== 'TimeoutError') throw error;
      });
    const state = await page.evaluate(() => ({
      currentTime: document.getElementById('video').currentTime,
      errors: (window.kinemaTest?.errors ?? []).map((error) => JSON.stringify(error)),
    }));
    result.currentTime = state.currentTime;
    result.errors.push(...state.errors);
  } catch (error) {
    reason = error.message;
  } finally {
    await browser.close().catch(() => {});
  }
}

const segments = result.requests.filter((request) => request.path.endsWith('.m4s'));
const reporting = segments.filter(
  (request) => request.cmcd !== null && request.cmcd.includes('mtp') && request.cmcd.includes('bl'),
);
if (reason === null && result.currentTime <= seconds) reason = `playback reached ${result.currentTime} s, not ${seconds} s`;
if (reason === null && result.errors.length > 0) reason = `player errors: ${result.errors.join('; ')}`;
if (reason === null && reporting.length === 0) reason = `none of ${segments.length} segment requests carried CMCD with mtp and bl`;
result.ok = reason === null;
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(reason);
  process.exit(1);
}
process.exit(0);
