import type { Command } from 'commander';

import { deviceKind } from '../../engine/device.js';
import { LangneuronsError } from '../../errors.js';
import { encodeChatPrompt, requireChatTemplate, type ChatPrompting } from '../../generate/chat.js';
import { generateTokens, type GenerateOptions, type Generation } from '../../generate/generate.js';
import { generationKey, openGenerations, writeGenerationSummary } from '../../generate/output.js';
import { inputHashes } from '../../eval/inputs.js';
import { withOutputLock } from '../../io/lock.js';
import { readTextFile } from '../../io/text.js';
import { modelFingerprint } from '../../model/fingerprint.js';
import { addInterventionOptions, interventionFromCli, type InterventionCliOptions } from '../../intervene/index.js';
import { addModelOptions, DECODE_BATCH, decodeBatchFor, openModel, type ModelCliOptions } from '../common.js';
import { parseFloatOption, parseIntOption, printResult, Progress } from '../output.js';

interface GenerateCli extends ModelCliOptions, InterventionCliOptions {
  prompt: string[]; promptFile?: string; promptIds?: string; maxNewTokens: number; temperature: number; topK: number;
  topP: number; repetitionPenalty: number; stop: string[]; seed: number; ignoreEos?: boolean; chat?: boolean; system?: string; batch?: number; out?: string;
}

const collect = (v: string, acc: string[]) => [...acc, v];

export function parseIdList(s: string, field: string): number[] {
  const parts = s.split(/[\s,]+/).filter(Boolean);
  if (!parts.length) throw new LangneuronsError('E_OPTIONS', `${field} is empty: give token ids, e.g. "1,461,401"`, { field });
  // (decimal digits only: Number() would also read 0x10 as 16)
  const ids = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : NaN));
  if (ids.some((x) => !Number.isSafeInteger(x)))
    throw new LangneuronsError('E_OPTIONS', `${field} must be a comma-separated list of token ids, got '${s}'`, { field });
  return ids;
}

/** A prompt of a --prompt-file, with its line number (1-based). */
export interface FilePrompt { text: string; line: number }

/**
 * The prompts of a --prompt-file: one per line (ended by \n or \r\n; a leading byte order mark is dropped). Blank
 * and whitespace-only lines are skipped, so each prompt keeps its line number: generations.jsonl records it as
 * `line` (its `index` counts prompts). A file with no prompt is refused.
 */
export async function readPromptFile(file: string): Promise<FilePrompt[]> {
  const prompts: FilePrompt[] = [];
  (await readTextFile(file, 'prompt')).split('\n').forEach((raw, i) => {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.trim()) prompts.push({ text, line: i + 1 });
  });
  if (!prompts.length) throw new LangneuronsError('E_INPUT', `${file}: the prompt file has no prompts (every line is empty)`, { file });
  return prompts;
}

export function registerGenerate(program: Command): void {
  addInterventionOptions(addModelOptions(program
    .command('generate <model-dir>')
    .description('generate text (greedy by default; sampling with --temperature)')
    .option('--prompt <text>', 'a prompt (repeat for a batch)', collect, [])
    .option('--prompt-file <file>', 'prompts, one per line (after the --prompt ones); blank and whitespace-only lines are skipped, ' +
      'and each generation records its prompt\'s line number (`line` in generations.jsonl and --json)')
    .option('--prompt-ids <ids>', 'a prompt given as token ids, e.g. "1,461,401" (no tokenizer needed; not with --prompt or --prompt-file)')
    .option('--max-new-tokens <n>', 'tokens to generate at most', parseIntOption('--max-new-tokens', 0), 128)
    .option('--temperature <t>', '0 = greedy', parseFloatOption('--temperature', (x) => x >= 0, 'a number >= 0'), 0)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', parseIntOption('--top-k', 0), 0)
    .option('--top-p <p>', 'nucleus sampling mass (1 = off)', parseFloatOption('--top-p', (x) => x > 0 && x <= 1, 'in (0, 1]'), 1)
    .option('--repetition-penalty <r>', 'Hugging Face repetition penalty (1 = off)', parseFloatOption('--repetition-penalty', (x) => x > 0, 'a number > 0'), 1)
    .option('--stop <text>', 'stop string (repeatable); "\\n" stops at a newline', collect, [])
    .option('--seed <n>', 'sampling seed (each prompt draws from its own random stream)', parseIntOption('--seed', 0, 2 ** 32 - 1), 0)
    .option('--batch <n>', `sequences decoded together (default ${DECODE_BATCH.cpu} on the CPU; on a GPU up to ${DECODE_BATCH.gpu}, as its free memory ` +
      'allows); a sequence that ends hands its place to the next prompt at the next step', parseIntOption('--batch', 1))
    .option('--out <dir>', 'also write <dir>/generations.jsonl as the generations end (a line per prompt, in prompt order) and ' +
      'run.json at the end; a run stopped part-way resumes where it stopped with the same command')
    .option('--ignore-eos', 'keep generating past EOS tokens')
    .option('--chat', "prompt an instruct model through the checkpoint's chat template (each prompt is a user turn)")
    .option('--system <text>', 'with --chat: a system turn before each prompt')))
    // One run at a time per --out folder (src/io/lock.ts).
    .action(async (dir: string, o: GenerateCli) => (o.out ? withOutputLock(o.out, 'generate', () => generateAction(dir, o)) : generateAction(dir, o)));
}

