// BLEU as sacreBLEU 2.x computes it (mjpost/sacrebleu: sacrebleu/metrics/bleu.py, tokenizers/tokenizer_13a.py,
// tokenizer_re.py, tokenizer_zh.py, tokenizer_intl.py, tokenizer_char.py; spBLEU as tokenizer_spm.py with a
// SentencePiece tokenizer the caller loads, see spm.ts). Defaults are sacreBLEU's: tokenizer 13a (mteval-v13a), case-sensitive,
// max n-gram order 4, smoothing 'exp' for both corpus_bleu and sentence_bleu; sentence_bleu uses the
// effective order (sacrebleu.compat.sentence_bleu(use_effective_order=True)). Scores are on 0–100.

import { pyRstrip, pySplit, pyStrip } from '../pystr.js';

export const BLEU_TOKENIZERS = ['13a', 'none', 'zh', 'intl', 'char'] as const;
export type BleuTokenizer = typeof BLEU_TOKENIZERS[number];

/** A tokenizer given as a function (spBLEU: `spm:<tokenizer.json>`), named in the signature. */
export interface CustomBleuTokenizer { name: string; tokenize: (line: string) => string }
export type BleuSmoothing = 'exp' | 'none' | 'floor' | 'add-k';

export interface BleuOptions {
  tokenize?: BleuTokenizer | CustomBleuTokenizer;
  smooth?: BleuSmoothing;
  /** floor: default 0.1; add-k: default 1 (sacreBLEU's SMOOTH_DEFAULTS). */
  smoothValue?: number;
  lowercase?: boolean;
  /** Stop at the highest order with any hypothesis n-gram (sentence-level BLEU). */
  effectiveOrder?: boolean;
  maxOrder?: number;
}

export interface BleuScore {
  score: number;
  counts: number[];
  totals: number[];
  precisions: number[];
  bp: number;
  sysLen: number;
  refLen: number;
  /** sacreBLEU-style signature of the settings. */
  signature: string;
}

