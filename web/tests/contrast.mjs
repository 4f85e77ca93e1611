#!/usr/bin/env node
// Checks the web UI's colours for WCAG 2.x AA contrast in headless Chromium:
// on the catalogue and watch pages (as a visitor) and the upload and admin
// pages (signed in), at 1280×800 and 390×844, every visible text against
// its background (4.5:1, 3:1 for large text) and every text field's
// boundary against its surroundings (3:1), computed from the page's own
// styles (contrast-audit.mjs); and that no page is wider than a 360 px
// screen. Screenshots each page at each size. Prints one JSON line; exits 0
// when nothing fell short, 1 (listing the offenders on stderr) when
// something did, 2 on bad arguments.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';
import { auditPage, contrastRatio } from './contrast-audit.mjs';

const USAGE = `usage: node web/tests/contrast.mjs --base URL --token TOKEN --video ID
       [--screenshots DIR] [--timeout 180]

  --base         the server's root URL, e.g. http://127.0.0.1:8080
  --token        an admin API token with the admin scope (for the admin pages)
  --video        a published public video, for the watch page
  --screenshots  write PNGs into DIR
  --timeout      seconds for the whole check (default 180)`;

const args = parseArgs(
  process.argv.slice(2),
  { flags: [], options: ['base', 'token', 'video', 'screenshots', 'timeout'], defaults: { timeout: '180' } },
  USAGE,
);
for (const required of ['base', 'token', 'video']) {
  if (!args[required]) fail(`--${required} is required\n${USAGE}`);
}
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);
const base = new URL(args.base);
const deadline = Date.now() + timeoutSeconds * 1000;
const remainingMs = () => Math.max(1, deadline - Date.now());
if (args.screenshots) mkdirSync(args.screenshots, { recursive: true });

// The pages, whether they need the sign-in, and what shows once drawn.
const PAGES = [
  { name: 'catalogue', path: '/', ready: '#video-list li', signedIn: false },
  { name: 'watch', path: `/?v=${encodeURIComponent(args.video)}`, ready: '#watch-title', signedIn: false },
  // The player's settings menu, opened: quality, audio, subtitles, stats.
  {
    name: 'watch-settings', path: `/?v=${encodeURIComponent(args.video)}`, ready: '#watch-title', signedIn: false,
    open: '#settings-button', opened: '#settings',
  },
  { name: 'upload', path: '/?upload', ready: '#upload-file', signedIn: true, shown: 'attached' },
  { name: 'admin-jobs', path: '/?admin=jobs', ready: '#jobs-heading', signedIn: true },
  { name: 'admin-videos', path: '/?admin=videos', ready: '#videos-list li', signedIn: true },
  { name: 'admin-tokens', path: '/?admin=tokens', ready: '#tokens-rows tr', signedIn: true },
  { name: 'admin-keys', path: '/?admin=keys', ready: '#keys-rows tr', signedIn: true },
];
const SIZES = [
  { width: 1280, height: 800 },
  { width: 390, height: 844 },
];

const result = { ok: false, self_check: null, pages: [], screenshots: [], errors: [] };
let failure = null;
let step = 'start chromium';
exitAfter(timeoutSeconds * 1000, () =>
  JSON.stringify({ ...result, failure: `${step}: still running ${timeoutSeconds} s after the check began` }),
);
let visitor = null;
let admin = null;

