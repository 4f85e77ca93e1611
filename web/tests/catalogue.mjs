#!/usr/bin/env node
// Walks through the public side of the web UI in headless Chromium: an
// anonymous visitor browses the catalogue, searches it and plays a public
// video, and is told a signed video is private; a signed-in admin (token in
// sessionStorage, as the sign-in form keeps it) sees the signed video marked
// private, plays it and makes a share link, which then plays in a fresh
// browser with no token; a `#token=` link signs an open tab in; an empty
// library shows how to add a video. Nothing may be loaded from another
// origin, nothing may scroll sideways at 360 px, every control has a label
// and keyboard focus is visible. Prints one JSON line; exits 0 when every
// step held, 1 (with the failed step on stderr) when one did not, 2 on bad
// arguments.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/catalogue.mjs --base URL --public ID --private ID --token TOKEN
       [--search TEXT] [--empty-base URL] [--screenshots DIR] [--timeout 120]

  --base         the server's root URL, e.g. http://127.0.0.1:8080
  --public       id of a published public video
  --private      id of a published signed video
  --token        an admin API token with the write scope
  --search       text (any case) of the public video's title to search for
  --empty-base   root URL of a server whose library is empty
  --screenshots  write PNGs into DIR
  --timeout      seconds for the whole walk (default 120)`;

const args = parseArgs(
  process.argv.slice(2),
  {
    flags: [],
    options: ['base', 'public', 'private', 'token', 'search', 'empty-base', 'screenshots', 'timeout'],
    defaults: { timeout: '120' },
  },
  USAGE,
);
for (const required of ['base', 'public', 'private', 'token']) {
  if (!args[required]) fail(`--${required} is required\n${USAGE}`);
}
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);
const base = new URL(args.base);
const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
if (args.screenshots) mkdirSync(args.screenshots, { recursive: true });

const result = { ok: false, steps: [], errors: [], screenshots: [], foreign: [] };
let failure = null;
let step = 'start chromium';
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, failure: `${step}: still running ${timeoutSeconds} s after the walk began` }),
);
const browsers = [];
const done = (name, detail = {}) => result.steps.push({ step: name, ...detail });

try {
  const visitor = await browser();
  const page = await visitor.context.newPage();
  watch(page, { expectErrors: false });

  step = 'browse the catalogue anonymously';
  await goto(page, '/');
  const card = page.locator(`.video-card[data-video-id="${cssString(args.public)}"]`);
  await card.waitFor({ state: 'visible', timeout: remainingMs() });
  const listed = await cardIds(page);
  if (listed.includes(args.private)) throw new Error(`the signed video ${args.private} is listed to an anonymous visitor`);
  const title = (await card.locator('.title').textContent()).trim();
  await page.waitForFunction((image) => image.complete, await card.locator('.poster').elementHandle(), { timeout: remainingMs() });
  const posterLoaded = await card.locator('.poster').evaluate((image) => image.naturalWidth > 0);
  if (!posterLoaded) throw new Error('the card shows no poster');
  const duration = (await card.locator('.duration').textContent()).trim();
  done(step, { listed, title, duration, privateBadges: await visibleBadges(page) });
  await screenshot(page, 'catalogue-1280x800.png');

  step = 'label every control and show keyboard focus';
  const unlabelled = await unlabelledControls(page);
  if (unlabelled.length > 0) throw new Error(`controls without a label: ${unlabelled.join(', ')}`);
  const focusRing = await tabUntil(page, (element) => element.classList.contains('title') || element.classList.contains('poster-link'));
  if (!focusRing) throw new Error('tabbing reached no video card');
  if (focusRing.outline === 'none' && focusRing.shadow === 'none') throw new Error(`the focused card link shows no focus ring: ${JSON.stringify(focusRing)}`);
  done(step, { focusRing });

  if (args.search) {
    step = `search the catalogue for ${JSON.stringify(args.search)}`;
    await page.fill('#catalogue-search', args.search);
    await page.waitForFunction(
      (id) => {
        const cards = [...document.querySelectorAll('.video-card')];
        return cards.length === 1 && cards[0].dataset.videoId === id;
      },
      args.public,
      { timeout: remainingMs(), polling: 100 },
    );
    await page.fill('#catalogue-search', 'no title has this');
    await page.locator('#library-message').waitFor({ state: 'visible', timeout: remainingMs() });
    const said = (await page.locator('#library-message').textContent()).trim();
    if ((await page.locator('.video-card').count()) !== 0) throw new Error('a search for nothing still shows cards');
    await page.fill('#catalogue-search', '');
    await card.waitFor({ state: 'visible', timeout: remainingMs() });
    done(step, { said });
  }

  step = 'play a public video from its card';
  await card.locator('.title').click();
  await page.waitForURL((url) => url.searchParams.get('v') === args.public, { timeout: remainingMs() });
  await waitForPlayback(page, 2);
  const watchTitle = (await page.locator('#watch-title').textContent()).trim();
  if (watchTitle !== title) throw new Error(`the watch page is titled ${JSON.stringify(watchTitle)}, the card ${JSON.stringify(title)}`);
  const share = await page.locator('#share-url').inputValue();
  done(step, { watchTitle, share });
  await page.mouse.move(640, 300);
  await screenshot(page, 'watch-1280x800.png');

  step = 'fit phone screens without sideways scrolling';
  const phone = await visitor.context.newPage();
  watch(phone, { expectErrors: false });
  await phone.setViewportSize({ width: 390, height: 844 });
  await goto(phone, '/');
  await phone.locator('.video-card').first().waitFor({ state: 'visible', timeout: remainingMs() });
  await screenshot(phone, 'catalogue-390x844.png');
  await goto(phone, `/?v=${encodeURIComponent(args.public)}`);
  await waitForPlayback(phone, 1);
  await screenshot(phone, 'watch-390x844.png');
  const overflow = {};
  await phone.setViewportSize({ width: 360, height: 740 });
  for (const [name, path] of [['catalogue', '/'], ['watch', `/?v=${encodeURIComponent(args.public)}`], ['upload', '/?upload']]) {
    await goto(phone, path);
    await phone.locator('#app > *').first().waitFor({ state: 'attached', timeout: remainingMs() });
    if (name === 'catalogue') await phone.locator('.video-card').first().waitFor({ state: 'visible', timeout: remainingMs() });
    overflow[name] = await phone.evaluate(() => Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth));
  }
  await screenshot(phone, 'upload-signed-out-360x740.png');
  if (Object.values(overflow).some((pixels) => pixels > 0)) throw new Error(`wider than a 360 px screen: ${JSON.stringify(overflow)}`);
  await phone.close();
  done(step, { overflow });

  step = 'say plainly that a signed video is private';
  const refused = await visitor.context.newPage();
  watch(refused, { expectErrors: true });
  await goto(refused, `/?v=${encodeURIComponent(args.private)}`);
  await refused.locator('#watch-message').waitFor({ state: 'visible', timeout: remainingMs() });
  const said = (await refused.locator('#watch-message-summary').textContent()).trim();
  if (said !== 'This video is private.') throw new Error(`the page says ${JSON.stringify(said)}`);
  done(step, { said });

  step = 'sign an open tab in with a #token= link';
  await goto(refused, '/');
  await refused.locator('.video-card').first().waitFor({ state: 'visible', timeout: remainingMs() });
  await refused.evaluate((token) => {
    location.hash = `token=${encodeURIComponent(token)}`;
  }, args.token);
  await refused
    .locator(`.video-card[data-video-id="${cssString(args.private)}"] .private`)
    .waitFor({ state: 'visible', timeout: remainingMs() });
  const kept = await refused.evaluate(() => ({
    session: sessionStorage.getItem('kinema.apiToken') !== null,
    local: Object.keys(localStorage).filter((key) => /token/i.test(key)),
    hash: location.hash,
  }));
  if (!kept.session || kept.local.length > 0 || kept.hash !== '') throw new Error(`the token was kept as ${JSON.stringify(kept)}`);
  done(step, kept);

  step = 'list the signed video, marked private, to a signed-in admin';
  const admin = await browser();
  await admin.context.addInitScript((token) => {
    if (location.protocol.startsWith('http')) sessionStorage.setItem('kinema.apiToken', token);
  }, args.token);
  const adminPage = await admin.context.newPage();
  watch(adminPage, { expectErrors: false });
  const mediaPaths = [];
  adminPage.on('request', (request) => {
    const url = new URL(request.url());
    if (/\.(m3u8|mpd|m4s|mp4)$/.test(url.pathname)) mediaPaths.push(url.pathname);
  });
  await goto(adminPage, '/');
  const privateCard = adminPage.locator(`.video-card[data-video-id="${cssString(args.private)}"]`);
  await privateCard.locator('.private').waitFor({ state: 'visible', timeout: remainingMs() });
  done(step, { listed: await cardIds(adminPage), privateBadges: await visibleBadges(adminPage) });
  await screenshot(adminPage, 'catalogue-admin-1280x800.png');

  step = 'play the signed video signed in';
  await privateCard.locator('.title').click();
  await adminPage.waitForURL((url) => url.searchParams.get('v') === args.private, { timeout: remainingMs() });
  await waitForPlayback(adminPage, 2);
  const unsigned = mediaPaths.filter((path) => !path.startsWith('/s/'));
  if (mediaPaths.length === 0 || unsigned.length > 0) throw new Error(`media asked for without a signed URL: ${JSON.stringify(unsigned)}`);
  done(step, { mediaRequests: mediaPaths.length });

  step = 'make a share link of the signed video';
  await adminPage.selectOption('#share-lifetime', '1h');
  await adminPage.click('#share-make');
  await adminPage.waitForFunction(() => new URL(document.getElementById('share-url').value).searchParams.has('s'), null, {
    timeout: remainingMs(),
    polling: 100,
  });
  const shareLink = await adminPage.locator('#share-url').inputValue();
  const shareStatus = (await adminPage.locator('#share-status').textContent()).trim();
  await screenshot(adminPage, 'watch-share-1280x800.png');
  done(step, { shareLink, shareStatus });

  step = 'play the share link in a fresh browser';
  const stranger = await browser();
  const strangerPage = await stranger.context.newPage();
  watch(strangerPage, { expectErrors: false });
  const shared = new URL(shareLink);
  if (shared.origin !== base.origin) throw new Error(`the share link ${shareLink} is not on ${base.origin}`);
  const response = await strangerPage.goto(shareLink, { timeout: remainingMs() });
  if (!response?.ok()) throw new Error(`${shareLink} answered ${response?.status() ?? 'nothing'}`);
  await waitForPlayback(strangerPage, 2);
  const strangerToken = await strangerPage.evaluate(() => sessionStorage.getItem('kinema.apiToken'));
  if (strangerToken !== null) throw new Error('the fresh browser has an admin token');
  done(step);

  step = 'a share link past its lifetime says it expired';
  // The same link with a token of two seconds (as the share menu makes
  // them, through POST /api/tokens), opened once they are over.
  const shortLived = await adminPage.evaluate(async (link) => {
    const video = new URL(link).searchParams.get('v');
    const response = await fetch('/api/tokens', {
      method: 'POST',
      headers: { authorization: `Bearer ${sessionStorage.getItem('kinema.apiToken')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ video, ttl: '2s' }),
    });
    if (!response.ok) throw new Error(`POST /api/tokens answered ${response.status}`);
    const minted = await response.json();
    const expired = new URL(link);
    expired.searchParams.set('s', minted.token);
    return { link: expired.href, expiresAt: Date.parse(minted.expires_at) };
  }, shareLink);
  // Past its expiry and the server's clock-skew allowance (1 s in tests).
  await strangerPage.waitForTimeout(Math.max(0, shortLived.expiresAt - Date.now()) + 2500);
  const expiredPage = await stranger.context.newPage();
  watch(expiredPage, { expectErrors: true });
  await expiredPage.goto(shortLived.link, { timeout: remainingMs() });
  await expiredPage.locator('#watch-message').waitFor({ state: 'visible', timeout: remainingMs() });
  const expiredSays = (await expiredPage.locator('#watch-message-summary').textContent()).trim();
  if (expiredSays !== 'This link has expired. Ask for a new one.') {
    throw new Error(`an expired share link says ${JSON.stringify(expiredSays)}`);
  }
  done(step, { expiredSays });

  if (args['empty-base']) {
    step = 'show how to add a video when the library is empty';
    const empty = await visitor.context.newPage();
    watch(empty, { expectErrors: false });
    await empty.goto(new URL('/', args['empty-base']).href, { timeout: remainingMs() });
    await empty.locator('#catalogue-empty').waitFor({ state: 'visible', timeout: remainingMs() });
    const text = (await empty.locator('#catalogue-empty').textContent()).replace(/\s+/g, ' ').trim();
    if (!text.includes('kinema ingest FILE') || !(await empty.locator('#catalogue-empty a[href="/?upload"]').count())) {
      throw new Error(`the empty state says ${JSON.stringify(text)}`);
    }
    await screenshot(empty, 'catalogue-empty-1280x800.png');
    done(step, { text });
  }

  if (result.foreign.length > 0) throw new Error(`loaded from outside the server: ${result.foreign.join(', ')}`);
  if (result.errors.length > 0) throw new Error(`a page logged errors: ${result.errors[0].message}`);
} catch (error) {
  failure = `${step}: ${error.message.split('\n')[0]}`;
} finally {
  for (const open of browsers) await open.close();
}

