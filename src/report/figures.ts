// One figure of an analysis as files: `<name>.svg` (the chart), `<name>.png` (the same SVG rendered by resvg, no
// browser), `<name>.csv` (the table behind it), `<name>.json` (the data, with the caption) and `<name>.caption.txt`
// (what was measured on what). Shared by the `analyze` / `results pivot` commands, the demo report and the sweep
// reports, so that a figure looks the same wherever it appears.
//
// Safety: every file is written atomically; a file of that name is overwritten only when the figure's record, its
// `<name>.json`, is one of a figure of that very name and names the file among its own; two runs writing one figure
// at once are refused (`<name>.lock`, the output lock of src/io/lock.ts), the lock taken before anything is judged.
// The record is written first (naming the files about to be written, without data) and again, complete, last: a set
// cut short by a kill at any point is still recognisably ours, so that the same command run again replaces it.
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { acquireFileOutputLock, type OutputLock } from '../io/lock.js';
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

/** The files of a figure set other than its record (`<name>.json`), as the record names them (base names). */
const OWNED_EXTS = ['.svg', '.png', '.csv', '.caption.txt'] as const;
const ownedNames = (name: string): string[] => OWNED_EXTS.map((e) => `${name}${e}`);

/**
 * What `<name>.json` says it owns: null when it is not the record of a figure named `name` (unreadable, another
 * format, or the record of another figure copied there: `overlap.json` as `layers.json`). A record with `files` (from
 * this version on, also while being written) owns exactly those of the set's files; one without (earlier versions,
 * which wrote it last, so only over a complete set) owns all four.
 */
function figureRecord(jsonFile: string, name: string): { owned: Set<string>; name: string } | null {
  let v: { format?: unknown; name?: unknown; files?: unknown };
  try {
    v = JSON.parse(readFileSync(jsonFile, 'utf8')) as typeof v;
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || v.format !== FIGURE_FORMAT || typeof v.name !== 'string') return null;
  if (v.name !== name) return { owned: new Set(), name: v.name };
  const names = ownedNames(name);
  if (v.files === undefined) return { owned: new Set(names), name };
  return { owned: new Set(Array.isArray(v.files) ? v.files.filter((f): f is string => typeof f === 'string' && names.includes(f)) : []), name };
}

/** Whether anything (a file, a folder, a link, also a dangling one) is at `file`. */
const present = (file: string): boolean => lstatSync(file, { throwIfNoEntry: false }) !== undefined;

const NAME_RE = /^[\w.-]+$/;
function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new LangneuronsError('E_INPUT', `figure name '${name}': only letters, digits, '-', '_' and '.'`);
}

/**
 * Refuses a figure name that is not a plain file stem, and files of that name in `dir` that no figure of that name
 * wrote: a `<name>.json` that is not such a figure's record, or a file its record does not name.
 */
export function checkFigureName(dir: string, name: string): FigureFiles {
  checkName(name);
  const files = figureFiles(dir, name);
  const record = present(files.json) ? figureRecord(files.json, name) : null;
  if (present(files.json) && (!record || record.name !== name)) {
    const what = record ? `is the record of the figure '${record.name}', not of '${name}'` : 'exists and was not written by a langneurons figure';
    throw new LangneuronsError('E_EXISTS', `${files.json}: ${what}; choose another --out`, { file: files.json });
  }
  for (const f of [files.svg, files.png, files.csv, files.caption]) {
    if (present(f) && !record?.owned.has(path.basename(f)))
      throw new LangneuronsError('E_EXISTS', `${f}: exists and was not written by a langneurons figure; choose another --out`, { file: f });
  }
  return files;
}

/** The figure's files, written holding its lock (checked under it). */
async function writeFigureLocked(dir: string, fig: Figure): Promise<FigureFiles> {
  const files = checkFigureName(dir, fig.name);
  const png = svgToPng(fig.svg);
  const owned = ownedNames(fig.name);
  // The record first, without data: from here on every file of the set is ours, whatever a kill leaves.
  await writeFileAtomic(files.json, JSON.stringify({ format: FIGURE_FORMAT, name: fig.name, files: owned, complete: false,
    note: 'being written (or cut short): the same command run again writes the figure' }, null, 1) + '\n');
  await writeFileAtomic(files.svg, fig.svg);
  await writeFileAtomic(files.png, png);
  await writeFileAtomic(files.csv, csvOf(fig.table));
  await writeFileAtomic(files.caption, fig.caption.endsWith('\n') ? fig.caption : `${fig.caption}\n`);
  // The complete record last: the set is whole.
  await writeFileAtomic(files.json, JSON.stringify({ format: FIGURE_FORMAT, name: fig.name, files: owned, caption: fig.caption, table: fig.table, data: fig.data }, null, 1) + '\n');
  return files;
}

/** Writes the figure's five files into `dir` (created if needed). */
export async function writeFigure(dir: string, fig: Figure): Promise<FigureFiles> {
  return (await writeFigures(dir, [fig]))[fig.name]!;
}

/**
 * Several figures into one folder; returns their files by name. Every figure's lock is taken first (a live run writing
 * one is named as such, not its half-written files as foreign), then every figure is checked before any is written.
 */
export async function writeFigures(dir: string, figs: Figure[]): Promise<Record<string, FigureFiles>> {
  for (const f of figs) checkName(f.name);
  await ensureOutputDir(dir);
  const locks: OutputLock[] = [];
  try {
    // <name>.lock; taking it removes the temporaries a killed earlier write of the set left (<file>.tmp-<pid>-<hex>)
    for (const f of figs) locks.push(await acquireFileOutputLock(path.join(dir, f.name), `figure ${f.name}`, Object.values(figureFiles(dir, f.name))));
    for (const f of figs) checkFigureName(dir, f.name);
    const out: Record<string, FigureFiles> = {};
    for (const f of figs) out[f.name] = await writeFigureLocked(dir, f);
    return out;
  } finally {
    for (const l of locks) await l.release();
  }
}
