// The report of a whole sweep, read from its finished steps' outputs: neurons per language and layer per
// identification setting, the deactivation matrices, fine-tuning curves and cost per method, and a language ×
// setting pivot of every eval metric with its Δ against the unmodified model. Written as report.json (everything),
// report.csv (one row per measured number) and report.html (one self-contained page, SVG figures, no scripts).
// Nothing machine-specific (paths, timings of the host) enters the numbers, so two executors' reports compare equal.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { readMask, summarizeMask } from '../identify/index.js';
import { writeFileAtomic } from '../io/atomic.js';
import { withOutputLock } from '../io/lock.js';
import { toolVersion } from './load.js';
import { isDone, stepDir, type Cell, type Step, type SweepPlan } from './plan.js';
import { renderSweepHtml } from './report-html.js';

export const SWEEP_REPORT_FORMAT = 'langneurons-sweep-report/1';

export interface NeuronsEntry { model: string; identify: string; method: string; parameters: Record<string, unknown>; total: Record<string, number>; perLayer: Record<string, number[]>; union: number }
export interface MatrixEntry { model: string; identify: string; variant: string | null; rows: string[]; columns: string[]; baselineNll: number[]; deltaNll: number[][]; diagonalShare: number }
export interface LssEntry { model: string; identify: string; settings: { setting: string; meanLss: number; pairs: { base: string; target: string; lss: number }[] }[]; best: string }
export interface ForcingEntry {
  model: string; identify: string; amplify: string; identifier: string; meanRate: number;
  targets: { target: string; rate: number; baselineRate: number | null; identifiable: boolean }[];
}
export interface FallbackEntry {
  model: string; identify: string; identifier: string; deactivateValue: number;
  /** The baseline (no language deactivated) first when measured, then each step. */
  steps: { deactivated: string[]; mostCommon: string | null; distribution: Record<string, number> }[];
}
export interface FinetuneEntry {
  model: string; language: string; method: string; identify: string | null; trainableParameters: number; steps: number;
  trainLoss: [number, number][]; validLoss: [number, number][]; bestValid: number | null; secondsPerStep: number | null;
}
export interface EvalEntry {
  model: string; task: string; language: string; variant: string; method: string | null; identify: string | null;
  /** The intervention of an `eval.interventions` step, {lang} filled ({mask}: the identify setting's mask). */
  intervention: string | null;
  metrics: Record<string, number>;
  /** The unmodified model's metrics on the same task and language, when evaluated. */
  base: Record<string, number> | null;
}

export interface SweepReport {
  format: typeof SWEEP_REPORT_FORMAT;
  sweep: string;
  toolVersion: string;
  models: { name: string; fingerprint: string }[];
  languages: string[];
  lowResource: string[];
  steps: { total: number; done: number; missing: string[] };
  neurons: NeuronsEntry[];
  deactivation: MatrixEntry[];
  lss: LssEntry[];
  forcing: ForcingEntry[];
  fallback: FallbackEntry[];
  finetune: FinetuneEntry[];
  eval: EvalEntry[];
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;

function isSweepReport(jsonFile: string): boolean {
  try {
    return readJson<{ format?: unknown }>(jsonFile).format === SWEEP_REPORT_FORMAT;
  } catch {
    return false;
  }
}
const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : null; };

/** Lower is better for these metrics (the Δ's sign is read accordingly in the page). */
export const LOWER_IS_BETTER = new Set(['perplexity', 'mean_nll', 'nll', 'loss']);
/** The metric a task's pivot shows. */
export function primaryMetric(task: string, metrics: Record<string, number>): string | null {
  const order = task === 'ppl' ? ['perplexity', 'mean_nll'] : ['accuracy', 'acc', 'exact_match', 'f1', 'chrf', 'bleu'];
  return order.find((k) => k in metrics) ?? Object.keys(metrics)[0] ?? null;
}

