// SQuAD v1.1 answer normalisation, exact match and F1 (the official evaluate-v1.1.py, as wrapped by Hugging Face
// `evaluate`'s squad metric): lower-case, drop ASCII punctuation (Python string.punctuation), drop the articles
// a/an/the, collapse whitespace; F1 over whitespace tokens; the best score over the gold answers.
// Token-id variants (Mondal et al. report EM/F1 on token ids): the same, on the model tokenizer's ids of the
// stripped strings (no special tokens, no normalisation beyond stripping).
import { pySplit } from '../pystr.js';

const PUNCT = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

export function normalizeAnswer(s: string, o: SquadOptions = {}): string {
  const lower = s.toLowerCase();
  const noPunc = Array.from(lower).filter((c) => !PUNCT.has(c)).join('');
  // Python's re \b is Unicode-aware: a word character is a letter, a number or '_'.
  const noArticles = o.keepArticles ? noPunc : noPunc.replace(/(?<![\p{L}\p{N}_])(a|an|the)(?![\p{L}\p{N}_])/gu, ' ');
  return pySplit(noArticles).join(' '); // Python's ' '.join(text.split())
}

/** F1 over sets of tokens: the shared distinct tokens over each side's token count (Language Arithmetics' xquad.py). */
function f1TokenSets<T>(pred: T[], gold: T[]): number {
  const g = new Set(gold);
  const same = new Set(pred.filter((p) => g.has(p))).size;
  if (same === 0) return 0;
  const precision = same / pred.length, recall = same / gold.length;
  return (2 * precision * recall) / (precision + recall);
}

function f1Tokens<T>(pred: T[], gold: T[]): number {
  const counts = new Map<T, number>();
  for (const g of gold) counts.set(g, (counts.get(g) ?? 0) + 1);
  let same = 0;
  for (const p of pred) {
    const c = counts.get(p) ?? 0;
    if (c > 0) { same++; counts.set(p, c - 1); }
  }
  if (same === 0) return 0;
  const precision = same / pred.length, recall = same / gold.length;
  return (2 * precision * recall) / (precision + recall);
}

export function exactMatch(prediction: string, gold: string, o: SquadOptions = {}): number {
  return normalizeAnswer(prediction, o) === normalizeAnswer(gold, o) ? 1 : 0;
}

export function f1Score(prediction: string, gold: string, o: SquadOptions = {}): number {
  const p = normalizeAnswer(prediction, o).split(' ').filter(Boolean);
  const g = normalizeAnswer(gold, o).split(' ').filter(Boolean);
  // transformers' squad_metrics.compute_f1 (lm-eval's XQuAD): an empty side scores int(gold_toks == pred_toks)
  if (o.emptyMatch && (p.length === 0 || g.length === 0)) return p.length === g.length ? 1 : 0;
  return o.setF1 ? f1TokenSets(p, g) : f1Tokens(p, g);
}

export interface SquadOptions {
  /** F1 of two answers that normalise to nothing is 1 (transformers' squad_metrics, used by lm-eval), not 0. */
  emptyMatch?: boolean;
  /** Keep the articles a/an/the (Language Arithmetics' normalize_answer defines their removal and never calls it). */
  keepArticles?: boolean;
  /** F1 over sets of tokens instead of the official multisets (Language Arithmetics' compute_f1_score). */
  setF1?: boolean;
}

const best = (xs: number[]): number => (xs.length ? Math.max(...xs) : 0);

/** EM and F1 of one prediction against its gold answers, on 0–1. */
export function squadScores(prediction: string, golds: string[], o: SquadOptions = {}): { em: number; f1: number } {
  return { em: best(golds.map((g) => exactMatch(prediction, g, o))), f1: best(golds.map((g) => f1Score(prediction, g, o))) };
}

/** EM and F1 on token ids. */
export function tokenIdScores(prediction: number[], golds: number[][]): { em: number; f1: number } {
  const eq = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  return { em: best(golds.map((g) => (eq(prediction, g) ? 1 : 0))), f1: best(golds.map((g) => f1Tokens(prediction, g))) };
}

/** Corpus EM/F1 as the SQuAD script reports them: means over questions, times 100. */
export function squadCorpus(predictions: string[], golds: string[][]): { exact_match: number; f1: number } {
  let em = 0, f1 = 0;
  predictions.forEach((p, i) => { const s = squadScores(p, golds[i]!); em += s.em; f1 += s.f1; });
  const n = predictions.length || 1;
  return { exact_match: (100 * em) / n, f1: (100 * f1) / n };
}