try {
  visitor = await launchBrowser({ timeoutMs: remainingMs() });
  admin = await launchBrowser({ timeoutMs: remainingMs() });
  await admin.context.addInitScript((token) => {
    if (location.protocol.startsWith('http')) sessionStorage.setItem('kinema.apiToken', token);
  }, args.token);
  // The formula the audit uses, handed to every page from the one module.
  for (const browser of [visitor, admin]) {
    await browser.context.addInitScript(`window.kinemaContrastRatio = ${contrastRatio.toString()};`);
  }

  for (const { name, path, ready, signedIn, shown, open, opened } of PAGES) {
    const page = await (signedIn ? admin : visitor).context.newPage();
    page.on('pageerror', (error) => result.errors.push({ page: name, message: error.message }));
    for (const size of SIZES) {
      const label = `${name}-${size.width}x${size.height}`;
      step = `audit ${label}`;
      await page.setViewportSize(size);
      const response = await page.goto(new URL(path, base).href, { timeout: remainingMs() });
      if (!response?.ok()) throw new Error(`${path} answered ${response?.status() ?? 'nothing'}`);
      await page.locator(ready).first().waitFor({ state: shown ?? 'visible', timeout: remainingMs() });
      if (open) {
        await page.locator(open).click({ timeout: remainingMs() });
        await page.locator(opened).waitFor({ state: 'visible', timeout: remainingMs() });
      }
      // Let transitions and the first data settle before reading colours.
      await page.waitForLoadState('networkidle', { timeout: remainingMs() }).catch(() => {});
      await page.waitForTimeout(300);
      if (result.self_check === null) {
        result.self_check = await page.evaluate(() => Math.round(window.kinemaContrastRatio('#777', '#fff') * 100) / 100);
        if (result.self_check !== 4.48) throw new Error(`the page computes #777 on #fff as ${result.self_check}, not 4.48`);
        // The audit finds what falls short: a probe of #777 on white text,
        // and a field with a border as dark as its surroundings.
        const probe = await page.evaluate((audit) => {
          const holder = document.createElement('div');
          holder.innerHTML = '<p style="color:#777;background:#fff">probe text</p>'
            + '<input aria-label="probe field" style="background:#fff;border:1px solid #fff">';
          holder.style.background = '#fff';
          document.body.append(holder);
          try {
            // eslint-disable-next-line no-new-func
            return new Function(`return (${audit})();`)().offenders
              .filter((offender) => ['probe text', 'probe field'].includes(offender.text));
          } finally {
            holder.remove();
          }
        }, auditPage.toString());
        result.probe = probe;
        if (probe.length !== 2 || probe[0].ratio !== 4.48 || probe[1].ratio !== 1) {
          throw new Error(`the audit does not flag its probes: ${JSON.stringify(probe)}`);
        }
      }
      const audit = await page.evaluate(auditPage);
      await screenshot(page, `contrast-${label}.png`);
      result.pages.push({ page: name, size: `${size.width}x${size.height}`, ...audit });
    }
    step = `fit ${name} in 360 px`;
    await page.setViewportSize({ width: 360, height: 740 });
    await page.waitForTimeout(200);
    const overflow = await page.evaluate(() => Math.max(
      document.documentElement.scrollWidth - window.innerWidth,
      ...[...document.querySelectorAll('body *')]
        .filter((node) => node.getClientRects().length > 0 && getComputedStyle(node).visibility !== 'hidden')
        .map((node) => Math.ceil(node.getBoundingClientRect().right) - window.innerWidth),
    ));
    result.pages.push({ page: name, size: '360x740', overflow });
    await page.close();
  }
  const offenders = result.pages.flatMap((entry) =>
    (entry.offenders ?? []).map((offender) => ({ page: entry.page, size: entry.size, ...offender })));
  const overflowing = result.pages.filter((entry) => entry.overflow > 0);
  if (offenders.length > 0 || overflowing.length > 0) {
    const lines = [
      ...offenders.map((o) => `${o.page} ${o.size}: ${o.element} ${o.kind} "${o.text}" ${o.foreground} on ${o.background} = ${o.ratio}:1, needs ${o.required}:1`),
      ...overflowing.map((o) => `${o.page} 360x740: ${o.overflow} px wider than the screen`),
    ];
    step = 'every colour meets AA and every page fits';
    throw new Error(`${lines.length} shortfalls:\n${lines.join('\n')}`);
  }
  if (result.errors.length > 0) throw new Error(`the page logged errors: ${result.errors[0].message}`);
} catch (error) {
  failure = `${step}: ${error.message}`;
} finally {
  await visitor?.close();
  await admin?.close();
}

result.ok = failure === null;
if (failure) result.failure = failure.split('\n')[0];
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(`contrast: ${failure}`);
  process.exit(1);
}

async function screenshot(page, name) {
  if (!args.screenshots) return;
  const path = join(args.screenshots, name);
  await page.screenshot({ path, timeout: remainingMs() });
  result.screenshots.push(path);
}
