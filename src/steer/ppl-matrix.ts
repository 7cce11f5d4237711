// Tang et al.'s perplexity matrix (METHODS.md §4): deactivate language i's neurons, measure the mean token NLL
// (and perplexity) of language j's held-out text, for every (i, j), plus the no-intervention row; the change
// against no intervention should be largest on the diagonal. The matrix logic only sees a `score` callback
// (text id, intervention or null → summed NLL and token count), so it runs with a fake scorer in the tests;
// src/steer/engine.ts provides the real one.
import { LangneuronsError } from '../errors.js';
import { writeJsonWithSidecars } from '../io/outdir.js';
import { heatmapSvg } from './svg.js';

export const PPL_MATRIX_FORMAT = 'langneurons-ppl-matrix/1';

/** Summed negative log-likelihood of a text and the number of tokens it predicts. */
export interface NllSum { totalNll: number; tokens: number }

/** Scores held-out text `textId` under an intervention (null: the unmodified model). */
export type MatrixScorer<I> = (textId: string, intervention: I | null) => Promise<NllSum>;

export interface PplMatrixOptions<I> {
  /** Languages whose neurons are deactivated, one matrix row each. */
  rows: readonly string[];
  /** Held-out texts (languages), one column each. */
  columns: readonly string[];
  /** The intervention that deactivates a row language's neurons. */
  intervention: (rowLanguage: string) => I;
  score: MatrixScorer<I>;
  /** Called once with every row's intervention before the first text is scored: a caller that resolves them against
   *  a model (reading masks and statistics) does it here, so that a bad one fails before any engine work rather than
   *  after the baseline and the rows before it. */
  prepare?: (interventions: I[]) => Promise<void>;
  /** Called after each scored cell (the baseline row counts): cells done, cells in all. */
  onCell?: (done: number, total: number, row: string | null, column: string) => void;
}

export interface DiagonalCheck {
  /** Languages that are both a row and a column. */
  languages: string[];
  /** Share of those languages whose own deactivation raises their text's NLL more than any other row's does. */
  share: number;
  hits: string[];
  /** Each miss with the row that raised that text's NLL the most. */
  misses: { language: string; strongest: string }[];
  /** Row view: share of languages whose deactivation raises their own text's NLL more than any other text's. */
  rowShare: number;
  rowHits: string[];
}

export interface PplMatrix {
  format: typeof PPL_MATRIX_FORMAT;
  rows: string[];
  columns: string[];
  /** The no-intervention row: per column. */
  baseline: { nll: number[]; perplexity: number[]; tokens: number[] };
  /** [row][column]: mean token NLL (nats) and perplexity with the row language deactivated. */
  nll: number[][];
  perplexity: number[][];
  /** Change against the baseline: nll − baseline nll, perplexity − baseline perplexity. */
  deltaNll: number[][];
  deltaPerplexity: number[][];
  diagonal: DiagonalCheck;
}

function meanNll(s: NllSum, textId: string, row: string | null): number {
  if (!Number.isInteger(s.tokens) || s.tokens <= 0 || !Number.isFinite(s.totalNll))
    throw new LangneuronsError('E_INPUT', `ppl-matrix: scoring text "${textId}"${row === null ? '' : ` with "${row}" deactivated`} gave ${s.tokens} tokens and NLL ${s.totalNll}`);
  return s.totalNll / s.tokens;
}

/** Builds the matrix, scoring the baseline row first, then each row language in order. */
export async function computePplMatrix<I>(opts: PplMatrixOptions<I>): Promise<PplMatrix> {
  const rows = [...opts.rows], columns = [...opts.columns];
  if (rows.length === 0) throw new LangneuronsError('E_INPUT', 'ppl-matrix: no languages to deactivate');
  if (columns.length === 0) throw new LangneuronsError('E_INPUT', 'ppl-matrix: no held-out texts to score');
  for (const [what, list] of [['row', rows], ['column', columns]] as const)
    if (new Set(list).size !== list.length) throw new LangneuronsError('E_INPUT', `ppl-matrix: a ${what} language is repeated (${list.join(', ')})`);
  const interventions = rows.map((r) => opts.intervention(r));
  await opts.prepare?.(interventions);
  const total = (rows.length + 1) * columns.length;
  let done = 0;
  const baseline = { nll: [] as number[], perplexity: [] as number[], tokens: [] as number[] };
  for (const col of columns) {
    const s = await opts.score(col, null);
    const nll = meanNll(s, col, null);
    baseline.nll.push(nll); baseline.perplexity.push(Math.exp(nll)); baseline.tokens.push(s.tokens);
    opts.onCell?.(++done, total, null, col);
  }
  const nll: number[][] = [], perplexity: number[][] = [], deltaNll: number[][] = [], deltaPerplexity: number[][] = [];
  for (const [i, row] of rows.entries()) {
    const intervention = interventions[i]!;
    const n: number[] = [];
    for (const [j, col] of columns.entries()) {
      const s = await opts.score(col, intervention);
      if (s.tokens !== baseline.tokens[j])
        throw new LangneuronsError('E_INPUT', `ppl-matrix: text "${col}" scored ${s.tokens} tokens with "${row}" deactivated but ${baseline.tokens[j]} without; the scorer must score the same tokens`);
      n.push(meanNll(s, col, row));
      opts.onCell?.(++done, total, row, col);
    }
    nll.push(n);
    perplexity.push(n.map(Math.exp));
    deltaNll.push(n.map((x, j) => x - baseline.nll[j]!));
    deltaPerplexity.push(n.map((x, j) => Math.exp(x) - baseline.perplexity[j]!));
  }
  const matrix = { format: PPL_MATRIX_FORMAT, rows, columns, baseline, nll, perplexity, deltaNll, deltaPerplexity } as const;
  return { ...matrix, diagonal: diagonalDominance(matrix) };
}