const RE_PUNCT = /([{-~[-` -&(-+:-@/])/g;
const RE_PERIOD_COMMA_1 = /([^0-9])([.,])/g;
const RE_PERIOD_COMMA_2 = /([.,])([^0-9])/g;
const RE_DASH = /([0-9])(-)/g;

/** sacreBLEU's TokenizerRegexp (the language-dependent part of 13a). */
function regexpTokenize(line: string): string {
  line = line.replace(RE_PUNCT, ' $1 ');
  line = line.replace(RE_PERIOD_COMMA_1, '$1 $2 ');
  line = line.replace(RE_PERIOD_COMMA_2, ' $1 $2');
  line = line.replace(RE_DASH, '$1 $2 ');
  return splitWhitespace(line).join(' ');
}

/** Python's str.split() with no argument (src/eval/pystr.ts). */
export const splitWhitespace = pySplit;

/** mteval-v13a tokenisation as sacreBLEU's Tokenizer13a. */
export function tokenize13a(line: string): string {
  line = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (line.includes('&')) line = line.replaceAll('&quot;', '"').replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  return regexpTokenize(` ${line} `);
}

// tokenizer_zh.py's ranges. Two of them are written there as 5-hex-digit '\uXXXXX' escapes, which Python reads as
// a 2-character string ('\u2000' + '0'); compared as strings with one character, they act as the ranges
// (U+2000, U+2A6D] and (U+2F80, U+2FA1], which is what sacreBLEU computes, so they are kept that way.
const ZH_RANGES: [number, number][] = [
  [0x3400, 0x4db5], [0x4e00, 0x9fa5], [0x9fa6, 0x9fbb], [0xf900, 0xfa2d], [0xfa30, 0xfa6a], [0xfa70, 0xfad9],
  [0x2001, 0x2a6d], [0x2f81, 0x2fa1], [0xff00, 0xffef], [0x2e80, 0x2eff], [0x3000, 0x303f], [0x31c0, 0x31ef],
  [0x2f00, 0x2fdf], [0x2ff0, 0x2fff], [0x3100, 0x312f], [0x31a0, 0x31bf], [0xfe10, 0xfe1f], [0xfe30, 0xfe4f],
  [0x2600, 0x26ff], [0x2700, 0x27bf], [0x3200, 0x32ff], [0x3300, 0x33ff],
];
const isZhChar = (cp: number): boolean => ZH_RANGES.some(([a, b]) => cp >= a && cp <= b);

/** sacreBLEU's TokenizerZh: every Chinese character (by the ranges above) spaced out, then TokenizerRegexp. */
export function tokenizeZh(line: string): string {
  let out = '';
  for (const ch of pyStrip(line)) out += isZhChar(ch.codePointAt(0)!) ? ` ${ch} ` : ch;
  return regexpTokenize(out);
}

const RE_INTL = [
  [/(\P{N})(\p{P})/gu, '$1 $2 '], [/(\p{P})(\P{N})/gu, ' $1 $2'], [/(\p{S})/gu, ' $1 '],
] as const;

/** sacreBLEU's TokenizerV14International (mteval-v14.pl's international tokenisation). */
export function tokenizeIntl(line: string): string {
  for (const [re, rep] of RE_INTL) line = line.replace(re, rep);
  return pySplit(line).join(' ');
}

/** sacreBLEU's TokenizerChar: every character (code point) a token. */
export const tokenizeChar = (line: string): string => Array.from(line).join(' ');

function tokenizerName(t: BleuOptions['tokenize']): string {
  return typeof t === 'object' ? t.name : t ?? '13a';
}

function preprocess(sent: string, o: BleuOptions): string {
  if (o.lowercase) sent = sent.toLowerCase();
  sent = pyRstrip(sent); // sacreBLEU: tokenizer(sent.rstrip())
  const t = o.tokenize ?? '13a';
  if (typeof t === 'object') return t.tokenize(sent);
  switch (t) {
    case '13a': return tokenize13a(sent);
    case 'zh': return tokenizeZh(sent);
    case 'intl': return tokenizeIntl(sent);
    case 'char': return tokenizeChar(sent);
    case 'none': return sent;
  }
}

function ngrams(tokens: string[], maxOrder: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++)
    for (let i = 0; i + n <= tokens.length; i++) {
      const k = `${n}\u0000${tokens.slice(i, i + n).join('\u0001')}`;
      m.set(k, (m.get(k) ?? 0) + 1);
    }
  return m;
}

/** Sufficient statistics of one segment: [hypLen, refLen, correct_1..N, total_1..N]. */
export function bleuSegmentStats(hyp: string, refs: string[], o: BleuOptions = {}): number[] {
  const N = o.maxOrder ?? 4;
  const refNgrams = new Map<string, number>();
  const refLens: number[] = [];
  for (const r of refs) {
    const toks = splitWhitespace(preprocess(r, o));
    refLens.push(toks.length);
    for (const [k, c] of ngrams(toks, N)) refNgrams.set(k, Math.max(refNgrams.get(k) ?? 0, c));
  }
  const htoks = splitWhitespace(preprocess(hyp, o));
  const hypLen = htoks.length;
  // closest reference length; ties go to the shorter one
  let closestDiff = -1, closestLen = -1;
  for (const rl of refLens) {
    const d = Math.abs(hypLen - rl);
    if (closestDiff === -1 || d < closestDiff) { closestDiff = d; closestLen = rl; }
    else if (d === closestDiff && rl < closestLen) closestLen = rl;
  }
  const correct = new Array<number>(N).fill(0), total = new Array<number>(N).fill(0);
  for (const [k, c] of ngrams(htoks, N)) {
    const n = Number(k.slice(0, k.indexOf('\u0000'))) - 1;
    total[n]! += c;
    const r = refNgrams.get(k);
    if (r !== undefined) correct[n]! += Math.min(c, r);
  }
  return [hypLen, closestLen, ...correct, ...total];
}

const myLog = (x: number): number => (x === 0 ? -9999999999 : Math.log(x));

/** sacreBLEU's BLEU.compute_bleu. */
export function computeBleu(correctIn: number[], totalIn: number[], sysLen: number, refLen: number, o: BleuOptions = {}): Omit<BleuScore, 'signature'> {
  const smooth = o.smooth ?? 'exp';
  const maxOrder = o.maxOrder ?? 4;
  const smoothValue = o.smoothValue ?? (smooth === 'floor' ? 0.1 : smooth === 'add-k' ? 1 : 0);
  const correct = [...correctIn], total = [...totalIn];
  let bp = 1.0;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0.0;
  const precisions = new Array<number>(maxOrder).fill(0);
  const base = { counts: correctIn, totals: totalIn, bp, sysLen, refLen };
  if (!correct.some((c) => c !== 0)) return { score: 0, precisions, ...base };
  let smoothMteval = 1.0;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (smooth === 'add-k' && n > 1) { correct[n - 1]! += smoothValue; total[n - 1]! += smoothValue; }
    if (total[n - 1] === 0) break;
    if (o.effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (smooth === 'exp') { smoothMteval *= 2; precisions[n - 1] = 100 / (smoothMteval * total[n - 1]!); }
      else if (smooth === 'floor') precisions[n - 1] = (100 * smoothValue) / total[n - 1]!;
    } else precisions[n - 1] = (100 * correct[n - 1]!) / total[n - 1]!;
  }
  const score = bp * Math.exp(precisions.slice(0, effOrder).reduce((s, p) => s + myLog(p), 0) / effOrder);
  return { score, precisions, ...base };
}

function signature(o: BleuOptions, nrefs: number): string {
  return `nrefs:${nrefs}|case:${o.lowercase ? 'lc' : 'mixed'}|eff:${o.effectiveOrder ? 'yes' : 'no'}|tok:${tokenizerName(o.tokenize)}|smooth:${o.smooth ?? 'exp'}|sacrebleu-compatible`;
}

/**
 * Corpus BLEU. `refStreams` follows sacreBLEU: one array per reference set, each as long as `hyps`
 * (refStreams[k][i] is the k-th reference of hypothesis i).
 */
export function corpusBleu(hyps: string[], refStreams: string[][], opts: BleuOptions = {}): BleuScore {
  const N = opts.maxOrder ?? 4;
  for (const s of refStreams) if (s.length !== hyps.length) throw new RangeError(`corpusBleu: ${hyps.length} hypotheses but a reference stream of ${s.length}`);
  const sum = new Array<number>(2 + 2 * N).fill(0);
  hyps.forEach((h, i) => {
    const st = bleuSegmentStats(h, refStreams.map((s) => s[i]!), opts);
    st.forEach((v, j) => { sum[j]! += v; });
  });
  const r = computeBleu(sum.slice(2, 2 + N), sum.slice(2 + N), sum[0]!, sum[1]!, opts);
  return { ...r, signature: signature(opts, refStreams.length) };
}

/** Sentence BLEU with sacreBLEU's sentence_bleu defaults (exp smoothing, effective order). */
export function sentenceBleu(hyp: string, refs: string[], opts: BleuOptions = {}): BleuScore {
  const o = { effectiveOrder: true, ...opts };
  const N = o.maxOrder ?? 4;
  const st = bleuSegmentStats(hyp, refs, o);
  const r = computeBleu(st.slice(2, 2 + N), st.slice(2 + N), st[0]!, st[1]!, o);
  return { ...r, signature: signature(o, refs.length) };
}