result.ok = failure === null;
if (failure) result.failure = failure;
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(`catalogue: ${failure}`);
  process.exit(1);
}

async function browser() {
  const launched = await launchBrowser({ timeoutMs: remainingMs() });
  browsers.push(launched);
  return launched;
}

async function goto(page, path) {
  const response = await page.goto(new URL(path, base).href, { timeout: remainingMs() });
  if (!response?.ok()) throw new Error(`${path} answered ${response?.status() ?? 'nothing'}`);
}

// Records what goes wrong on `page` (script errors, and unless they are
// what the page is about, error responses), and every request that leaves
// the server's origin.
function watch(page, { expectErrors }) {
  page.on('pageerror', (error) => result.errors.push({ source: 'page', message: error.message }));
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol.startsWith('http') && url.host !== base.host && !(args['empty-base'] && url.host === new URL(args['empty-base']).host)) {
      result.foreign.push(request.url());
    }
  });
  if (!expectErrors) {
    page.on('response', (response) => {
      if (response.status() >= 400) result.errors.push({ source: 'http', message: `${response.url()} answered ${response.status()}` });
    });
  }
}

async function cardIds(page) {
  return page.locator('.video-card').evaluateAll((cards) => cards.map((card) => card.dataset.videoId));
}

async function visibleBadges(page) {
  return page
    .locator('.video-card')
    .evaluateAll((cards) => cards.filter((card) => !card.querySelector('.private').hidden).map((card) => card.dataset.videoId));
}

