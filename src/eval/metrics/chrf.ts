// chrF / chrF++ as sacreBLEU 2.x computes them (mjpost/sacrebleu: sacrebleu/metrics/chrf.py and helpers.py):
// character n-grams up to char_order (default 6) with whitespace removed, word n-grams up to word_order
// (0 = chrF, 2 = chrF++) after sacreBLEU's punctuation splitting, F-beta with beta 2, averaged over the orders
// with sacreBLEU's default effective-order rule (eps_smoothing=False), or chrF++.py's epsilon smoothing.
// Multiple references: the one with the best sentence F-score. Scores are on 0–100.
import { splitWhitespace } from './bleu.js';

export interface ChrfOptions {
  charOrder?: number;
  wordOrder?: number;
  beta?: number;
  lowercase?: boolean;
  /** Keep whitespace in character n-grams (sacreBLEU --chrf-whitespace). */
  whitespace?: boolean;
  epsSmoothing?: boolean;
}

const PUNCTS = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

/** Python-like code-point array (sacreBLEU slices Python str, i.e. code points). */
const chars = (s: string): string[] => Array.from(s);

function charNgrams(line: string, n: number, whitespace: boolean): Map<string, number> {
  const cs = chars(whitespace ? line : splitWhitespace(line).join(''));
  const m = new Map<string, number>();
  for (let i = 0; i + n <= cs.length; i++) {
    const k = cs.slice(i, i + n).join('');
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/** sacreBLEU CHRF._remove_punctuation: splits one leading or trailing punctuation mark off words. */
export function chrfWords(sent: string): string[] {
  const out: string[] = [];
  for (const w of splitWhitespace(sent)) {
    const cs = chars(w);
    if (cs.length === 1) out.push(w);
    else if (PUNCTS.has(cs[cs.length - 1]!)) out.push(cs.slice(0, -1).join(''), cs[cs.length - 1]!);
    else if (PUNCTS.has(cs[0]!)) out.push(cs[0]!, cs.slice(1).join(''));
    else out.push(w);
  }
  return out;
}

function wordNgrams(words: string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= words.length; i++) {
    const k = words.slice(i, i + n).join(' ');
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

function allNgrams(s: string, o: Required<ChrfOptions>): Map<string, number>[] {
  const seg = o.lowercase ? s.toLowerCase() : s;
  const out: Map<string, number>[] = [];
  for (let n = 1; n <= o.charOrder; n++) out.push(charNgrams(seg, n, o.whitespace));
  if (o.wordOrder > 0) {
    const words = chrfWords(seg);
    for (let n = 1; n <= o.wordOrder; n++) out.push(wordNgrams(words, n));
  }
  return out;
}

function fill(o: ChrfOptions): Required<ChrfOptions> {
  return { charOrder: o.charOrder ?? 6, wordOrder: o.wordOrder ?? 0, beta: o.beta ?? 2, lowercase: o.lowercase ?? false, whitespace: o.whitespace ?? false, epsSmoothing: o.epsSmoothing ?? false };
}

/** sacreBLEU CHRF._compute_f_score. */
export function chrfFromStats(stats: number[], opts: ChrfOptions = {}): number {
  const o = fill(opts);
  const order = o.charOrder + o.wordOrder;
  const eps = 1e-16, factor = o.beta ** 2;
  let score = 0, eff = 0, avgP = 0, avgR = 0;
  for (let i = 0; i < order; i++) {
    const nHyp = stats[3 * i]!, nRef = stats[3 * i + 1]!, nMatch = stats[3 * i + 2]!;
    const prec = nHyp > 0 ? nMatch / nHyp : eps;
    const rec = nRef > 0 ? nMatch / nRef : eps;
    const denom = factor * prec + rec;
    score += denom > 0 ? ((1 + factor) * prec * rec) / denom : eps;
    if (nHyp > 0 && nRef > 0) { avgP += prec; avgR += rec; eff++; }
  }
  if (o.epsSmoothing) return (100 * score) / order;
  if (eff === 0) avgP = avgR = 0;
  else { avgP /= eff; avgR /= eff; }
  if (avgP + avgR) return (100 * ((1 + factor) * avgP * avgR)) / (factor * avgP + avgR);
  return 0;
}

/** [hyp, ref, match] counts per order for the best-matching reference. */
export function chrfSegmentStats(hyp: string, refs: string[], opts: ChrfOptions = {}): number[] {
  const o = fill(opts);
  const h = allNgrams(hyp, o);
  let best: number[] = [], bestF = -1;
  for (const ref of refs) {
    const r = allNgrams(ref, o);
    const stats: number[] = [];
    h.forEach((hm, i) => {
      const rm = r[i]!;
      let match = 0, hypCount = 0, refCount = 0;
      for (const [k, c] of hm) { hypCount += c; const rc = rm.get(k); if (rc !== undefined) match += Math.min(c, rc); }
      for (const c of rm.values()) refCount += c;
      stats.push(rm.size ? hypCount : 0, refCount, match);
    });
    const f = chrfFromStats(stats, o);
    if (f > bestF) { bestF = f; best = stats; }
  }
  return best;
}

/** Corpus chrF: statistics summed over segments. `refStreams[k][i]` is the k-th reference of hypothesis i. */
export function corpusChrf(hyps: string[], refStreams: string[][], opts: ChrfOptions = {}): number {
  const o = fill(opts);
  for (const s of refStreams) if (s.length !== hyps.length) throw new RangeError(`corpusChrf: ${hyps.length} hypotheses but a reference stream of ${s.length}`);
  const sum = new Array<number>(3 * (o.charOrder + o.wordOrder)).fill(0);
  hyps.forEach((h, i) => chrfSegmentStats(h, refStreams.map((s) => s[i]!), o).forEach((v, j) => { sum[j]! += v; }));
  return chrfFromStats(sum, o);
}

export function sentenceChrf(hyp: string, refs: string[], opts: ChrfOptions = {}): number {
  return chrfFromStats(chrfSegmentStats(hyp, refs, opts), opts);
}

export function chrfSignature(opts: ChrfOptions = {}): string {
  const o = fill(opts);
  return `chrF${o.beta}${'+'.repeat(o.wordOrder)}|case:${o.lowercase ? 'lc' : 'mixed'}|eff:${o.epsSmoothing ? 'no' : 'yes'}|nc:${o.charOrder}|nw:${o.wordOrder}|space:${o.whitespace ? 'yes' : 'no'}|sacrebleu-compatible`;
}
