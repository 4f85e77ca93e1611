#!/usr/bin/env node
// Walks through the web UI in headless Chromium the way a viewer does: the
// library at / lists the video (with --upload, first uploaded through the
// page's form and followed until published), its card opens the watch page,
// the video plays with hls.js, the quality menu pins the lowest rung and the
// readout follows, and the DASH toggle plays it with dash.js. Prints one JSON line;
// exits 0 when every step held, 1 (with the failed step on stderr) when one
// did not, 2 on bad arguments.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/ui.mjs --base URL (--video ID | --upload FILE)
       [--token TOKEN] [--audio NAME] [--subtitles NAME] [--screenshots DIR] [--timeout 90]

  --base         the server's root URL, e.g. http://127.0.0.1:8080
  --video        id of a published video the library must list
  --upload       upload FILE with the library's form first, then walk through it
  --token        admin API token, stored as the UI's own token field would
  --audio        choose the audio track named NAME from the watch page's
                 audio menu and check it plays
  --subtitles    choose the subtitle track named NAME from the watch page's
                 subtitle menu and check its cues reach the video
  --screenshots  write library.png and watch.png into DIR
  --timeout      seconds for the whole walk (default 90)`;

const args = parseArgs(
  process.argv.slice(2),
  {
    flags: [],
    options: ['base', 'video', 'upload', 'token', 'audio', 'subtitles', 'screenshots', 'timeout'],
    defaults: { timeout: '90' },
  },
  USAGE,
);
if (!args.base) fail(`--base is required\n${USAGE}`);
if (!args.video === !args.upload) fail(`give one of --video and --upload\n${USAGE}`);
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);
const base = new URL(args.base);
const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
if (args.screenshots) mkdirSync(args.screenshots, { recursive: true });

const result = { ok: false, steps: [], errors: [] };
let failure = null;
let step = 'start chromium';
// Every wait below is bounded by the deadline; this bounds what is not
// (closing the browser), with a grace period for the last step to report.
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, failure: `${step}: still running ${timeoutSeconds} s after the walk began` }),
);
const browser = await launchBrowser({ timeoutMs: remainingMs() }).catch((error) => {
  failure = error.message;
  return null;
});

if (browser) {
  try {
    const page = await browser.context.newPage();
    page.on('pageerror', (error) => result.errors.push({ source: 'page', message: error.message }));
    // A failed request is reported with its URL; Chromium's own console line
    // for it ("Failed to load resource") names none, so it is skipped.
    page.on('response', (response) => {
      if (response.status() >= 400) {
        result.errors.push({ source: 'http', message: `${response.url()} answered ${response.status()}` });
      }
    });
    page.on('console', (message) => {
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
        result.errors.push({ source: 'console', message: message.text() });
      }
    });
    const done = (name, detail = {}) => result.steps.push({ step: name, ...detail });

    if (args.token) {
      // Set before any page script runs, as if pasted into the token field.
      await page.addInitScript((token) => localStorage.setItem('kinema.apiToken', token), args.token);
    }

    step = 'open the library';
    const response = await page.goto(new URL('/', base).href, { timeout: remainingMs() });
    if (!response?.ok()) throw new Error(`/ answered ${response?.status() ?? 'nothing'}`);
    done(step);

    if (args.upload) {
      step = `upload ${args.upload} with the form`;
      await page.locator('#upload-file').setInputFiles(args.upload);
      await page.fill('#upload-title', 'Uploaded through the web UI');
      await page.click('#upload-button');
      // The form follows the job until it is published (a "watch it" link
      // appears) or fails (the status turns red).
      await page.waitForFunction(
        () => document.querySelector('#upload-label a') !== null ||
          document.getElementById('upload-status').classList.contains('failed'),
        null,
        { timeout: remainingMs(), polling: 200 },
      );
      const status = (await page.locator('#upload-label').textContent()).trim();
      const watchLink = page.locator('#upload-label a');
      const link = (await watchLink.count()) > 0 ? await watchLink.getAttribute('href') : null;
      const id = link && new URL(link, base).searchParams.get('v');
      if (!id) throw new Error(`the upload did not publish: ${status}`);
      args.video = id;
      done(step, { status, video: id });
    }

    step = `find video ${args.video} in the library`;
    const card = page.locator(`.video-card[data-video-id="${cssString(args.video)}"]`);
    await card.waitFor({ state: 'visible', timeout: remainingMs() }).catch(async (error) => {
      const message = await page.locator('#library-message').textContent();
      throw new Error(`${error.message.split('\n')[0]}; the library says: ${message?.trim() || 'nothing'}`);
    });
    const title = (await card.locator('.title').textContent()).trim();
    if (!title) throw new Error('the card shows no title');
    // Wait for the poster to settle (loaded or failed) before judging it:
    // `complete` turns true either way.
    await page.waitForFunction((image) => image.complete, await card.locator('.poster').elementHandle(), {
      timeout: remainingMs(),
      polling: 100,
    });
    const posterLoaded = await card.locator('.poster').evaluate((image) => image.naturalWidth > 0);
    done(step, { title, posterLoaded });
    if (args.screenshots) await page.screenshot({ path: join(args.screenshots, 'library.png'), fullPage: true });

    step = 'open the watch page from the card';
    await card.locator('.title').click();
    await page.waitForURL((url) => url.searchParams.get('v') === args.video, { timeout: remainingMs() });
    done(step);

    step = 'play with hls.js';
    await waitForPlayback(page, 'hls.js', 2);
    const levels = await page.locator('#quality-select option').evaluateAll((options) =>
      options.map((option) => ({ value: option.value, label: option.textContent })),
    );
    if (levels.length < 2) throw new Error(`the quality menu lists no rungs: ${JSON.stringify(levels)}`);
    done(step, { readout: await readout(page), levels: levels.map((level) => level.label) });

    step = 'pin the lowest rung from the quality menu';
    // The menu lists the highest rung first, after Auto.
    const lowest = levels[levels.length - 1];
    const lowestHeight = lowest.label.match(/^(\d+)p/)?.[1];
    if (!lowestHeight) throw new Error(`cannot read a height from the menu entry ${JSON.stringify(lowest.label)}`);
    await page.selectOption('#quality-select', lowest.value);
    await page.waitForFunction(
      (height) => document.getElementById('quality-now').textContent.includes(`×${height} `) &&
        document.getElementById('quality-mode').textContent === '(fixed)',
      lowestHeight,
      { timeout: remainingMs(), polling: 100 },
    );
    await waitForPlayback(page, 'hls.js', 1);
    done(step, { readout: await readout(page) });

    if (args.audio) {
      step = `choose ${args.audio} from the audio menu`;
      const names = await page.locator('#audio-select option').evaluateAll((options) => options.map((o) => o.textContent));
      if (!names.includes(args.audio)) throw new Error(`the audio menu lists ${JSON.stringify(names)}`);
      await page.selectOption('#audio-select', { label: args.audio });
      // The page marks the track the player reports as switched to.
      const chosen = await page.locator('#audio-select').evaluate((select) => select.value);
      await page.waitForFunction(
        (value) => document.getElementById('audio-select').dataset.playing === value,
        chosen,
        { timeout: remainingMs(), polling: 100 },
      );
      await waitForPlayback(page, 'hls.js', 1);
      done(step, { audio: names });
    }

    if (args.subtitles) {
      step = `show ${args.subtitles} from the subtitle menu`;
      const names = await page.locator('#subtitle-select option').evaluateAll((options) => options.map((o) => o.textContent));
      if (!names.includes(args.subtitles)) throw new Error(`the subtitle menu lists ${JSON.stringify(names)}`);
      await page.selectOption('#subtitle-select', { label: args.subtitles });
      // The browser's own text track shows, with cues loaded.
      await page.waitForFunction(
        () => [...document.getElementById('video').textTracks].some((track) => track.mode === 'showing' && track.cues?.length > 0),
        null,
        { timeout: remainingMs(), polling: 100 },
      );
      done(step, { subtitles: names });
    }

    step = 'switch to dash.js with the protocol toggle';
    await page.click('#protocol-dash');
    await waitForPlayback(page, 'dash.js', 2);
    done(step, { readout: await readout(page) });
    if (args.screenshots) {
      // Show the thumbnail preview over the timeline in the screenshot.
      const bar = await page.locator('#scrub').boundingBox();
      await page.mouse.move(bar.x + bar.width * 0.4, bar.y + bar.height / 2);
      await page.screenshot({ path: join(args.screenshots, 'watch.png'), fullPage: true });
    }

    const shown = await page.locator('#watch-message').evaluate((element) => (element.hidden ? null : element.textContent));
    if (shown) throw new Error(`the watch page shows an error: ${shown}`);
    if (result.errors.length > 0) throw new Error(`the page logged errors: ${result.errors[0].message}`);
  } catch (error) {
    failure = `${step}: ${error.message.split('\n')[0]}`;
  } finally {
    await browser.close();
  }
}

result.ok = failure === null;
if (failure) result.failure = failure;
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(`ui: ${failure}`);
  process.exit(1);
}

// Waits until `engine` drives the page's video and currentTime has moved
// `seconds` past where it was when this was called, with no error shown.
async function waitForPlayback(page, engine, seconds) {
  await page.waitForFunction((name) => document.getElementById('engine').textContent === name, engine, {
    timeout: remainingMs(),
    polling: 100,
  });
  const from = await page.evaluate(() => document.getElementById('video').currentTime);
  await page
    .waitForFunction(
      ({ target }) => {
        const message = document.getElementById('watch-message');
        return !message.hidden || document.getElementById('video').currentTime > target;
      },
      { target: from + seconds },
      { timeout: remainingMs(), polling: 100 },
    )
    .catch((error) => {
      throw new Error(`${engine} did not advance ${seconds} s: ${error.message.split('\n')[0]}`);
    });
  const message = await page.locator('#watch-message').evaluate((element) => (element.hidden ? null : element.textContent));
  if (message) throw new Error(message);
}

async function readout(page) {
  return page.evaluate(
    () => `${document.getElementById('quality-now').textContent} ${document.getElementById('quality-mode').textContent}`,
  );
}

function cssString(text) {
  return text.replace(/["\\]/g, '\\$&');
}