export async function collectSweepReport(plan: SweepPlan): Promise<SweepReport> {
  const s = plan.sweep.spec;
  const report: SweepReport = {
    format: SWEEP_REPORT_FORMAT, sweep: plan.name, toolVersion: toolVersion(), models: plan.models.map((m) => ({ name: m.name, fingerprint: m.fingerprint })),
    languages: s.languages, lowResource: s.lowResource ?? [],
    steps: { total: plan.steps.length, done: 0, missing: [] }, neurons: [], deactivation: [], lss: [], forcing: [], fallback: [], finetune: [], eval: [],
  };
  const cell = (st: Step, k: keyof Cell) => st.cell[k] ?? null;
  for (const st of plan.steps) {
    if (!isDone(plan, st)) { report.steps.missing.push(st.id); continue; }
    report.steps.done++;
    const dir = stepDir(plan, st);
    if (st.kind === 'identify') {
      // One mask.json, or a joint ranking's mask.<site>.json per site (--sites): their units add up (the sites' units differ).
      const masks = await Promise.all((st.masks ?? ['mask.json']).map((f) => readMask(path.join(dir, f))));
      const sums = masks.map(summarizeMask);
      const add = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v + (b[k] ?? 0)]));
      const addLayers = (a: Record<string, number[]>, b: Record<string, number[]>) => Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v.map((x, l) => x + (b[k]?.[l] ?? 0))]));
      const sum = sums.reduce((a, b) => ({ ...a, total: add(a.total, b.total), perLayer: addLayers(a.perLayer, b.perLayer), union: a.union + b.union }));
      report.neurons.push({ model: st.cell.model!, identify: st.cell.identify!, method: masks[0]!.method, parameters: masks[0]!.parameters as Record<string, unknown>,
        total: sum.total, perLayer: sum.perLayer, union: sum.union });
    } else if (st.kind === 'ppl-matrix') {
      const m = readJson<{ rows: string[]; columns: string[]; baseline: { nll: number[] }; deltaNll: number[][]; diagonal: { share: number } }>(path.join(dir, 'matrix.json'));
      report.deactivation.push({ model: st.cell.model!, identify: st.cell.identify!, variant: cell(st, 'variant'), rows: m.rows, columns: m.columns,
        baselineNll: m.baseline.nll, deltaNll: m.deltaNll, diagonalShare: m.diagonal.share });
    } else if (st.kind === 'lss') {
      const l = readJson<{ settings: { setting: string; meanLss: number; pairs: { base: string; target: string; lss: number }[] }[]; best: { setting: string } }>(path.join(dir, 'lss.json'));
      report.lss.push({ model: st.cell.model!, identify: st.cell.identify!, best: l.best.setting,
        settings: l.settings.map((x) => ({ setting: x.setting, meanLss: x.meanLss, pairs: x.pairs.map((p) => ({ base: p.base, target: p.target, lss: p.lss })) })) });
    } else if (st.kind === 'forcing') {
      const f = readJson<{ identifier: string; meanRate: number; amplify: string; targets: { target: string; identifiable: boolean; forced: { rate: number }; baseline?: { rate: number } }[] }>(path.join(dir, 'forcing.json'));
      report.forcing.push({ model: st.cell.model!, identify: st.cell.identify!, amplify: f.amplify, identifier: f.identifier, meanRate: f.meanRate,
        targets: f.targets.map((t) => ({ target: t.target, rate: t.forced.rate, baselineRate: t.baseline?.rate ?? null, identifiable: t.identifiable })) });
    } else if (st.kind === 'fallback') {
      type FallbackStepJson = { deactivated: string[]; mostCommon: string | null; distribution: Record<string, number> };
      const f = readJson<{ identifier: string; deactivateValue: number; baseline?: FallbackStepJson; steps: FallbackStepJson[] }>(path.join(dir, 'fallback.json'));
      report.fallback.push({ model: st.cell.model!, identify: st.cell.identify!, identifier: f.identifier, deactivateValue: f.deactivateValue,
        steps: [...(f.baseline ? [f.baseline] : []), ...f.steps].map((x) => ({ deactivated: x.deactivated, mostCommon: x.mostCommon, distribution: x.distribution })) });
    } else if (st.kind === 'finetune') {
      const run = readJson<{ trainableParameters: number }>(path.join(dir, 'run.json'));
      const log = readFileSync(path.join(dir, 'train.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, number>);
      const steps = log.filter((e) => num(e['loss']) !== null);
      const valid = log.filter((e) => num(e['validLoss']) !== null).map((e) => [e['step']!, e['validLoss']!] as [number, number]);
      report.finetune.push({
        model: st.cell.model!, language: st.cell.language!, method: st.cell.method!, identify: cell(st, 'identify'), trainableParameters: run.trainableParameters,
        steps: steps.length, trainLoss: steps.map((e) => [e['step']!, e['loss']!]), validLoss: valid,
        bestValid: valid.length ? Math.min(...valid.map((v) => v[1])) : null,
        // the first step warms caches up; the median of the others is the step's cost
        secondsPerStep: median(steps.slice(steps.length > 1 ? 1 : 0).map((e) => e['seconds']!).filter((x) => Number.isFinite(x))),
      });
    } else if (st.kind === 'eval') {
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.json') && !n.endsWith('.items.json') && n !== 'step.json').sort()) {
        const r = readJson<{ task: string; lang: string; metrics: Record<string, unknown> }>(path.join(dir, f));
        const metrics = Object.fromEntries(Object.entries(r.metrics).filter(([, v]) => num(v) !== null)) as Record<string, number>;
        report.eval.push({ model: st.cell.model!, task: r.task, language: r.lang, variant: st.cell.variant!, method: cell(st, 'method'), identify: cell(st, 'identify'), intervention: cell(st, 'intervention'), metrics, base: null });
      }
    }
  }
  for (const e of report.eval) {
    const base = report.eval.find((b) => b.variant === 'base' && b.model === e.model && b.task === e.task && b.language === e.language);
    e.base = base ? base.metrics : null;
  }
  return report;
}

