// Launches the machine's Chromium (Debian's /usr/bin/chromium) headless for
// the browser tests, through playwright-core, which drives a browser but
// never downloads one. Every launch gets a fresh profile directory, removed
// on close, so no test sees another's cache or storage.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// The flags that make Debian's Chromium run headless on a CI box with only
// loopback networking (see ../shared/FACTS.md): no sandbox as root, no GPU,
// no QUIC, and none of the background fetches that would try the internet.
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

export const CHROMIUM_PATH = process.env.KINEMA_CHROMIUM ?? '/usr/bin/chromium';

/** Returns {context, close}; `close` also removes the profile directory. */
export async function launchBrowser({ timeoutMs = 30_000, viewport } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'kinema-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_FLAGS,
      timeout: timeoutMs,
      viewport: viewport ?? { width: 1280, height: 800 },
    });
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not start chromium at ${CHROMIUM_PATH}: ${error.message}`);
  }
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/**
 * Ends the process with exit code 1 once the script's own timeout (`ms`)
 * and a grace period have passed, whatever is still pending: a browser call
 * without a timeout of its own (evaluate, close) must not hang the test that
 * runs the script. `report()` returns the line to print, so the caller still
 * gets its one JSON line saying where it stood. The timer alone does not keep
 * the process alive.
 */
export function exitAfter(ms, report) {
  const GRACE_MS = 15_000;
  setTimeout(() => {
    console.log(report());
    console.error(`gave up ${Math.round((ms + GRACE_MS) / 1000)} s after the start`);
    process.exit(1);
  }, ms + GRACE_MS).unref();
}

/** Parses `--name value` and `--flag` arguments against a spec of defaults. */
export function parseArgs(argv, spec, usage) {
  const values = { ...spec.defaults };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(usage);
      process.exit(0);
    }
    const name = arg.startsWith('--') ? arg.slice(2) : null;
    if (name !== null && spec.flags.includes(name)) {
      values[name] = true;
    } else if (name !== null && spec.options.includes(name)) {
      if (i + 1 >= argv.length) fail(`--${name} needs a value\n${usage}`);
      values[name] = argv[++i];
    } else {
      fail(`unknown argument ${JSON.stringify(arg)}\n${usage}`);
    }
  }
  return values;
}

export function fail(message) {
  console.error(message);
  process.exit(2);
}
