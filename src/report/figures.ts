// One figure of an analysis as files: `<name>.svg` (the chart), `<name>.png` (the same SVG rendered by resvg, no
// browser), `<name>.csv` (the table behind it), `<name>.json` (the data, with the caption) and `<name>.caption.txt`
// (what was measured on what). Shared by the `analyze` / `results pivot` commands, the demo report and the sweep
// reports, so that a figure looks the same wherever it appears.
//
// Safety: every file is written atomically; a file of that name is overwritten only when it belongs to an earlier
// figure of the same name (its `<name>.json` says so), and two runs writing one figure at once are refused
// (`<name>.lock`, the output lock of src/io/lock.ts).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { acquireFileOutputLock } from '../io/lock.js';
import { ensureOutputDir } from '../io/outdir.js';

export const FIGURE_FORMAT = 'langneurons-figure/1';

export type Cell = string | number | null;

export interface FigureTable {
  columns: string[];
  rows: Cell[][];
}

export interface Figure {
  /** File stem: letters, digits, '-', '_' and '.'. */
  name: string;
  /** One paragraph: what was measured, on what, how to read it. */
  caption: string;
  /** A standalone SVG document (the charts of svg-charts.ts are). */
  svg: string;
  /** The figure's numbers as a table (the CSV). */
  table: FigureTable;
  /** The figure's data (the JSON, and what `--json` prints). */
  data: unknown;
}

export interface FigureFiles { svg: string; png: string; csv: string; json: string; caption: string }

/** The figure's files in `dir`. */
export function figureFiles(dir: string, name: string): FigureFiles {
  const at = (ext: string) => path.join(dir, `${name}${ext}`);
  return { svg: at('.svg'), png: at('.png'), csv: at('.csv'), json: at('.json'), caption: at('.caption.txt') };
}

export function csvOf(t: FigureTable): string {
  const q = (v: Cell): string => {
    if (v === null) return '';
    const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : v;
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [t.columns, ...t.rows].map((r) => r.map(q).join(',')).join('\n') + '\n';
}

const SANS_FONTS = [
  ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', 'DejaVu Sans'],  // Debian fonts-dejavu-core
  ['/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf', 'Liberation Sans'],  // fonts-liberation
  ['/usr/share/fonts/TTF/DejaVuSans.ttf', 'DejaVu Sans'],
] as const;

/** The sans-serif font file PNG text is drawn with, or null (then resvg looks through the system's fonts, if any). */
export function pngFont(): { file: string; family: string } | null {
  const found = SANS_FONTS.find(([file]) => existsSync(file));
  return found ? { file: found[0], family: found[1] } : null;
}

/** Fonts for text in PNGs: a commonly installed sans-serif file alone when there is one (loading every system font
 * costs about a second per image), else the system's fonts. */
function fontOptions(): NonNullable<ResvgRenderOptions['font']> {
  const f = pngFont();
  return f ? { loadSystemFonts: false, fontFiles: [f.file], defaultFontFamily: f.family, sansSerifFamily: f.family } : { loadSystemFonts: true };
}

/** Renders an SVG document to PNG bytes (white background, `scale` × the SVG's size). */
export function svgToPng(svg: string, scale = 2): Uint8Array {
  const inline = svg.replace(/^<\?xml[^>]*\?>\s*/, '');
  const width = Number(/<svg[^>]*\swidth="([\d.]+)"/.exec(inline)?.[1] ?? 800);
  const r = new Resvg(inline, { background: '#ffffff', fitTo: { mode: 'width', value: Math.round(width * scale) }, font: fontOptions() });
  return r.render().asPng();
}

function ownedByUs(jsonFile: string): boolean {
  try {
    return (JSON.parse(readFileSync(jsonFile, 'utf8')) as { format?: unknown })?.format === FIGURE_FORMAT;
  } catch {
    return false;
  }
}

/** Refuses a figure name that is not a plain file stem, and files of that name in `dir` that no figure wrote. */
export function checkFigureName(dir: string, name: string): FigureFiles {
  if (!/^[\w.-]+$/.test(name)) throw new LangneuronsError('E_INPUT', `figure name '${name}': only letters, digits, '-', '_' and '.'`);
  const files = figureFiles(dir, name);
  const existing = Object.values(files).filter((f) => existsSync(f));
  if (existing.length && !ownedByUs(files.json))
    throw new LangneuronsError('E_EXISTS', `${existing[0]}: exists and was not written by a langneurons figure; choose another --out`, { file: existing[0]! });
  return files;
}

/** Writes the figure's five files into `dir` (created if needed). */
export async function writeFigure(dir: string, fig: Figure): Promise<FigureFiles> {
  const files = checkFigureName(dir, fig.name);
  await ensureOutputDir(dir);
  const lock = await acquireFileOutputLock(path.join(dir, fig.name), `figure ${fig.name}`);  // <name>.lock
  try {
    const png = svgToPng(fig.svg);
    await writeFileAtomic(files.svg, fig.svg);
    await writeFileAtomic(files.png, png);
    await writeFileAtomic(files.csv, csvOf(fig.table));
    await writeFileAtomic(files.caption, fig.caption.endsWith('\n') ? fig.caption : `${fig.caption}\n`);
    // The JSON last: it marks the set as complete and ours.
    await writeFileAtomic(files.json, JSON.stringify({ format: FIGURE_FORMAT, name: fig.name, caption: fig.caption, table: fig.table, data: fig.data }, null, 1) + '\n');
  } finally {
    await lock.release();
  }
  return files;
}

/** Several figures into one folder; returns their files by name. Every figure is checked before any is written. */
export async function writeFigures(dir: string, figs: Figure[]): Promise<Record<string, FigureFiles>> {
  for (const f of figs) checkFigureName(dir, f.name);
  const out: Record<string, FigureFiles> = {};
  for (const f of figs) out[f.name] = await writeFigure(dir, f);
  return out;
}
