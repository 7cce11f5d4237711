import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';

import { LangneuronsError } from '../../errors.js';
import { encodeChatPrompt, requireChatTemplate, type ChatPrompting } from '../../generate/chat.js';
import { generateTokens, type GenerateOptions, type Generation } from '../../generate/generate.js';
import { addInterventionOptions, interventionFromCli, type InterventionCliOptions } from '../../intervene/index.js';
import { addModelOptions, DECODE_BATCH, decodeBatchFor, openModel, type ModelCliOptions } from '../common.js';
import { parseFloatOption, parseIntOption, printResult, Progress } from '../output.js';

interface GenerateCli extends ModelCliOptions, InterventionCliOptions {
  prompt: string[]; promptFile?: string; promptIds?: string; maxNewTokens: number; temperature: number; topK: number;
  topP: number; repetitionPenalty: number; stop: string[]; seed: number; ignoreEos?: boolean; chat?: boolean; system?: string; batch?: number;
}

const collect = (v: string, acc: string[]) => [...acc, v];

export function parseIdList(s: string, field: string): number[] {
  const ids = s.split(/[\s,]+/).filter(Boolean).map(Number);
  if (!ids.length || ids.some((x) => !Number.isInteger(x) || x < 0))
    throw new LangneuronsError('E_OPTIONS', `${field} must be a comma-separated list of token ids, got '${s}'`, { field });
  return ids;
}

export function registerGenerate(program: Command): void {
  addInterventionOptions(addModelOptions(program
    .command('generate <model-dir>')
    .description('generate text (greedy by default; sampling with --temperature)')
    .option('--prompt <text>', 'a prompt (repeat for a batch)', collect, [])
    .option('--prompt-file <file>', 'prompts, one per line')
    .option('--prompt-ids <ids>', 'a prompt given as token ids, e.g. "1,461,401" (no tokenizer needed)')
    .option('--max-new-tokens <n>', 'tokens to generate at most', parseIntOption('--max-new-tokens', 0), 128)
    .option('--temperature <t>', '0 = greedy', parseFloatOption('--temperature', (x) => x >= 0, 'a number >= 0'), 0)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', parseIntOption('--top-k', 0), 0)
    .option('--top-p <p>', 'nucleus sampling mass (1 = off)', parseFloatOption('--top-p', (x) => x > 0 && x <= 1, 'in (0, 1]'), 1)
    .option('--repetition-penalty <r>', 'Hugging Face repetition penalty (1 = off)', parseFloatOption('--repetition-penalty', (x) => x > 0, 'a number > 0'), 1)
    .option('--stop <text>', 'stop string (repeatable); "\\n" stops at a newline', collect, [])
    .option('--seed <n>', 'sampling seed (each prompt samples from its own stream: the same in any --batch)', parseIntOption('--seed', 0, 2 ** 32 - 1), 0)
    .option('--batch <n>', `prompts generated together (default ${DECODE_BATCH.cpu} on the CPU, ${DECODE_BATCH.gpu} on a GPU); ` +
      'without --json each batch is printed as it ends', parseIntOption('--batch', 1))
    .option('--ignore-eos', 'keep generating past EOS tokens')
    .option('--chat', "prompt an instruct model through the checkpoint's chat template (each prompt is a user turn)")
    .option('--system <text>', 'with --chat: a system turn before each prompt')))
    .action(async (dir: string, o: GenerateCli) => {
      const model = await openModel(dir, o);
      let prompts: number[][];
      let texts: string[] = [...o.prompt];
      if (o.promptFile) texts = texts.concat((await readFile(o.promptFile, 'utf8').catch((e: Error) => {
        throw new LangneuronsError('E_IO', `${o.promptFile}: cannot read the prompt file: ${e.message}`, { file: o.promptFile! });
      })).split('\n').filter((l) => l.length > 0));
      if (o.system !== undefined && !o.chat) throw new LangneuronsError('E_OPTIONS', '--system needs --chat', { field: 'system' });
      if (o.chat && o.promptIds) throw new LangneuronsError('E_OPTIONS', '--chat renders text prompts: use --prompt or --prompt-file, not --prompt-ids', { field: 'chat' });
      if (o.promptIds) prompts = [parseIdList(o.promptIds, '--prompt-ids')];
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
      const opts: GenerateOptions = {
        maxNewTokens: o.maxNewTokens, temperature: o.temperature, topK: o.topK, topP: o.topP,
        repetitionPenalty: o.repetitionPenalty, seed: o.seed, stopAtEos: !o.ignoreEos,
        stop: o.stop.map((s) => s.replace(/\\n/g, '\n')),
      };
      const intervene = await interventionFromCli(model, o);
      if (intervene) opts.intervene = intervene;
      // A prompt file may hold thousands of prompts: they run `batch` at a time (one KV cache and prefill per batch),
      // in order, each batch printed as it ends; the random streams follow the prompt's index, not the batching.
      const batch = o.batch ?? decodeBatchFor(model);
      const progress = prompts.length > batch ? new Progress('generate', o) : null;
      const line = (g: Generation, i: number) => (prompts.length > 1 ? `[${i}] ` : '') + (model.tokenizer ? g.text : g.tokens.join(' '));
      const started = performance.now();
      const gens: Generation[] = [];
      progress?.update(0, prompts.length, 'prompts');
      for (let first = 0; first < prompts.length; first += batch) {
        const done = await generateTokens(model, prompts.slice(first, first + batch), { ...opts, firstIndex: first });
        if (!o.json) {
          progress?.clear();
          process.stdout.write(done.map((g, k) => `${line(g, first + k)}\n`).join(''));
        }
        gens.push(...done);
        progress?.update(gens.length, prompts.length, 'prompts');
      }
      progress?.done();
      const seconds = (performance.now() - started) / 1000;
      const newTokens = gens.reduce((n, g) => n + g.tokens.length, 0);
      if (o.json) printResult(o, { model: dir, compute: model.compute, generations: gens, seconds, tokensPerSecond: newTokens / seconds }, () => '');
      if (!o.json) process.stderr.write(`(${newTokens} tokens in ${seconds.toFixed(2)} s, ${(newTokens / seconds).toFixed(1)} tokens/s; finish: ${finishSummary(gens)})\n`);
    });
}

/** "eos" for one prompt; "eos 120, stop 7, length 3" for many (a line per prompt would bury the figures). */
function finishSummary(gens: Generation[]): string {
  if (gens.length <= 8) return gens.map((g) => g.finishReason).join(', ');
  const counts = new Map<string, number>();
  for (const g of gens) counts.set(g.finishReason, (counts.get(g.finishReason) ?? 0) + 1);
  return [...counts].map(([r, n]) => `${r} ${n}`).join(', ');
}
