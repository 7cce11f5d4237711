// Metric values against published reference values:
// - sacreBLEU's test suite (github.com/mjpost/sacrebleu, HEAD f615c72 of 2026-01: test/test_bleu.py, test/test_sentence_bleu.py,
//   test/test_chrf.py) and README (corpus example: BLEU = 48.53 82.4/50.0/45.5/37.5, BP = 0.943,
//   hyp_len = 17, ref_len = 18; chrF2 = 59.73);
// - Hugging Face evaluate's chrf metric card (metrics/chrf/README.md): chrF 84.64214891738334,
//   chrF++ (word_order=2) 82.87263732906315, chrF++ lowercase 92.12853119829202;
// - Hugging Face evaluate's squad metric card (metrics/squad/README.md) examples.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { corpusBleu, sentenceBleu, tokenize13a, computeBleu, bleuSegmentStats } from '../src/eval/metrics/bleu.js';
import { corpusChrf, sentenceChrf } from '../src/eval/metrics/chrf.js';
import { normalizeAnswer, squadCorpus, squadScores, tokenIdScores } from '../src/eval/metrics/squad.js';
import { repoRoot } from './helpers/fixtures.js';

const refs = [
  ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
  ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
];
const sys = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];

describe('BLEU (sacreBLEU test_bleu.py / test_sentence_bleu.py / README)', () => {
  it('corpus BLEU of the README example', () => {
    const b = corpusBleu(sys, refs);
    expect(b.score).toBeCloseTo(48.530827, 5);
    expect(b.sysLen).toBe(17);
    expect(b.refLen).toBe(18);
    expect(b.precisions.map((p) => Number(p.toFixed(1)))).toEqual([82.4, 50.0, 45.5, 37.5]);
    expect(b.bp).toBeCloseTo(0.943, 3);
    expect(corpusBleu(sys, refs, { tokenize: 'none' }).score).toBeCloseTo(49.1919566, 6);
    expect(corpusBleu(sys, refs, { tokenize: 'intl' }).score).toBeCloseTo(43.91623493, 6); // test_bleu.py
    expect(corpusBleu(sys, refs, { smooth: 'none' }).score).toBeCloseTo(48.530827, 6);
    expect(corpusBleu(['', '', ''], refs).score).toBe(0);
  });
  it('raw corpus BLEU cases (floor 0.01, tokenize none) and the statistics case', () => {
    const raw = (h: string[], r: string[]) => corpusBleu(h, [r], { smooth: 'floor', smoothValue: 0.01, tokenize: 'none', effectiveOrder: true }).score / 100;
    // sacreBLEU >= 2: 0.0 (issue #141; 1.x gave 0.003799178428257963)
    expect(raw(['this is a test', 'another test'], ['ref1', 'ref2'])).toBe(0);
    expect(raw(['this is a test'], ['this is a test'])).toBeCloseTo(1.0, 8);
    expect(raw(['this is a fest'], ['this is a test'])).toBeCloseTo(0.223606797749979, 8);
    // effective-order cases of test_bleu.py use raw_corpus_bleu(.01) too
    expect(raw(['test'], ['a test'])).toBeCloseTo(0.3678794411714425, 8);
    expect(raw(['a little test'], ['a test'])).toBeCloseTo(0.03218297948685433, 8);
    const st = bleuSegmentStats('am I am a character sequence', ['I am a symbol string sequence a a'], { tokenize: 'none' });
    expect(st.slice(2, 6)).toEqual([4, 2, 1, 0]);
    expect(st.slice(6)).toEqual([6, 5, 4, 3]);
    expect(corpusBleu(['am I am a character sequence'], [['I am a symbol string sequence a a']], { smooth: 'floor', tokenize: 'none', effectiveOrder: true }).score / 100).toBeCloseTo(0.1555722182, 8);
    expect(computeBleu([9, 7, 5, 3], [10, 8, 6, 4], 11, 11, { smooth: 'none' }).score / 100).toBeCloseTo(0.8375922397, 8);
  });
  it('sentence BLEU (issue #98 example) with every smoothing', () => {
    const REF = 'producţia de zahăr brut se exprimă în zahăr alb;';
    const SYS = 'Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;';
    const s = (o: Parameters<typeof sentenceBleu>[2]) => sentenceBleu(SYS, [REF], o).score;
    expect(Math.abs(s({}) - 8.493)).toBeLessThan(1e-3); // default: exp
    expect(s({ smooth: 'none' })).toBe(0);
    expect(Math.abs(s({ smooth: 'floor' }) - 4.51688)).toBeLessThan(1e-3);
    expect(Math.abs(s({ smooth: 'floor', smoothValue: 0.5 }) - 10.10)).toBeLessThan(1e-2);
    expect(Math.abs(s({ smooth: 'add-k' }) - 14.882)).toBeLessThan(1e-3);
    expect(Math.abs(s({ smooth: 'add-k', smoothValue: 2 }) - 21.389)).toBeLessThan(1e-3);
    expect(Math.abs(s({ tokenize: 'none' }) - 7.347)).toBeLessThan(1e-3);
    // sacreBLEU test_sentence_bleu.py's tokenizer cases
    expect(Math.abs(s({ tokenize: 'intl' }) - 8.493)).toBeLessThan(1e-3);
    expect(Math.abs(s({ tokenize: 'char' }) - 40.8759)).toBeLessThan(1e-3);
    expect(Math.abs(s({ tokenize: 'char', lowercase: true }) - 42.0267)).toBeLessThan(1e-3);
    // issue #141: no matches -> 0
    expect(sentenceBleu('this is a cat', ['okay thanks']).score).toBe(0);
  });
  it('13a tokenisation', () => {
    expect(tokenize13a("It wasn't surprising.")).toBe("It wasn't surprising ."); // the apostrophe is outside 13a's classes
    expect(tokenize13a('3.5 and 1,000-2 &amp; x')).toBe('3.5 and 1,000 - 2 & x');
  });
});

