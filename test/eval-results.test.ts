// Results that cannot go stale or be lost: result names keyed by everything that determines them, resume keyed by
// the model's fingerprint (not its path), full result records, `results table` over nested folders with language
// aliases merged, and lm-eval's left truncation of items longer than the model's context (on tiny-qwen2, against
// log-probabilities recomputed here from the engine's forward logits on the truncated tokens).
import { promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { buildTable, readResults } from '../src/eval/results.js';
import { resultKey, runPlan, type EvalResult } from '../src/eval/run.js';
import { ModelScorer, type GenOptions, type Pair, type Scorer } from '../src/eval/scorer.js';
import { prepareTask, type TaskPlan } from '../src/eval/tasks.js';
import { generateTokens } from '../src/generate/generate.js';
import { fixturePath, makeTempDir, repoRoot } from './helpers/fixtures.js';

const FX = path.join(repoRoot, 'test/fixtures-eval');

class CountingScorer implements Scorer {
  calls = 0;
  constructor(private failAfter = Infinity) {}
  async logLikelihood(pairs: Pair[]) {
    if (this.calls++ >= this.failAfter) throw new Error('interrupted');
    return pairs.map((p) => ({ logprob: -Array.from(p.continuation).length, tokens: 1 }));
  }
  async generate(prompts: string[], _o: GenOptions) { this.calls++; return prompts.map(() => 'x'); }
  async nll() { return []; }
}

const results = (d: string) => readdirSync(d).filter((n) => n.endsWith('.json')).sort();
const base = { model: 'm', modelFingerprint: 'fp1', variant: { name: 'base' }, batchItems: 1 };

describe('result files never overwrite each other', () => {
  it('another prompt or another data file gets its own result; a finished result is returned, not rewritten', async () => {
    const out = await makeTempDir('names-');
    const gen = await prepareTask('xquad', { dir: path.join(FX, 'xquad'), lang: 'de', prompt: 'generate' });
    const lme = await prepareTask('xquad', { dir: path.join(FX, 'xquad'), lang: 'de', prompt: 'lm-eval' });
    const r1 = await runPlan(gen, { ...base, scorer: new CountingScorer(), outDir: out });
    await runPlan(lme, { ...base, scorer: new CountingScorer(), outDir: out });
    const [genFile, lmFile] = results(out);
    expect(genFile).toBe(`xquad__de__base__generate__${r1.key.slice(0, 12)}.json`);
    expect(lmFile).toMatch(/^xquad__de__base__lm-eval__[0-9a-f]{12}\.json$/);
    const before = await fsp.readFile(path.join(out, genFile!), 'utf8');
    const again = new CountingScorer();
    const r1b = await runPlan(gen, { ...base, scorer: again, outDir: out });
    expect(again.calls).toBe(0);
    expect(r1b).toEqual(r1);
    expect(await fsp.readFile(path.join(out, genFile!), 'utf8')).toBe(before);
    // --limit, split and model fingerprint are part of the key too
    const lim = await prepareTask('xquad', { dir: path.join(FX, 'xquad'), lang: 'de', prompt: 'generate', limit: 2 });
    await runPlan(lim, { ...base, scorer: new CountingScorer(), outDir: out });
    await runPlan(gen, { ...base, modelFingerprint: 'fp2', scorer: new CountingScorer(), outDir: out });
    expect(results(out).length).toBe(4);
  });

  it('a language under a dataset\'s own code (XWinograd\'s jp, which --langs all lists) and under its code (ja) is one result', async () => {
    const out = await makeTempDir('alias-');
    const jp = await prepareTask('xwinograd', { dir: path.join(FX, 'xwinograd-release'), lang: 'jp' });
    const ja = await prepareTask('xwinograd', { dir: path.join(FX, 'xwinograd-release'), lang: 'ja' });
    expect(ja.items.map((i) => i.id)).toEqual(jp.items.map((i) => i.id));  // the same rows
    const first = await runPlan(jp, { ...base, scorer: new CountingScorer(), outDir: out });
    const again = new CountingScorer();
    expect(await runPlan(ja, { ...base, scorer: again, outDir: out })).toEqual(first);
    expect(again.calls).toBe(0);
    expect(results(out)).toEqual([`xwinograd__ja__base__partial__${first.key.slice(0, 12)}.json`]);
  });

  it('a failing run on new data leaves the other run\'s item checkpoint alone, which then resumes', async () => {
    const data = await makeTempDir('xcopa-data-'), out = await makeTempDir('ck-');
    await fsp.mkdir(path.join(data, 'sw'));
    const orig = await fsp.readFile(path.join(FX, 'xcopa/sw/test.jsonl'), 'utf8');
    await fsp.writeFile(path.join(data, 'sw', 'test.jsonl'), orig);
    const planA = await prepareTask('xcopa', { dir: data, lang: 'sw' });
    await expect(runPlan(planA, { ...base, scorer: new CountingScorer(1), outDir: out })).rejects.toThrow(/interrupted/); // 1 of 3 items done
    await fsp.writeFile(path.join(data, 'sw', 'test.jsonl'), orig.replace('"label": 1', '"label": 0'));
    const planB = await prepareTask('xcopa', { dir: data, lang: 'sw' });
    await expect(runPlan(planB, { ...base, scorer: new CountingScorer(0), outDir: out })).rejects.toThrow(/interrupted/);
    const cks = readdirSync(out).filter((n) => n.endsWith('.items.jsonl'));
    expect(cks.length).toBe(2);
    await fsp.writeFile(path.join(data, 'sw', 'test.jsonl'), orig);
    const resume = new CountingScorer();
    const r = await runPlan(await prepareTask('xcopa', { dir: data, lang: 'sw' }), { ...base, scorer: resume, outDir: out });
    expect(resume.calls).toBe(2); // only the two items A had not finished
    expect(r.items).toBe(3);
  });

  it('an item checkpoint of another engine kind is scored again, not mixed with this engine\'s scores', async () => {
    // Scorers on two kinds of engine (two CPU kernel families: products that differ in the last bits).
    class OnEngine extends CountingScorer {
      constructor(readonly engine: string, failAfter?: number) { super(failAfter); }
      describe() { return { compute: 'f32', device: 'cpu', threads: 1, contextLength: 64, engine: this.engine }; }
    }
    const out = await makeTempDir('engine-');
    const plan = await prepareTask('xcopa', { dir: path.join(FX, 'xcopa'), lang: 'sw' });
    await expect(runPlan(plan, { ...base, scorer: new OnEngine('avx512', 1), outDir: out })).rejects.toThrow(/interrupted/); // 1 of 3 done
    const notices: string[] = [];
    const other = new OnEngine('avx2');
    const r = await runPlan(plan, { ...base, scorer: other, outDir: out, onNotice: (m) => notices.push(m) });
    expect(other.calls).toBe(3);  // every item, the one avx512 finished too
    expect(notices).toEqual([expect.stringMatching(/\.items\.jsonl: 1 item\(s\) scored on avx512 are scored again on avx2 \(a result holds one engine's scores\)$/)]);
    expect(r.compute).toMatchObject({ engine: 'avx2' });
    const header = JSON.parse((await fsp.readFile(path.join(out, readdirSync(out).find((n) => n.endsWith('.items.jsonl'))!), 'utf8')).split('\n')[0]!);
    expect(header.engine).toBe('avx2');
    // The same engine resumes: an interrupted avx2 run's finished item is taken back.
    const out2 = await makeTempDir('engine-same-');
    await expect(runPlan(plan, { ...base, scorer: new OnEngine('avx2', 1), outDir: out2 })).rejects.toThrow(/interrupted/);
    const same = new OnEngine('avx2');
    await runPlan(plan, { ...base, scorer: same, outDir: out2, onNotice: (m) => notices.push(m) });
    expect([same.calls, notices.length]).toEqual([2, 1]);
  });

  it('a model\'s scorer names the model\'s own device and engine, so a GPU run\'s results are keyed as the GPU\'s', async () => {
    const onGpu = { device: 'cuda:0', compute: 'bf16', threads: 1, contextLength: 4096, engineKind: () => 'cuda runtime (sm_90)' } as unknown as LanguageModel;
    const gpu = new ModelScorer(onGpu), cpu = new ModelScorer({ ...onGpu, device: 'cpu', engineKind: () => 'avx2' } as unknown as LanguageModel);
    expect(gpu.describe()).toEqual({ compute: 'bf16', device: 'cuda:0', threads: 1, contextLength: 4096, engine: 'cuda runtime (sm_90)' });
    const plan = await prepareTask('xcopa', { dir: path.join(FX, 'xcopa'), lang: 'sw' });
    const data = [{ file: 'x', sha256: '0' }] as unknown as Parameters<typeof resultKey>[2];
    expect((await resultKey(plan, { ...base, scorer: gpu }, data)).key).not.toBe((await resultKey(plan, { ...base, scorer: cpu }, data)).key);
    // Which of a machine's GPUs ran it is not part of the result: cuda:1's result is cuda:0's (reused, not rerun).
    const gpu1 = new ModelScorer({ ...onGpu, device: 'cuda:1' } as unknown as LanguageModel);
    expect((await resultKey(plan, { ...base, scorer: gpu1 }, data)).key).toBe((await resultKey(plan, { ...base, scorer: gpu }, data)).key);
  });

  it('a checkpoint this run did not write is refused, not overwritten', async () => {
    const out = await makeTempDir('foreign-');
    const plan = await prepareTask('xcopa', { dir: path.join(FX, 'xcopa'), lang: 'sw' });
    const r = await runPlan(plan, { ...base, scorer: new CountingScorer(), outDir: out });
    const stem = results(out)[0]!.slice(0, -'.json'.length);
    await fsp.rm(path.join(out, `${stem}.json`));
    await fsp.writeFile(path.join(out, `${stem}.items.jsonl`), '{"someone": "else"}\n');
    await expect(runPlan(plan, { ...base, scorer: new CountingScorer(), outDir: out })).rejects.toThrow(/items\.jsonl: not this evaluation's item checkpoint/);
    expect(await fsp.readFile(path.join(out, `${stem}.items.jsonl`), 'utf8')).toBe('{"someone": "else"}\n');
    expect(r.key).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('variant inputs by content', () => {
  it('files named in intervention specs, a spec file and the folders they name are hashed; a replaced mask changes the hash', async () => {
    const { inputHashes } = await import('../src/eval/inputs.js');
    const { createHash } = await import('node:crypto');
    const d = await makeTempDir('inputs-');
    const mask = path.join(d, 'raw.json'), stats = path.join(d, 'stats'), specFile = path.join(d, 'specs.json');
    await fsp.writeFile(mask, '{"mt": [[1, 2]]}');
    await fsp.mkdir(stats);
    await fsp.writeFile(path.join(stats, 'mt.safetensors'), 'S');
    await fsp.writeFile(specFile, JSON.stringify([`amplify:${mask}:mt`, { stats }]));
    const sha = (t: string) => createHash('sha256').update(t).digest('hex');
    const h1 = await inputHashes([`deactivate:${mask}:mt`, specFile]);
    expect(h1).toEqual({ [mask]: sha('{"mt": [[1, 2]]}'), [path.join(stats, 'mt.safetensors')]: sha('S'), [specFile]: sha(await fsp.readFile(specFile, 'utf8')) });
    await fsp.writeFile(mask, '{"mt": [[1, 3]]}');
    const h2 = await inputHashes([`deactivate:${mask}:mt`]);
    expect(h2[mask]).toBe(sha('{"mt": [[1, 3]]}'));
    expect(await inputHashes(['zero:neurons=all'])).toEqual({});
  });
});

describe('results table', () => {
  it('reads nested folders and merges language aliases (Indonesian = id, mmlu_DE-DE = de_de = de)', async () => {
    const out = await makeTempDir('table-');
    const inc = await prepareTask('include', { dir: path.join(FX, 'include'), lang: 'Indonesian' });
    const mm = await prepareTask('mmlu', { dir: path.join(FX, 'mmlu'), lang: 'de_de' });
    await runPlan(inc, { ...base, scorer: new CountingScorer(), outDir: path.join(out, 'a') });
    await runPlan(mm, { ...base, scorer: new CountingScorer(), outDir: path.join(out, 'b', 'c') });
    const t = buildTable(await readResults(out), ['task', 'lang']);
    expect(t.rows.map((r) => r.slice(0, 3))).toEqual([['include', 'id', 2], ['mmlu', 'de', 3]]);
  });
});

describe('on tiny-qwen2: truncation, fingerprints and full records', () => {
  let model: LanguageModel;
  beforeAll(async () => { model = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 }); });

  /** Sum of log-probabilities of ids[from..] given everything before, from the engine's full logits. */
  async function forwardLogprob(ids: number[], from: number): Promise<number> {
    const out = await model.forward([ids.slice(0, -1)], { logits: 'all' }); // the last token is only a target
    let lp = 0;
    for (let t = from; t < ids.length; t++) {
      const row = out.logits.subarray((t - 1) * out.vocab, t * out.vocab);
      let mx = -Infinity; for (const x of row) mx = Math.max(mx, x);
      let se = 0; for (const x of row) se += Math.exp(x - mx);
      lp += row[ids[t]!]! - mx - Math.log(se);
    }
    return lp;
  }

  it('an item longer than the context loses context tokens on the left (lm-eval), is counted, and scores as the truncated tokens do', async () => {
    const tok = model.requireTokenizer();
    const L = model.contextLength;
    const context = 'Il-bnedmin kollha jitwieldu ħielsa u ugwali fid-dinjità u d-drittijiet.'.repeat(40); // (no trailing space to move)
    const pair = { context, continuation: ' Huma mogħnija bir-raġuni.' };
    const whole = tok.encode(pair.context + pair.continuation), ctxLen = tok.encode(pair.context).length;
    expect(whole.length).toBeGreaterThan(L + 1);
    const plan: TaskPlan = { task: 'xcopa', lang: 'mt', prompt: 'lm-eval', files: [path.join(FX, 'xcopa/sw/test.jsonl')],
      items: [{ kind: 'mc', id: 'long-1', pairs: [pair, { context: 'Qasir.', continuation: ' Iva.' }], choices: ['a', 'b'], gold: 0 }] };
    const out = await makeTempDir('trunc-');
    const r = await runPlan(plan, { ...base, scorer: new ModelScorer(model), outDir: out });
    expect(r.truncatedItems).toBe(1);
    const item = JSON.parse((await fsp.readFile(path.join(out, readdirSync(out).find((n) => n.endsWith('.items.jsonl'))!), 'utf8')).trim().split('\n')[1]!);
    expect(item.truncated).toBe(whole.length - (L + 1));
    // the continuation's tokens (whole past the context's) scored on the last L+1 tokens
    const kept = whole.slice(-(L + 1));
    const contLen = whole.length - ctxLen;
    const expected = await forwardLogprob(kept, kept.length - contLen);
    expect(item.logprobs[0]).toBeCloseTo(expected, 3);
  });

  it('an empty context (lm-eval\'s XNLI) is scored after the prefix token: BOS, or EOS without one (HFLM.prefix_token_id)', async () => {
    const tok = model.requireTokenizer();
    const prefix = tok.bosTokenId ?? tok.eosTokenIds[0]!;
    const plan = await prepareTask('xnli', { dir: path.join(FX, 'xnli'), lang: 'de', limit: 1 });
    const out = await makeTempDir('xnli-empty-');
    await runPlan(plan, { ...base, scorer: new ModelScorer(model), outDir: out });
    const item = JSON.parse((await fsp.readFile(path.join(out, readdirSync(out).find((n) => n.endsWith('.items.jsonl'))!), 'utf8')).trim().split('\n')[1]!);
    const pairs = (plan.items[0] as { pairs: Pair[] }).pairs;
    for (const [c, p] of pairs.entries()) {
      expect(p.context).toBe('');
      const ids = [prefix, ...tok.encode(p.continuation, { addSpecialTokens: false })];
      expect(item.logprobs[c]).toBeCloseTo(await forwardLogprob(ids, 1), 3);
    }
  });

  it('a continuation longer than the context is refused naming the item id and the file', async () => {
    const plan: TaskPlan = { task: 'xcopa', lang: 'mt', prompt: 'lm-eval', files: [path.join(FX, 'xcopa/sw/test.jsonl')],
      items: [{ kind: 'mc', id: 'item-77', pairs: [{ context: 'x', continuation: ' ħ'.repeat(700) }, { context: 'x', continuation: ' y' }], choices: ['a', 'b'], gold: 0 }] };
    await expect(runPlan(plan, { ...base, scorer: new ModelScorer(model), outDir: await makeTempDir('refuse-') }))
      .rejects.toThrow(/sw\/test\.jsonl: xcopa mt item 'item-77': its continuation has \d+ tokens, more than the model's context of 512/);
  });

  it('a generation prompt keeps its last (context - max new tokens) tokens, as lm-eval\'s generate_until', async () => {
    const tok = model.requireTokenizer();
    const prompt = 'Kontext: ' + 'Die Broncos besiegten die Steelers. '.repeat(60) + '\n\nFrage: Wer?\n\nAntwort:';
    const ids = tok.encode(prompt);
    const gen = { maxNewTokens: 8, stop: ['\n'], repetitionPenalty: 1 };
    expect(ids.length).toBeGreaterThan(model.contextLength - gen.maxNewTokens);
    const [got] = await new ModelScorer(model).generate([prompt], gen);
    const [direct] = await generateTokens(model, [ids.slice(-(model.contextLength - gen.maxNewTokens))], { ...gen, temperature: 0 });
    expect(got).toEqual({ text: direct!.text, truncated: ids.length - (model.contextLength - gen.maxNewTokens) });
  });

  it('CLI: replaced weights under the same path give a new result (no stale resume); the record holds split, limit, generation, compute, template and fingerprint', async () => {
    const dir = await makeTempDir('model-copy-'), out = await makeTempDir('fp-out-');
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) await fsp.copyFile(fixturePath('tiny-qwen2', f), path.join(dir, f));
    await fsp.chmod(path.join(dir, 'model.safetensors'), 0o644);
    const args = ['node', 'langneurons', 'eval', dir, '--task', 'xquad', '--langs', 'de', '--prompt', 'lm-eval', '--data', FX, '--limit', '1', '--out', out, '--threads', '2', '--json'];
    const run = async () => {
      const logs: string[] = [];
      const w = process.stdout.write.bind(process.stdout);
      process.stdout.write = ((s: string) => { logs.push(String(s)); return true; }) as typeof process.stdout.write;
      try { expect(await main(args)).toBe(0); } finally { process.stdout.write = w; }
      return JSON.parse(logs.join('')).results[0] as EvalResult;
    };
    const first = await run();
    expect(first).toMatchObject({ split: 'validation', limit: 1, generation: { maxNewTokens: 256, stop: ['\n'], repetitionPenalty: 1 },
      compute: { mode: 'f32', device: 'cpu', threads: 2, contextLength: 512 }, model: dir, truncatedItems: 0 });
    expect(first.template).toContain('{Context}: {context}');
    expect(first.modelFingerprint).toMatch(/^[0-9a-f]{64}$/);
    // overwrite the last 4 KiB of weights (same size, same header) in place
    const buf = await fsp.readFile(path.join(dir, 'model.safetensors'));
    for (let i = buf.length - 4096; i < buf.length; i += 4) buf.writeFloatLE(0.01 * ((i / 4) % 7), i);
    await fsp.writeFile(path.join(dir, 'model.safetensors'), buf);
    const second = await run();
    expect(second.modelFingerprint).not.toBe(first.modelFingerprint);
    expect(second.key).not.toBe(first.key);
    expect(results(out).length).toBe(2);
    expect(JSON.parse(await fsp.readFile(path.join(out, `${path.basename(results(out).find((n) => n.includes(first.key.slice(0, 12)))!)}`), 'utf8')).created).toBe(first.created);
  });
});
