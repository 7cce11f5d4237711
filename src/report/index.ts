// The demo report: its data (report.json), the HTML page and the SVG charts it is drawn with.
import path from 'node:path';
import { promises as fsp } from 'node:fs';

import { LangneuronsError, describeError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { renderReportHtml } from './html.js';
import { REPORT_FORMAT, type ReportData } from './report-data.js';
import { ensureOutputDir } from '../io/outdir.js';

export * from './report-data.js';
export * from './svg-charts.js';
export { renderReportHtml } from './html.js';

/** Writes `<dir>/report.json` and `<dir>/report.html`, each atomically. */
export async function writeReport(dir: string, data: ReportData): Promise<{ json: string; html: string }> {
  const files = { json: path.join(dir, 'report.json'), html: path.join(dir, 'report.html') };
  await ensureOutputDir(dir);
  await writeFileAtomic(files.json, JSON.stringify(data, null, 1) + '\n');
  await writeFileAtomic(files.html, renderReportHtml(data));
  return files;
}

/** Reads a report.json (a file, or the folder holding it). */
export async function readReport(fileOrDir: string): Promise<ReportData> {
  const file = fileOrDir.endsWith('.json') ? fileOrDir : path.join(fileOrDir, 'report.json');
  let doc: ReportData;
  try {
    doc = JSON.parse(await fsp.readFile(file, 'utf8')) as ReportData;
  } catch (e) {
    throw new LangneuronsError('E_IO', `${file}: cannot read the report data: ${describeError(e)}`, { file });
  }
  if (doc?.format !== REPORT_FORMAT) throw new LangneuronsError('E_INPUT', `${file}: not a ${REPORT_FORMAT} file`, { file });
  checkReport(doc, file);
  return doc;
}

/** What a field of report.json must be: a type, null or a type, an object's fields, an array of one shape. */
type Shape = 'string' | 'number' | 'boolean' | 'object' | 'string|null' | 'number|null' | { [field: string]: Shape } | [Shape];
const OPTIONAL = '?';  // a field name ending in it may be absent

const STRINGS: Shape = ['string'];
const NUMBERS: Shape = ['number'];
/** A NaN written to JSON reads back as null: fine where the page only does arithmetic with it (`${100 * x}%`), not where it calls x.toFixed(). */
const SHARES: Shape = ['number|null'];
/** Every field the page is drawn from (src/report/html.ts), as it uses them; `analyses` is drawn by the analyze figure code. */
const REPORT_SHAPE: Shape = {
  title: 'string', generatedAt: 'string',
  model: { dir: 'string', name: 'string', parameters: 'number', layers: 'number', hidden: 'number', intermediate: 'number', vocab: 'number', recipe: 'string' },
  languages: STRINGS, 'lowResource?': 'string|null', seconds: 'number', steps: [{ name: 'string', seconds: 'number', skipped: 'boolean' }],
  checks: [{ name: 'string', claim: 'string', passed: 'boolean', measured: 'string' }], ok: 'boolean',
  figures: {
    neurons: { method: 'string', parameters: 'object', 'topRateLadder?': [{ topRate: 'number', fewest: 'number' }], languages: STRINGS, layers: 'number', perLayer: [SHARES], union: 'number|null' },
    deactivation: { rows: STRINGS, columns: STRINGS, deltaNll: [NUMBERS], baselineNll: NUMBERS, baselinePerplexity: NUMBERS, diagonalShare: 'number|null', rowShare: 'number|null',
      misses: [{ language: 'string', strongest: 'string' }] },
    steering: { identifier: 'string', identifierAccuracy: 'number|null', targets: STRINGS, settings: STRINGS, share: [SHARES], maxNewTokens: 'number|null',
      baselineKeepsPromptLanguage: 'number|null', examples: [{ target: 'string', setting: 'string', source: 'string', prompt: 'string', text: 'string', 'detected?': 'string|null' }] },
    training: { language: 'string', trainArticles: NUMBERS, validArticles: NUMBERS, baseValidLoss: 'number', methods: [{
      method: 'string', lr: 'number', trainableParameters: 'number', trainableShare: 'number|null', stepSeconds: 'number|null', tokensPerSecond: 'number|null',
      finalValid: 'number', bestValid: 'number', bestStep: 'number', trainLoss: [NUMBERS], validLoss: [NUMBERS] }] },
    'analyses?': 'object',
  },
};

const plural = (shape: Shape): string =>
  typeof shape === 'string' ? (shape.endsWith('|null') ? `${shape.slice(0, -5)}s or nulls` : `${shape}s`) : Array.isArray(shape) ? `arrays of ${plural(shape[0])}` : 'objects';
const describeShape = (shape: Shape): string =>
  typeof shape === 'string' ? (shape === 'object' ? 'an object' : shape.endsWith('|null') ? `a ${shape.slice(0, -5)} or null` : `a ${shape}`)
    : Array.isArray(shape) ? `an array of ${plural(shape[0])}` : 'an object';

/** The first field of `v` that does not have `shape` (its path, what it is and what it should be), or null. */
function misfit(v: unknown, shape: Shape, at: string): string | null {
  const bad = () => `"${at}" is ${v === undefined ? 'missing' : v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`}, expected ${describeShape(shape)}`;
  if (shape === 'string|null' || shape === 'number|null') return v === null || typeof v === shape.slice(0, -5) ? null : bad();
  if (shape === 'object') return v !== null && typeof v === 'object' && !Array.isArray(v) ? null : bad();
  if (typeof shape === 'string') return typeof v === shape && (shape !== 'number' || Number.isFinite(v)) ? null : bad();
  if (Array.isArray(shape)) {
    if (!Array.isArray(v)) return bad();
    for (let i = 0; i < v.length; i++) {
      const m = misfit(v[i], shape[0], `${at}[${i}]`);
      if (m) return m;
    }
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return bad();
  for (const [key, sub] of Object.entries(shape)) {
    const optional = key.endsWith(OPTIONAL), name = optional ? key.slice(0, -1) : key;
    const x = (v as Record<string, unknown>)[name];
    if (optional && x === undefined) continue;
    const m = misfit(x, sub, at ? `${at}.${name}` : name);
    if (m) return m;
  }
  return null;
}

/**
 * Refuses a report.json the page cannot be drawn from (cut short, edited, of another version), naming the file and
 * the first field that is missing or of the wrong type, or the tables whose sizes disagree: not a TypeError from
 * deep inside the renderer.
 */
function checkReport(doc: ReportData, file: string): void {
  const fail = (what: string): never => { throw new LangneuronsError('E_INPUT', `${file}: ${what}; it is not a whole demo report (run the demo again to write it)`, { file }); };
  const m = misfit(doc, REPORT_SHAPE, '');
  if (m) fail(m);
  const { deactivation: d, steering: st } = doc.figures;
  if (d.deltaNll.length !== d.rows.length || d.deltaNll.some((r) => r.length !== d.columns.length))
    fail(`"figures.deactivation.deltaNll" is not ${d.rows.length} rows × ${d.columns.length} columns (rows × columns)`);
  if (d.baselineNll.length !== d.columns.length || d.baselinePerplexity.length !== d.columns.length)
    fail(`"figures.deactivation.baselineNll" and "baselinePerplexity" must have one value per column (${d.columns.length})`);
  if (st.share.length !== st.targets.length || st.share.some((r) => r.length !== st.settings.length))
    fail(`"figures.steering.share" is not ${st.targets.length} targets × ${st.settings.length} settings`);
}
