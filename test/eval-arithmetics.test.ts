// `--prompt arithmetics`: Language Arithmetics' evaluation (d-gurgurov/Language-Neurons-Manipulation d5c7519,
// src/{flores,belebele,xnli,xquad}.py): their prompts character for character, their SamplingParams, their answer
// parsers and their SQuAD variant, on hand-worked examples read off their code, with a fake scorer on the
// evaluation fixtures (test/fixtures-eval).
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { f1Score, exactMatch, squadScores } from '../src/eval/metrics/squad.js';
import { extractLetterArithmetics, extractXnliArithmetics, SQUAD_ARITHMETICS } from '../src/eval/prompts-arithmetics.js';
import { runPlan } from '../src/eval/run.js';
import { type GenOptions, type Pair, type Scorer } from '../src/eval/scorer.js';
import { arithmeticsLanguageName, prepareTask, PROMPT_FORMATS, type TaskPlan } from '../src/eval/tasks.js';
import { makeTempDir, repoRoot } from './helpers/fixtures.js';

const dir = (t: string) => path.join(repoRoot, 'test/fixtures-eval', t);

class FakeScorer implements Scorer {
  prompts: string[] = [];
  opts: GenOptions[] = [];
  constructor(private gen: (p: string) => string) {}
  async logLikelihood(pairs: Pair[]) { return pairs.map(() => ({ logprob: 0, tokens: 1 })); }
  async generate(prompts: string[], o: GenOptions) { this.prompts.push(...prompts); this.opts.push(o); return prompts.map(this.gen); }
  async nll(texts: string[]) { return texts.map(() => ({ totalNll: 0, tokens: 0 })); }
}
const run = async (plan: TaskPlan, scorer: Scorer) =>
  runPlan(plan, { scorer, outDir: await makeTempDir('eval-la-'), model: 'fake', modelFingerprint: 'fp-fake', variant: { name: 'base' }, batchItems: 16 });