async function unlabelledControls(page) {
  return page.locator('button, input, select').evaluateAll((elements) =>
    elements
      .filter((element) => !element.closest('[hidden]') && element.type !== 'hidden')
      .filter(
        (element) =>
          !(element.getAttribute('aria-label') || element.labels?.[0]?.textContent.trim() || (element.tagName === 'BUTTON' && element.textContent.trim())),
      )
      .map((element) => element.id || element.outerHTML.slice(0, 60)),
  );
}

// Presses Tab (at most 40 times) until the focused element matches
// `wanted` (a function run in the page); returns its outline and shadow.
async function tabUntil(page, wanted) {
  for (let presses = 0; presses < 40; presses++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate((source) => {
      const element = document.activeElement;
      // eslint-disable-next-line no-new-func
      if (!element || !new Function('element', `return (${source})(element)`)(element)) return null;
      const style = getComputedStyle(element);
      return { outline: style.outlineStyle, outlineWidth: style.outlineWidth, shadow: style.boxShadow };
    }, wanted.toString());
    if (focused) return focused;
  }
  return null;
}

// Waits until currentTime has moved `seconds` past where it was, with no
// error shown.
async function waitForPlayback(page, seconds) {
  await page.waitForFunction(() => document.getElementById('engine')?.textContent, null, { timeout: remainingMs(), polling: 100 });
  const from = await page.evaluate(() => document.getElementById('video').currentTime);
  await page
    .waitForFunction(
      (target) => !document.getElementById('watch-message').hidden || document.getElementById('video').currentTime > target,
      from + seconds,
      { timeout: remainingMs(), polling: 100 },
    )
    .catch((error) => {
      throw new Error(`playback did not advance ${seconds} s: ${error.message.split('\n')[0]}`);
    });
  const message = await page.locator('#watch-message').evaluate((element) => (element.hidden ? null : element.textContent));
  if (message) throw new Error(message.replace(/\s+/g, ' ').trim());
}

async function screenshot(page, name) {
  if (!args.screenshots) return;
  const path = join(args.screenshots, name);
  await page.screenshot({ path, timeout: remainingMs() });
  result.screenshots.push(path);
}

function cssString(text) {
  return text.replace(/["\\]/g, '\\$&');
}