/** A generation, with its prompt's line when the prompt came from the --prompt-file. */
type PromptGeneration = Generation & { line?: number };

async function generateAction(dir: string, o: GenerateCli): Promise<void> {
  if (o.system !== undefined && !o.chat) throw new LangneuronsError('E_OPTIONS', '--system needs --chat', { field: 'system' });
  if (o.chat && o.promptIds !== undefined) throw new LangneuronsError('E_OPTIONS', '--chat renders text prompts: use --prompt or --prompt-file, not --prompt-ids', { field: 'chat' });
  if (o.promptIds !== undefined && (o.prompt.length > 0 || o.promptFile !== undefined))
    throw new LangneuronsError('E_OPTIONS', `--prompt-ids is a prompt of its own: give it alone, not with ${o.prompt.length ? '--prompt' : '--prompt-file'}`, { field: 'prompt-ids' });
  // (`!== undefined`: an empty --prompt-ids was taken for none, and the model generated from BOS alone)
  const promptIds = o.promptIds === undefined ? undefined : parseIdList(o.promptIds, '--prompt-ids');
  // An empty stop string stops nothing (generateTokens drops it): refused, as steer refuses it, not silently ignored.
  const stop = o.stop.map((s) => s.replace(/\\n/g, '\n'));
  if (stop.some((s) => s === '')) throw new LangneuronsError('E_OPTIONS', '--stop: a stop string must not be empty', { field: '--stop' });
  // Prompt i's line in the --prompt-file (undefined for a --prompt).
  const promptLines: (number | undefined)[] = o.prompt.map(() => undefined);
  let texts: string[] = [...o.prompt];
  if (o.promptFile) {
    const fromFile = await readPromptFile(o.promptFile);
    texts = texts.concat(fromFile.map((p) => p.text));
    promptLines.push(...fromFile.map((p) => p.line));
  }
  const model = await openModel(dir, o);
  let prompts: number[][];
  if (promptIds) prompts = [promptIds];
  else {
    if (!texts.length) texts = [''];
    const tok = model.requireTokenizer();
    if (o.chat) {
      const chat: ChatPrompting = { template: await requireChatTemplate(dir, '--chat'), ...(o.system !== undefined ? { system: o.system } : {}) };
      prompts = texts.map((t) => encodeChatPrompt(chat, tok, t));
    } else {
      prompts = texts.map((t) => tok.encode(t));
    }
  }
  // Refused here naming where the prompt came from (the generator can only name its index in the call).
  prompts.forEach((p, i) => {
    if (p.length <= model.contextLength) return;
    const where = promptIds ? '--prompt-ids' : promptLines[i] !== undefined ? `${o.promptFile}:${promptLines[i]}` : `--prompt ${i + 1}`;
    throw new LangneuronsError('E_INPUT', `${where}: the prompt has ${p.length} tokens, longer than the model's context of ${model.contextLength}`,
      promptLines[i] !== undefined ? { file: o.promptFile! } : { field: promptIds ? 'prompt-ids' : 'prompt' });
  });
  const opts: GenerateOptions = {
    maxNewTokens: o.maxNewTokens, temperature: o.temperature, topK: o.topK, topP: o.topP,
    repetitionPenalty: o.repetitionPenalty, seed: o.seed, stopAtEos: !o.ignoreEos,
    stop,
  };
  const intervene = await interventionFromCli(model, o);
  if (intervene) opts.intervene = intervene;
  // A prompt file may hold thousands of prompts: at most `batch` hold a KV-cache slot at a time; the random streams
  // follow the prompt's index, not the batching.
  const batch = o.batch ?? decodeBatchFor(model);
  const progress = prompts.length > batch ? new Progress('generate', o) : null;
  const line = (g: Generation, i: number) => (prompts.length > 1 ? `[${i}] ` : '') + (model.tokenizer ? g.text : g.tokens.join(' '));
  const started = performance.now();
  const gens: PromptGeneration[] = [];
  const saved = o.out ? await openGenerations(o.out, await runKey(dir, model, prompts, promptLines, opts, o), model.engineKind(),
    (m) => process.stderr.write(`langneurons: ${m}\n`)) : null;
  if (saved) {
    gens.push(...saved.done.map(({ index: _, ...g }) => g));
    if (gens.length && !o.json) {
      process.stdout.write(gens.map((g, i) => `${line(g, i)}\n`).join(''));
      process.stderr.write(`(resumed: ${gens.length} of ${prompts.length} prompts were done in ${saved.file})\n`);
    }
  }
  const resumed = gens.length;
  progress?.update(resumed, prompts.length, 'prompts');
  // Continuously batched (up to `batch` sequences at once): generations end out of order; each is printed and written
  // once every earlier prompt's is, so the output and generations.jsonl stay in prompt order.
  const ended = new Map<number, PromptGeneration>();
  const flush = async () => {
    const lines: { index: number; g: PromptGeneration }[] = [];
    for (let i = gens.length; ended.has(i); i++) lines.push({ index: i, g: ended.get(i)! });
    if (!lines.length) return;
    for (const { index } of lines) ended.delete(index);
    gens.push(...lines.map((l) => l.g));
    await saved?.append(lines.map(({ index, g }) => ({ index, ...g })));
    if (!o.json) {
      progress?.clear();
      process.stdout.write(lines.map(({ index, g }) => `${line(g, index)}\n`).join(''));
    }
    progress?.update(gens.length, prompts.length, 'prompts');
  };
  let flushing = Promise.resolve();
  await generateTokens(model, prompts.slice(resumed), {
    ...opts, firstIndex: resumed, concurrency: batch,
    // One flush after another: two generations ending in one step must not append concurrently.
    onGeneration: (i, g) => {
      const at = promptLines[resumed + i];
      ended.set(resumed + i, at === undefined ? g : { ...g, line: at });
      flushing = flushing.then(flush);
      return flushing;
    },
  });
  progress?.done();
  const seconds = (performance.now() - started) / 1000;
  const newTokens = gens.slice(resumed).reduce((n, g) => n + g.tokens.length, 0);
  const summary = { model: dir, compute: model.compute, device: model.device, prompts: prompts.length, resumed, seconds, tokensPerSecond: newTokens / seconds };
  if (o.out) await writeGenerationSummary(o.out, { ...summary, finish: finishSummary(gens) });
  if (o.json) printResult(o, { ...summary, ...(saved ? { out: saved.file } : {}), generations: gens }, () => '');
  else process.stderr.write(`(${newTokens} tokens in ${seconds.toFixed(2)} s, ${(newTokens / seconds).toFixed(1)} tokens/s; finish: ${finishSummary(gens)}` +
    `${saved ? `; written to ${saved.file}` : ''})\n`);
}

