#!/usr/bin/env node
// Walks through the admin pages in headless Chromium as a signed-in admin:
// on Jobs, cancels a running job and retries it, and reads a failed job's
// one sentence and folded details; on Videos, edits a title and description
// and then sees the new title in the public catalogue, makes the video
// signed (its old segment URL then needs a token) and public again, and
// reads the one sentence a failed change shows; on API tokens,
// creates a token (which then works against the API) and revokes it (which
// then does not); on Signing keys, creates a key and retires the old one.
// Screenshots every page at 1280×800 and 390×844 and checks nothing is
// wider than the phone's screen. Prints one JSON line; exits 0 when every
// step held, 1 (with the failed step on stderr) when one did not, 2 on bad
// arguments.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/admin.mjs --base URL --token TOKEN --running JOB --failed JOB
       --video ID --title TITLE [--screenshots DIR] [--timeout 240]

  --base         the server's root URL, e.g. http://127.0.0.1:8080
  --token        an admin API token with the admin scope
  --running      a job that is queued or running: cancelled, then retried
  --failed       a job that failed: its failure is read
  --video        a published video whose title and description are edited
  --title        the title to give it
  --screenshots  write PNGs into DIR
  --timeout      seconds for the whole walk (default 240)`;

const args = parseArgs(
  process.argv.slice(2),
  {
    flags: [],
    options: ['base', 'token', 'running', 'failed', 'video', 'title', 'screenshots', 'timeout'],
    defaults: { timeout: '240' },
  },
  USAGE,
);
for (const required of ['base', 'token', 'running', 'failed', 'video', 'title']) {
  if (!args[required]) fail(`--${required} is required\n${USAGE}`);
}
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);
const base = new URL(args.base);
const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
if (args.screenshots) mkdirSync(args.screenshots, { recursive: true });
const DESCRIPTION = 'Filmed for the admin test.\nA second line.';

const result = { ok: false, steps: [], errors: [], screenshots: [] };
let failure = null;
let step = 'start chromium';
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, failure: `${step}: still running ${timeoutSeconds} s after the walk began` }),
);
const done = (name, detail = {}) => result.steps.push({ step: name, ...detail });
let browser = null;

/** The status of a GET of `path` with no token, from node. */
async function publicStatus(path) {
  const response = await fetch(new URL(path, base));
  await response.arrayBuffer();
  return response.status;
}

/**
 * The first segment of `id`'s first variant, found as a player finds it
 * (read with a token: the video may be signed): a URL of its current
 * generation.
 */
async function currentSegment(id) {
  const headers = { Authorization: `Bearer ${args.token}` };
  const { path } = await (await fetch(new URL('/api/tokens', base), {
    method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify({ video: id, ttl: '5m' }),
  })).json();
  const prefix = path.slice(0, path.indexOf('/v/'));
  const uri = (text) => text.split('\n').find((line) => line && !line.startsWith('#'));
  const stable = `/v/${encodeURIComponent(id)}/`;
  const variant = uri(await (await fetch(new URL(`${prefix}${stable}master.m3u8`, base))).text());
  const segment = uri(await (await fetch(new URL(`${prefix}${stable}${variant}`, base))).text());
  return `${stable}${variant.slice(0, variant.lastIndexOf('/') + 1)}${segment}`;
}

/** A request to the API from node, outside the page: the status. */
async function statusWith(token, path) {
  const response = await fetch(new URL(path, base), { headers: { Authorization: `Bearer ${token}` } });
  return response.status;
}

try {
  browser = await launchBrowser({ timeoutMs: remainingMs() });
  await browser.context.addInitScript((token) => {
    if (location.protocol.startsWith('http')) sessionStorage.setItem('kinema.apiToken', token);
  }, args.token);
  const page = await browser.context.newPage();
  page.on('pageerror', (error) => result.errors.push({ source: 'page', message: error.message }));
  const open = async (target, ready) => {
    const response = await page.goto(new URL(target, base).href, { timeout: remainingMs() });
    if (!response?.ok()) throw new Error(`${target} answered ${response?.status() ?? 'nothing'}`);
    await page.locator(ready).first().waitFor({ state: 'visible', timeout: remainingMs() });
  };

  step = 'the admin link shows for a signed-in admin';
  await open('/?admin', '#jobs-list');
  if (!(await page.locator('#nav-admin').isVisible())) throw new Error('no Admin link in the header');
  done(step);

  step = 'cancel the running job';
  const running = page.locator(`[data-job-id="${args.running}"]`);
  await running.waitFor({ state: 'visible', timeout: remainingMs() });
  const stateOf = async (item) => item.getAttribute('data-state');
  const waitForState = async (item, states) => {
    await page.waitForFunction(
      ([id, wanted]) => wanted.includes(document.querySelector(`[data-job-id="${id}"]`)?.dataset.state),
      [await item.getAttribute('data-job-id'), states],
      { timeout: remainingMs(), polling: 100 },
    );
    return stateOf(item);
  };
  const before = await waitForState(running, ['queued', 'running']);
  await screenshot(page, 'admin-jobs-1280x800.png');
  await running.locator('.job-cancel').click({ timeout: remainingMs() });
  const cancelled = await waitForState(running, ['cancelled']);
  done(step, { before, after: cancelled });

  step = 'retry the cancelled job';
  await running.locator('.job-retry').click({ timeout: remainingMs() });
  const retried = await waitForState(running, ['queued', 'running', 'done']);
  done(step, { after: retried });

  step = "read the failed job's failure";
  const failed = page.locator(`[data-job-id="${args.failed}"]`);
  await waitForState(failed, ['failed']);
  const sentence = (await failed.locator('.job-failure').textContent()).trim();
  const detailsOpen = await failed.locator('details').evaluate((details) => details.open);
  await failed.locator('summary').click({ timeout: remainingMs() });
  await page.waitForFunction(
    (id) => document.querySelector(`[data-job-id="${id}"] details pre`)?.textContent.trim().length > 0,
    args.failed,
    { timeout: remainingMs(), polling: 100 },
  );
  const details = await failed.locator('details pre').textContent();
  await screenshot(page, 'admin-jobs-failed-1280x800.png');
  done(step, { sentence, details_open_at_first: detailsOpen, details });

  step = 'edit the title and description';
  await open('/?admin=videos', '#videos-list li');
  const video = page.locator(`[data-video-id="${args.video}"]`);
  await video.locator('.video-edit').click({ timeout: remainingMs() });
  await video.locator('input').fill(args.title, { timeout: remainingMs() });
  await video.locator('textarea').fill(DESCRIPTION, { timeout: remainingMs() });
  await video.locator('button[type="submit"]').click({ timeout: remainingMs() });
  await page.waitForFunction(
    ([id, title]) => document.querySelector(`[data-video-id="${id}"] .video-title`)?.textContent === title,
    [args.video, args.title],
    { timeout: remainingMs(), polling: 100 },
  );
  const shownDescription = await video.locator('.video-description').textContent();
  await screenshot(page, 'admin-videos-1280x800.png');
  done(step, { description: shownDescription });

  step = 'replace starts an upload from the video';
  await video.locator('a', { hasText: 'Replace' }).click({ timeout: remainingMs() });
  await page.locator('#upload-replace').waitFor({ state: 'visible', timeout: remainingMs() });
  await page.waitForFunction((title) => document.getElementById('upload-title')?.value === title, args.title,
    { timeout: remainingMs(), polling: 100 });
  done(step, {
    note: await page.locator('#upload-replace').textContent(),
    access: await page.locator('#upload-access').inputValue(),
    description: await page.locator('#upload-description').inputValue(),
  });

  step = 'the catalogue shows the new title';
  // The catalogue's index refreshes on its own; reload until it shows it.
  let cardTitle = null;
  while (Date.now() < deadline) {
    await open('/', '#catalogue-heading');
    await page.waitForFunction(() => document.querySelectorAll('#video-list li').length > 0 || !document.getElementById('catalogue-empty').hidden,
      null, { timeout: remainingMs(), polling: 100 });
    cardTitle = await page.locator(`[data-video-id="${args.video}"] .title`).textContent({ timeout: remainingMs() });
    if (cardTitle === args.title) break;
    await page.waitForTimeout(500);
  }
  if (cardTitle !== args.title) throw new Error(`the catalogue still says ${JSON.stringify(cardTitle)}`);
  done(step, { title: cardTitle });

  step = 'the watch page shows the title and description';
  await open(`/?v=${encodeURIComponent(args.video)}`, '#watch-title');
  await page.waitForFunction((title) => document.getElementById('watch-title')?.textContent === title, args.title,
    { timeout: remainingMs(), polling: 100 });
  await page.locator('#watch-description').waitFor({ state: 'visible', timeout: remainingMs() });
  done(step, { description: await page.locator('#watch-description').textContent() });

  step = 'make the video signed';
  await open('/?admin=videos', '#videos-list li');
  const segmentBefore = await currentSegment(args.video);
  const beforeStatus = await publicStatus(segmentBefore);
  const accessOf = (id) => page.locator(`[data-video-id="${id}"]`).getAttribute('data-access');
  const stateBefore = await accessOf(args.video);
  const changeAccess = async (label) => {
    const item = page.locator(`[data-video-id="${args.video}"]`);
    await item.locator('.video-access button', { hasText: label }).first().click({ timeout: remainingMs() });
    const question = (await item.locator('.video-access .ask span').first().textContent()).trim();
    await item.locator('.video-access .ask button', { hasText: label }).click({ timeout: remainingMs() });
    return question;
  };
  const question = await changeAccess('Make signed');
  await page.waitForFunction((id) => document.querySelector(`[data-video-id="${id}"]`)?.dataset.access === 'signed',
    args.video, { timeout: remainingMs(), polling: 100 });
  await screenshot(page, 'admin-videos-signed-1280x800.png');
  const segmentSigned = await currentSegment(args.video);
  done(step, {
    signed_segment: segmentSigned,
    signed_segment_status: await publicStatus(segmentSigned),
    question,
    state_before: stateBefore,
    badge: (await video.locator('.video-access-state').textContent()).trim(),
    message: (await page.locator('#admin-message').textContent()).trim(),
    segment: segmentBefore,
    public_status_before: beforeStatus,
    public_status_after: await publicStatus(segmentBefore),
    master_status_after: await publicStatus(`/v/${encodeURIComponent(args.video)}/master.m3u8`),
  });

  step = 'a failed change says why in one sentence';
  // The server is made to fail this one request, as a store outage would.
  const failing = `**/api/videos/${encodeURIComponent(args.video)}`;
  await page.route(failing, (route) => (route.request().method() === 'PATCH'
    ? route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: "the library's store is unavailable; try again shortly" }) })
    : route.continue()));
  await changeAccess('Make public');
  await page.waitForFunction(() => document.getElementById('admin-message')?.classList.contains('error'), null,
    { timeout: remainingMs(), polling: 100 });
  const failedMessage = (await page.locator('#admin-message').textContent()).trim();
  await page.unroute(failing);
  done(step, { message: failedMessage, access: await accessOf(args.video) });

  step = 'make the video public again';
  await changeAccess('Make public');
  await page.waitForFunction((id) => document.querySelector(`[data-video-id="${id}"]`)?.dataset.access === 'public',
    args.video, { timeout: remainingMs(), polling: 100 });
  const segmentAfter = await currentSegment(args.video);
  done(step, {
    segment: segmentAfter,
    public_status: await publicStatus(segmentAfter),
    signed_segment_status: await publicStatus(segmentSigned),
    first_segment_status: await publicStatus(segmentBefore),
  });

  step = 'create a token';
  await open('/?admin=tokens', '#tokens-rows tr');
  await page.locator('#token-name').fill('browser-made', { timeout: remainingMs() });
  await page.locator('#token-scope').selectOption('read', { timeout: remainingMs() });
  await page.locator('#token-create button[type="submit"]').click({ timeout: remainingMs() });
  await page.locator('[data-token="browser-made"]').waitFor({ state: 'visible', timeout: remainingMs() });
  const secret = await page.locator('#token-secret-value').inputValue();
  const createdWorks = await statusWith(secret, '/api/videos');
  await screenshot(page, 'admin-tokens-1280x800.png');
  done(step, { scope: (await page.locator('[data-token="browser-made"] td').first().textContent()).trim(), status_with_it: createdWorks });

  step = 'revoke the token';
  const row = page.locator('[data-token="browser-made"]');
  await row.locator('button', { hasText: 'Revoke' }).first().click({ timeout: remainingMs() });
  await row.locator('.ask button', { hasText: 'Revoke' }).click({ timeout: remainingMs() });
  await row.waitFor({ state: 'detached', timeout: remainingMs() });
  done(step, { status_with_it: await statusWith(secret, '/api/videos') });

  step = 'create a key and retire the old one';
  await open('/?admin=keys', '#keys-rows tr');
  const oldKey = await page.locator('#keys-rows tr').first().getAttribute('data-key');
  await page.locator('#key-create').click({ timeout: remainingMs() });
  await page.waitForFunction(() => document.querySelectorAll('#keys-rows tr').length === 2, null, { timeout: remainingMs(), polling: 100 });
  const oldRow = page.locator(`[data-key="${oldKey}"]`);
  await oldRow.locator('button', { hasText: 'Retire' }).first().click({ timeout: remainingMs() });
  await oldRow.locator('.ask button', { hasText: 'Retire' }).click({ timeout: remainingMs() });
  await page.waitForFunction((id) => document.querySelector(`[data-key="${id}"]`)?.dataset.state === 'retired', oldKey, { timeout: remainingMs(), polling: 100 });
  const states = await page.locator('#keys-rows tr').evaluateAll((rows) => rows.map((tr) => [tr.dataset.key, tr.dataset.state]));
  const pageText = await page.locator('main').textContent();
  await screenshot(page, 'admin-keys-1280x800.png');
  done(step, { retired: oldKey, states, page_text: pageText });

  step = 'the admin pages on a phone';
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = {};
  for (const tab of ['jobs', 'videos', 'tokens', 'keys']) {
    await open(`/?admin=${tab}`, tab === 'jobs' ? '#jobs-list li' : tab === 'videos' ? '#videos-list li' : `#${tab}-rows tr`);
    // How far the page, or any element on it, reaches past the screen's
    // right edge (a clipped button does not widen the page).
    overflow[tab] = await page.evaluate(() => Math.max(
      document.documentElement.scrollWidth - window.innerWidth,
      ...[...document.querySelectorAll('body *')]
        .filter((node) => node.getClientRects().length > 0)
        .map((node) => Math.ceil(node.getBoundingClientRect().right) - window.innerWidth),
    ));
    await screenshot(page, `admin-${tab}-390x844.png`);
  }
  done(step, { overflow });
  if (result.errors.length > 0) throw new Error(`the page logged errors: ${result.errors[0].message}`);
} catch (error) {
  failure = `${step}: ${error.message.split('\n')[0]}`;
} finally {
  await browser?.close();
}

result.ok = failure === null;
if (failure) result.failure = failure;
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(`admin: ${failure}`);
  process.exit(1);
}

async function screenshot(page, name) {
  if (!args.screenshots) return;
  const path = join(args.screenshots, name);
  await page.screenshot({ path, timeout: remainingMs() });
  result.screenshots.push(path);
}