describe('chrF / chrF++ (sacreBLEU test_chrf.py, evaluate chrf card)', () => {
  it('README corpus chrF2 and the evaluate card values', () => {
    expect(corpusChrf(sys, refs).toFixed(2)).toBe('59.73');
    const pred = ['The relationship between cats and dogs is not exactly friendly.', 'a good bookshop is just a genteel black hole that knows how to read.'];
    const ref = [['The relationship between dogs and cats is not exactly friendly.', 'A good bookshop is just a genteel Black Hole that knows how to read.']];
    expect(corpusChrf(pred, ref)).toBeCloseTo(84.64214891738334, 9);
    expect(corpusChrf(pred, ref, { wordOrder: 2 })).toBeCloseTo(82.87263732906315, 9);
    expect(corpusChrf(pred, ref, { wordOrder: 2, lowercase: true })).toBeCloseTo(92.12853119829202, 9);
  });
  it('test_chrf.py cases: beta 3, eps smoothing and effective order, whitespace, sentence level', () => {
    const eps: [string[], string[], number][] = [
      [['abcdefg'], ['hijklmnop'], 0.0], [['a'], ['b'], 0.0], [[''], ['b'], 0.0], [[''], ['ref'], 0.0], [[''], ['reference'], 0.0],
      [['aa'], ['ab'], 8.3333], [['a', 'b'], ['a', 'c'], 8.3333], [['a'], ['a'], 16.6667], [['a b c'], ['a b c'], 50.0], [['a b c'], ['abc'], 50.0],
      [[' risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .'],
        ['risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .'], 63.361730],
      [[' Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. '],
        ['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.'], 64.1302698],
      [['Niemand hat die Absicht, eine Mauer zu errichten'], ['Niemand hat die Absicht, eine Mauer zu errichten'], 100.0],
    ];
    for (const [h, r, want] of eps) expect(Math.abs(corpusChrf(h, [r], { beta: 3, epsSmoothing: true }) - want)).toBeLessThan(1e-4);
    const eff: [string[], string[], number][] = [
      [['a'], ['a'], 100.0], [[''], ['reference'], 0.0], [['a b c'], ['a b c'], 100.0], [['a b c'], ['abc'], 100.0],
      [[''], ['c'], 0.0], [['a', 'b'], ['a', 'c'], 50.0], [['aa'], ['ab'], 25.0]];
    for (const [h, r, want] of eff) expect(Math.abs(corpusChrf(h, [r], { beta: 3 }) - want)).toBeLessThan(1e-4);
    expect(Math.abs(corpusChrf(['Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich.'],
      [['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.']], { beta: 3, whitespace: true }) - 67.3481606)).toBeLessThan(1e-4);
    const sent: [string, string, number][] = [
      ['Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.', 'Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.', 39.14078509],
      ['Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.', 'A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.', 31.22557079],
      ['Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.', 'Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.', 57.15704367]];
    for (const [h, r, want] of sent) expect(Math.abs(sentenceChrf(h, [r], { epsSmoothing: true }) - want)).toBeLessThan(1e-4);
  });
});

