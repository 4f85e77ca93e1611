#!/usr/bin/env node
// Walks through the upload page in headless Chromium as a signed-in admin:
// drops several files on the drop zone at once (a real `drop` event
// carrying them), waits until each has become a processing job, reloads
// the page, and checks the same jobs come back as cards and go on to be
// published, each with a link to its watch page. Prints one JSON line with
// the jobs and videos; exits 0 when every step held, 1 (with the failed
// step on stderr) when one did not, 2 on bad arguments.
import { mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/upload.mjs --base URL --token TOKEN --files FILE,FILE...
       [--bad FILE] [--cancel FILE] [--screenshots DIR] [--timeout 300]

  --base         the server's root URL, e.g. http://127.0.0.1:8080
  --token        an admin API token with the write scope
  --files        comma-separated video files to drop together
  --bad          a file that is not a video, picked afterwards: its card must
                 fail with one sentence, the details folded away
  --cancel       a long video, picked twice: cancelled while it uploads (over
                 a link throttled to 256 kB/s), then while it is processed
  --screenshots  write PNGs into DIR
  --timeout      seconds for the whole walk (default 300)`;

const args = parseArgs(
  process.argv.slice(2),
  { flags: [], options: ['base', 'token', 'files', 'bad', 'cancel', 'screenshots', 'timeout'], defaults: { timeout: '300' } },
  USAGE,
);
for (const required of ['base', 'token', 'files']) {
  if (!args[required]) fail(`--${required} is required\n${USAGE}`);
}
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);
const base = new URL(args.base);
const files = args.files.split(',').map((path) => ({ name: basename(path), data: readFileSync(path).toString('base64') }));
const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
if (args.screenshots) mkdirSync(args.screenshots, { recursive: true });

const result = { ok: false, steps: [], errors: [], screenshots: [] };
let failure = null;
let step = 'start chromium';
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, failure: `${step}: still running ${timeoutSeconds} s after the walk began` }),
);
const done = (name, detail = {}) => result.steps.push({ step: name, ...detail });
let browser = null;

try {
  browser = await launchBrowser({ timeoutMs: remainingMs() });
  await browser.context.addInitScript((token) => {
    if (location.protocol.startsWith('http')) sessionStorage.setItem('kinema.apiToken', token);
  }, args.token);
  const page = await browser.context.newPage();
  page.on('pageerror', (error) => result.errors.push({ source: 'page', message: error.message }));
  page.on('response', (response) => {
    if (response.status() >= 400) result.errors.push({ source: 'http', message: `${response.url()} answered ${response.status()}` });
  });

  step = 'open the upload page';
  const response = await page.goto(new URL('/?upload', base).href, { timeout: remainingMs() });
  if (!response?.ok()) throw new Error(`/?upload answered ${response?.status() ?? 'nothing'}`);
  await page.locator('#drop-zone').waitFor({ state: 'visible', timeout: remainingMs() });
  await screenshot(page, 'upload-1280x800.png');
  done(step);

  step = `drop ${files.length} files on the drop zone`;
  const dataTransfer = await page.evaluateHandle((dropped) => {
    const transfer = new DataTransfer();
    for (const file of dropped) {
      const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], file.name, { type: 'video/mp4' }));
    }
    return transfer;
  }, files);
  await page.dispatchEvent('#drop-zone', 'dragenter', { dataTransfer });
  await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer });
  // Each card has a job once its upload is accepted.
  await page.waitForFunction(
    (count) => {
      const cards = [...document.querySelectorAll('.upload-card')];
      return (cards.length === count && cards.every((card) => card.dataset.job)) || cards.some((card) => card.classList.contains('failed'));
    },
    files.length,
    { timeout: remainingMs(), polling: 50 },
  );
  const before = await cards(page);
  if (before.some((card) => card.failed)) throw new Error(`an upload failed: ${JSON.stringify(before)}`);
  await screenshot(page, 'upload-processing-1280x800.png');
  done(step, { cards: before });

  step = 'reload while processing';
  await page.reload({ timeout: remainingMs() });
  await page.waitForFunction(
    (count) => {
      const cards = [...document.querySelectorAll('.upload-card')];
      return cards.length === count && cards.every((card) => card.dataset.stage);
    },
    files.length,
    { timeout: remainingMs(), polling: 50 },
  );
  const after = await cards(page);
  done(step, { cards: after });

  step = 'see every job published';
  await page.waitForFunction(
    () => [...document.querySelectorAll('.upload-card')].every((card) => card.dataset.stage === 'published' || card.classList.contains('failed')),
    null,
    { timeout: remainingMs(), polling: 200 },
  );
  const published = await cards(page);
  if (published.some((card) => card.failed)) throw new Error(`processing failed: ${JSON.stringify(published)}`);
  await screenshot(page, 'upload-done-1280x800.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, 'upload-390x844.png');
  done(step, { cards: published });

  if (args.bad) {
    step = 'summarise a failed upload in one sentence';
    await page.setViewportSize({ width: 1280, height: 800 });
    // Its failure is what this step is about, not an error of the walk.
    const errorsBefore = result.errors.length;
    await page.locator('#upload-file').setInputFiles(args.bad);
    const failed = page.locator('.upload-card.failed');
    await failed.waitFor({ state: 'visible', timeout: remainingMs() });
    const sentence = (await failed.locator('.upload-label').textContent()).trim();
    const details = failed.locator('details');
    const folded = {
      shown: await details.isVisible(),
      open: await details.evaluate((element) => element.open),
      text: (await details.locator('pre').textContent()).trim(),
    };
    result.errors.splice(errorsBefore);
    await screenshot(page, 'upload-failed-1280x800.png');
    done(step, { sentence, details: folded });
  }
  if (args.cancel) {
    step = 'cancel an upload while it uploads';
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: 256 * 1024,
    });
    const uploading = page.locator('.upload-card').first();
    await page.locator('#upload-file').setInputFiles(args.cancel);
    // Bytes, speed and time left, as the card shows them mid-upload.
    await page.waitForFunction(
      () => / of .* · .*\/s · .* left$/.test(document.querySelector('.upload-card .upload-label').textContent),
      null,
      { timeout: remainingMs(), polling: 100 },
    );
    const progress = (await uploading.locator('.upload-label').textContent()).trim();
    await screenshot(page, 'upload-uploading-1280x800.png');
    await uploading.locator('.cancel').click();
    await page.waitForFunction(
      () => document.querySelector('.upload-card .upload-label').textContent === 'Upload cancelled.',
      null,
      { timeout: remainingMs(), polling: 100 },
    );
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    done(step, { progress, said: (await uploading.locator('.upload-label').textContent()).trim() });

    step = 'cancel an upload while it is processed';
    await page.locator('#upload-file').setInputFiles(args.cancel);
    const processing = page.locator('.upload-card').first();
    await page.waitForFunction(
      () => document.querySelector('.upload-card').dataset.stage === 'processing',
      null,
      { timeout: remainingMs(), polling: 100 },
    );
    const job = await processing.evaluate((card) => card.dataset.job);
    await processing.locator('.cancel').click();
    await page.waitForFunction(
      () => document.querySelector('.upload-card .upload-label').textContent === 'Processing cancelled.',
      null,
      { timeout: remainingMs(), polling: 100 },
    );
    done(step, { job, said: (await processing.locator('.upload-label').textContent()).trim() });
  }
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
  console.error(`upload: ${failure}`);
  process.exit(1);
}

/** What each card shows: its job, stage, label and watch link's video. */
async function cards(page) {
  return page.locator('.upload-card').evaluateAll((all) =>
    all.map((card) => {
      const link = card.querySelector('.watch-link');
      return {
        name: card.querySelector('.upload-name').textContent,
        job: card.dataset.job ?? null,
        stage: card.dataset.stage ?? null,
        label: card.querySelector('.upload-label').textContent,
        failed: card.classList.contains('failed'),
        video: link ? new URL(link.href).searchParams.get('v') : null,
      };
    }),
  );
}

async function screenshot(page, name) {
  if (!args.screenshots) return;
  const path = join(args.screenshots, name);
  await page.screenshot({ path, timeout: remainingMs() });
  result.screenshots.push(path);
}
