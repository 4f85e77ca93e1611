#!/usr/bin/env node
// Plays one stream in headless Chromium with a real player (hls.js or
// dash.js) and says whether it played: currentTime advanced past --seconds
// with no player error. Prints one JSON line; exits 0 when it played, 1 when
// it did not (with the reason on stderr), 2 on bad arguments.
//
// The player runs in web/dist/test-player.html, which must be served from the
// same origin as the stream (kinema serve does, at /ui/test-player.html) or
// given by --page.
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/play.mjs --player hls|dash --url MEDIA_URL [--lowest]
       [--audio-language LANG] [--subtitles LANG] [--codec av01] [--page PAGE_URL]
       [--seconds 3] [--timeout 60]

  --player   hls (hls.js, or native HLS without MSE) or dash (dash.js)
  --url      master.m3u8 or manifest.mpd URL
  --lowest   pin the lowest video rung from the start and check it was held
  --audio-language
             once playing, switch to the audio track in LANG (BCP 47) and
             check that it plays on in that language
  --subtitles
             once playing, show the subtitle track in LANG, play on to
             6 s and report the cues the browser's TextTrack holds
  --codec    hold the lowest rung of this video codec (avc1, av01) and check
             only it was played
  --page     the test page (default: /ui/test-player.html on the URL's origin)
  --seconds  playback position to reach (default 3)
  --timeout  seconds to wait for it, browser start included (default 60)`;

const args = parseArgs(
  process.argv.slice(2),
  {
    flags: ['lowest'],
    options: ['player', 'url', 'page', 'seconds', 'timeout', 'audio-language', 'subtitles', 'codec'],
    defaults: { lowest: false, seconds: '3', timeout: '60' },
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
const seconds = Number(args.seconds);
const timeoutSeconds = Number(args.timeout);
if (!(seconds >= 0)) fail(`--seconds must be a number of seconds, got ${JSON.stringify(args.seconds)}`);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);

const pageUrl = new URL(args.page ?? '/ui/test-player.html', mediaUrl.origin);
pageUrl.searchParams.set('player', args.player);
pageUrl.searchParams.set('url', mediaUrl.href);
if (args.lowest) pageUrl.searchParams.set('lowest', '1');
if (args.codec) pageUrl.searchParams.set('codec', args.codec);

const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());

const result = {
  ok: false,
  player: args.player,
  url: mediaUrl.href,
  engine: null,
  currentTime: 0,
  level: null,
  height: null,
  bitrate: null,
  levels: [],
  heightsPlayed: [],
  codecsPlayed: [],
  audioTracks: [],
  audioLanguage: null,
  languagesPlayed: [],
  subtitleTracks: [],
  cues: [],
  stalls: 0,
  stalledSeconds: 0,
  errors: [],
  warnings: [],
};
let reason = null;
const wantedLanguage = args['audio-language'] ?? null;
const wantedSubtitles = args.subtitles ?? null;
// Every wait below is bounded by the deadline; this bounds what is not
// (evaluate, closing the browser), with a grace period to report.
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
    // Script errors on the page and failed requests are errors of the
    // player stack too; record them with what the player reports.
    page.on('pageerror', (error) => result.errors.push({ source: 'page', message: error.message }));
    page.on('requestfailed', (request) =>
      result.warnings.push({ source: 'network', url: request.url(), message: request.failure()?.errorText }),
    );
    const response = await page.goto(pageUrl.href, { timeout: remainingMs() });
    if (!response || !response.ok()) {
      throw new Error(`test page ${pageUrl.origin}${pageUrl.pathname} answered ${response?.status() ?? 'nothing'}; is web/dist served at /ui/?`);
    }
    await page
      .waitForFunction(
        (target) => {
          const state = window.kinemaTest;
          const video = document.getElementById('video');
          return state !== undefined && (state.errors.length > 0 || video.currentTime > target);
        },
        seconds,
        { timeout: remainingMs(), polling: 100 },
      )
      .catch((error) => {
        if (error.name !== 'TimeoutError') throw error;
      });
    if (wantedLanguage !== null) {
      // Switch once playing, then wait for that language to play on for
      // two more seconds.
      const switchedAt = await page.evaluate((language) => {
        const track = window.kinemaPlayer?.audioTracks().find((candidate) => candidate.language === language);
        if (!track) return null;
        window.kinemaPlayer.setAudioTrack(track.key);
        return document.getElementById('video').currentTime;
      }, wantedLanguage);
      if (switchedAt !== null) {
        await page
          .waitForFunction(
            ([language, target]) => {
              const state = window.kinemaTest;
              const video = document.getElementById('video');
              return state.errors.length > 0 || (state.audioTrack?.language === language && video.currentTime > target);
            },
            [wantedLanguage, switchedAt + 2],
            { timeout: remainingMs(), polling: 100 },
          )
          .catch((error) => {
            if (error.name !== 'TimeoutError') throw error;
          });
      }
    }
    if (wantedSubtitles !== null) {
      const chosen = await page.evaluate((language) => {
        const track = window.kinemaPlayer?.subtitleTracks().find((candidate) => candidate.language === language);
        if (!track) return false;
        window.kinemaPlayer.setSubtitleTrack(track.key);
        return true;
      }, wantedSubtitles);
      if (chosen) {
        // The cues of the browser's own TextTrack, once playback is past
        // where the test's cues end.
        await page
          .waitForFunction(
            (language) => {
              const video = document.getElementById('video');
              const track = [...video.textTracks].find((t) => t.language === language && t.mode === 'showing');
              return window.kinemaTest.errors.length > 0 || (video.currentTime > 6 && track?.cues?.length > 0);
            },
            wantedSubtitles,
            { timeout: remainingMs(), polling: 100 },
          )
          .catch((error) => {
            if (error.name !== 'TimeoutError') throw error;
          });
      }
      result.cues = await page.evaluate((language) => {
        const track = [...document.getElementById('video').textTracks].find((t) => t.language === language);
        return [...(track?.cues ?? [])].map((cue) => ({ start: cue.startTime, end: cue.endTime, text: cue.text }));
      }, wantedSubtitles);
    }
    const state = await page.evaluate(() => {
      const test = window.kinemaTest;
      // A stall still going on when the run ends counts up to now.
      const ongoing = test.stalledAt !== null ? (performance.now() - test.stalledAt) / 1000 : 0;
      return { ...test, stalledSeconds: test.stalledSeconds + ongoing, currentTime: document.getElementById('video').currentTime };
    });
    Object.assign(result, {
      engine: state.engine,
      currentTime: state.currentTime,
      level: state.quality?.key ?? null,
      height: state.quality?.height ?? null,
      bitrate: state.quality?.bitrate ?? null,
      levels: state.levels ?? [],
      heightsPlayed: state.heightsPlayed ?? [],
      codecsPlayed: state.codecsPlayed ?? [],
      audioTracks: state.audioTracks ?? [],
      audioLanguage: state.audioTrack?.language ?? null,
      languagesPlayed: state.languagesPlayed ?? [],
      subtitleTracks: state.subtitleTracks ?? [],
      stalls: state.stalls ?? 0,
      stalledSeconds: state.stalledSeconds ?? 0,
      errors: [...result.errors, ...(state.errors ?? [])],
      warnings: [...result.warnings, ...(state.warnings ?? [])],
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
  console.error(`play: ${args.player} did not play ${mediaUrl.href}: ${reason}`);
  process.exit(1);
}

// Returns why the run failed, or null when it played as asked.
function judge(outcome) {
  if (outcome.errors.length > 0) {
    const first = outcome.errors[0];
    return `player error: ${[first.source, first.type, first.detail, first.message].filter(Boolean).join(' ')}`;
  }
  if (!(outcome.currentTime > seconds)) {
    return `currentTime reached only ${outcome.currentTime.toFixed(2)} s of ${seconds} s within ${timeoutSeconds} s`;
  }
  if (outcome.engine !== 'native' && outcome.height === null) {
    return 'the player never reported which rung was on screen';
  }
  if (wantedSubtitles !== null && outcome.cues.length === 0) {
    const offered = outcome.subtitleTracks.map((track) => track.language).join(', ') || 'none';
    return `no ${wantedSubtitles} subtitle cues reached the video's text tracks (tracks offered: ${offered})`;
  }
  if (args.codec) {
    const others = outcome.codecsPlayed.filter((codec) => codec !== args.codec);
    if (outcome.codecsPlayed.length === 0 || others.length > 0) {
      return `asked for ${args.codec} but played ${outcome.codecsPlayed.join(', ') || 'nothing'}`;
    }
  }
  if (wantedLanguage !== null) {
    const languages = outcome.audioTracks.map((track) => track.language);
    if (!languages.includes(wantedLanguage)) {
      return `no audio track in ${wantedLanguage} was offered (tracks: ${languages.join(', ') || 'none'})`;
    }
    if (outcome.audioLanguage !== wantedLanguage) {
      return `asked for audio in ${wantedLanguage} but ${outcome.audioLanguage ?? 'no track'} was playing`;
    }
  }
  if (args.lowest) {
    if (outcome.levels.length === 0) return 'no video rungs were listed, so the lowest could not be pinned';
    const lowest = outcome.levels[0].height;
    const others = outcome.heightsPlayed.filter((height) => height !== lowest);
    if (others.length > 0) {
      return `asked for the lowest rung (${lowest}p) but ${others.join('p, ')}p was also played`;
    }
  }
  return null;
}