describe('SQuAD EM/F1 (evaluate squad card; official v1.1 normalisation)', () => {
  it('card examples', () => {
    expect(squadCorpus(['1976'], [['1976']])).toEqual({ exact_match: 100, f1: 100 });
    expect(squadCorpus(['1999'], [['1976']])).toEqual({ exact_match: 0, f1: 0 });
    const r = squadCorpus(['1976', 'Beyonce', 'climate change'], [['1976'], ['Beyoncé and Bruno Mars'], ['climate change']]);
    expect(r.exact_match).toBeCloseTo(66.66666666666667, 10);
    expect(r.f1).toBeCloseTo(66.66666666666667, 10);
  });
  it('normalisation, partial F1, best over golds, token ids', () => {
    expect(normalizeAnswer('The  Cat, (a) dog!')).toBe('cat dog');
    expect(normalizeAnswer('théâtre')).toBe('théâtre');
    const s = squadScores('the big red dog', ['red dog', 'a cat']);
    expect(s.em).toBe(0);
    expect(s.f1).toBeCloseTo((2 * (2 / 3) * 1) / (2 / 3 + 1), 12);
    expect(squadScores('Red dog.', ['red dog']).em).toBe(1);
    expect(tokenIdScores([5, 6, 7], [[5, 6, 7]])).toEqual({ em: 1, f1: 1 });
    expect(tokenIdScores([5, 6], [[6, 9]]).f1).toBeCloseTo(0.5, 12);
  });
});

