// Builds web/dist: the UI's own files from web/src, plus the two player
// libraries copied from node_modules. There is no bundler on purpose: the UI
// is a handful of ES modules the browser loads directly, and the players are
// shipped as their upstream minified builds, so what runs is exactly what npm
// installed (pinned by package-lock.json).
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = dirname(fileURLToPath(import.meta.url));
const dist = join(web, 'dist');

// Where each vendored player lives inside its npm package. dash.js ships
// several builds; the modern UMD one defines the `dashjs` global a classic
// <script> needs.
const vendor = [
  ['hls.js/dist/hls.min.js', 'hls.min.js'],
  ['dashjs/dist/modern/umd/dash.all.min.js', 'dash.all.min.js'],
];

for (const [from] of vendor) {
  if (!existsSync(join(web, 'node_modules', from))) {
    console.error(
      `build: node_modules/${from} is missing; run \`npm ci\` in web/ first (scripts/install-deps does)`,
    );
    process.exit(1);
  }
}

// Build into a fresh directory so files deleted from src/ never linger.
rmSync(dist, { recursive: true, force: true });
cpSync(join(web, 'src'), dist, { recursive: true });
mkdirSync(join(dist, 'vendor'), { recursive: true });
for (const [from, to] of vendor) {
  cpSync(join(web, 'node_modules', from), join(dist, 'vendor', to));
}
console.log(`build: wrote ${dist}`);
