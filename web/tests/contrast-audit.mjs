// WCAG 2.x contrast (success criteria 1.4.3 and 1.4.11) computed from the
// page's own computed styles: the relative-luminance formula, and an audit
// of one page that lists every visible text whose colour on its background
// falls below 4.5:1 (3:1 for large text: 24 px, or 18.66 px bold), and
// every text field whose boundary (border or fill) falls below 3:1 against
// what surrounds it.
//
// `contrastRatio` and `auditPage` are self-contained (no imports, no outer
// variables): the browser test hands their source to the page, so the
// numbers the page computes come from the same function the unit test
// checks against hand-computed pairs.
//
// What it cannot judge it counts instead of guessing: text over an image,
// a gradient or the video picture (its background is not a colour), text
// another element covers (a dialog over a menu), and disabled controls,
// which WCAG exempts.

/**
 * The WCAG 2.x contrast ratio of two CSS colours (`#rgb`, `#rrggbb`,
 * `rgb()`/`rgba()` with opaque values), from 1 to 21.
 */
export function contrastRatio(first, second) {
  const parse = (text) => {
    const value = String(text).trim();
    const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(value);
    if (hex) {
      const digits = hex[1].length === 3 ? [...hex[1]].map((digit) => digit + digit) : hex[1].match(/../g);
      return digits.map((pair) => parseInt(pair, 16));
    }
    const rgb = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/i.exec(value);
    if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
    throw new Error(`not a colour: ${value}`);
  };
  // WCAG 2.x relative luminance of sRGB.
  const luminance = (text) => {
    const [r, g, b] = parse(text).map((channel) => {
      const c = channel / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [lighter, darker] = [luminance(first), luminance(second)].sort((a, b) => b - a);
  return (lighter + 0.05) / (darker + 0.05);
}

/**
 * Audits the document it runs in; `window.kinemaContrastRatio` must be
 * `contrastRatio`. Returns {checked, offenders, skipped}.
 */
export function auditPage() {
  const ratioOf = window.kinemaContrastRatio;
  const parse = (text) => {
    const match = /rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?/i.exec(text);
    if (!match) return null;
    let alpha = match[4] === undefined ? 1 : match[4].endsWith('%') ? parseFloat(match[4]) / 100 : Number(match[4]);
    if (Number.isNaN(alpha)) alpha = 1;
    return { r: Number(match[1]), g: Number(match[2]), b: Number(match[3]), a: alpha };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const css = (color) => `rgb(${Math.round(color.r)}, ${Math.round(color.g)}, ${Math.round(color.b)})`;
  const canvas = { r: 255, g: 255, b: 255, a: 1 };

  // The colour behind `element` (its own background included when
  // `withOwn`): the backgrounds of it and its ancestors composited, or
  // null when an image, a gradient or a video lies behind before an
  // opaque colour does.
  const backgroundOf = (element, withOwn = true) => {
    const layers = [];
    for (let node = withOwn ? element : element.parentElement; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (node.tagName === 'VIDEO' || node.tagName === 'IMG' || style.backgroundImage !== 'none') {
        const color = parse(style.backgroundColor);
        if (!color || color.a < 1) return null;
      }
      const color = parse(style.backgroundColor);
      if (color && color.a > 0) layers.push(color);
      if (color && color.a >= 1) break;
    }
    let result = canvas;
    if (layers.length > 0 && layers[layers.length - 1].a >= 1) result = layers.pop();
    while (layers.length > 0) result = over(layers.pop(), result);
    return result;
  };
  // The product of the opacities of `element` and its ancestors.
  const opacityOf = (element) => {
    let opacity = 1;
    for (let node = element; node; node = node.parentElement) opacity *= Number(getComputedStyle(node).opacity);
    return opacity;
  };
  const shown = (element) => {
    const style = getComputedStyle(element);
    const box = element.getBoundingClientRect();
    return element.getClientRects().length > 0 && style.visibility !== 'hidden'
      && box.width > 1 && box.height > 1 && opacityOf(element) > 0.01;
  };
  const disabled = (element) => Boolean(element.closest('button:disabled, input:disabled, select:disabled, textarea:disabled, fieldset:disabled'));
  const describe = (element) => {
    const id = element.id ? `#${element.id}` : '';
    const classes = typeof element.className === 'string' && element.className.trim()
      ? `.${element.className.trim().split(/\s+/).join('.')}` : '';
    return `${element.tagName.toLowerCase()}${id}${classes}`;
  };

  // Whether something else is drawn over the middle of `element` (only
  // judged inside the viewport, where the browser can say what is on top).
  const covered = (element) => {
    const box = element.getBoundingClientRect();
    const [x, y] = [box.left + box.width / 2, box.top + box.height / 2];
    if (x < 0 || y < 0 || x >= window.innerWidth || y >= window.innerHeight) return false;
    const top = document.elementFromPoint(x, y);
    return Boolean(top) && !element.contains(top) && !top.contains(element);
  };
  const result = { checked: 0, offenders: [], skipped: { over_image: 0, disabled: 0, covered: 0 } };
  const check = (element, kind, text, foreground, background, required) => {
    result.checked += 1;
    const ratio = ratioOf(css(foreground), css(background));
    if (ratio + 1e-9 < required) {
      result.offenders.push({
        element: describe(element), kind, text: text.slice(0, 60),
        foreground: css(foreground), background: css(background),
        ratio: Math.round(ratio * 100) / 100, required,
      });
    }
  };
  const large = (style) => {
    const size = parseFloat(style.fontSize);
    return size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
  };

  // Text: every shown element with text of its own.
  for (const element of document.body.querySelectorAll('*')) {
    if (['SCRIPT', 'STYLE', 'TEMPLATE', 'NOSCRIPT', 'svg', 'OPTION'].includes(element.tagName)) continue;
    const own = [...element.childNodes]
      .filter((node) => node.nodeType === Node.TEXT_NODE)
      .map((node) => node.textContent).join('').trim();
    const field = ['INPUT', 'TEXTAREA', 'SELECT'].includes(element.tagName) && !['file', 'range', 'checkbox', 'radio', 'hidden'].includes(element.type);
    const value = field ? (element.tagName === 'SELECT' ? element.selectedOptions[0]?.textContent ?? '' : element.value) : '';
    const placeholder = field && !value && element.placeholder ? element.placeholder : '';
    if (!own && !value && !placeholder) continue;
    if (!shown(element)) continue;
    if (covered(element)) {
      result.skipped.covered += 1;
      continue;
    }
    if (disabled(element)) {
      result.skipped.disabled += 1;
      continue;
    }
    const background = backgroundOf(element);
    if (!background) {
      result.skipped.over_image += 1;
      continue;
    }
    const style = getComputedStyle(element);
    const opacity = opacityOf(element);
    const colorOf = (text) => {
      const color = parse(text);
      return over({ ...color, a: color.a * opacity }, background);
    };
    const required = large(style) ? 3 : 4.5;
    if (own || value) check(element, 'text', own || value, colorOf(style.color), background, required);
    if (placeholder) check(element, 'placeholder', placeholder, colorOf(getComputedStyle(element, '::placeholder').color), background, required);
  }

  // Text fields: their boundary, against what surrounds them.
  for (const element of document.body.querySelectorAll('input, select, textarea')) {
    if (['file', 'range', 'checkbox', 'radio', 'hidden', 'submit', 'button'].includes(element.type)) continue;
    if (!shown(element)) continue;
    if (disabled(element)) {
      result.skipped.disabled += 1;
      continue;
    }
    const outside = backgroundOf(element, false);
    if (!outside) {
      result.skipped.over_image += 1;
      continue;
    }
    const style = getComputedStyle(element);
    const fill = backgroundOf(element);
    const border = parseFloat(style.borderTopWidth) > 0 && style.borderTopStyle !== 'none'
      ? over(parse(style.borderTopColor), outside) : outside;
    const best = [fill, border].reduce((a, b) => (ratioOf(css(a), css(outside)) >= ratioOf(css(b), css(outside)) ? a : b));
    check(element, 'boundary', element.getAttribute('aria-label') || element.id || element.name || '', best, outside, 3);
  }
  return result;
}
