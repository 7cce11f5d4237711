// Evaluation tasks on hand-made items in the datasets' real layouts (test/fixtures-eval/): exact prompts,
// choices, scores and accuracies with a fake scorer; log-likelihoods on tiny-qwen2 against per-token
// log-probabilities from forward logits; batching invariance; checkpoint resume; bad input.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parquetWriteFile } from 'hyparquet-writer';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { corpusBleu, sentenceBleu } from '../src/eval/metrics/bleu.js';
import { corpusChrf } from '../src/eval/metrics/chrf.js';
import { ModelScorer, type GenOptions, type Pair, type Scorer } from '../src/eval/scorer.js';
import { datasetDir, languagesIn, prepareTask, type TaskPlan } from '../src/eval/tasks.js';
import { runPlan } from '../src/eval/run.js';
import { buildTable, readResults, tableCsv } from '../src/eval/results.js';
import { main } from '../src/cli/main.js';
import { fixturePath, makeTempDir, repoRoot } from './helpers/fixtures.js';

const FX = path.join(repoRoot, 'test/fixtures-eval');
const dir = (t: string) => path.join(FX, t);

class FakeScorer implements Scorer {
  pairs: Pair[] = [];
  prompts: string[] = [];
  calls = 0;
  constructor(private ll: (p: Pair) => number = (p) => -Array.from(p.continuation).length, private gen: (p: string) => string = () => '') {}
  async logLikelihood(pairs: Pair[]) { this.calls++; this.pairs.push(...pairs); return pairs.map((p) => ({ logprob: this.ll(p), tokens: 1 })); }
  async generate(prompts: string[], _o: GenOptions) { this.calls++; this.prompts.push(...prompts); return prompts.map(this.gen); }
  async nll(texts: string[]) { this.calls++; return texts.map((t) => ({ totalNll: t.length, tokens: t.split(' ').length })); }
}

/** The one file of `dir` named `<prefix><12 hex><suffix>` (result names end in their key). */
export async function onlyFile(dir: string, prefix: string, suffix: string): Promise<string> {
  const names = (await fsp.readdir(dir)).filter((n) => n.startsWith(prefix) && n.endsWith(suffix) && /^[0-9a-f]{12}$/.test(n.slice(prefix.length, -suffix.length)));
  if (names.length !== 1) throw new Error(`${dir}: ${names.length} files ${prefix}*${suffix}: ${names.join(', ')}`);
  return path.join(dir, names[0]!);
}

const run = async (plan: TaskPlan, scorer: Scorer, batchItems = 16) =>
  runPlan(plan, { scorer, outDir: await makeTempDir('eval-'), model: 'fake', modelFingerprint: 'fp-fake', variant: { name: 'base' }, batchItems });

