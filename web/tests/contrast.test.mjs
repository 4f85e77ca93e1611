// The WCAG contrast formula the contrast audit uses, against pairs worked
// out by hand from the WCAG 2.x definitions of relative luminance and
// contrast ratio.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { contrastRatio } from './contrast-audit.mjs';

const rounded = (ratio) => Math.round(ratio * 100) / 100;

test('known pairs', () => {
  // #777: channel 119/255 → ((0.4667 + 0.055) / 1.055)^2.4 = 0.1845;
  // (1 + 0.05) / (0.1845 + 0.05) = 4.48, just below AA.
  assert.equal(rounded(contrastRatio('#777', '#fff')), 4.48);
  assert.equal(rounded(contrastRatio('#000', '#fff')), 21);
  assert.equal(rounded(contrastRatio('#fff', '#fff')), 1);
  // Pure red: luminance 0.2126 → 1.05 / 0.2626 = 4.00.
  assert.equal(rounded(contrastRatio('#ff0000', '#ffffff')), 4);
  // #2563eb: linear channels 0.0185, 0.1248, 0.8308 → L = 0.1532;
  // 1.05 / 0.2032 = 5.17 (white text on the UI's strong accent).
  assert.equal(rounded(contrastRatio('#2563eb', '#fff')), 5.17);
});

test('the order and the notation do not matter', () => {
  assert.equal(contrastRatio('#fff', '#777'), contrastRatio('#777', '#fff'));
  assert.equal(contrastRatio('rgb(119, 119, 119)', 'rgb(255 255 255)'), contrastRatio('#777777', '#FFF'));
  assert.throws(() => contrastRatio('red', '#fff'), /not a colour/);
});