/**
 * Diagonal dominance of a change matrix: for every language that is both a row and a column, whether its own
 * deactivation raises its text's NLL the most among all rows (column view, `share`), and whether its
 * deactivation hurts its own text more than any other text (row view, `rowShare`). Ties count as misses.
 */
export function diagonalDominance(m: { rows: readonly string[]; columns: readonly string[]; deltaNll: number[][] }): DiagonalCheck {
  const languages = m.rows.filter((r) => m.columns.includes(r));
  const hits: string[] = [], misses: { language: string; strongest: string }[] = [], rowHits: string[] = [];
  for (const lang of languages) {
    const i = m.rows.indexOf(lang), j = m.columns.indexOf(lang);
    const own = m.deltaNll[i]![j]!;
    // column view: every other row raises this text's NLL less
    let strongest = '', best = -Infinity;
    m.rows.forEach((r, k) => {
      if (k !== i && m.deltaNll[k]![j]! > best) { best = m.deltaNll[k]![j]!; strongest = r; }
    });
    if (best >= own) misses.push({ language: lang, strongest });
    else hits.push(lang);
    // row view: this deactivation raises every other text's NLL less
    if (m.columns.every((c, k) => k === j || m.deltaNll[i]![k]! < own)) rowHits.push(lang);
  }
  const n = languages.length;
  return { languages, share: n ? hits.length / n : 0, hits, misses, rowShare: n ? rowHits.length / n : 0, rowHits };
}

const csvField = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

/** Long CSV: one line per (deactivated, text) with the baseline rows first (`deactivated` = none). */
export function pplMatrixCsv(m: PplMatrix): string {
  const lines = ['deactivated,text,tokens,nll,perplexity,delta_nll,delta_perplexity'];
  m.columns.forEach((c, j) => lines.push([ 'none', csvField(c), m.baseline.tokens[j], m.baseline.nll[j], m.baseline.perplexity[j], 0, 0].join(',')));
  m.rows.forEach((r, i) => m.columns.forEach((c, j) => lines.push([csvField(r), csvField(c), m.baseline.tokens[j], m.nll[i]![j], m.perplexity[i]![j], m.deltaNll[i]![j], m.deltaPerplexity[i]![j]].join(','))));
  return lines.join('\n') + '\n';
}

/** The heatmap of the NLL change (rows: deactivated language, columns: text language). */
export function pplMatrixSvg(m: PplMatrix, title = 'Change of mean token NLL when a language\u2019s neurons are deactivated'): string {
  return heatmapSvg({
    title,
    rowLabels: m.rows, columnLabels: m.columns, values: m.deltaNll,
    rowAxis: 'deactivated language', columnAxis: 'held-out text',
    footer: `baseline perplexity: ${m.columns.map((c, j) => `${c} ${m.baseline.perplexity[j]!.toFixed(2)}`).join(', ')}`,
    legend: 'ΔNLL (nats/token)',
    cellLabel: (i, j) => `${m.deltaNll[i]![j]! >= 0 ? '+' : ''}${m.deltaNll[i]![j]!.toFixed(3)}`,
    cellTitle: (i, j) => `deactivate ${m.rows[i]} → ${m.columns[j]}: NLL ${m.nll[i]![j]!.toFixed(4)} (baseline ${m.baseline.nll[j]!.toFixed(4)}), ` +
      `PPL ${m.perplexity[i]![j]!.toFixed(3)} (baseline ${m.baseline.perplexity[j]!.toFixed(3)})`,
  });
}

/** Writes `<out>` (JSON), and next to it `<out stem>.csv` and `<out stem>.svg`, each atomically; returns the paths. */
export async function writePplMatrix(out: string, m: PplMatrix, extra: Record<string, unknown> = {}): Promise<{ json: string; csv: string; svg: string }> {
  return writeJsonWithSidecars(out, { ...m, ...extra }, pplMatrixCsv(m), pplMatrixSvg(m));
}