/** What the generations depend on: the model's files, the prompts' ids (and their lines in a --prompt-file, which the
 *  file's lines record), the settings, the intervention's inputs, the device and compute mode (a GPU's bf16 numbers
 *  differ from the CPU's f32). */
async function runKey(dir: string, model: { device: string; compute: string }, prompts: number[][], lines: (number | undefined)[],
  opts: GenerateOptions, o: GenerateCli): Promise<string> {
  const specs = [...(o.intervene ?? []), ...(o.interveneFile ? [`file:${o.interveneFile}`] : [])];
  return generationKey({
    model: await modelFingerprint(dir), prompts, ...(o.promptFile ? { promptLines: lines.map((l) => l ?? null) } : {}),
    settings: { maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, topK: opts.topK, topP: opts.topP,
      repetitionPenalty: opts.repetitionPenalty, seed: opts.seed, stopAtEos: opts.stopAtEos, stop: opts.stop },
    intervene: specs, stats: o.stats ?? null, inputs: await inputHashes([...specs, ...(o.interveneFile ? [o.interveneFile] : []), ...(o.stats ? [o.stats] : [])]),
    device: deviceKind(model.device), compute: model.compute,
  });
}

/** "eos" for one prompt; "eos 120, stop 7, length 3" for many (a line per prompt would bury the figures). */
function finishSummary(gens: Generation[]): string {
  if (gens.length <= 8) return gens.map((g) => g.finishReason).join(', ');
  const counts = new Map<string, number>();
  for (const g of gens) counts.set(g.finishReason, (counts.get(g.finishReason) ?? 0) + 1);
  return [...counts].map(([r, n]) => `${r} ${n}`).join(', ');
}
