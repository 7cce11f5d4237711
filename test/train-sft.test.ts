// Supervised fine-tuning on prompt/completion and chat records (src/train/sft.ts): which tokens carry the loss
// (hand-checked by decoding them), the completion-only loss and the gradients of the final norm and the LM head
// against a float64 recomputation from the engine's final-normed states, the same loss as `finetune`'s first step,
// and training with every method on QA records. (The mask enters the backward only through the rows of d(logits):
// the LM head's gradient sums them over every position, so it shows any masked position that leaked; the layers'
// backward from there is checked against float64 autograd in test/train-grads.test.ts.)
import { mkdirSync, mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { LanguageModel } from '../src/engine/model.js';
import { xquadPrompt } from '../src/eval/prompts.js';
import { MASK_FORMAT, writeMask } from '../src/identify/masks.js';
import { readAllTensors, readTensor, toFloat32 } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { modelIdentity } from '../src/profile/identity.js';
import { finetune, resume } from '../src/train/finetune.js';
import { randomNeurons } from '../src/train/methods.js';
import { createNativeTrainer } from '../src/train/native.js';
import { loadSftExamples, type SftExample } from '../src/train/sft.js';

const FIX = path.resolve(__dirname, '../../shared/fixtures/models');
const STORIES = path.join(FIX, 'stories260k');
const LLAMA3 = path.join(FIX, 'tiny-llama3');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-sft-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const QA = [
  { prompt: 'Context: Lily had a red ball.\nQuestion: What color was the ball?\nAnswer:', completion: ' red' },
  { prompt: 'Context: Tom went to the park with his dog.\nQuestion: Where did Tom go?\nAnswer:', completion: ' the park' },
  { prompt: 'Context: The cat sat on the mat.\nQuestion: Who sat on the mat?\nAnswer:', completion: ' The cat' },
];
const qaFile = path.join(tmp, 'qa.jsonl');
writeFileSync(qaFile, QA.map((r) => JSON.stringify(r)).join('\n') + '\n');

const completionSpans = (ex: SftExample): number[][] => {
  const spans: number[][] = [];
  let cur: number[] | null = null;
  ex.targets.forEach((y, t) => {
    if (y >= 0) { if (!cur) spans.push((cur = [])); cur.push(y); } else cur = null;
  });
  return spans;
};

describe('fine-tuning records (loss on the completion only)', () => {
  it('prompt/completion: the targets are the completion tokens and EOS, after the prompt', async () => {
    const tok = await loadTokenizer(STORIES);
    const r = (await loadSftExamples(qaFile, tok, STORIES, 128, 'training'))!;
    expect(r.format).toBe('prompt-completion');
    r.examples.forEach((ex, i) => {
      const spans = completionSpans(ex);
      expect(spans.length).toBe(1); // one contiguous run, to the end
      const span = spans[0]!;
      expect(span[span.length - 1]).toBe(tok.eosTokenIds[0]);
      expect(tok.decode(span.slice(0, -1))).toBe(QA[i]!.completion);
      // Every position before the completion has no target; the sequence is the prompt then the completion.
      const first = ex.targets.findIndex((y) => y >= 0);
      expect(tok.decode(Array.from(ex.ids.subarray(0, first + 1)), { skipSpecialTokens: true }).trim()).toBe(QA[i]!.prompt.trim());
      expect(ex.targets[ex.targets.length - 1]).toBe(-1);
    });
    // Cut to the chunk: a record whose prompt fills it is dropped; none left is an error naming the file.
    const short = (await loadSftExamples(qaFile, tok, STORIES, 12, 'training').catch((e: Error) => e)) as Error;
    expect(short.message).toMatch(/qa\.jsonl: the training file has no record with a completion token within --chunk 12 tokens \(3 record\(s\) cut off\)/);
    const bad = path.join(tmp, 'bad.jsonl');
    writeFileSync(bad, JSON.stringify(QA[0]) + '\n{"prompt": 3, "completion": "x"}\n');
    await expect(loadSftExamples(bad, tok, STORIES, 128, 'training')).rejects.toThrow(/bad\.jsonl: line 2: "prompt" and "completion" must be strings/);
    writeFileSync(bad, 'plain text line\n');
    expect(await loadSftExamples(bad, tok, STORIES, 128, 'training')).toBeNull(); // plain text: every token
  });

  it("chat: the model's template renders the conversation and only the assistant messages carry the loss", async () => {
    const dir = path.join(tmp, 'chat-model');
    mkdirSync(dir);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) await fsp.copyFile(path.join(STORIES, f), path.join(dir, f));
    const cfg = JSON.parse(readFileSync(path.join(STORIES, 'tokenizer_config.json'), 'utf8'));
    cfg.chat_template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
    const chat = path.join(tmp, 'chat.jsonl');
    const conv = [{ role: 'user', content: 'Where is the cat?' }, { role: 'assistant', content: 'On the mat.' },
      { role: 'user', content: 'And the dog?' }, { role: 'assistant', content: 'In the park.' }];
    writeFileSync(chat, JSON.stringify({ messages: conv }) + '\n');
    const tok = await loadTokenizer(dir);
    const r = (await loadSftExamples(chat, tok, dir, 256, 'training'))!;
    expect(r.format).toBe('chat');
    const ex = r.examples[0]!;
    expect(ex.ids[0]).toBe(tok.bosTokenId); // the template's BOS, not doubled
    expect(ex.ids[1]).not.toBe(tok.bosTokenId);
    expect(completionSpans(ex).map((s) => tok.decode(s))).toEqual([' On the mat.\n', ' In the park.\n']); // the space after ] starts the content's first token
    // Without a chat template: the plain "role: content" layout.
    const plain = (await loadSftExamples(chat, await loadTokenizer(STORIES), STORIES, 256, 'training'))!;
    expect(completionSpans(plain.examples[0]!).map((s) => tok.decode(s).trim())).toEqual(['On the mat.', 'In the park.']);
  });

  it('the completion-only loss and the gradients of the final norm and lm_head match a float64 recomputation (tiny-llama3)', async () => {
    const tok = await loadTokenizer(LLAMA3);
    const { examples } = (await loadSftExamples(qaFile, tok, LLAMA3, 128, 'training'))!;
    const ckpt = await openCheckpoint(LLAMA3);
    const H = ckpt.config.hiddenSize, V = ckpt.config.vocabSize;
    const read = async (name: string) => { const t = ckpt.tensors.get(name)!; return toFloat32(t, await readTensor(t.file, t)); };
    const W = await read('lm_head.weight'), g = await read('model.norm.weight');
    // float64: every completion position's final-normed state from the engine (one prefix per position, packed).
    const model = await LanguageModel.load(LLAMA3, { threads: 2 });
    const prefixes: number[][] = [], ys: number[] = [];
    for (const ex of examples) ex.targets.forEach((y, t) => { if (y >= 0) { prefixes.push(Array.from(ex.ids.subarray(0, t + 1))); ys.push(y); } });
    const xs = (await model.forward(prefixes, { logits: 'lastHidden' })).logits;
    const N = ys.length;
    let loss = 0;
    const dW = new Float64Array(V * H), dg = new Float64Array(H);
    ys.forEach((y, n) => {
      const x = xs.subarray(n * H, (n + 1) * H);
      const z = new Float64Array(V);
      for (let v = 0; v < V; v++) { let a = 0; for (let i = 0; i < H; i++) a += W[v * H + i]! * x[i]!; z[v] = a; }
      const mx = Math.max(...z);
      let se = 0;
      for (let v = 0; v < V; v++) se += Math.exp(z[v]! - mx);
      loss += (mx + Math.log(se) - z[y]!) / N;
      for (let v = 0; v < V; v++) {
        const d = (Math.exp(z[v]! - mx) / se - (v === y ? 1 : 0)) / N;
        for (let i = 0; i < H; i++) { dW[v * H + i]! += d * x[i]!; dg[i]! += d * W[v * H + i]! * x[i]! / g[i]!; }
      }
    });
    // The trainer on the packed examples, targets as the loader made them.
    const tr = createNativeTrainer(ckpt, 2, [{ role: 'final_norm', layer: -1, mode: 'dense' }, { role: 'lm_head', layer: -1, mode: 'dense' }]);
    const tokens = Int32Array.from(examples.flatMap((e) => Array.from(e.ids)));
    const targets = Int32Array.from(examples.flatMap((e) => Array.from(e.targets)));
    const res = await tr.forwardBackward(tokens, targets, Int32Array.from(examples.map((e) => e.ids.length)), { backward: true });
    expect(res.count).toBe(N);
    const rel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let num = 0, den = 0;
      for (let i = 0; i < b.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
      return Math.sqrt(num / den);
    };
    const params = tr.params();
    const gradOf = (role: string) => tr.read('grad', params.find((p) => p.role === role)!.id);
    console.log(`completion-only loss ${res.lossSum / N} (float64 ${loss}) over ${N} of ${tokens.length} tokens; ` +
      `rel. errors: final_norm ${rel(gradOf('final_norm'), dg).toExponential(2)}, lm_head ${rel(gradOf('lm_head'), dW).toExponential(2)}`);
    expect(Math.abs(res.lossSum / N - loss) / loss).toBeLessThan(1e-5);
    expect(rel(gradOf('lm_head'), dW)).toBeLessThan(1e-4);
    expect(rel(gradOf('final_norm'), dg)).toBeLessThan(1e-4);
    // `finetune`'s first step on the same records (one batch of all three) logs the same loss.
    const run = await finetune(LLAMA3, { method: 'full', train: qaFile, batch: 3, steps: 1, chunk: 128, lr: 1e-9, evalEvery: 0, threads: 2, writeModel: false },
      path.join(tmp, 'run-loss'));
    expect(Math.abs(run.firstLoss! - loss) / loss).toBeLessThan(1e-5);
  }, 120_000);

  it.each(['neurons', 'lora', 'neuron-lora', 'mlp'] as const)('trains on QA records with method %s: the completion loss falls', async (method) => {
    const ck = await openCheckpoint(STORIES);
    const L = ck.config.numLayers, I = ck.config.intermediateSize;
    const maskFile = path.join(tmp, `mask-${method}.json`);
    await writeMask(maskFile, { format: MASK_FORMAT, method: 'test', parameters: {}, site: 'act', model: modelIdentity(ck), sources: [], layers: L, width: I,
      languages: { en: randomNeurons(L, I, Math.round(0.1 * L * I), 3) } });
    const withMask = method === 'neurons' || method === 'neuron-lora' ? { masks: maskFile, langs: ['en'] } : {};
    const r = await finetune(STORIES, { method, ...withMask, train: qaFile, valid: qaFile, batch: 3, steps: 8, chunk: 128, lr: 2e-2, evalEvery: 0,
      threads: 2, writeModel: false }, path.join(tmp, `run-${method}`));
    console.log(`${method}: completion loss ${r.firstLoss!.toFixed(4)} -> ${r.lastLoss!.toFixed(4)}, valid ${r.bestValid!.toFixed(4)}`);
    expect(r.lastLoss!).toBeLessThan(r.firstLoss!);
  }, 120_000);

  it('"text" records train as their text (not as JSON); records of no known kind are refused, naming the line', async () => {
    const lines = ['Il-bnedmin kollha jitwieldu ħielsa.', 'Kulħadd għandu d-dritt għall-ħajja.'];
    const plain = path.join(tmp, 'plain.txt'), records = path.join(tmp, 'text.jsonl'), other = path.join(tmp, 'other.jsonl');
    writeFileSync(plain, lines.join('\n') + '\n');
    writeFileSync(records, lines.map((text) => JSON.stringify({ text, id: 1 })).join('\n') + '\n');
    writeFileSync(other, lines.map((t) => JSON.stringify({ sentence: t })).join('\n') + '\n');
    const o = { method: 'mlp' as const, batch: 1, steps: 2, chunk: 32, lr: 1e-3, evalEvery: 0, threads: 2, writeModel: false, device: 'cpu' };
    const a = await finetune(STORIES, { ...o, train: plain }, path.join(tmp, 'text-plain'));
    const b = await finetune(STORIES, { ...o, train: records }, path.join(tmp, 'text-records'));
    expect([b.firstLoss, b.lastLoss]).toEqual([a.firstLoss, a.lastLoss]);
    await expect(finetune(STORIES, { ...o, train: other }, path.join(tmp, 'text-other')))
      .rejects.toThrow(/other\.jsonl: line 1: a JSON record with no "text" string \(keys: sentence\); fine-tuning reads "text" records, prompt\/completion records/);
  }, 60_000);

  it('a stopped and resumed run on records ends bit-identical to an uninterrupted one (lora, dropout on)', async () => {
    const o = { method: 'lora' as const, train: qaFile, valid: qaFile, batch: 2, steps: 5, chunk: 128, lr: 1e-2, evalEvery: 2, saveEvery: 2, threads: 2, writeModel: false };
    const a = path.join(tmp, 'resume-a'), b = path.join(tmp, 'resume-b');
    await finetune(STORIES, o, a);
    expect((await finetune(STORIES, o, b, { stopAfterStep: 2 })).steps).toBe(2);
    await resume(b);
    const x = await readAllTensors(path.join(a, 'adapter', 'adapter_model.safetensors'));
    const y = await readAllTensors(path.join(b, 'adapter', 'adapter_model.safetensors'));
    expect(x.size).toBeGreaterThan(0);
    for (const [k, v] of x) expect(Buffer.from((y.get(k)!.data as Float32Array).buffer).equals(Buffer.from((v.data as Float32Array).buffer)), k).toBe(true);
  }, 120_000);

  it('the QA recipe: SQuAD layout -> `records squad` -> finetune --method lora -> eval --task xquad --delta <adapter>', async () => {
    const squad = path.join(tmp, 'squad-train.jsonl');
    const rows = [
      { id: 'a', title: 't', context: 'Lily had a red ball.', question: 'What color was the ball?', answers: { text: ['red'], answer_start: [12] } },
      { id: 'b', title: 't', context: 'Tom went to the park.', question: 'Where did Tom go?', answers: { text: ['the park', 'park'], answer_start: [12, 16] } },
      { id: 'c', title: 't', context: 'It rained.', question: 'Who is the king?', answers: { text: [], answer_start: [] } }, // SQuAD 2.0: no answer
    ];
    writeFileSync(squad, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const run = async (args: string[]) => {
      const out: string[] = [];
      const w = process.stdout.write.bind(process.stdout);
      process.stdout.write = ((x: string) => { out.push(String(x)); return true; }) as typeof process.stdout.write;
      try { return { code: await main(['node', 'langneurons', ...args, '--json']), json: out.join('') }; } finally { process.stdout.write = w; }
    };
    const records = path.join(tmp, 'qa-records.jsonl');
    let r = await run(['records', 'squad', squad, '--out', records]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.json)).toMatchObject({ records: 2, skippedWithoutAnswer: 1 });
    expect(readFileSync(records, 'utf8').trim().split('\n').map((l) => JSON.parse(l))).toEqual([
      { prompt: xquadPrompt(rows[0]!.context, rows[0]!.question), completion: ' red' },
      { prompt: xquadPrompt(rows[1]!.context, rows[1]!.question), completion: ' the park' },
    ]);
    const runDir = path.join(tmp, 'run-qa');
    r = await run(['finetune', STORIES, '--method', 'lora', '--train', records, '--out', runDir, '--steps', '6', '--batch', '2', '--chunk', '128',
      '--lr', '2e-2', '--eval-every', '0', '--threads', '2']);
    expect(r.code).toBe(0);
    const log = readFileSync(path.join(runDir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number });
    expect(log[log.length - 1]!.loss).toBeLessThan(log[0]!.loss);
    const data = path.join(tmp, 'xquad', 'xquad.en');
    mkdirSync(data, { recursive: true });
    writeFileSync(path.join(data, 'validation.jsonl'), rows.slice(0, 2).map((x) => JSON.stringify(x)).join('\n') + '\n');
    r = await run(['eval', STORIES, '--task', 'xquad', '--langs', 'en', '--data', path.join(tmp, 'xquad'), '--delta', path.join(runDir, 'adapter'),
      '--out', path.join(tmp, 'qa-results'), '--threads', '2']);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.json).results[0];
    expect(res.variant.name).toBe('delta-run-qa');
    expect(typeof res.metrics.exact_match).toBe('number');
    expect(typeof res.metrics.f1).toBe('number');
  }, 120_000);
});
