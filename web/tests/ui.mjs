#!/usr/bin/env node
// Walks through the web UI in headless Chromium the way a viewer does: the
// catalogue at / lists the video (with --upload, first uploaded through the
// upload page and followed until published), its card opens the watch page,
// the video plays with hls.js under the page's own controls (the <video>
// has none), the keyboard seeks, the quality menu pins the lowest rung (the
// picture decoded is that rung's), the stats overlay fills in, every
// control is on screen at 1280x800, and the DASH toggle plays it with
// dash.js; then a 390x844 phone player starts below the top rung, nothing
// scrolls sideways at 360 px, and a missing video (and with --private, a
// signed one, to a visitor not signed in) is said to be missing (private) in plain words. Prints one JSON line;
// exits 0 when every step held, 1 (with the failed step on stderr) when one
// did not, 2 on bad arguments.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/ui.mjs --base URL (--video ID | --upload FILE)
       [--token TOKEN] [--audio NAME] [--subtitles NAME] [--private ID]
       [--screenshots DIR] [--timeout 90]

  --base         the server's root URL, e.g. http://127.0.0.1:8080
  --video        id of a published video the library must list
  --upload       upload FILE with the upload page first, then walk through it
  --token        admin API token, kept as the UI's sign-in form would
  --audio        choose the audio track named NAME from the watch page's
                 audio menu and check it plays
  --subtitles    choose the subtitle track named NAME from the watch page's
                 subtitle menu and check its cues reach the video
  --private      id of a signed video, which the watch page must call private
  --screenshots  write PNGs of the library and the watch page (1280x800,
                 390x844, 360x740) into DIR
  --timeout      seconds for the whole walk (default 90)`;

const args = parseArgs(
  process.argv.slice(2),
  {
    flags: [],
    options: ['base', 'video', 'upload', 'token', 'audio', 'subtitles', 'private', 'screenshots', 'timeout'],
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

const result = { ok: false, steps: [], errors: [], screenshots: [] };
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
    if (args.token) {
      // Set before any page script runs, as if signed in with the form,
      // which keeps it in the tab's sessionStorage. (A new tab's
      // about:blank has no storage of its own to hold it.)
      await browser.context.addInitScript((token) => {
        if (location.protocol.startsWith('http')) sessionStorage.setItem('kinema.apiToken', token);
      }, args.token);
    }
    const page = await browser.context.newPage();
    watchForErrors(page);
    const done = (name, detail = {}) => result.steps.push({ step: name, ...detail });

    step = 'open the library';
    const response = await page.goto(new URL('/', base).href, { timeout: remainingMs() });
    if (!response?.ok()) throw new Error(`/ answered ${response?.status() ?? 'nothing'}`);
    done(step);

    if (args.upload) {
      step = `upload ${args.upload} with the form`;
      await page.goto(new URL('/?upload', base).href, { timeout: remainingMs() });
      // The title first: choosing the file starts the upload.
      await page.fill('#upload-title', 'Uploaded through the web UI');
      await page.locator('#upload-file').setInputFiles(args.upload);
      // The card follows the job until it is published (a "Watch it" link
      // appears) or fails (the card turns red).
      await page.waitForFunction(
        () => document.querySelector('.upload-card .watch-link') !== null ||
          document.querySelector('.upload-card.failed') !== null,
        null,
        { timeout: remainingMs(), polling: 200 },
      );
      const status = (await page.locator('.upload-card .upload-label').first().textContent()).trim();
      const watchLink = page.locator('.upload-card .watch-link');
      const link = (await watchLink.count()) > 0 ? await watchLink.first().getAttribute('href') : null;
      const id = link && new URL(link, base).searchParams.get('v');
      if (!id) throw new Error(`the upload did not publish: ${status}`);
      args.video = id;
      await page.goto(new URL('/', base).href, { timeout: remainingMs() });
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
    await screenshot(page, 'library-1280x800.png');

    step = 'open the watch page from the card';
    await card.locator('.title').click();
    await page.waitForURL((url) => url.searchParams.get('v') === args.video, { timeout: remainingMs() });
    done(step);

    step = 'play with hls.js';
    await waitForPlayback(page, 'hls.js', 2);
    const levels = await qualityMenu(page);
    if (levels.length < 2) throw new Error(`the quality menu lists no rungs: ${JSON.stringify(levels)}`);
    done(step, { readout: await readout(page), levels: levels.map((level) => level.label) });

    step = 'show one set of controls';
    // No `controls` attribute: the browser draws no second seek bar of its own.
    const native = await page.locator('#video').evaluate((video) => video.hasAttribute('controls') || video.controls);
    if (native) throw new Error('the <video> has the controls attribute, so the browser draws its own controls too');
    await page.locator('#play-button').waitFor({ state: 'visible', timeout: remainingMs() });
    const unlabelled = await page.locator('#player button, #player input, #player select, #scrub').evaluateAll((elements) =>
      elements
        .filter((element) => !element.closest('[hidden]'))
        .filter((element) => !(element.getAttribute('aria-label') || element.labels?.[0]?.textContent.trim()))
        .map((element) => element.id || element.outerHTML.slice(0, 60)),
    );
    if (unlabelled.length > 0) throw new Error(`controls without a label: ${unlabelled.join(', ')}`);
    done(step);

    step = 'seek with the keyboard';
    const keyboard = await seekWithKeys(page);
    done(step, keyboard);

    step = 'pin the lowest rung from the quality menu';
    // The menu lists the highest rung first, after Auto.
    const lowest = levels[levels.length - 1];
    const lowestSide = Number(lowest.label.match(/^(\d+)p/)?.[1]);
    if (!lowestSide) throw new Error(`cannot read a rung from the menu entry ${JSON.stringify(lowest.label)}`);
    await page.click('#settings-button');
    await page.selectOption('#quality-select', lowest.value);
    // The readout says fixed, and the picture decoded is that rung's.
    await page.waitForFunction(
      (side) => {
        const video = document.getElementById('video');
        return document.getElementById('quality-mode').textContent === '(fixed)' &&
          Math.min(video.videoWidth, video.videoHeight) === side;
      },
      lowestSide,
      { timeout: remainingMs(), polling: 100 },
    );
    await waitForPlayback(page, 'hls.js', 1);
    const onScreen = await page.locator('#video').evaluate((video) => `${video.videoWidth}x${video.videoHeight}`);
    done(step, { readout: await readout(page), onScreen, badge: await page.locator('#quality-badge').textContent() });

    step = 'show the stats overlay';
    await page.check('#stats-toggle');
    await page.waitForFunction(
      () => /^\d+×\d+$/.test(document.getElementById('stat-resolution').textContent) &&
        /bit\/s$/.test(document.getElementById('stat-throughput').textContent) &&
        /bit\/s$/.test(document.getElementById('stat-bitrate').textContent) &&
        /^\d+(\.\d)? s$/.test(document.getElementById('stat-buffer').textContent) &&
        /^\d+ of \d+$/.test(document.getElementById('stat-dropped').textContent),
      null,
      { timeout: remainingMs(), polling: 100 },
    );
    const stats = await page.locator('#stats dd').evaluateAll((cells) => cells.map((cell) => cell.textContent));
    done(step, { stats });

    step = 'reach every control without scrolling at 1280x800';
    const offScreen = await outsideViewport(page, [
      '#play-button', '#scrub', '#time', '#settings-button', '#fullscreen-button', '#quality-select',
      '#stats-toggle', '#protocol-dash', '#watch-title',
    ]);
    if (offScreen.length > 0) throw new Error(`not on screen without scrolling: ${offScreen.join(', ')}`);
    const hiddenRows = await page.locator('#settings').evaluate((panel) => panel.scrollHeight - panel.clientHeight);
    if (hiddenRows > 1) throw new Error(`the settings panel hides ${hiddenRows} px of rows behind a scroll`);
    await screenshot(page, 'watch-settings-1280x800.png');
    await page.click('#stats-close');
    await page.keyboard.press('Escape');
    if (!(await page.locator('#settings').isHidden()) || !(await page.locator('#stats').isHidden())) {
      throw new Error('the close button and Escape left the stats or the settings open');
    }
    done(step);

    if (args.audio) {
      step = `choose ${args.audio} from the audio menu`;
      await page.click('#settings-button');
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
      await page.keyboard.press('Escape');
      done(step, { audio: names });
    }

    if (args.subtitles) {
      step = `show ${args.subtitles} from the subtitle menu`;
      await page.click('#settings-button');
      const names = await page.locator('#subtitle-select option').evaluateAll((options) => options.map((o) => o.textContent));
      if (!names.includes(args.subtitles)) throw new Error(`the subtitle menu lists ${JSON.stringify(names)}`);
      await page.selectOption('#subtitle-select', { label: args.subtitles });
      await page.waitForFunction(showingCues, true, { timeout: remainingMs(), polling: 100 });
      await page.keyboard.press('Escape');
      // `c` turns them off and on again, as the captions button does.
      await page.keyboard.press('c');
      await page.waitForFunction(showingCues, false, { timeout: remainingMs(), polling: 100 }).catch(() => {
        throw new Error('pressing c left the subtitles on');
      });
      await page.keyboard.press('c');
      await page.waitForFunction(showingCues, true, { timeout: remainingMs(), polling: 100 }).catch(() => {
        throw new Error('pressing c again did not bring the subtitles back');
      });
      done(step, { subtitles: names });
    }

    step = 'switch to dash.js with the protocol toggle';
    await page.click('#protocol-dash');
    await waitForPlayback(page, 'dash.js', 2);
    done(step, { readout: await readout(page) });

    step = 'show a trickplay thumbnail over the seek bar';
    const bar = await page.locator('#scrub').boundingBox();
    await page.mouse.move(bar.x + bar.width * 0.4, bar.y + bar.height / 2);
    await page.locator('#preview-image').waitFor({ state: 'visible', timeout: remainingMs() });
    // The frame is a region of the sprite sheet ingest wrote; wait until
    // the sheet is decoded, so the screenshot shows it.
    const sprite = await page.locator('#preview-image').evaluate(async (element) => {
      const url = element.style.backgroundImage.match(/^url\("(.*)"\)$/)?.[1];
      if (!url) return null;
      const image = new Image();
      image.src = url;
      await image.decode();
      return { url: new URL(url).pathname, width: image.naturalWidth, frame: [element.offsetWidth, element.offsetHeight] };
    });
    if (!sprite || !(sprite.width > 0)) throw new Error('the preview over the seek bar shows no frame');
    done(step, { sprite });
    await controlsShown(page);
    await screenshot(page, 'watch-1280x800.png');

    const shown = await page.locator('#watch-message').evaluate((element) => (element.hidden ? null : element.textContent));
    if (shown) throw new Error(`the watch page shows an error: ${shown}`);
    if (result.errors.length > 0) throw new Error(`the page logged errors: ${result.errors[0].message}`);

    const top = Number(levels[0].label.match(/^(\d+)p/)?.[1]);
    step = 'start hls.js below the top rung in a 390x844 phone player';
    const phone = await phonePlayer('hls', top);
    await phone.page.mouse.move(phone.box.x + phone.box.width / 2, phone.box.y + phone.box.height / 2);
    await controlsShown(phone.page);
    await screenshot(phone.page, 'watch-390x844.png');
    done(step, { playerWidth: Math.round(phone.box.width), top, pictures: phone.pictures });

    step = 'start dash.js below the top rung in a 390x844 phone player';
    const phoneDash = await phonePlayer('dash', top);
    await phoneDash.page.close();
    done(step, { playerWidth: Math.round(phoneDash.box.width), top, pictures: phoneDash.pictures });

    step = 'reach the settings in the phone player';
    await phone.page.click('#settings-button');
    const phoneOffScreen = await outsideViewport(phone.page, ['#quality-select', '#stats-toggle', '#settings-button']);
    if (phoneOffScreen.length > 0) throw new Error(`not on screen: ${phoneOffScreen.join(', ')}`);
    // Every row in view at once: a panel that must be scrolled hides its
    // last rows from whoever does not think to scroll it.
    const phoneHiddenRows = await phone.page.locator('#settings').evaluate((panel) => panel.scrollHeight - panel.clientHeight);
    if (phoneHiddenRows > 1) throw new Error(`the settings panel hides ${phoneHiddenRows} px of rows behind a scroll`);
    await screenshot(phone.page, 'watch-settings-390x844.png');
    await phone.page.keyboard.press('Escape');
    done(step);

    step = 'fit 360 px without sideways scrolling';
    await phone.page.setViewportSize({ width: 360, height: 740 });
    const overflowWatch = await horizontalOverflow(phone.page);
    await phone.page.goto(new URL('/', base).href, { timeout: remainingMs() });
    await phone.page.locator('.video-card').first().waitFor({ state: 'visible', timeout: remainingMs() });
    await screenshot(phone.page, 'library-360x740.png');
    const overflowLibrary = await horizontalOverflow(phone.page);
    if (overflowWatch || overflowLibrary) {
      throw new Error(`wider than the screen: watch page ${overflowWatch} px, library ${overflowLibrary} px`);
    }
    done(step);

    step = 'say plainly that a video does not exist';
    // A page of its own: its 404s are what it is about, not errors of the walk.
    const missing = await browser.context.newPage();
    await missing.goto(new URL('/?v=no-such-video', base).href, { timeout: remainingMs() });
    await missing.locator('#watch-message').waitFor({ state: 'visible', timeout: remainingMs() });
    const said = (await missing.locator('#watch-message-summary').textContent()).trim();
    if (said !== 'This video does not exist.') throw new Error(`the page says ${JSON.stringify(said)}`);
    done(step, { said });

    if (args.private) {
      step = 'say plainly that a video is private';
      // To a visitor who is not signed in: an admin's page plays it.
      const anonymous = await launchBrowser({ timeoutMs: remainingMs() });
      const stranger = await anonymous.context.newPage();
      await stranger.goto(new URL(`/?v=${encodeURIComponent(args.private)}`, base).href, { timeout: remainingMs() });
      await stranger.locator('#watch-message').waitFor({ state: 'visible', timeout: remainingMs() });
      const saidPrivate = (await stranger.locator('#watch-message-summary').textContent()).trim();
      await anonymous.close();
      if (saidPrivate !== 'This video is private.') throw new Error(`the page says ${JSON.stringify(saidPrivate)}`);
      done(step, { said: saidPrivate });
    }
    if (result.errors.length > 0) throw new Error(`a page logged errors: ${result.errors[0].message}`);
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

// Collects what goes wrong on `page`: script errors, error responses and
// console errors, each with what it names.
function watchForErrors(page) {
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
}

/** Writes a screenshot of what is on screen into --screenshots, if given. */
async function screenshot(page, name) {
  if (!args.screenshots) return;
  const path = join(args.screenshots, name);
  await page.screenshot({ path, timeout: remainingMs() });
  result.screenshots.push(path);
}

// Opens the watch page in a 390x844 phone-sized page playing with
// `protocol`, plays it past its second segment (so the automatic choice has
// had a second go, with a measured loopback-fast throughput) and checks
// that no picture shown was of the `top` rung. Returns {page, box, pictures}.
async function phonePlayer(protocol, top) {
  const page = await browser.context.newPage();
  watchForErrors(page);
  await page.setViewportSize({ width: 390, height: 844 });
  // The protocol whatever the walk chose before, and every picture size the
  // <video> reports, from the first frame on.
  await page.addInitScript((chosen) => {
    if (location.protocol.startsWith('http')) localStorage.setItem('kinema.protocol', chosen);
    window.picturesShown = [];
    document.addEventListener(
      'resize',
      (event) => {
        if (event.target.tagName === 'VIDEO') window.picturesShown.push([event.target.videoWidth, event.target.videoHeight]);
      },
      true,
    );
  }, protocol);
  await page.goto(new URL(`/?v=${encodeURIComponent(args.video)}`, base).href, { timeout: remainingMs() });
  const engine = protocol === 'dash' ? 'dash.js' : 'hls.js';
  await waitForPlayback(page, engine, 6);
  const pictures = await page.evaluate(() => window.picturesShown);
  const box = await page.locator('#video').boundingBox();
  if (pictures.length === 0) throw new Error('the video reported no picture size');
  if (pictures.some(([width, height]) => Math.min(width, height) >= top)) {
    throw new Error(`a ${Math.round(box.width)} px wide ${engine} player showed the top rung (${top}p): ${JSON.stringify(pictures)}`);
  }
  return { page, box, pictures: pictures.map(([width, height]) => `${width}x${height}`) };
}

/** Waits until the control bar has faded fully in (after a pointer move). */
async function controlsShown(page) {
  await page.waitForFunction(
    () => getComputedStyle(document.querySelector('#player .control-bar')).opacity === '1',
    null,
    { timeout: remainingMs(), polling: 50 },
  );
}

/** The quality menu's entries, Auto first, then the highest rung first. */
async function qualityMenu(page) {
  const options = await page.locator('#quality-select option').evaluateAll((entries) =>
    entries.map((option) => ({ value: option.value, label: option.textContent })),
  );
  return options.filter((option) => option.value !== 'auto');
}

// Pauses with k, then presses l, ArrowRight, j and ArrowLeft in turn and
// checks each moved currentTime by +10, +5, -10 and -5 s (within the video)
// and left the volume alone; k plays again. Returns the times seen.
async function seekWithKeys(page) {
  const state = () =>
    page.locator('#video').evaluate((video) => ({
      time: video.currentTime,
      duration: video.duration,
      paused: video.paused,
      volume: video.volume,
      muted: video.muted,
    }));
  await page.keyboard.press('k');
  await page.waitForFunction(() => document.getElementById('video').paused, null, {
    timeout: remainingMs(),
    polling: 100,
  }).catch(() => {
    throw new Error('k did not pause the video');
  });
  const before = await state();
  const times = [Number(before.time.toFixed(2))];
  let expected = before.time;
  for (const [key, delta] of [['l', 10], ['ArrowRight', 5], ['j', -10], ['ArrowLeft', -5]]) {
    await page.keyboard.press(key);
    expected = Math.min(before.duration, Math.max(0, expected + delta));
    const after = await state();
    if (Math.abs(after.time - expected) > 0.25) {
      throw new Error(`${key} moved currentTime to ${after.time.toFixed(2)} s; expected ${expected.toFixed(2)} s`);
    }
    if (after.volume !== before.volume || after.muted !== before.muted) {
      throw new Error(`${key} changed the volume (${before.volume} → ${after.volume}, muted ${after.muted})`);
    }
    times.push(Number(after.time.toFixed(2)));
  }
  await page.keyboard.press('k');
  await waitForPlayback(page, 'hls.js', 1);
  return { times };
}

/** Those of `selectors` whose element lies (partly) outside the viewport. */
async function outsideViewport(page, selectors) {
  const viewport = page.viewportSize();
  const outside = [];
  for (const selector of selectors) {
    const box = await page.locator(selector).boundingBox();
    if (!box || box.x < 0 || box.y < 0 || box.x + box.width > viewport.width || box.y + box.height > viewport.height) {
      outside.push(`${selector} ${JSON.stringify(box)}`);
    }
  }
  return outside;
}

/** How many CSS pixels the page is wider than its window (0 if none). */
async function horizontalOverflow(page) {
  return page.evaluate(() => Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth));
}

// Runs in the page: whether a text track with cues is showing is `wanted`.
function showingCues(wanted) {
  const showing = [...document.getElementById('video').textTracks].some(
    (track) => track.mode === 'showing' && track.cues?.length > 0,
  );
  return showing === wanted;
}
