// Training dynamics of fine-tuning runs (Gurgurov et al.'s analysis of how each method trains): per run, the
// training loss per optimizer step (and its trailing moving average), the validation loss at each evaluation, the
// gradient norm and learning rate per step, and a summary (steps, tokens, first / last / best loss, median step time
// and throughput). Read from the run folders `finetune` writes (run.json + train.jsonl), nothing recomputed.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { distinctNames } from './series-names.js';
import { FINETUNE_RUN_FORMAT } from '../train/run-dir.js';

export interface TrainingRun {
  /** The run folder's name (made distinct: a second 'run' is 'run-2'). */
  name: string;
  dir: string;
  method: string;
  lr: number;
  /** [step, value] per optimizer step. */
  loss: [number, number][];
  /** The trailing moving average of `loss` over `smooth` steps (fewer at the start). */
  smoothed: [number, number][];
  gradNorm: [number, number][];
  learningRate: [number, number][];
  /** [step, validation loss] at each evaluation; validAccuracy alongside for runs with a classification head. */
  valid: [number, number][];
  validAccuracy: [number, number][];
  summary: {
    steps: number; tokens: number; firstLoss: number | null; lastLoss: number | null;
    bestValid: number | null; bestStep: number | null; medianStepSeconds: number | null; medianTokensPerSecond: number | null;
  };
}

export interface TrainingAnalysis { smooth: number; runs: TrainingRun[] }

const median = (xs: number[]): number | null => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The trailing moving average over `n` points (the first n - 1 average what there is). */
export function movingAverage(points: [number, number][], n: number): [number, number][] {
  let sum = 0;
  return points.map(([x, y], i) => {
    sum += y;
    if (i >= n) sum -= points[i - n]![1];
    return [x, sum / Math.min(n, i + 1)];
  });
}

/** Reads one run folder; refuses (naming the file) a folder that is not a fine-tuning run or whose log is unreadable. */
export async function readTrainingRun(dir: string): Promise<Omit<TrainingRun, 'name' | 'smoothed'>> {
  const runFile = path.join(dir, 'run.json'), logFile = path.join(dir, 'train.jsonl');
  if (!existsSync(runFile)) throw new LangneuronsError('E_INPUT', `${dir}: not a fine-tuning run folder (no run.json)`, { file: dir });
  let run: { format?: unknown; options?: { method?: unknown; lr?: unknown } };
  try {
    run = JSON.parse(await fsp.readFile(runFile, 'utf8')) as typeof run;
  } catch (e) {
    throw new LangneuronsError('E_INPUT', `${runFile}: not JSON (${(e as Error).message})`, { file: runFile });
  }
  if (run.format !== FINETUNE_RUN_FORMAT)
    throw new LangneuronsError('E_INPUT', `${runFile}: not a fine-tuning run's (format ${JSON.stringify(run.format ?? null)}, expected ${FINETUNE_RUN_FORMAT})`, { file: runFile });
  if (!existsSync(logFile)) throw new LangneuronsError('E_INPUT', `${dir}: the run has no train.jsonl yet (it has not made a step)`, { file: logFile });
  const out: Omit<TrainingRun, 'name' | 'smoothed'> = {
    dir, method: String(run.options?.method ?? '?'), lr: Number(run.options?.lr ?? NaN),
    loss: [], gradNorm: [], learningRate: [], valid: [], validAccuracy: [],
    summary: { steps: 0, tokens: 0, firstLoss: null, lastLoss: null, bestValid: null, bestStep: null, medianStepSeconds: null, medianTokensPerSecond: null },
  };
  const seconds: number[] = [], throughput: number[] = [];
  const lines = (await fsp.readFile(logFile, 'utf8')).split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      // a line a kill cut short is the log's last: the run resumes from its last save and writes it again
      if (lines.slice(i + 1).some((l) => l.trim())) throw new LangneuronsError('E_INPUT', `${logFile}: line ${i + 1} is not JSON`, { file: logFile });
      return;
    }
    const step = e['step'];
    if (typeof step !== 'number') throw new LangneuronsError('E_INPUT', `${logFile}: line ${i + 1} has no step`, { file: logFile });
    if (typeof e['loss'] === 'number') {
      out.loss.push([step, e['loss']]);
      if (typeof e['gradNorm'] === 'number') out.gradNorm.push([step, e['gradNorm']]);
      if (typeof e['lr'] === 'number') out.learningRate.push([step, e['lr']]);
      if (typeof e['tokens'] === 'number') out.summary.tokens += e['tokens'];
      if (typeof e['seconds'] === 'number') seconds.push(e['seconds']);
      if (typeof e['tokensPerSecond'] === 'number') throughput.push(e['tokensPerSecond']);
    }
    if (typeof e['validLoss'] === 'number') {
      out.valid.push([step, e['validLoss']]);
      if (typeof e['validAccuracy'] === 'number') out.validAccuracy.push([step, e['validAccuracy']]);
    }
  });
  const s = out.summary;
  s.steps = out.loss.length;
  s.firstLoss = out.loss[0]?.[1] ?? null;
  s.lastLoss = out.loss.at(-1)?.[1] ?? null;
  for (const [step, v] of out.valid) if (s.bestValid === null || v < s.bestValid) { s.bestValid = v; s.bestStep = step; }
  // The first step carries one-time work (the trainer's set-up, the first batches): left out of the medians.
  s.medianStepSeconds = median(seconds.length > 1 ? seconds.slice(1) : seconds);
  s.medianTokensPerSecond = median(throughput.length > 1 ? throughput.slice(1) : throughput);
  return out;
}

/**
 * Every run's dynamics; `smooth` (>= 1) steps in the moving average of the training loss, by default a fiftieth of
 * the longest run (at least 1).
 */
export async function analyzeTraining(dirs: string[], smooth?: number): Promise<TrainingAnalysis> {
  if (!dirs.length) throw new LangneuronsError('E_OPTIONS', 'give at least one fine-tuning run folder', { field: 'runs' });
  if (smooth !== undefined && (!Number.isInteger(smooth) || smooth < 1))
    throw new LangneuronsError('E_OPTIONS', `--smooth must be an integer >= 1, got ${smooth}`, { field: '--smooth' });
  const read = [];
  for (const dir of dirs) read.push({ ...(await readTrainingRun(dir)), name: path.basename(path.resolve(dir)) });
  const n = smooth ?? Math.max(1, Math.round(Math.max(...read.map((r) => r.loss.length)) / 50));
  return { smooth: n, runs: distinctNames(read).map((r) => ({ ...r, smoothed: movingAverage(r.loss, n) })) };
}