// Python's whitespace (str.split(): \x1c-\x1f and \x85 are whitespace, U+FEFF is not) where JavaScript's \s differs.
// Expected values: the official SQuAD v1.1 normalize_answer/f1_score run in Python 3.11, and sacreBLEU 2.6.0's own
// code (mjpost/sacrebleu f615c72, sacrebleu/metrics/{chrf,bleu}.py) run in Python 3.11 on the same strings.
describe('Python whitespace in the metrics (the official scripts run on the edge characters)', () => {
  it('pySplit / pyStrip follow str.split() / str.strip()', async () => {
    const { pySplit, pyStrip, pyIsSpace } = await import('../src/eval/pystr.js');
    expect(pySplit('a\x1cb\x1dc\x1ed\x1fe\x85f\u3000g\ufeffh')).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g\ufeffh']);
    expect(pyStrip('\x1f\ufeff x \x85')).toBe('\ufeff x');
    expect(pyIsSpace('\ufeff')).toBe(false);
    expect(pyIsSpace('\x1c')).toBe(true);
    expect(pyIsSpace('\u200b')).toBe(false); // zero-width space: not whitespace in Python either
  });
  it('SQuAD EM/F1 as evaluate-v1.1.py', () => {
    expect(squadScores('Kurt\x1cColeman', ['Kurt Coleman'])).toEqual({ em: 1, f1: 1 });
    expect(squadScores('\ufeffPanthers', ['Panthers'])).toEqual({ em: 0, f1: 0 });
    expect(squadScores('the\x85Panthers\u3000won', ['Panthers won'])).toEqual({ em: 1, f1: 1 });
    const s = squadScores('\ufeffthe Panthers', ['Panthers']);
    expect(s.em).toBe(0);
    expect(s.f1).toBeCloseTo(0.6666666666666666, 15);
  });
  it('chrF / chrF++ / BLEU as sacreBLEU 2.6.0', () => {
    expect(sentenceChrf('Kony\ufeffEaly plays', ['Kony Ealy plays'], { wordOrder: 2 })).toBeCloseTo(59.730724781631395, 11);
    expect(sentenceChrf('a\x1cb cd', ['ab cd'])).toBeCloseTo(100, 11);
    expect(sentenceChrf('a\ufeffb cd', ['ab cd'])).toBeCloseTo(50.84610472541507, 11);
    expect(corpusBleu(['The cat\x1csat on'], [['The cat sat on']]).score).toBeCloseTo(100, 11);
    expect(corpusBleu(['The cat\ufeffsat on'], [['The cat sat on']]).score).toBe(0);
  });
});

// sacreBLEU's zh, intl and char tokenizers: expected strings and scores produced by sacreBLEU 2.6.0's own code
// (mjpost/sacrebleu f615c72, sacrebleu/tokenizers/tokenizer_{zh,intl,char}.py, metrics/bleu.py) in Python 3.11.
describe('BLEU tokenizers zh, intl, char (sacreBLEU 2.6.0 outputs)', () => {
  const hypsZh = ['猫坐在垫子上。', '今天天气很好，我们去公园散步吧！', '他在2023年买了3.5公斤苹果—很便宜。', '这是一个测试句子'];
  const refsZh = ['猫坐在垫子上了。', '今天天气不错，我们去公园走走吧！', '他在2023年买了3.5公斤的苹果—很便宜。', '这是一个测试用的句子'];
  const hypsTh = ['แมวนั่งบนเสื่อ', 'วันนี้อากาศดีมาก'], refsTh = ['แมวนั่งอยู่บนเสื่อ', 'วันนี้อากาศดี'];
  const hypsEn = ['The price is $1,000.50 (approx.) — “quoted” text…', 'Da 1999. war es 3½ Uhr; a€b ±5%.'];
  const refsEn = ['The price is $1,000.50 (approximately) — “quoted” text.', 'In 1999. war es 3½ Uhr; a€b ±5%!'];

  it('tokenised strings', async () => {
    const { tokenizeZh, tokenizeIntl, tokenizeChar } = await import('../src/eval/metrics/bleu.js');
    const lines = [hypsZh[2]!, ...hypsEn];
    expect(lines.map(tokenizeZh)).toEqual(['他 在 2023 年 买 了 3.5 公 斤 苹 果 — 很 便 宜 。', 'The price is $ 1,000.50 ( approx . ) — “ quoted ” text …', 'Da 1999 . war es 3½ Uhr ; a € b ±5 % .']);
    expect(lines.map(tokenizeIntl)).toEqual(['他在2023年买了3.5公斤苹果 — 很便宜 。', 'The price is $ 1,000.50 ( approx . ) — “ quoted ” text …', 'Da 1999 . war es 3½ Uhr ; a € b ± 5 % .']);
    expect(tokenizeChar(hypsEn[1]!)).toBe('D a   1 9 9 9 .   w a r   e s   3 ½   U h r ;   a € b   ± 5 % .');
    // tokenizer_zh.py's '\u20000'/'\u2f800' range quirk and non-BMP characters, as sacreBLEU computes them
    expect(tokenizeZh('a\u2a6db\u2a6ec')).toBe('a \u2a6d b\u2a6ec');
    expect(tokenizeZh('u\u{20000}v')).toBe('u\u{20000}v');
  });

  it('corpus and sentence BLEU with each tokenizer', () => {
    const want: Record<string, { zh: number; th: number; en: number; s0: number }> = {
      '13a': { zh: 0.0, th: 0.0, en: 68.39734231031868, s0: 0.0 },
      zh: { zh: 66.54289715709011, th: 0.0, en: 74.90716577599433, s0: 72.89545183625967 },
      intl: { zh: 31.41540294886656, th: 0.0, en: 75.89294995605214, s0: 49.99999999999999 },
      char: { zh: 70.19485910883968, th: 79.96947589850811, en: 82.38676218093957, s0: 72.89545183625967 },
    };
    for (const [tok, w] of Object.entries(want)) {
      const o = { tokenize: tok as '13a' | 'zh' | 'intl' | 'char' };
      expect(corpusBleu(hypsZh, [refsZh], o).score).toBeCloseTo(w.zh, 10);
      expect(corpusBleu(hypsTh, [refsTh], o).score).toBeCloseTo(w.th, 10);
      expect(corpusBleu(hypsEn, [refsEn], o).score).toBeCloseTo(w.en, 10);
      expect(sentenceBleu(hypsZh[0]!, [refsZh[0]!], o).score).toBeCloseTo(w.s0, 10);
      expect(corpusBleu(hypsZh, [refsZh], o).signature).toContain(`|tok:${tok}|`);
    }
  });
});