describe('tasks with a fake scorer (exact prompts, choices, accuracies)', () => {
  it('xcopa: lm-eval connectors, premise without its final character, lower-cased choices, acc and acc_norm', async () => {
    const plan = await prepareTask('xcopa', { dir: dir('xcopa'), lang: 'sw' });
    const s = new FakeScorer();
    const r = await run(plan, s);
    expect(s.pairs.slice(0, 2)).toEqual([
      { context: 'Mwanamume alifungua bomba kwa hiyo', continuation: ' choo kilijaa maji.' },
      { context: 'Mwanamume alifungua bomba kwa hiyo', continuation: ' maji yalitiririka kutoka kwenye bomba.' }]);
    expect(s.pairs[2]!.context).toBe('Msichana alipata kipepeo kwa sababu');
    expect(s.pairs[4]).toEqual({ context: 'Jua lilichomoza kwa hiyo', continuation: ' giza liliingia.' });
    expect(s.calls).toBe(1); // every choice of every item in one batched call
    // ll = -len(continuation): item 1 -19/-39 (pred 0, gold 1); item 2 -17/-19 (pred 0 = gold); item 3 tie -> 0 (gold 1).
    // acc_norm divides by len(choice): item 1 -19/18 < -39/38 -> 1 (= gold); item 2 -17/16 < -19/18 -> 1 (gold 0); item 3 -> 0.
    expect(r.metrics.acc).toBeCloseTo(1 / 3, 12);
    expect(r.metrics.acc_norm).toBeCloseTo(1 / 3, 12);
    expect(r.items).toBe(3);
  });

  it('belebele: the METHODS prompt, generated letter and log-likelihood of letters', async () => {
    const plan = await prepareTask('belebele', { dir: dir('belebele'), lang: 'sw' }); // sw -> swh_Latn.jsonl
    const s = new FakeScorer(undefined, (p) => (p.includes('Mbwa alikula') ? ' B) Mbwa' : 'C'));
    const r = await run(plan, s);
    expect(s.prompts[0]).toBe('Read the following passage and pick the right answer.\n\nPassage: Mbwa alikula chakula.\n\nQuestion: Nani alikula?\n\n' +
      'A) Paka\nB) Mbwa\nC) Ndege\nD) Samaki\n\nAnswer:');
    expect(r.metrics).toEqual({ acc: 0.5, invalid: 0 });
    const ll = await prepareTask('belebele', { dir: dir('belebele'), lang: 'swh_Latn', prompt: 'loglik' });
    const s2 = new FakeScorer((p) => (p.continuation === ' B' ? -1 : -2));
    const r2 = await run(ll, s2);
    expect(s2.pairs.slice(0, 4).map((p) => p.continuation)).toEqual([' A', ' B', ' C', ' D']);
    expect(r2.metrics.acc).toBe(0.5);
  });

  it('xnli: lm-eval label words, and the generative prompt', async () => {
    // lm-eval's xnli reads the validation split: this fixture has only test
    await expect(prepareTask('xnli', { dir: dir('xnli'), lang: 'sw' })).rejects.toThrow(/no xnli data for language 'sw' \(split validation\)/);
    const plan = await prepareTask('xnli', { dir: dir('xnli'), lang: 'sw', split: 'test' });
    const s = new FakeScorer();
    const r = await run(plan, s);
    expect(s.pairs.slice(0, 3)).toEqual([
      { context: '', continuation: ' Mtoto anacheza, sahihi? Ndiyo, Mtoto yuko nje' },
      { context: '', continuation: ' Mtoto anacheza, sahihi? Hivyo, Mtoto yuko nje' },
      { context: '', continuation: ' Mtoto anacheza, sahihi? Hapana, Mtoto yuko nje' }]);
    expect(r.metrics.acc).toBeCloseTo(1 / 3, 12); // ties go to "entailment": only item 3 (label 0) right
    const g = await prepareTask('xnli', { dir: dir('xnli'), lang: 'sw', prompt: 'generate' });
    const s2 = new FakeScorer(undefined, (p) => (p.includes('Mama') ? ' 3. Contradiction' : 'Neutral'));
    const r2 = await run(g, s2);
    expect(s2.prompts[0]).toBe('Premise: Mtoto anacheza\nHypothesis: Mtoto yuko nje\nWhat is the relation between the premise and the hypothesis?\n1. Entailment\n2. Neutral\n3. Contradiction\nAnswer:');
    expect(r2.metrics.acc).toBeCloseTo(2 / 3, 12);
  });

  it('xwinograd: partial scoring (option substituted in the context, the rest as continuation)', async () => {
    const plan = await prepareTask('xwinograd', { dir: dir('xwinograd'), lang: 'en' });
    const s = new FakeScorer((p) => -p.context.length);
    const r = await run(plan, s);
    expect(s.pairs.slice(0, 2)).toEqual([
      { context: "The trophy doesn't fit into the suitcase because the trophy", continuation: ' is too large.' },
      { context: "The trophy doesn't fit into the suitcase because the suitcase", continuation: ' is too large.' }]);
    expect(r.metrics.acc).toBe(0.5);
  });

  it('include (option_a..d) and mmlu (choices): letter prompt, letter log-likelihoods or a generated letter', async () => {
    const plan = await prepareTask('include', { dir: dir('include'), lang: 'id' }); // id -> Indonesian/
    const s = new FakeScorer((p) => (p.context.startsWith('Berapakah') ? (p.continuation === ' B' ? -0.1 : -1) : (p.continuation === ' C' ? -0.1 : -1)));
    const r = await run(plan, s);
    expect(s.pairs[0]).toEqual({ context: 'Berapakah 2 + 2?\nA) 3\nB) 4\nC) 5\nD) 6\nAnswer:', continuation: ' A' });
    expect(r.metrics.acc).toBe(0.5);
    const m = await prepareTask('mmlu', { dir: dir('mmlu'), lang: 'en', prompt: 'generate' });
    const s2 = new FakeScorer(undefined, () => ' B');
    const r2 = await run(m, s2);
    expect(s2.prompts).toEqual(['What is 2 + 3?\nA) 4\nB) 5\nC) 6\nD) 7\nAnswer:']);
    expect(r2.metrics.acc).toBe(1);
  });

  it('flores: both prompt formats, BLEU/chrF/chrF++ corpus and sentence level', async () => {
    const plan = await prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn' });
    expect(plan.gen).toEqual({ maxNewTokens: 128, stop: ['\n'], repetitionPenalty: 1.1 });
    const outs = ['Il-qattus qagħad fuq it-tapit.', 'Kelb kbir.'];
    const s = new FakeScorer(undefined, (p) => ` ${outs[p.includes('cat') ? 0 : 1]}`);
    const r = await run(plan, s);
    expect(s.prompts[0]).toBe('Translate this sentence into Maltese: The cat sat on the mat. Translation:');
    const refs = ['Il-qattus qagħad fuq it-tapit.', 'Kelb nebaħ.'];
    expect(r.metrics.bleu).toBeCloseTo(corpusBleu(outs, [refs]).score, 10);
    expect(r.metrics.sentence_bleu).toBeCloseTo((100 + sentenceBleu(outs[1]!, [refs[1]!]).score) / 2, 10);
    expect(r.metrics.chrf).toBeCloseTo(corpusChrf(outs, [refs]), 10);
    expect(r.metrics.chrfpp).toBeCloseTo(corpusChrf(outs, [refs], { wordOrder: 2 }), 10);
    expect(r.metrics.bleu_signature).toContain('tok:13a|smooth:exp');
    const rah = await prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn', prompt: 'rahmanisa' });
    expect((rah.items[0] as { prompt: string }).prompt).toBe('Translate from English to Maltese.\n\nEnglish: The cat sat on the mat.\nMaltese:');
  });

  it('flores --bleu-tokenize: sacreBLEU tokenizers and spBLEU change BLEU and its signature, and the result key', async () => {
    const outs = ['Il-qattus qagħad fuq it-tapit.', 'Kelb kbir.'], refs = ['Il-qattus qagħad fuq it-tapit.', 'Kelb nebaħ.'];
    const gen = (p: string) => ` ${outs[p.includes('cat') ? 0 : 1]}`;
    const out = await makeTempDir('bleu-tok-');
    const keys = new Set<string>();
    for (const [spec, tokenize] of [['char', 'char'], ['spm:' + path.join(FX, 'spm/tokenizer.json'), null]] as const) {
      const plan = await prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn', bleuTokenize: spec });
      const r = await runPlan(plan, { scorer: new FakeScorer(undefined, gen), outDir: out, model: 'fake', modelFingerprint: 'fp', variant: { name: 'base' } });
      keys.add(r.key);
      const want = corpusBleu(outs, [refs], { tokenize: tokenize ?? plan.bleuTokenize! });
      expect(r.metrics.bleu).toBeCloseTo(want.score, 10);
      expect(r.metrics.bleu_signature).toBe(want.signature);
    }
    expect(keys.size).toBe(2);
    await expect(prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn', bleuTokenize: 'ja-mecab' })).rejects.toThrow(/--bleu-tokenize: unknown tokenizer 'ja-mecab' \(13a, none, zh, intl, char, or spm:<\.model or tokenizer\.json>\)/);
  });

  it('--max-gen-toks: generative prompts generate at most n tokens, as a result of its own; log-likelihood prompts ignore it', async () => {
    const base = await prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn' });
    const short = await prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn', maxGenToks: 5 });
    expect(short.gen).toEqual({ ...base.gen, maxNewTokens: 5 });
    const seen: GenOptions[] = [];
    const s = new FakeScorer(undefined, () => ' x');
    s.generate = async (prompts: string[], o: GenOptions) => { seen.push(o); return prompts.map(() => ' x'); };
    const out = await makeTempDir('max-gen-');
    const opts = { scorer: s, outDir: out, model: 'fake', modelFingerprint: 'fp', variant: { name: 'base' } };
    const [a, b] = [await runPlan(base, opts), await runPlan(short, opts)];
    expect(seen.map((o) => o.maxNewTokens)).toEqual([128, 5]);
    expect(a.key).not.toBe(b.key); // two results side by side, neither overwriting the other
    expect(b.generation).toEqual({ maxNewTokens: 5, stop: ['\n'], repetitionPenalty: 1.1 });
    const mc = await prepareTask('xcopa', { dir: dir('xcopa'), lang: 'sw', maxGenToks: 5 });
    expect(mc.gen).toBeUndefined();
    await expect(prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn', maxGenToks: 0 })).rejects.toThrow(/--max-gen-toks must be an integer >= 1, got 0/);
  });

  it('xquad: SQuAD-normalised EM/F1 and token-id EM/F1', async () => {
    const plan = await prepareTask('xquad', { dir: dir('xquad'), lang: 'sw' });
    const s = new FakeScorer(undefined, (p) => (p.includes('Nairobi') ? ' Nairobi.' : 'Tanzania kaskazini'));
    (s as Scorer).encode = (t: string) => Array.from(t).map((c) => c.charCodeAt(0));
    const r = await run(plan, s);
    expect(s.prompts[0]).toBe('Context: Nairobi ni mji mkuu wa Kenya.\nQuestion: Mji mkuu wa Kenya ni upi?\nAnswer:');
    expect(r.metrics.exact_match).toBe(50);
    expect(r.metrics.f1).toBeCloseTo(100 * (1 + 2 / 3) / 2, 10);
    expect(r.metrics.token_exact_match).toBe(0); // "Nairobi." != "Nairobi" on ids
  });

  it('ppl: mean NLL per token over the non-empty lines', async () => {
    const plan = await prepareTask('ppl', { dir: dir('ppl'), lang: 'sw' });
    expect(plan.items.length).toBe(2);
    const r = await run(plan, new FakeScorer());
    const nll = 'Mtoto anacheza mpira.'.length + 'Mama anapika chakula kitamu sana leo.'.length;
    expect(r.metrics.mean_nll).toBeCloseTo(nll / 9, 12);
    expect(r.metrics.perplexity).toBeCloseTo(Math.exp(nll / 9), 9);
  });

  it('parquet layout (facebook/xnli <lang>/validation-00000-of-00001.parquet) and --langs all', async () => {
    const d = await makeTempDir('xnli-pq-');
    await fsp.mkdir(path.join(d, 'sw'));
    parquetWriteFile({ // lm-eval's xnli (the default prompt) reads the validation split
      filename: path.join(d, 'sw', 'validation-00000-of-00001.parquet'),
      columnData: [
        { name: 'premise', data: ['Mtoto anacheza'], type: 'STRING' },
        { name: 'hypothesis', data: ['Mtoto yuko nje'], type: 'STRING' },
        { name: 'label', data: [1n], type: 'INT64' }],
    });
    expect(await languagesIn('xnli', d)).toEqual(['sw']);
    const plan = await prepareTask('xnli', { dir: d, lang: 'sw' });
    expect(plan.items[0]).toMatchObject({ kind: 'mc', gold: 1 });
  });

  it('--split: a file in a folder named by the split is taken before a flat file beside it (which was read for every split)', async () => {
    const d = await makeTempDir('xcopa-split-');
    const item = (premise: string) => JSON.stringify({ premise, choice1: 'Alikula', choice2: 'Alilala', question: 'effect', label: 0 }) + '\n';
    await fsp.writeFile(path.join(d, 'sw.jsonl'), item('flat test.'));
    await fsp.mkdir(path.join(d, 'validation'));
    await fsp.writeFile(path.join(d, 'validation', 'sw.jsonl'), item('split validation.'));
    const premise = async (split?: string) => {
      const s = new FakeScorer();
      await run(await prepareTask('xcopa', { dir: d, lang: 'sw', ...(split ? { split } : {}) }), s);
      return s.pairs[0]!.context;
    };
    expect(await premise('validation')).toMatch(/^split validation/);
    expect(await premise()).toMatch(/^flat test/); // no test/ folder: the flat file
  });
});

describe('bad input: clear errors naming the file', () => {
  it('missing columns, empty files, unknown task / prompt, absent language, non-parallel FLORES', async () => {
    await expect(prepareTask('xcopa', { dir: path.join(FX, 'bad/xcopa'), lang: 'sw' })).rejects.toThrow(/bad\/xcopa\/sw\/test\.jsonl: not a XCOPA file: missing column\(s\) choice2; expected premise, choice1, choice2, question, label/);
    await expect(prepareTask('belebele', { dir: path.join(FX, 'bad/belebele'), lang: 'swh_Latn' })).rejects.toThrow(/swh_Latn\.jsonl: the file has no rows/);
    await expect(prepareTask('hellaswag', { dir: FX, lang: 'sw' })).rejects.toThrow(/unknown task 'hellaswag' \(tasks: ppl, flores/);
    await expect(prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-mlt_Latn', prompt: 'nllb' })).rejects.toThrow(/unknown prompt format 'nllb' for flores \(formats: gurgurov, rahmanisa, arithmetics\)/);
    await expect(prepareTask('xcopa', { dir: dir('xcopa'), lang: 'qu' })).rejects.toThrow(/fixtures-eval\/xcopa: no xcopa data for language 'qu' \(split test\); languages present: sw/);
    await expect(prepareTask('flores', { dir: dir('flores'), lang: 'eng_Latn-ita_Latn' })).rejects.toThrow(/eng_Latn\.devtest has 2 sentences but .*ita_Latn\.devtest has 1/);
    await expect(prepareTask('xcopa', { dir: path.join(FX, 'nope'), lang: 'sw' })).rejects.toThrow(/nope: xcopa dataset folder not found/);
  });
});

describe('checkpoint and resume', () => {
  it('a finished evaluation is not recomputed; a partial one scores only the missing items', async () => {
    const plan = await prepareTask('xcopa', { dir: dir('xcopa'), lang: 'sw' });
    const out = await makeTempDir('eval-ck-');
    const o = { outDir: out, model: 'fake', modelFingerprint: 'fp-fake', variant: { name: 'base' }, batchItems: 1 };
    const s1 = new FakeScorer();
    const r1 = await runPlan(plan, { ...o, scorer: s1 });
    expect(s1.calls).toBe(3);
    const s2 = new FakeScorer();
    const r2 = await runPlan(plan, { ...o, scorer: s2 });
    expect(s2.calls).toBe(0);
    expect(r2.metrics).toEqual(r1.metrics);
    const ck = await onlyFile(out, 'xcopa__sw__base__lm-eval__', '.items.jsonl');
    const lines = (await fsp.readFile(ck, 'utf8')).split('\n');
    // an interrupted run: no result file yet, header + 1 item + a torn line in the checkpoint
    const resultFile = await onlyFile(out, 'xcopa__sw__base__lm-eval__', '.json');
    const finished = await fsp.readFile(resultFile, 'utf8');
    await fsp.rm(resultFile);
    await fsp.writeFile(ck, lines.slice(0, 2).join('\n') + '\n{"id": "3", "tru');
    const s3 = new FakeScorer();
    const r3 = await runPlan(plan, { ...o, scorer: s3 });
    expect(s3.calls).toBe(2);
    expect(r3.metrics).toEqual(r1.metrics);
    const saved = JSON.parse(await fsp.readFile(resultFile, 'utf8'));
    expect(saved.key).toBe(JSON.parse(finished).key);
    expect(saved).toMatchObject({ task: 'xcopa', lang: 'sw', prompt: 'lm-eval', model: 'fake', modelFingerprint: 'fp-fake', variant: { name: 'base' }, toolVersion: JSON.parse(await fsp.readFile(path.join(repoRoot, 'package.json'), 'utf8')).version,
      split: 'test', limit: null, truncatedItems: 0, generation: null });
    expect(saved.template).toContain('because|therefore');
    expect(saved.data[0].sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('on tiny-qwen2 (real engine)', () => {
  let model: LanguageModel;
  beforeAll(async () => { model = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 }); });

  it('choice log-likelihoods equal the per-token log-probabilities of forward logits; batching does not change them', async () => {
    const plan = await prepareTask('xcopa', { dir: dir('xcopa'), lang: 'sw' });
    const scorer = new ModelScorer(model);
    const outB = await makeTempDir('eval-q-'), out1 = await makeTempDir('eval-q-');
    const batched = await runPlan(plan, { scorer, outDir: outB, model: 'tiny-qwen2', modelFingerprint: 'fp-q', variant: { name: 'base' }, batchItems: 16 });
    const single = await runPlan(plan, { scorer, outDir: out1, model: 'tiny-qwen2', modelFingerprint: 'fp-q', variant: { name: 'base' }, batchItems: 1 });
    const tok = model.requireTokenizer();
    const itemsOf = async (d: string) => (await fsp.readFile(await onlyFile(d, 'xcopa__sw__base__lm-eval__', '.items.jsonl'), 'utf8')).trim().split('\n').slice(1).map((l) => JSON.parse(l));
    const items = await itemsOf(outB), items1 = await itemsOf(out1);
    let k = 0;
    for (const [n, it] of plan.items.entries()) {
      if (it.kind !== 'mc') throw new Error('mc expected');
      for (const [c, p] of it.pairs.entries()) {
        // lm-eval tokenisation: whole = context + continuation, continuation tokens = whole past the context's
        const whole = tok.encode(p.context + p.continuation), ctx = tok.encode(p.context);
        const out = await model.forward([whole], { logits: 'all' });
        let lp = 0;
        for (let t = ctx.length; t < whole.length; t++) {
          const row = out.logits.subarray((t - 1) * out.vocab, t * out.vocab);
          let mx = -Infinity; for (const x of row) mx = Math.max(mx, x);
          let se = 0; for (const x of row) se += Math.exp(x - mx);
          lp += row[whole[t]!]! - mx - Math.log(se);
        }
        expect(items[n].logprobs[c]).toBeCloseTo(lp, 3);
        expect(items1[n].logprobs[c]).toBeCloseTo(items[n].logprobs[c], 4);
        k++;
      }
    }
    expect(k).toBe(6);
    expect(batched.metrics.acc).toBe(single.metrics.acc);
  });

  it('generation tasks run batched on the engine (belebele letters, flores translation)', async () => {
    const scorer = new ModelScorer(model);
    const b = await run(await prepareTask('belebele', { dir: dir('belebele'), lang: 'sw' }), scorer);
    expect(b.metrics.invalid).toBeGreaterThanOrEqual(0);
    const f = await run(await prepareTask('flores', { dir: dir('flores'), lang: 'mlt_Latn-eng_Latn', prompt: 'rahmanisa' }), scorer);
    expect(f.metrics.bleu).toBeGreaterThanOrEqual(0);
    expect(f.items).toBe(2);
  });

  it('--max-gen-toks on the engine: greedy outputs cut short, each the start of the longer run\'s', async () => {
    const scorer = new ModelScorer(model);
    const outputs = async (o: { maxGenToks?: number }) => {
      const d = await makeTempDir('max-gen-engine-');
      const plan = await prepareTask('flores', { dir: dir('flores'), lang: 'mlt_Latn-eng_Latn', ...o });
      await runPlan(plan, { scorer, outDir: d, model: 'tiny-qwen2', modelFingerprint: 'fp', variant: { name: 'base' } });
      const lines = (await fsp.readFile(await onlyFile(d, 'flores__mlt_Latn-eng_Latn__base__gurgurov__', '.items.jsonl'), 'utf8')).trim().split('\n').slice(1);
      return lines.map((l) => JSON.parse(l).output as string);
    };
    const long = await outputs({}), short = await outputs({ maxGenToks: 3 });
    expect(short).toHaveLength(2);
    short.forEach((s, i) => expect(long[i]!.startsWith(s), `${JSON.stringify(s)} starts ${JSON.stringify(long[i])}`).toBe(true));
    expect(long.some((l, i) => l.length > short[i]!.length)).toBe(true); // the limit cut something
  });

  it('evaluates under an intervention: NLLs change, and equal the engine\'s own scoring under it', async () => {
    const { resolveIntervention } = await import('../src/intervene/index.js');
    const { scoreTokens } = await import('../src/engine/score.js');
    const zeroAll = await resolveIntervention(model, 'zero:neurons=all');
    const text = 'Il-bnedmin kollha jitwieldu ħielsa.';
    const [base] = await new ModelScorer(model).nll([text]);
    const [under] = await new ModelScorer(model, { intervene: zeroAll }).nll([text]);
    expect(under!.tokens).toBe(base!.tokens);
    expect(under!.totalNll).not.toBeCloseTo(base!.totalNll, 3);
    const direct = await scoreTokens(model, model.requireTokenizer().encode(text), { intervene: zeroAll });
    expect(Math.abs(under!.totalNll - direct.totalNll)).toBeLessThan(1e-4 * direct.totalNll);
  });

  it('CLI: eval then results table (text / CSV / JSON)', async () => {
    const out = await makeTempDir('eval-cli-');
    const logs: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { logs.push(String(s)); return true; }) as typeof process.stdout.write;
    try {
      expect(await main(['node', 'langneurons', 'eval', fixturePath('tiny-qwen2'), '--task', 'xcopa', '--langs', 'all', '--data', FX, '--out', out, '--threads', '2', '--json'])).toBe(0);
      expect(await main(['node', 'langneurons', 'eval', fixturePath('tiny-qwen2'), '--task', 'xwinograd', '--langs', 'en', '--data', FX, '--out', out, '--threads', '2', '--variant', 'base', '--json'])).toBe(0);
      expect(await main(['node', 'langneurons', 'eval', fixturePath('tiny-qwen2'), '--task', 'bogus', '--langs', 'en', '--data', FX, '--out', out])).toBe(1);
      logs.length = 0;
      expect(await main(['node', 'langneurons', 'results', 'table', out, '--by', 'task,lang,variant', '--format', 'csv'])).toBe(0);
    } finally { process.stdout.write = write; }
    const csv = logs.join('');
    expect(csv.split('\n')[0]).toBe('task,lang,variant,items,acc,acc_norm,acc_norm_bytes');
    expect(csv).toMatch(/^xcopa,sw,base,3,/m);
    expect(csv).toMatch(/^xwinograd,en,base,2,/m);
    const t = buildTable(await readResults(out), ['task']);
    expect(tableCsv(t).split('\n').length).toBe(4);
    expect(datasetDir(FX, 'xcopa')).toBe(dir('xcopa'));
  });
});