describe('Language Arithmetics\' prompts and generation settings', () => {
  it('is a prompt format of flores, belebele, xnli and xquad', () => {
    for (const t of ['flores', 'belebele', 'xnli', 'xquad'] as const) expect(PROMPT_FORMATS[t]).toContain('arithmetics');
  });

  it('flores: "Translate this {Src} sentence into {Tgt}: {src}. Translation:", 128 tokens, their stops, penalty 1.1', async () => {
    const plan = await prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn', prompt: 'arithmetics' });
    const s = new FakeScorer(() => ' Il-qattus qagħad fuq it-tapit. ');
    const r = await run(plan, s);
    // the "." after a sentence that ends in one is theirs ("{source_text}. Translation:")
    expect(s.prompts[0]).toBe('Translate this English sentence into Maltese: The cat sat on the mat.. Translation:');
    expect(s.opts[0]).toEqual({ maxNewTokens: 128, stop: ['\n\n', 'Translation', 'Translate', 'Source:', 'Target:'], repetitionPenalty: 1.1, cleanUpSpaces: false });
    expect(r.generation).toEqual(s.opts[0]);
    expect(r.template).toMatch(/^Translate this \{Src\} sentence into \{Tgt\}: \{src\}\. Translation:/);
    expect(r.metrics.sentence_bleu).toBeGreaterThan(0); // their measure: the mean sentence BLEU (on 0-1 there, 0-100 here)
  });

  it('names as their table does (nob_Latn "Norwegian"), --lang-name first', async () => {
    const names = async (lang: string, prompt: string, langNames?: Record<string, string>) => {
      const plan = await prepareTask('flores', { dir: dir('flores'), lang, prompt, ...(langNames ? { langNames } : {}) }).catch((e: Error) => e);
      return plan instanceof Error ? plan.message : (plan.items[0] as { prompt: string }).prompt.split(':')[0];
    };
    expect(await names('mlt_Latn-eng_Latn', 'arithmetics')).toBe('Translate this Maltese sentence into English');
    expect(await names('eng_Latn-mlt_Latn', 'arithmetics', { mlt_Latn: 'Malti' })).toBe('Translate this English sentence into Malti');
    expect(await names('eng_Latn-mlt_Latn', 'arithmetics', { mt: 'Maltese (mt)' })).toBe('Translate this English sentence into Maltese');
    expect(arithmeticsLanguageName('mt', { mt: 'Maltese (mt)' })).toBe('Maltese (mt)');
    expect(arithmeticsLanguageName('nob_Latn')).toBe('Norwegian');
    expect(arithmeticsLanguageName('bod_Tibt')).toBe('Tibetan');
    expect(arithmeticsLanguageName('afr_Latn')).toBe('Afrikaans');
    expect(arithmeticsLanguageName('de')).toBe('German');
    expect(arithmeticsLanguageName('ro')).toBe('Romanian');
  });

  it('belebele: the language named in the instruction, 32 tokens, their stops, their letter extraction', async () => {
    const plan = await prepareTask('belebele', { dir: dir('belebele'), lang: 'sw', prompt: 'arithmetics' });
    const s = new FakeScorer((p) => (p.includes('Mbwa alikula') ? 'because the dog ate' : 'The correct option is A'));
    const r = await run(plan, s);
    expect(s.prompts[0]).toBe('Read the following Swahili passage and answer the question.\n\nPassage: Mbwa alikula chakula.\n\nQuestion: Nani alikula?\n\n' +
      'A) Paka\nB) Mbwa\nC) Ndege\nD) Samaki\n\nAnswer:');
    expect(s.opts[0]).toEqual({ maxNewTokens: 32, stop: ['\n\n', 'Question:', 'Passage:', 'Answer:', 'The answer'], repetitionPenalty: 1.1, cleanUpSpaces: false });
    // item 1 (gold B): "because ..." is read as B, their first-character rule; item 2 (gold A): no pattern -> none, wrong
    expect(r.metrics).toEqual({ acc: 0.5, invalid: 0.5 });
  });

  it('xnli: the test split, their prompt and parser, accuracy per gold class', async () => {
    const plan = await prepareTask('xnli', { dir: dir('xnli'), lang: 'sw', prompt: 'arithmetics' });
    expect(plan.split).toBe('test');
    const outs: Record<string, string> = { 'Mtoto anacheza': '2', 'Mama anapika': 'neutral, not a contradiction', 'Juma anasoma kitabu': 'Yes.' };
    const s = new FakeScorer((p) => outs[/Premise: (.*)\n/.exec(p)![1]!]!);
    const r = await run(plan, s);
    expect(s.prompts[0]).toBe('Given the following Swahili premise and hypothesis, determine the relationship between them.\n\n' +
      'Premise: Mtoto anacheza\n\nHypothesis: Mtoto yuko nje\n\nOptions:\n1. Entailment\n2. Neutral\n3. Contradiction\n\nAnswer:');
    expect(s.opts[0]).toEqual({ maxNewTokens: 32, stop: ['\n\n', 'Premise:', 'Hypothesis:', 'Answer:', 'The relationship'], repetitionPenalty: 1.1, cleanUpSpaces: false });
    // gold 1, 2, 0: "2" neutral (right), "neutral, not a contradiction" contradiction by their priority (right), "Yes." entailment (right)
    expect(r.metrics).toEqual({ acc: 1, invalid: 0, acc_entailment: 1, acc_neutral: 1, acc_contradiction: 1 });
    const s2 = new FakeScorer(() => '1');
    expect((await run(plan, s2)).metrics).toEqual({ acc: 1 / 3, invalid: 0, acc_entailment: 1, acc_neutral: 0, acc_contradiction: 0 });
  });

  it('xquad: their prompt, 64 tokens, their stops; EM/F1 without article removal, F1 over token sets', async () => {
    const plan = await prepareTask('xquad', { dir: dir('xquad'), lang: 'sw', prompt: 'arithmetics' });
    const s = new FakeScorer((p) => (p.includes('Nairobi') ? 'the Nairobi' : 'Tanzania'));
    const r = await run(plan, s);
    expect(s.prompts[0]).toBe('Answer the question based on the Swahili context provided. Extract the exact answer from the context.\n\n' +
      'Context: Nairobi ni mji mkuu wa Kenya.\n\nQuestion: Mji mkuu wa Kenya ni upi?\n\nAnswer:');
    expect(s.opts[0]).toEqual({ maxNewTokens: 64, stop: ['\n\n', 'Question:', 'Context:', 'Answer:', 'Q:', 'A:'], repetitionPenalty: 1.1, cleanUpSpaces: false });
    // "the Nairobi" vs "Nairobi": EM 0 (the article stays), F1 2/3; "Tanzania": EM 1, F1 1
    expect(r.metrics.exact_match).toBeCloseTo(50, 10);
    expect(r.metrics.f1).toBeCloseTo(100 * (2 / 3 + 1) / 2, 10);
  });
});

