#!/usr/bin/env node
// Plays a video encoded in time chunks across its chunk boundaries in
// headless Chromium with a real player (hls.js or dash.js), from the start,
// and says whether the boundaries were invisible to the viewer: playback
// passed every boundary with no player error, no stall (`waiting` once
// playing), no seek (a player jumping over a hole in the timeline seeks),
// no jump of the clock between time updates, and what the browser buffered
// is one range from the start past the last boundary (a gap or overlap in
// the chunks' timestamps leaves a hole). Prints one JSON line; exits 0 when
// all held, 1 when not (the reason on stderr), 2 on bad arguments.
//
// The player runs in web/dist/test-player.html served by kinema serve at
// /ui/test-player.html, as for play.mjs.
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/chunked_play.mjs --player hls|dash --url MEDIA_URL
       --boundaries 6,12 [--lowest] [--timeout 90]

  --player      hls (hls.js) or dash (dash.js)
  --url         master.m3u8 or manifest.mpd URL
  --boundaries  the chunk boundaries to play across, seconds, comma-separated
  --lowest      pin the lowest video rung from the start
  --timeout     seconds to wait, browser start included (default 90)`;

const args = parseArgs(
  process.argv.slice(2),
  {
    flags: ['lowest'],
    options: ['player', 'url', 'boundaries', 'timeout'],
    defaults: { lowest: false, timeout: '90' },
  },
  USAGE,
);
if (args.player !== 'hls' && args.player !== 'dash') fail(`--player must be hls or dash\n${USAGE}`);
if (!args.url) fail(`--url is required\n${USAGE}`);
let mediaUrl;
try {
  mediaUrl = new URL(args.url);
} catch {
  fail(`--url ${JSON.stringify(args.url)} is not an absolute url`);
}
const boundaries = (args.boundaries ?? '').split(',').filter(Boolean).map(Number);
if (boundaries.length === 0 || boundaries.length > 64 || !boundaries.every((b) => b > 0 && b < 3600)) {
  fail(`--boundaries must list 1 to 64 positive seconds under an hour, got ${JSON.stringify(args.boundaries)}`);
}
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);
// One second past the last boundary: its first segment has played.
const target = Math.max(...boundaries) + 1;

const pageUrl = new URL('/ui/test-player.html', mediaUrl.origin);
pageUrl.searchParams.set('player', args.player);
pageUrl.searchParams.set('url', mediaUrl.href);
if (args.lowest) pageUrl.searchParams.set('lowest', '1');

const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
const result = {
  ok: false,
  player: args.player,
  url: mediaUrl.href,
  boundaries,
  currentTime: 0,
  heightsPlayed: [],
  stalls: 0,
  seeks: 0,
  largestStep: 0,
  buffered: [],
  errors: [],
};
let reason = null;
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, errors: [...result.errors, { source: 'test', message: `still running ${timeoutSeconds} s after the start` }] }),
);
const browser = await launchBrowser({ timeoutMs: remainingMs() }).catch((error) => {
  result.errors.push({ source: 'browser', message: error.message });
  reason = error.message;
  return null;
});

if (browser) {
  try {
    const page = await browser.context.newPage();
    page.on('pageerror', (error) => result.errors.push({ source: 'page', message: error.message }));
    // Media events do not bubble, but listeners capturing on the document
    // see them: installed before the page's scripts, they miss none.
    await page.addInitScript(() => {
      const watch = { seeks: 0, lastTime: null, largestStep: 0 };
      window.chunkedWatch = watch;
      // A seek to the start while the player loads is not a jump.
      document.addEventListener(
        'seeking',
        (event) => {
          if (event.target.currentTime > 0.5) watch.seeks += 1;
        },
        true,
      );
      document.addEventListener(
        'timeupdate',
        (event) => {
          const time = event.target.currentTime;
          if (watch.lastTime !== null) watch.largestStep = Math.max(watch.largestStep, Math.abs(time - watch.lastTime));
          watch.lastTime = time;
        },
        true,
      );
    });
    const response = await page.goto(pageUrl.href, { timeout: remainingMs() });
    if (!response || !response.ok()) {
      throw new Error(`test page ${pageUrl.pathname} answered ${response?.status() ?? 'nothing'}; is web/dist served at /ui/?`);
    }
    await page
      .waitForFunction(
        (position) => {
          const state = window.kinemaTest;
          return state !== undefined && (state.errors.length > 0 || document.getElementById('video').currentTime > position);
        },
        target,
        { timeout: remainingMs(), polling: 100 },
      )
      .catch((error) => {
        if (error.name !== 'TimeoutError') throw error;
      });
    const state = await page.evaluate(() => {
      const video = document.getElementById('video');
      const buffered = [];
      for (let i = 0; i < video.buffered.length; i++) buffered.push([video.buffered.start(i), video.buffered.end(i)]);
      return { test: window.kinemaTest, watch: window.chunkedWatch, currentTime: video.currentTime, buffered };
    });
    Object.assign(result, {
      currentTime: state.currentTime,
      heightsPlayed: state.test.heightsPlayed ?? [],
      stalls: state.test.stalls ?? 0,
      seeks: state.watch.seeks,
      largestStep: state.watch.largestStep,
      buffered: state.buffered,
      errors: [...result.errors, ...(state.test.errors ?? [])],
    });
    reason = judge(result);
  } catch (error) {
    result.errors.push({ source: 'test', message: error.message });
    reason = error.message;
  } finally {
    await browser.close();
  }
}

result.ok = reason === null;
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(`chunked_play: ${args.player} did not play ${mediaUrl.href} across ${boundaries.join(', ')} s: ${reason}`);
  process.exit(1);
}

// Returns why the run failed, or null when the boundaries went unnoticed.
function judge(outcome) {
  if (outcome.errors.length > 0) {
    const first = outcome.errors[0];
    return `player error: ${[first.source, first.type, first.detail, first.message].filter(Boolean).join(' ')}`;
  }
  if (!(outcome.currentTime > target)) {
    return `currentTime reached only ${outcome.currentTime.toFixed(2)} s of ${target} s within ${timeoutSeconds} s`;
  }
  if (outcome.stalls > 0) return `${outcome.stalls} stalls while playing`;
  if (outcome.seeks > 0) return `the player seeked ${outcome.seeks} times (over a hole in the timeline?)`;
  // Time updates come every 250 ms or so while playing.
  if (outcome.largestStep > 1) return `the clock jumped ${outcome.largestStep.toFixed(2)} s between two time updates`;
  const covering = outcome.buffered.find(([start, end]) => start <= 0.1 && end >= target);
  if (!covering) {
    return `buffered ${JSON.stringify(outcome.buffered)} is not one range from the start past ${target} s`;
  }
  return null;
}
