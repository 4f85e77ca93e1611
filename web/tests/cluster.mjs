// The admin UI's cluster page in a real browser, against a running origin
// with two edges (`crates/kinema/tests/cluster_api.rs` starts them): the
// Cluster link shows, every node is listed with its health in words and a
// marker and its region, the origin that answers named "this node" (and
// no other), both edges read "ok"; the script prints `healthy` on a line of
// its own and waits for the node `--dead` to read "dead" (or to leave the
// table) while the page refreshes itself; then prints `dead shown` and a
// JSON report. Screenshots at 1280×800 and 390×844.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exitAfter, launchBrowser, parseArgs, fail } from './browser.mjs';

const USAGE = `usage: node web/tests/cluster.mjs --base URL --token TOKEN --dead NODE
       [--screenshots DIR] [--timeout 120]

  --base         the origin's root URL, e.g. http://127.0.0.1:8080
  --token        an admin API token with the admin scope
  --dead         an edge the caller kills after "healthy" is printed
  --screenshots  write PNGs into DIR
  --timeout      seconds for the whole walk (default 120)`;

const args = parseArgs(
  process.argv.slice(2),
  { flags: [], options: ['base', 'token', 'dead', 'screenshots', 'timeout'], defaults: { timeout: '120' } },
  USAGE,
);
for (const required of ['base', 'token', 'dead']) {
  if (!args[required]) fail(`--${required} is required\n${USAGE}`);
}
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) fail(`--timeout must be a positive number of seconds, got ${JSON.stringify(args.timeout)}`);
const base = new URL(args.base);
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

/** The rows of the cluster table as the page shows them. */
const rowsOf = (page) => page.evaluate(() => [...document.querySelectorAll('#cluster-rows tr')].map((row) => ({
  id: row.dataset.nodeId,
  health: row.querySelector('.health')?.textContent,
  marker: getComputedStyle(row.querySelector('.health'), '::before').content,
  region: row.querySelector('.node-region')?.textContent,
  this_node: row.querySelector('.this-node')?.textContent ?? null,
  cells: [...row.cells].map((cell) => cell.textContent.trim()),
})));

try {
  browser = await launchBrowser({ timeoutMs: remainingMs(), viewport: { width: 1280, height: 800 } });
  await browser.context.addInitScript((token) => {
    if (location.protocol.startsWith('http')) sessionStorage.setItem('kinema.apiToken', token);
  }, args.token);
  const page = await browser.context.newPage();
  page.on('pageerror', (error) => result.errors.push({ source: 'page', message: error.message }));

  step = 'the Cluster link shows on the admin pages';
  await page.goto(new URL('/?admin=jobs', base).href, { timeout: remainingMs() });
  await page.locator('#admin-cluster-link').waitFor({ state: 'visible', timeout: remainingMs() });
  done(step);

  step = 'both edges read ok';
  await page.locator('#admin-cluster-link').click({ timeout: remainingMs() });
  await page.waitForFunction(
    () => [...document.querySelectorAll('#cluster-rows tr')]
      .filter((row) => row.cells[1]?.textContent === 'edge' && row.dataset.status === 'ok').length === 2,
    null,
    { timeout: remainingMs(), polling: 100 },
  );
  const healthy = await rowsOf(page);
  for (const row of healthy) {
    if (row.health !== 'ok') throw new Error(`${row.id} reads ${row.health}`);
    if (!row.marker || row.marker === 'none') throw new Error(`${row.id} has no health marker`);
    if (!row.region || row.region === '–') throw new Error(`${row.id} shows no region`);
  }
  const selves = healthy.filter((row) => row.this_node === 'this node').map((row) => row.id);
  if (selves.length !== 1) throw new Error(`"this node" marks ${JSON.stringify(selves)}, not one node`);
  await screenshot(page, 'cluster-1280x800.png');
  done(step, { rows: healthy, this_node: selves[0] });
  console.log('healthy');

  step = `${args.dead} reads dead once killed`;
  await page.waitForFunction(
    (dead) => {
      const row = document.querySelector(`#cluster-rows tr[data-node-id="${dead}"]`);
      return !row || row.dataset.status === 'dead';
    },
    args.dead,
    { timeout: remainingMs(), polling: 200 },
  );
  const after = await rowsOf(page);
  await screenshot(page, 'cluster-dead-1280x800.png');
  done(step, { rows: after });

  step = 'readable at 390 px';
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => Math.max(
    document.documentElement.scrollWidth - window.innerWidth,
    ...[...document.querySelectorAll('body *')]
      .filter((node) => node.getClientRects().length > 0)
      .map((node) => Math.ceil(node.getBoundingClientRect().right) - window.innerWidth),
  ));
  await screenshot(page, 'cluster-dead-390x844.png');
  if (overflow > 0) throw new Error(`the page is ${overflow} px wider than 390 px`);
  done(step, { overflow });
  if (result.errors.length > 0) throw new Error(`the page logged errors: ${result.errors[0].message}`);
  console.log('dead shown');
} catch (error) {
  failure = `${step}: ${error.message.split('\n')[0]}`;
} finally {
  await browser?.close();
}

result.ok = failure === null;
if (failure) result.failure = failure;
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(`cluster: ${failure}`);
  process.exit(1);
}

async function screenshot(page, name) {
  if (!args.screenshots) return;
  const path = join(args.screenshots, name);
  await page.screenshot({ path, timeout: remainingMs() });
  result.screenshots.push(path);
}
