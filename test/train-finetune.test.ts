// The fine-tuning loop end to end on fixture models: the loss falls for every method on UDHR text, training
// touches only the trainable rows/columns, the written checkpoint loads and reproduces the validation loss, a
// killed-and-resumed run equals an uninterrupted one bit for bit, and bad input is refused without damage.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { udhrArticles } from '../src/corpus/udhr.js';
import { MASK_FORMAT, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { readAllTensors } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { finetune, resume } from '../src/train/finetune.js';
import { applyDelta, writeCheckpoint } from '../src/train/delta.js';
import { runCli } from './helpers/cli.js';
import { fileLoss } from './helpers/loss.js';
import { randomNeurons } from '../src/train/methods.js';

const FIX = path.resolve(__dirname, '../../shared/fixtures/models');
const STORIES = path.join(FIX, 'stories260k');
const LLAMA3 = path.join(FIX, 'tiny-llama3');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-finetune-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const arts = udhrArticles('mt');
const trainFile = path.join(tmp, 'mt-train.txt');
const validFile = path.join(tmp, 'mt-valid.txt');
writeFileSync(trainFile, arts.filter((a) => a.number >= 1 && a.number <= 3).map((a) => a.text).join('\n') + '\n');
writeFileSync(validFile, arts.filter((a) => a.number >= 25 && a.number <= 26).map((a) => a.text).join('\n') + '\n');

async function maskFor(dir: string, file: string): Promise<string> {
  const ck = await openCheckpoint(dir);
  const id = modelIdentity(ck);
  const I = ck.config.intermediateSize, L = ck.config.numLayers;
  const mt = randomNeurons(L, I, Math.round(0.05 * L * I), 99); // a 5% "language" set
  const en = randomNeurons(L, I, Math.round(0.05 * L * I), 7);
  const mask: NeuronMask = {
    format: MASK_FORMAT, method: 'test', parameters: {}, site: 'act', model: id, sources: [], layers: L, width: I,
    languages: { mt, en },
  };
  const f = path.join(tmp, file);
  await writeMask(f, mask);
  return f;
}

// The CPU trainer's results (a GPU machine runs these on the CPU too; the GPU: test/gpu-finetune.test.ts).
const fast = { chunk: 64, batch: 2, evalEvery: 0, threads: 2, device: 'cpu' };

describe('finetune', () => {
  it.each(['full', 'mlp', 'neurons', 'random'] as const)('the training loss falls on UDHR Maltese: %s', async (method) => {
    const masks = method === 'neurons' || method === 'random' ? await maskFor(STORIES, `mask-${method}.json`) : undefined;
    const r = await finetune(STORIES, { ...fast, method, ...(masks ? { masks, langs: ['mt'] } : {}), train: trainFile, steps: 12, lr: 3e-3, writeModel: false },
      path.join(tmp, `run-${method}`));
    console.log(`${method}: trainable ${r.trainableParameters}, loss ${r.firstLoss!.toFixed(4)} -> ${r.lastLoss!.toFixed(4)}`);
    expect(r.lastLoss!).toBeLessThan(r.firstLoss! - 0.05);
    const log = readFileSync(path.join(tmp, `run-${method}`, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log).toHaveLength(12);
    for (const e of log) for (const k of ['step', 'loss', 'lr', 'gradNorm', 'tokensPerSecond']) expect(typeof e[k]).toBe('number');
  }, 120_000);

  it('neurons: only the selected rows/columns change; the checkpoint loads and reproduces the best validation loss (BF16 model)', async () => {
    const masks = await maskFor(LLAMA3, 'mask-llama3.json');
    const run = path.join(tmp, 'run-llama3');
    const r = await finetune(LLAMA3, { ...fast, method: 'neurons', masks, langs: ['mt', 'en'], train: trainFile, valid: validFile, steps: 6, evalEvery: 2, lr: 1e-2 }, run);
    expect(r.bestStep).not.toBeNull();
    const base = await openCheckpoint(LLAMA3);
    const out = await readAllTensors(path.join(run, 'model', 'model.safetensors'));
    const mask = JSON.parse(readFileSync(masks, 'utf8')) as NeuronMask;
    const H = base.config.hiddenSize, I = base.config.intermediateSize;
    let changed = 0;
    for (const [name, info] of base.tensors) {
      const got = out.get(name)!;
      expect(got.info.dtype).toBe(info.dtype);
      const a = Buffer.from(readFileSync(info.file).subarray(info.byteOffset, info.byteOffset + info.byteLength));
      const b = Buffer.from((got.data as Uint16Array).buffer, (got.data as Uint16Array).byteOffset, info.byteLength);
      const m = /^model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$/.exec(name);
      if (!m) { expect(a.equals(b), name).toBe(true); continue; }
      const l = Number(m[1]);
      const sel = new Set([...mask.languages['mt']![l]!, ...mask.languages['en']![l]!]);
      for (let i = 0; i < info.byteLength / 2; i++) {
        const [row, col] = m[2] === 'down' ? [Math.floor(i / I), i % I] : [Math.floor(i / H), i % H];
        const neuron = m[2] === 'down' ? col : row;
        const same = a.readUInt16LE(2 * i) === b.readUInt16LE(2 * i);
        if (!sel.has(neuron)) expect(same, `${name}[${row},${col}] outside the selection`).toBe(true);
        else if (!same) changed++;
      }
    }
    expect(changed).toBeGreaterThan(0);
    // The delta holds only the selected rows / columns.
    const delta = JSON.parse(readFileSync(path.join(run, 'delta.json'), 'utf8')) as { tensors: { mode: string }[]; trainableParameters: number };
    expect(delta.tensors.every((t) => t.mode === 'rows' || t.mode === 'cols')).toBe(true);
    expect(delta.trainableParameters).toBe(r.trainableParameters);
    // The written checkpoint (trained values rounded to BF16) is loadable and close to the best validation loss.
    const loss = await fileLoss(path.join(run, 'model'), validFile);
    console.log(`checkpoint loss ${loss.toFixed(6)} vs best validation loss ${r.bestValid!.toFixed(6)} (trained rows rounded to BF16)`);
    expect(Math.abs(loss - r.bestValid!)).toBeLessThan(2e-2);
  }, 120_000);

  it('a BF16 model: rounding the checkpoint is reported, and --save-dtype / delta apply --dtype f32 keep the trained values (the checkpoint then scores the best validation loss)', async () => {
    const run = path.join(tmp, 'run-llama3-f32');
    const o = { ...fast, method: 'full' as const, train: trainFile, valid: validFile, steps: 3, evalEvery: 3, lr: 1e-5 };
    const r = await finetune(LLAMA3, o, run);
    // at lr 1e-5 most changes are below a BF16 step: the stored checkpoint loses them, and says so
    expect(r.written!.dtypes).toEqual(['BF16']);
    expect(r.written!.changed).toBeGreaterThan(0);
    expect(r.written!.roundedAway / r.written!.changed).toBeGreaterThan(0.1);
    expect(r.written!.warning).toMatch(/^\d+% of the \d+ values the training changed round back to the base model's BF16 values in .*--save-dtype f32/);
    const loss = (dir: string) => fileLoss(dir, validFile);
    const stored = await loss(path.join(run, 'model'));
    const f32 = path.join(tmp, 'applied-f32');
    const applied = await applyDelta(LLAMA3, path.join(run, 'delta.safetensors'), f32, { dtype: 'f32' });
    expect([applied.dtypes, applied.roundedAway]).toEqual([['F32'], 0]);
    expect(applied.changed).toBe(r.written!.changed);
    const exact = await loss(f32);
    console.log(`best valid ${r.bestValid!.toFixed(8)}; checkpoint in BF16 ${stored.toFixed(8)}, in float32 ${exact.toFixed(8)}`);
    expect(Math.abs(exact - r.bestValid!)).toBeLessThan(1e-5);
    expect(Math.abs(stored - r.bestValid!)).toBeGreaterThan(Math.abs(exact - r.bestValid!));
    // the run's own checkpoint with --save-dtype f32 is that model
    const run2 = path.join(tmp, 'run-llama3-f32-save');
    const r2 = await finetune(LLAMA3, { ...o, saveDtype: 'f32' }, run2);
    expect([r2.written!.dtypes, r2.written!.roundedAway, r2.written!.warning]).toEqual([['F32'], 0, null]);
    expect(readFileSync(path.join(run2, 'model', 'model.safetensors')).equals(readFileSync(path.join(f32, 'model.safetensors')))).toBe(true);
    await expect(finetune(LLAMA3, { ...o, saveDtype: 'f16' as 'f32' }, path.join(tmp, 'bad-dtype'))).rejects.toThrow(/--save-dtype must be stored or f32, got 'f16'/);
    // eval --delta: the stored merge warns; --delta-dtype f32 evaluates the float32 model, under its own variant name
    const textDir = path.join(tmp, 'ppl-f32');
    mkdirSync(textDir, { recursive: true });
    copyFileSync(validFile, path.join(textDir, 'en.txt'));
    const ev = async (...extra: string[]) => {
      const res = await runCli('eval', LLAMA3, '--task', 'ppl', '--text', textDir, '--langs', 'en', '--delta', path.join(run, 'delta.safetensors'), ...extra,
        '--out', path.join(tmp, 'res-f32'), '--threads', '2', '--device', 'cpu', '--json');
      expect(res.code, res.stderr).toBe(0);
      return { result: JSON.parse(res.stdout).results[0], stderr: res.stderr };
    };
    const evStored = await ev(), evF32 = await ev('--delta-dtype', 'f32');
    // the run folder itself names its delta (it was read as a checkpoint: "cannot read …/config.json")
    const viaRun = await runCli('eval', LLAMA3, '--task', 'ppl', '--text', textDir, '--langs', 'en', '--delta', run, '--out', path.join(tmp, 'res-f32-run'), '--threads', '2', '--device', 'cpu', '--json');
    expect(viaRun.code, viaRun.stderr).toBe(0);
    expect(JSON.parse(viaRun.stdout).results[0].metrics.mean_nll).toBe(evStored.result.metrics.mean_nll);
    expect(evStored.stderr).toMatch(/warning: \d+% of the \d+ values .*--delta-dtype f32/);
    expect(evF32.stderr).not.toMatch(/warning/);
    expect([evStored.result.variant.name, evF32.result.variant.name]).toEqual(['delta-run-llama3-f32', 'delta-run-llama3-f32-f32']);
    const direct = await runCli('eval', f32, '--task', 'ppl', '--text', textDir, '--langs', 'en', '--variant', 'applied', '--out', path.join(tmp, 'res-f32'), '--threads', '2', '--device', 'cpu', '--json');
    expect(evF32.result.metrics.mean_nll).toBe(JSON.parse(direct.stdout).results[0].metrics.mean_nll);
    // the float32 merge is still the base model for its masks (its identity records the widened tensors' dtypes)
    const baseId = modelIdentity(await openCheckpoint(LLAMA3)).fingerprint;
    expect(modelIdentity(await openCheckpoint(f32)).fingerprint).toBe(baseId);
    expect(modelIdentity(await openCheckpoint(path.join(run2, 'model'))).fingerprint).toBe(baseId);
    const mask = await maskFor(LLAMA3, 'mask-f32.json');
    const withMask = await ev('--delta-dtype', 'f32', '--intervene', `deactivate:${mask}:mt`);
    expect(withMask.result.variant.name).toMatch(/^delta-run-llama3-f32-f32\+intervene-deactivate:/);
    expect((await runCli('eval', LLAMA3, '--task', 'ppl', '--text', textDir, '--langs', 'en', '--delta-dtype', 'f32', '--out', path.join(tmp, 'res-f32'))).stderr)
      .toMatch(/--delta-dtype needs --delta/);
    const bf16 = await runCli('eval', LLAMA3, '--task', 'ppl', '--text', textDir, '--langs', 'en', '--delta', path.join(run, 'delta.safetensors'), '--delta-dtype', 'f32',
      '--compute', 'bf16', '--device', 'cpu', '--threads', '2', '--out', path.join(tmp, 'res-f32-bf16'));
    expect(bf16.stderr).toMatch(/warning: --delta-dtype f32 under --compute bf16 .*--compute f32 evaluates them/);
  }, 120_000);

  it('a killed and resumed run ends bit-identical to an uninterrupted one', async () => {
    const masks = await maskFor(STORIES, 'mask-resume.json');
    const o = { ...fast, method: 'neurons' as const, masks, langs: ['mt'], train: trainFile, valid: validFile, steps: 6, evalEvery: 2, saveEvery: 2, lr: 5e-3, accum: 2, warmup: 2, schedule: 'cosine' as const };
    const a = path.join(tmp, 'run-a'), b = path.join(tmp, 'run-b');
    const whole = await finetune(STORIES, o, a);
    const part = await finetune(STORIES, o, b, { stopAfterStep: 4 });
    expect(part.steps).toBe(4);
    await expect(finetune(STORIES, o, b)).rejects.toThrow(/already holds a run/);
    const rest = await resume(b);
    // the losses reported are the run's, not this call's (a resume from step 4 starts at step 5)
    expect([rest.firstLoss, rest.lastLoss]).toEqual([whole.firstLoss, whole.lastLoss]);
    // resuming a finished run trains nothing and still reports them
    const again = await resume(b);
    expect([again.steps, again.firstLoss, again.lastLoss]).toEqual([6, whole.firstLoss, whole.lastLoss]);
    for (const f of ['delta.safetensors', 'state/state.safetensors']) {
      const x = await readAllTensors(path.join(a, f)), y = await readAllTensors(path.join(b, f));
      expect([...y.keys()].sort()).toEqual([...x.keys()].sort());
      for (const [k, v] of x) expect(Buffer.from((y.get(k)!.data as Float32Array).buffer).equals(Buffer.from((v.data as Float32Array).buffer)), k).toBe(true);
    }
    // The log too (timings aside): the lines after the saved step were dropped and written again.
    const la = readFileSync(path.join(a, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => { const e = JSON.parse(l); delete e.tokensPerSecond; delete e.seconds; return e; });
    const lb = readFileSync(path.join(b, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => { const e = JSON.parse(l); delete e.tokensPerSecond; delete e.seconds; return e; });
    expect(lb).toEqual(la);
  }, 120_000);

  it('refuses bad input with clear errors and overwrites nothing', async () => {
    const otherMask = await maskFor(LLAMA3, 'mask-other.json');
    await expect(finetune(STORIES, { ...fast, method: 'neurons', masks: otherMask, langs: ['mt'], train: trainFile }, path.join(tmp, 'bad1')))
      .rejects.toThrow(/mask was made for tiny-llama3/);
    const empty = path.join(tmp, 'empty.txt');
    writeFileSync(empty, '\n\n');
    await expect(finetune(STORIES, { ...fast, method: 'full', train: empty }, path.join(tmp, 'bad2'))).rejects.toThrow(/no text to train on/);
    const masks = await maskFor(STORIES, 'mask-bad.json');
    await expect(finetune(STORIES, { ...fast, method: 'neurons', masks, langs: ['xx'], train: trainFile }, path.join(tmp, 'bad3'))).rejects.toThrow(/unknown language "xx"/);
    // CLI: a non-numeric learning rate.
    const err: string[] = [];
    const w = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => { err.push(String(s)); return true; }) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main(['node', 'langneurons', 'finetune', STORIES, '--method', 'full', '--train', trainFile, '--out', path.join(tmp, 'bad4'), '--lr', 'fast']);
    } finally {
      process.stderr.write = w;
    }
    expect(code).toBe(1);
    expect(err.join('')).toMatch(/--lr must be a number, got 'fast'/);
    await expect(fsp.access(path.join(tmp, 'bad4'))).rejects.toThrow();
    // A run directory from a different run: its run.json names another model.
    const run = path.join(tmp, 'run-full');
    const before = readFileSync(path.join(run, 'run.json'), 'utf8');
    const stateBefore = readFileSync(path.join(run, 'state', 'state.safetensors'));
    const forged = JSON.parse(before);
    forged.model.dir = LLAMA3;
    writeFileSync(path.join(run, 'run.json'), JSON.stringify(forged));
    await expect(resume(run)).rejects.toThrow(/the run was made with stories260k/);
    expect(readFileSync(path.join(run, 'state', 'state.safetensors')).equals(stateBefore)).toBe(true);
    writeFileSync(path.join(run, 'run.json'), before);
    await expect(resume(path.join(tmp, 'nowhere'))).rejects.toThrow(/not a fine-tuning run directory/);
    // killed while reading its data, before run.json: nothing to resume, and the message says how to start it
    const early = path.join(tmp, 'killed-early');
    mkdirSync(early);
    writeFileSync(path.join(early, '.langneurons.lock'), '');
    await expect(resume(early)).rejects.toThrow(/killed-early: the run was stopped before it started \(no run\.json\): start it again with the same finetune <model-dir> … --out /);
  }, 120_000);

  it('CLI: finetune --method neurons, then delta apply reproduces the run\'s checkpoint (F32, exact)', async () => {
    const masks = await maskFor(STORIES, 'mask-cli.json');
    const run = path.join(tmp, 'run-cli'), merged = path.join(tmp, 'merged');
    const quiet = ['--json'];
    const out: string[] = [];
    const w = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
    let c1: number, c2: number;
    try {
      c1 = await main(['node', 'langneurons', 'finetune', STORIES, '--method', 'neurons', '--masks', masks, '--lang', 'mt', '--train', trainFile,
        '--valid', validFile, '--out', run, '--chunk', '64', '--steps', '4', '--eval-every', '2', '--lr', '1e-2', ...quiet]);
      c2 = await main(['node', 'langneurons', 'delta', 'apply', STORIES, path.join(run, 'delta.safetensors'), '--out', merged, ...quiet]);
    } finally {
      process.stdout.write = w;
    }
    expect([c1, c2]).toEqual([0, 0]);
    expect(readFileSync(path.join(merged, 'model.safetensors')).equals(readFileSync(path.join(run, 'model', 'model.safetensors')))).toBe(true);
    const res = JSON.parse(out[0]!) as { bestValid: number };
    const loss = await fileLoss(merged, validFile);
    console.log(`merged checkpoint loss ${loss} vs best validation loss ${res.bestValid} (rel ${(Math.abs(loss - res.bestValid) / res.bestValid).toExponential(2)})`);
    expect(Math.abs(loss - res.bestValid) / res.bestValid).toBeLessThan(1e-5);
    await expect(main(['node', 'langneurons', 'delta', 'apply', STORIES, path.join(run, 'delta.safetensors'), '--out', merged, '--json'])).resolves.toBe(1);
  }, 120_000);

  it('delta apply never writes over files it did not write: a user\'s files refused untouched, a killed merge\'s copies taken over', async () => {
    const delta = path.join(tmp, 'run-cli', 'delta.safetensors');  // from the test above
    const apply = (out: string) => main(['node', 'langneurons', 'delta', 'apply', STORIES, delta, '--out', out, '--json']);
    const err: string[] = [];
    const w = process.stderr.write.bind(process.stderr), wo = process.stdout.write.bind(process.stdout);
    process.stderr.write = ((s: string) => { err.push(String(s)); return true; }) as typeof process.stderr.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    const user = path.join(tmp, 'user-folder'), killed = path.join(tmp, 'killed-merge');
    let codes: number[];
    try {
      mkdirSync(user);
      writeFileSync(path.join(user, 'config.json'), '{"mine": 1}');
      writeFileSync(path.join(user, 'notes.txt'), 'keep');
      mkdirSync(killed);  // what a merge killed before writing model.safetensors leaves: the base's config, copied
      copyFileSync(path.join(STORIES, 'config.json'), path.join(killed, 'config.json'));
      codes = [await apply(user), await apply(killed), await apply(STORIES)];
    } finally {
      process.stderr.write = w;
      process.stdout.write = wo;
    }
    expect(codes).toEqual([1, 0, 1]);
    expect(err[0]).toMatch(/user-folder: is not empty \(holds config\.json, notes\.txt\)/);
    expect(readFileSync(path.join(user, 'config.json'), 'utf8')).toBe('{"mine": 1}');
    expect(existsSync(path.join(user, 'model.safetensors'))).toBe(false);
    expect(readFileSync(path.join(killed, 'model.safetensors')).equals(readFileSync(path.join(tmp, 'merged', 'model.safetensors')))).toBe(true);
    expect(readdirSync(killed).sort()).toEqual(readdirSync(path.join(tmp, 'merged')).sort());
    expect(err.join('')).toMatch(/the output folder is the base model folder/);
    expect(existsSync(path.join(STORIES, '.langneurons.lock'))).toBe(false);
  }, 120_000);

  it('a merge writes the model\'s weights last: a folder holding model.safetensors holds the whole model (a kill in between left one that was refused)', async () => {
    const out = path.join(tmp, 'weights-last');
    const seen: string[][] = [];
    const weights = { 'x.weight': { dtype: 'F32' as const, shape: [2], produce: () => { seen.push(readdirSync(out).filter((n) => !n.includes('.tmp-')).sort()); return Float32Array.of(1, 2); } } };
    await writeCheckpoint(STORIES, out, weights);
    const copied = readdirSync(STORIES).filter((n) => n !== 'model.safetensors' && readdirSync(out).includes(n)).sort();
    expect(copied).toContain('config.json');
    expect(seen).toEqual([copied]); // every config and tokenizer file was in place when the weights were written
    expect(readdirSync(out).sort()).toEqual([...copied, 'model.safetensors'].sort());
  });

  it('a run refused before it starts leaves no folder behind; a folder that was there stays', async () => {
    const masks = await maskFor(STORIES, 'mask-refused.json');
    const fresh = path.join(tmp, 'refused-run'), existing = path.join(tmp, 'refused-existing');
    mkdirSync(existing);
    for (const dir of [fresh, existing])  // neurons without --lang: refused once the mask is read, after the folder is taken
      await expect(finetune(STORIES, { method: 'neurons', masks, train: trainFile, steps: 1, ...fast } as never, dir)).rejects.toThrow(/needs --lang/);
    expect(existsSync(fresh)).toBe(false);
    expect(readdirSync(existing)).toEqual([]);
  }, 60_000);

  it('finetune --resume refuses options it would otherwise drop (run.json decides), naming them', async () => {
    const run = path.join(tmp, 'run-cli');  // from the tests above
    const before = readFileSync(path.join(run, 'run.json'));
    const err: string[] = [];
    const w = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => { err.push(String(s)); return true; }) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main(['node', 'langneurons', 'finetune', '--resume', run, '--steps', '40', '--lr', '1', '--quiet']);
    } finally {
      process.stderr.write = w;
    }
    expect(code).toBe(1);
    expect(err.join('')).toMatch(/--lr, --steps cannot be changed/);
    expect(readFileSync(path.join(run, 'run.json')).equals(before)).toBe(true);
  }, 60_000);
});
