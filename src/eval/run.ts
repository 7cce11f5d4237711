// The runner: executes a TaskPlan in batches on a Scorer, checkpoints finished items (JSONL, one line per item,
// appended after each batch) so an interrupted evaluation resumes where it stopped, aggregates the metrics and
// writes one result JSON per (task, language, variant) atomically.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { fingerprint, type DataFile } from './data.js';
import { corpusBleu, sentenceBleu } from './metrics/bleu.js';
import { chrfSignature, corpusChrf, sentenceChrf } from './metrics/chrf.js';
import { squadScores, tokenIdScores } from './metrics/squad.js';
import type { Scorer } from './scorer.js';
import type { PlanItem, TaskPlan } from './tasks.js';

export const TOOL_VERSION = '0.1.0';
export const RESULT_SCHEMA = 'langneurons.eval/1';

export type ItemResult = Record<string, unknown> & { id: string };

export interface Variant {
  /** 'base', 'intervene', 'delta', or a user-chosen name. */
  name: string;
  intervene?: string;
  delta?: string;
  /** A trained classification head (eval --head). */
  head?: string;
  /** Generative prompts rendered with the model's chat template (eval --chat-template): its source, and the system turn. */
  chatTemplate?: string;
  system?: string;
}

export interface RunOptions {
  scorer: Scorer;
  outDir: string;
  model: string;
  variant: Variant;
  /** Items per batch (all choices of an item's batch go to one logLikelihood call). */
  batchItems?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface EvalResult {
  schema: string;
  task: string;
  lang: string;
  variant: Variant;
  model: string;
  prompt: string;
  data: DataFile[];
  toolVersion: string;
  items: number;
  metrics: Record<string, number | string>;
  created: string;
}

export const safeName = (s: string): string => s.replace(/[^A-Za-z0-9._=-]+/g, '_');

export function resultBase(outDir: string, task: string, lang: string, variant: string): string {
  return path.join(outDir, `${safeName(task)}__${safeName(lang)}__${safeName(variant)}`);
}

const argmax = (xs: number[]): number => xs.reduce((b, x, i) => (x > xs[b]! ? i : b), 0);

async function scoreBatch(plan: TaskPlan, items: PlanItem[], scorer: Scorer): Promise<ItemResult[]> {
  const kind = items[0]!.kind;
  if (kind === 'mc') {
    const mcs = items as Extract<PlanItem, { kind: 'mc' }>[];
    const scores = await scorer.logLikelihood(mcs.flatMap((it) => it.pairs)); // one batched call for the batch
    let k = 0;
    return mcs.map((it) => {
      const lls = it.pairs.map(() => scores[k++]!.logprob);
      const pred = argmax(lls);
      // lm-eval acc_norm: log-likelihood / len(choice) in characters (Python len); also by UTF-8 bytes.
      const predNorm = argmax(lls.map((l, i) => l / Array.from(it.choices[i]!).length));
      const predBytes = argmax(lls.map((l, i) => l / Buffer.byteLength(it.choices[i]!, 'utf8')));
      return { id: it.id, logprobs: lls, gold: it.gold, pred, predNorm, acc: +(pred === it.gold), acc_norm: +(predNorm === it.gold), acc_norm_bytes: +(predBytes === it.gold) };
    });
  }
  if (kind === 'gen') {
    const gens = items as Extract<PlanItem, { kind: 'gen' }>[];
    const outs = await scorer.generate(gens.map((g) => g.prompt), plan.gen!);
    return gens.map((g, i) => {
      const output = outs[i]!.trim();
      if (plan.parseChoice) {
        const pred = plan.parseChoice(output);
        return { id: g.id, output, gold: g.gold, pred, acc: +(pred === g.gold), invalid: +(pred === null) };
      }
      if (plan.task === 'flores') {
        return { id: g.id, output, ref: g.refs[0], bleu: sentenceBleu(output, g.refs).score, chrf: sentenceChrf(output, g.refs), chrfpp: sentenceChrf(output, g.refs, { wordOrder: 2 }) };
      }
      const s = squadScores(output, g.refs);
      const r: ItemResult = { id: g.id, output, refs: g.refs, em: s.em, f1: s.f1 };
      if (scorer.encode) {
        const t = tokenIdScores(scorer.encode(output), g.refs.map((x) => scorer.encode!(x.trim())));
        r.token_em = t.em; r.token_f1 = t.f1;
      }
      return r;
    });
  }
  if (kind === 'cls') {
    if (!scorer.classify) throw new LangneuronsError('E_OPTIONS', `${plan.task}: prompt '${plan.prompt}' needs a classification head (--head)`, { field: 'head' });
    const cls = items as Extract<PlanItem, { kind: 'cls' }>[];
    const logits = await scorer.classify(cls.map((it) => it.texts));
    return cls.map((it, i) => {
      const z = Array.from(logits[i]!);
      const pred = argmax(z);
      return { id: it.id, logits: z, gold: it.gold, pred, acc: +(pred === it.gold) };
    });
  }
  const texts = items as Extract<PlanItem, { kind: 'text' }>[];
  const res = await scorer.nll(texts.map((t) => t.text));
  return texts.map((t, i) => ({ id: t.id, nll: res[i]!.totalNll, tokens: res[i]!.tokens }));
}

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const col = (rs: ItemResult[], k: string): number[] => rs.map((r) => r[k]).filter((x): x is number => typeof x === 'number');

export function aggregate(plan: TaskPlan, results: ItemResult[]): Record<string, number | string> {
  const kind = plan.items[0]?.kind;
  if (kind === 'mc') return { acc: mean(col(results, 'acc')), acc_norm: mean(col(results, 'acc_norm')), acc_norm_bytes: mean(col(results, 'acc_norm_bytes')) };
  if (kind === 'cls') return { acc: mean(col(results, 'acc')) };
  if (kind === 'text') {
    const nll = col(results, 'nll').reduce((a, b) => a + b, 0), tokens = col(results, 'tokens').reduce((a, b) => a + b, 0);
    return { mean_nll: nll / tokens, perplexity: Math.exp(nll / tokens), tokens, documents: results.length };
  }
  if (plan.parseChoice) return { acc: mean(col(results, 'acc')), invalid: mean(col(results, 'invalid')) };
  if (plan.task === 'flores') {
    const hyps = results.map((r) => String(r.output)), refs = [results.map((r) => String(r.ref))];
    const bleu = corpusBleu(hyps, refs);
    return {
      bleu: bleu.score, sentence_bleu: mean(col(results, 'bleu')),
      chrf: corpusChrf(hyps, refs), sentence_chrf: mean(col(results, 'chrf')),
      chrfpp: corpusChrf(hyps, refs, { wordOrder: 2 }), sentence_chrfpp: mean(col(results, 'chrfpp')),
      bleu_signature: bleu.signature, chrf_signature: chrfSignature(), chrfpp_signature: chrfSignature({ wordOrder: 2 }),
    };
  }
  const m: Record<string, number | string> = { exact_match: 100 * mean(col(results, 'em')), f1: 100 * mean(col(results, 'f1')) };
  if (results.some((r) => 'token_em' in r)) { m.token_exact_match = 100 * mean(col(results, 'token_em')); m.token_f1 = 100 * mean(col(results, 'token_f1')); }
  return m;
}

interface CheckpointHeader { checkpoint: string; task: string; lang: string; prompt: string; model: string; variant: Variant; data: string[] }

async function readCheckpoint(file: string, header: CheckpointHeader): Promise<Map<string, ItemResult>> {
  const done = new Map<string, ItemResult>();
  if (!existsSync(file)) return done;
  const lines = (await fsp.readFile(file, 'utf8')).split('\n');
  let first: unknown;
  try { first = JSON.parse(lines[0] ?? ''); } catch { return done; }
  if (JSON.stringify(first) !== JSON.stringify(header)) return done; // another model / data / prompt: start over
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    try { const r = JSON.parse(line) as ItemResult; if (typeof r.id === 'string') done.set(r.id, r); } catch { /* a torn last line */ }
  }
  return done;
}