// spBLEU (`--bleu-tokenize spm:<tokenizer.json>`): test/fixtures-eval/spm/tokenizer.json is a hand-made Unigram
// model (Metaspace pre-tokenizer, as the tokenizers conversion of a SentencePiece model has) whose best
// segmentations are worked out by hand from its scores; the spBLEU value is sacreBLEU 2.6.0's BLEU with
// tokenize='none' on those pieces joined by spaces (what its TokenizerSPM feeds BLEU).
describe('spBLEU with a SentencePiece tokenizer.json', () => {
  it('pieces, score and signature; unreadable files named', async () => {
    const { loadSpmTokenizer } = await import('../src/eval/metrics/spm.js');
    const spm = await loadSpmTokenizer(path.join(repoRoot, 'test/fixtures-eval/spm/tokenizer.json'));
    // "▁mat." -> ▁mat (-1) + . (-3); "▁mats." -> ▁mats (-1.5) + . (-3) beats ▁mat + s + .; "▁cats" -> ▁cat + s
    expect(spm.tokenize('the cat sat on the mat.')).toBe('▁the ▁cat ▁sat ▁on ▁the ▁mat .');
    expect(spm.tokenize('the dog sat on the mats.')).toBe('▁the ▁dog ▁sat ▁on ▁the ▁mats .');
    expect(spm.tokenize('the cats sat')).toBe('▁the ▁cat s ▁sat');
    const b = corpusBleu(['the cat sat on the mat.', 'the cats sat'], [['the dog sat on the mats.', 'the cat sat']], { tokenize: spm });
    expect(b.score).toBeCloseTo(24.25881048890279, 10);
    expect(b.signature).toMatch(/\|tok:spm-tokenizer\.json-[0-9a-f]{12}\|/);
    await expect(loadSpmTokenizer('/nowhere/flores200_sacrebleu_tokenizer_spm.model')).rejects.toThrow(/spm\.model: cannot read the SentencePiece tokenizer/);
    await expect(loadSpmTokenizer(path.join(repoRoot, 'test/fixtures-eval/xquad/xquad.de.json'))).rejects.toThrow(/xquad\.de\.json: not a tokenizer\.json: no "model" section/);
  });
});