const csvCell = (v: unknown) => { const s = v === null || v === undefined ? '' : String(v); return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };

/** One row per measured number: table, model, identify, method, language, task, variant, metric, value, base, delta,
 *  intervention (eval rows of an intervention). */
export function sweepReportCsv(r: SweepReport): string {
  const rows: unknown[][] = [['table', 'model', 'identify', 'method', 'language', 'task', 'variant', 'metric', 'value', 'base', 'delta', 'intervention']];
  for (const n of r.neurons) for (const [lang, count] of Object.entries(n.total)) rows.push(['neurons', n.model, n.identify, n.method, lang, '', '', 'neurons', count, '', '']);
  for (const m of r.deactivation) m.rows.forEach((row, i) => m.columns.forEach((col, j) =>
    rows.push(['deactivation', m.model, m.identify, '', col, '', `deactivate:${row}${m.variant ? `:${m.variant}` : ''}`, 'delta_nll', m.deltaNll[i]![j], m.baselineNll[j], m.deltaNll[i]![j]])));
  for (const l of r.lss) for (const x of l.settings) {
    rows.push(['lss', l.model, l.identify, '', '', '', x.setting, 'mean_lss', x.meanLss, '', '']);
    for (const p of x.pairs) rows.push(['lss', l.model, l.identify, '', p.target, '', x.setting, `lss_from_${p.base}`, p.lss, '', '']);
  }
  for (const f of r.forcing) {
    rows.push(['forcing', f.model, f.identify, '', '', '', f.amplify, 'mean_rate', f.meanRate, '', '']);
    for (const t of f.targets) rows.push(['forcing', f.model, f.identify, '', t.target, '', f.amplify, 'forced_rate', t.rate, t.baselineRate ?? '', t.baselineRate === null ? '' : t.rate - t.baselineRate]);
  }
  for (const f of r.fallback) for (const st of f.steps) for (const [lang, n] of Object.entries(st.distribution))
    rows.push(['fallback', f.model, f.identify, '', lang, '', `deactivate:${st.deactivated.join('+') || 'none'}`, 'answers', n, '', '']);
  for (const f of r.finetune) {
    // (no base: the run's first validation comes after training steps, so it is not the unmodified model's loss)
    rows.push(['finetune', f.model, f.identify ?? '', f.method, f.language, '', '', 'best_valid_loss', f.bestValid ?? '', '', '']);
    rows.push(['finetune', f.model, f.identify ?? '', f.method, f.language, '', '', 'trainable_parameters', f.trainableParameters, '', '']);
    rows.push(['finetune', f.model, f.identify ?? '', f.method, f.language, '', '', 'seconds_per_step', f.secondsPerStep ?? '', '', '']);
  }
  for (const e of r.eval) for (const [k, v] of Object.entries(e.metrics)) {
    const b = e.base?.[k];
    rows.push(['eval', e.model, e.identify ?? '', e.method ?? '', e.language, e.task, e.variant, k, v, b ?? '', b === undefined ? '' : v - b, e.intervention ?? '']);
  }
  // every row as wide as the header (only eval rows have an intervention)
  return rows.map((r) => [...r, ...Array(rows[0]!.length - r.length).fill('')].map(csvCell).join(',')).join('\n') + '\n';
}

export async function writeSweepReport(plan: SweepPlan, dir: string): Promise<{ html: string; json: string; csv: string; cells: number; missing: number }> {
  const r = await collectSweepReport(plan);
  const out = { html: path.join(dir, 'report.html'), json: path.join(dir, 'report.json'), csv: path.join(dir, 'report.csv') };
  // A report is written again over a sweep report (its report.json says so), never over files it did not write.
  const existing = Object.values(out).filter((f) => existsSync(f));
  if (existing.length > 0 && !isSweepReport(out.json))
    throw new LangneuronsError('E_EXISTS', `${existing[0]}: exists and was not written by sweep report; choose another --out`, { file: existing[0]! });
  await withOutputLock(dir, 'sweep report', async () => {
    await writeFileAtomic(out.json, JSON.stringify(r, null, 1) + '\n');
    await writeFileAtomic(out.csv, sweepReportCsv(r));
    await writeFileAtomic(out.html, renderSweepHtml(r));
  });
  return { ...out, cells: r.eval.length, missing: r.steps.missing.length };
}