/** Runs a plan (resuming from its checkpoint), writes `<task>__<lang>__<variant>.json` and returns it. */
export async function runPlan(plan: TaskPlan, o: RunOptions): Promise<EvalResult> {
  if (!plan.items.length) throw new LangneuronsError('E_DATA', `${plan.files.join(', ')}: no items`, { file: plan.files[0] ?? '' });
  await fsp.mkdir(o.outDir, { recursive: true });
  const data = await Promise.all(plan.files.map(fingerprint));
  const base = resultBase(o.outDir, plan.task, plan.lang, o.variant.name);
  const ckFile = `${base}.items.jsonl`;
  const header: CheckpointHeader = { checkpoint: RESULT_SCHEMA, task: plan.task, lang: plan.lang, prompt: plan.prompt, model: o.model, variant: o.variant, data: data.map((d) => d.sha256) };
  const done = await readCheckpoint(ckFile, header);
  if (!done.size) await writeFileAtomic(ckFile, JSON.stringify(header) + '\n');
  const todo = plan.items.filter((it) => !done.has(it.id));
  const batch = Math.max(1, o.batchItems ?? 16);
  o.onProgress?.(plan.items.length - todo.length, plan.items.length);
  for (let s = 0; s < todo.length; s += batch) {
    const results = await scoreBatch(plan, todo.slice(s, s + batch), o.scorer);
    await fsp.appendFile(ckFile, results.map((r) => JSON.stringify(r) + '\n').join(''));
    for (const r of results) done.set(r.id, r);
    o.onProgress?.(plan.items.length - todo.length + Math.min(todo.length, s + batch), plan.items.length);
  }
  const ordered = plan.items.map((it) => done.get(it.id)!);
  const result: EvalResult = {
    schema: RESULT_SCHEMA, task: plan.task, lang: plan.lang, variant: o.variant, model: o.model, prompt: plan.prompt,
    data, toolVersion: TOOL_VERSION, items: ordered.length, metrics: aggregate(plan, ordered), created: new Date().toISOString(),
  };
  await writeFileAtomic(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
  return result;
}