describe('lm-eval XQuAD scoring (transformers squad_metrics)', () => {
  it('answers that normalise to nothing: F1 1 when both are empty (compute_f1), 0 in the SQuAD v1.1 script', () => {
    // normalize_answer('The') = normalize_answer('a.') = '' -> compute_f1 returns int([] == []) = 1; v1.1 finds no common token
    expect(squadScores('The', ['a.'], { emptyMatch: true })).toEqual({ em: 1, f1: 1 });
    expect(squadScores('The', ['a.'])).toEqual({ em: 1, f1: 0 });
    expect(squadScores('The', ['Panthers'], { emptyMatch: true })).toEqual({ em: 0, f1: 0 });
  });
});

// A raw SentencePiece .model: the same vocabulary as spm/tokenizer.json written here as a ModelProto (protobuf:
// pieces = 1 {piece = 1, score = 2 (float), type = 3}, trainer_spec = 2 {model_type = 3}, normalizer_spec = 3),
// read by our protobuf reader and converted as transformers' SpmConverter does: the same pieces as the
// tokenizer.json, extra spaces collapsed (remove_extra_whitespaces, default true), a BPE model refused.
describe('spBLEU with a raw SentencePiece .model', () => {
  const varint = (n: number): number[] => { const o: number[] = []; do { o.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)); n = Math.floor(n / 128); } while (n > 0); return o; };
  const field = (num: number, payload: number[]): number[] => [...varint(num * 8 + 2), ...varint(payload.length), ...payload];
  const f32 = (x: number): number[] => { const b = Buffer.alloc(4); b.writeFloatLE(x); return [...b]; };
  const piece = (p: string, score: number, type: number): number[] =>
    field(1, [...field(1, [...Buffer.from(p, 'utf8')]), ...varint(2 * 8 + 5), ...f32(score), ...varint(3 * 8), ...varint(type)]);

  it('pieces equal the tokenizer.json route; extra spaces collapse; BPE refused', async () => {
    const { loadSpmTokenizer } = await import('../src/eval/metrics/spm.js');
    const json = JSON.parse(readFileSync(path.join(repoRoot, 'test/fixtures-eval/spm/tokenizer.json'), 'utf8')) as { model: { vocab: [string, number][] } };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'spm-model-'));
    const model = (modelType: number) => Buffer.from([...json.model.vocab.flatMap(([p, s], i) => piece(p, s, i === 0 ? 2 : 1)),
      ...field(2, [...varint(3 * 8), ...varint(modelType)]), ...field(3, [...field(1, [...Buffer.from('identity')])])]);
    writeFileSync(path.join(dir, 'uni.model'), model(1));
    writeFileSync(path.join(dir, 'bpe.model'), model(2));
    const fromModel = await loadSpmTokenizer(path.join(dir, 'uni.model'));
    const fromJson = await loadSpmTokenizer(path.join(repoRoot, 'test/fixtures-eval/spm/tokenizer.json'));
    for (const s of ['the cat sat on the mat.', 'the dog sat on the mats.', 'the cats sat']) expect(fromModel.tokenize(s)).toBe(fromJson.tokenize(s));
    expect(fromModel.tokenize('the  cat')).toBe('▁the ▁cat'); // "  " -> " " (the tokenizer.json has no normalizer)
    expect(fromJson.tokenize('the  cat')).toBe('▁the ▁ ▁cat');
    await expect(loadSpmTokenizer(path.join(dir, 'bpe.model'))).rejects.toThrow(/bpe\.model: not a usable SentencePiece model: model_type 2 \(BPE\): only Unigram/);
    writeFileSync(path.join(dir, 'junk.model'), Buffer.from([0x0a, 0xff]));
    await expect(loadSpmTokenizer(path.join(dir, 'junk.model'))).rejects.toThrow(/junk\.model: not a usable SentencePiece model/);
  });
});
