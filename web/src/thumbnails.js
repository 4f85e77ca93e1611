// Reads a trickplay map: a WebVTT file whose cues name a region of a sprite
// image (`sprite.jpg#xywh=x,y,w,h`) for each time range, the convention
// JW Player, Video.js and kinema's ingest share.

/** Fetches and parses `url`; resolves to {at(seconds) → cue | null}. */
export async function loadThumbnails(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`thumbnails ${url} answered ${response.status}`);
  const cues = parseThumbnailVtt(await response.text(), new URL(url, location.href));
  return {
    cues,
    at(seconds) {
      return cues.find((cue) => seconds >= cue.start && seconds < cue.end) ?? cues[cues.length - 1] ?? null;
    },
  };
}

/** Parses the cues; the image URL of each is resolved against `base`. */
export function parseThumbnailVtt(text, base) {
  const cues = [];
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const timing = lines[i].match(/^\s*(\S+)\s+-->\s+(\S+)/);
    if (!timing) continue;
    const target = (lines[i + 1] ?? '').trim();
    const hash = target.indexOf('#xywh=');
    if (hash < 0) continue;
    const [x, y, width, height] = target.slice(hash + 6).split(',').map(Number);
    if ([x, y, width, height].some((value) => !Number.isFinite(value))) continue;
    cues.push({
      start: vttSeconds(timing[1]),
      end: vttSeconds(timing[2]),
      image: new URL(target.slice(0, hash), base).href,
      x,
      y,
      width,
      height,
    });
  }
  return cues;
}

// "01:02.500" or "00:01:02.500" → 62.5
function vttSeconds(stamp) {
  return stamp.split(':').reduce((total, part) => total * 60 + Number(part), 0);
}