describe('their parsers and metric, on hand-worked outputs', () => {
  it('belebele extract_answer_choice', () => {
    const cases: [string, string | null][] = [
      ['B) Mbwa', 'B'], ['c. ndege', 'C'], ['D', 'D'], ['d', 'D'], ['(A) Paka', 'A'], ['A Paka', 'A'], ['Answer: B', 'B'], ['answer:C', 'C'],
      ['The answer is D', 'D'], ['The answer is: D', null], ['The correct option is C', null], ['because it barked', 'B'], ['Bwana', 'B'],
      ['a)', 'A'], ['', null], ['Mbwa', null], ['E) none', null],
    ];
    for (const [out, want] of cases) expect(extractLetterArithmetics(out), out).toBe(want === null ? null : 'ABCD'.indexOf(want));
  });

  it('xnli extract_entailment_label', () => {
    const cases: [string, number | null][] = [
      ['1', 0], ['2', 1], ['3', 2], ['2. Neutral', 1], ['12', 0], ['٣', 2], ['３', 2], ['4', null], ['0', null],
      ['Entailment', 0], ['CONTRADICTION.', 2], ['neutral, not a contradiction', 2], ['It is neutral or entailment', 0],
      ['Yes, it follows', 0], ['true', 0], ['No.', 2], ['incorrect', 2], ['I have no idea', 2], ['I do not know', null], ['I don\'t know', null],
      ['In 1990 the...', null], ['', null], ['²', null], ['nope', null],
    ];
    for (const [out, want] of cases) expect(extractXnliArithmetics(out), out).toBe(want);
  });

  it('xquad: normalize_answer keeps articles, compute_f1_score counts token sets, empty equals empty', () => {
    const o = SQUAD_ARITHMETICS;
    expect(exactMatch('The Nile', 'Nile', o)).toBe(0);
    expect(exactMatch('The Nile', 'Nile')).toBe(1);
    expect(exactMatch('nile!', 'Nile', o)).toBe(1);
    // pred [x, x], gold [x, x, y]: sets share {x}: P 1/2, R 1/3, F1 0.4; multisets share 2: P 1, R 2/3, F1 0.8
    expect(f1Score('x x', 'x x y', o)).toBeCloseTo(0.4, 12);
    expect(f1Score('x x', 'x x y')).toBeCloseTo(0.8, 12);
    expect(f1Score('the nile', 'nile', o)).toBeCloseTo(2 / 3, 12);
    expect(f1Score('', 'nile', o)).toBe(0);
    expect(f1Score('.', '!', o)).toBe(1);
    expect(squadScores('Tanzania', ['Tanzania', 'nchini Tanzania'], o)).toEqual({ em: 1, f1: 1 });
  });
});
