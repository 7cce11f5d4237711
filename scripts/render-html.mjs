#!/usr/bin/env node
// Renders an HTML file in headless Chromium: the DOM after loading (--dump-dom) and a PNG screenshot, with a few
// facts about both (SVG elements in the DOM, share of non-white pixels in the screenshot). Used by the report tests
// to check that report.html opens in a browser and shows its plots; also a command:
//
//   node scripts/render-html.mjs report.html [--screenshot out.png] [--width 1300] [--height 4000]
//
// The browser: $CHROMIUM, else the first of chromium, chromium-browser, google-chrome on the PATH.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import zlib from 'node:zlib';

export function findChromium() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('which', [name], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

function runChromium(browser, args, profile) {
  const r = spawnSync(browser, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
    `--user-data-dir=${profile}`, ...args], { encoding: 'buffer', timeout: 120_000, maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${browser} exited with ${r.status}: ${r.stderr.toString().slice(-2000)}`);
  return r.stdout.toString('utf8');
}

/** Decodes an 8-bit, non-interlaced RGB or RGBA PNG into { width, height, channels, pixels }. */
export function decodePng(buf) {
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG file');
  let pos = 8, width = 0, height = 0, depth = 0, type = 0, interlace = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), kind = buf.toString('latin1', pos + 4, pos + 8), data = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === 'IHDR') { width = data.readUInt32BE(0); height = data.readUInt32BE(4); depth = data[8]; type = data[9]; interlace = data[12]; }
    else if (kind === 'IDAT') idat.push(data);
    else if (kind === 'IEND') break;
    pos += 12 + len;
  }
  const channels = { 2: 3, 6: 4 }[type];
  if (depth !== 8 || !channels || interlace !== 0) throw new Error(`unsupported PNG (bit depth ${depth}, colour type ${type}, interlace ${interlace})`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels, pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride), prev = y ? pixels.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? out[i - channels] : 0, b = prev ? prev[i] : 0, c = prev && i >= channels ? prev[i - channels] : 0;
      let pred = 0;
      if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c); pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      out[i] = (line[i] + pred) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

/** Share of pixels that are not (near) white, and the number of distinct colours (capped at 10000). */
export function imageFacts(png) {
  const { width, height, channels, pixels } = decodePng(png);
  let ink = 0;
  const colours = new Set();
  for (let i = 0; i < width * height; i++) {
    const r = pixels[i * channels], g = pixels[i * channels + 1], b = pixels[i * channels + 2];
    if (r < 240 || g < 240 || b < 240) ink++;
    if (colours.size < 10000) colours.add((r << 16) | (g << 8) | b);
  }
  return { width, height, inkShare: ink / (width * height), colours: colours.size };
}

/** Loads `file` in headless Chromium: its DOM after load, a screenshot and facts about both. */
export function renderHtml(file, { width = 1300, height = 4000, browser = findChromium() } = {}) {
  if (!browser) throw new Error('no Chromium found: install chromium or set $CHROMIUM');
  const url = pathToFileURL(path.resolve(file)).href;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'render-html-'));
  try {
    const dom = runChromium(browser, ['--dump-dom', url], path.join(tmp, 'profile-dom'));
    const shot = path.join(tmp, 'shot.png');
    runChromium(browser, [`--window-size=${width},${height}`, `--screenshot=${shot}`, url], path.join(tmp, 'profile-shot'));
    if (!existsSync(shot)) throw new Error(`${browser} wrote no screenshot`);
    const png = readFileSync(shot);
    const count = (re) => (dom.match(re) ?? []).length;
    return { dom, png, svgs: count(/<svg[\s>]/g), image: imageFacts(png) };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : undefined; };
  const screenshot = opt('--screenshot'), width = Number(opt('--width') ?? 1300), height = Number(opt('--height') ?? 4000);
  const file = args[0];
  if (!file) { process.stderr.write('usage: node scripts/render-html.mjs <file.html> [--screenshot out.png] [--width n] [--height n]\n'); process.exit(2); }
  const r = renderHtml(file, { width, height });
  if (screenshot) (await import('node:fs')).writeFileSync(screenshot, r.png);
  process.stdout.write(JSON.stringify({ file, svgs: r.svgs, domBytes: r.dom.length, image: r.image, ...(screenshot ? { screenshot } : {}) }, null, 2) + '\n');
}
