#!/usr/bin/env node
// Plays a steered stream from a kinema edge with hls.js (HLS Content
// Steering) or dash.js (DASH-IF content steering) in headless Chromium,
// SIGKILLs the edge the fragments come from once playback runs,
// and says whether playback went on: currentTime past the kill's position
// plus --after seconds, with no fatal player error. The buffer is kept
// short (--buffer seconds), so going on means fragments came from another
// pathway after the kill. Prints one JSON line; exits 0 when playback went
// on, 1 when it did not (the reason on stderr), 2 on bad arguments.
//
// The page is the edge's own /_kinema/healthz (so the stream is same-origin
// to start with); the player is loaded from /ui/vendor/ through the edge, as
// an origin serving web/dist has it. dash.js reports every failed download
// as an error event: those are listed, and only the media element's own
// error or hls.js's fatal ones count as fatal.
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/failover.mjs --url MASTER_URL --kill HOST:PORT=PID[,...]
       [--player hls|dash] [--kill-at 3] [--after 10] [--buffer 4] [--timeout 120]

  --url      a video's stable master.m3u8 (hls) or manifest.mpd (dash) on an edge
  --player   hls (hls.js, the default) or dash (dash.js)
  --kill     the edges' processes by the host:port their URLs name
  --kill-at  playback position at which the serving edge is killed (default 3)
  --after    seconds of playback to reach after the kill's position (default 10)
  --buffer   hls.js maxBufferLength and maxMaxBufferLength (default 4)
  --timeout  seconds to wait for it all, browser start included (default 120)`;

const args = parseArgs(
  process.argv.slice(2),
  {
    flags: [],
    options: ['url', 'kill', 'player', 'kill-at', 'after', 'buffer', 'timeout'],
    defaults: { player: 'hls', 'kill-at': '3', after: '10', buffer: '4', timeout: '120' },
  },
  USAGE,
);
if (!args.url) fail(`--url is required\n${USAGE}`);
if (!args.kill) fail(`--kill is required\n${USAGE}`);
if (args.player !== 'hls' && args.player !== 'dash') fail(`--player must be hls or dash\n${USAGE}`);
let masterUrl;
try {
  masterUrl = new URL(args.url);
} catch {
  fail(`--url ${JSON.stringify(args.url)} is not an absolute url`);
}
const pids = new Map();
for (const entry of args.kill.split(',')) {
  const [host, pid] = entry.split('=');
  if (!host || !(Number(pid) > 0)) fail(`--kill entry ${JSON.stringify(entry)} is not HOST:PORT=PID`);
  pids.set(host, Number(pid));
}
const killAt = Number(args['kill-at']);
const after = Number(args.after);
const buffer = Number(args.buffer);
const timeoutSeconds = Number(args.timeout);
for (const [name, value] of [['kill-at', killAt], ['after', after], ['buffer', buffer], ['timeout', timeoutSeconds]]) {
  if (!(value > 0)) fail(`--${name} must be a positive number of seconds`);
}

const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
const result = {
  ok: false,
  player: args.player,
  killed: null,
  killedAt: null,
  bufferedAtKill: null,
  currentTime: 0,
  wallSecondsToGoOn: null,
  hostsBeforeKill: [],
  hostsAfterKill: [],
  stalls: 0,
  fatal: [],
  errors: [],
};
let reason = null;
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, fatal: [...result.fatal, `still running ${timeoutSeconds} s after the start`] }),
);

const browser = await launchBrowser({ timeoutMs: remainingMs() }).catch((error) => {
  reason = error.message;
  return null;
});
if (browser) {
  try {
    const page = await browser.context.newPage();
    page.on('pageerror', (error) => result.fatal.push(`page: ${error.message}`));
    const landing = await page.goto(new URL('/_kinema/healthz', masterUrl.origin).href, { timeout: remainingMs() });
    if (!landing?.ok()) throw new Error(`the edge's /_kinema/healthz answered ${landing?.status() ?? 'nothing'}`);
    await page.addScriptTag({ url: args.player === 'hls' ? '/ui/vendor/hls.min.js' : '/ui/vendor/dash.all.min.js' });
    await page.evaluate(
      ([url, seconds, player]) => {
        const state = { frags: [], errors: [], fatal: [], stalls: 0, playing: false };
        window.failover = state;
        const video = document.createElement('video');
        video.id = 'video';
        video.muted = true;
        document.body.append(video);
        video.addEventListener('playing', () => (state.playing = true));
        video.addEventListener('waiting', () => {
          if (state.playing) state.stalls += 1;
        });
        video.addEventListener('error', () => state.fatal.push(`media element: ${video.error?.message ?? video.error?.code}`));
        if (player === 'dash') {
          const dash = window.dashjs.MediaPlayer().create();
          const events = window.dashjs.MediaPlayer.events;
          dash.updateSettings({
            debug: { logLevel: window.dashjs.Debug.LOG_LEVEL_NONE },
            streaming: {
              buffer: {
                bufferTimeAtTopQuality: seconds,
                bufferTimeAtTopQualityLongForm: seconds,
                stableBufferTime: seconds,
              },
            },
          });
          // Also fired for a failed download, with its error.
          dash.on(events.FRAGMENT_LOADING_COMPLETED, (event) => {
            if (event.request?.url && !event.error) state.frags.push({ host: new URL(event.request.url).host, at: performance.now() });
          });
          dash.on(events.ERROR, (event) => state.errors.push(`dash.js/${event.error?.code ?? event.type}`));
          dash.initialize(video, url, true);
          video.muted = true;
          return;
        }
        const hls = new window.Hls({ maxBufferLength: seconds, maxMaxBufferLength: seconds });
        hls.on(window.Hls.Events.FRAG_LOADED, (_, data) => {
          state.frags.push({ host: new URL(data.frag.url).host, at: performance.now() });
        });
        hls.on(window.Hls.Events.ERROR, (_, data) => {
          const entry = `${data.type}/${data.details}`;
          (data.fatal ? state.fatal : state.errors).push(entry);
        });
        hls.loadSource(url);
        hls.attachMedia(video);
        video.play().catch((error) => state.fatal.push(`play: ${error.message}`));
      },
      [masterUrl.href, buffer, args.player],
    );
    const position = () => page.evaluate(() => document.getElementById('video').currentTime);
    await page.waitForFunction(
      (target) => window.failover.fatal.length > 0 || document.getElementById('video').currentTime > target,
      killAt,
      { timeout: remainingMs(), polling: 100 },
    );
    const before = await page.evaluate(() => {
      const video = document.getElementById('video');
      const ranges = video.buffered;
      return {
        frags: window.failover.frags,
        fatal: window.failover.fatal,
        currentTime: video.currentTime,
        bufferedEnd: ranges.length > 0 ? ranges.end(ranges.length - 1) : 0,
      };
    });
    if (before.fatal.length > 0) throw new Error(`fatal before the kill: ${before.fatal.join(', ')}`);
    result.hostsBeforeKill = [...new Set(before.frags.map((frag) => frag.host))];
    const serving = before.frags.at(-1)?.host;
    const pid = pids.get(serving);
    if (pid === undefined) throw new Error(`fragments came from ${serving}, which --kill does not name`);
    process.kill(pid, 'SIGKILL');
    const killedWall = Date.now();
    const killedPerf = await page.evaluate(() => performance.now());
    result.killed = serving;
    result.killedAt = before.currentTime;
    result.bufferedAtKill = before.bufferedEnd;
    const target = before.currentTime + after;
    await page
      .waitForFunction(
        (goal) => window.failover.fatal.length > 0 || document.getElementById('video').currentTime > goal,
        target,
        { timeout: remainingMs(), polling: 100 },
      )
      .catch((error) => {
        if (error.name !== 'TimeoutError') throw error;
      });
    result.currentTime = await position();
    const state = await page.evaluate(() => window.failover);
    result.stalls = state.stalls;
    result.fatal.push(...state.fatal);
    result.errors = [...new Set(state.errors)];
    result.hostsAfterKill = [...new Set(state.frags.filter((frag) => frag.at > killedPerf).map((frag) => frag.host))];
    if (result.currentTime > target && result.fatal.length === 0) {
      result.ok = true;
      result.wallSecondsToGoOn = (Date.now() - killedWall) / 1000;
    } else {
      reason = `playback stopped at ${result.currentTime.toFixed(2)} s, short of ${target.toFixed(2)} s after killing ${serving}`;
    }
  } catch (error) {
    reason = error.message;
  } finally {
    await browser.close();
  }
}
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(reason ?? 'playback did not go on');
  process.exit(1);
}
