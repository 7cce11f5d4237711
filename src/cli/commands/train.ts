import { promises as fsp } from 'node:fs';
import type { Command } from 'commander';

import { LangneuronsError } from '../../errors.js';
import { parseLowResource } from '../../pretrain/corpus.js';
import { pretrain, type PretrainOptions } from '../../pretrain/train.js';
import { withoutBom } from '../../io/text.js';
import { printResult } from '../output.js';

interface TrainCli {
  config?: string; layers?: string; hidden?: string; heads?: string; kvHeads?: string; ffn?: string; vocab?: string;
  tokenizerVocab?: string; langs?: string; lowResource?: string; heldout?: string; chunk?: string; batch?: string; accum?: string;
  steps?: string; lr?: string; warmup?: string; weightDecay?: string; clip?: string; beta2?: string; seed?: string; threads?: string;
  dtype?: string; saveEvery?: string; out?: string; force?: boolean; work?: string; name?: string; json?: boolean; quiet?: boolean;
}

const NUMERIC: [keyof PretrainOptions, keyof TrainCli, string][] = [
  ['layers', 'layers', 'layers'], ['hidden', 'hidden', 'hidden'], ['heads', 'heads', 'heads'], ['kvHeads', 'kvHeads', 'kv-heads'],
  ['ffn', 'ffn', 'ffn'], ['tokenizerVocab', 'tokenizerVocab', 'tokenizer-vocab'], ['chunk', 'chunk', 'chunk'], ['batch', 'batch', 'batch'],
  ['accum', 'accum', 'accum'], ['steps', 'steps', 'steps'], ['lr', 'lr', 'lr'], ['warmup', 'warmup', 'warmup'],
  ['weightDecay', 'weightDecay', 'weight-decay'], ['clip', 'clip', 'clip'], ['beta2', 'beta2', 'beta2'], ['seed', 'seed', 'seed'], ['threads', 'threads', 'threads'],
  ['saveEvery', 'saveEvery', 'save-every'],
];

function num(name: string, v: string): number {
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new LangneuronsError('E_OPTIONS', `--${name} must be a number, got '${v}'`, { field: name });
  return x;
}

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

/** --config file (JSON with the option names in camelCase or as flags), then the flags on top. */
async function options(o: TrainCli, argv: string[]): Promise<PretrainOptions> {
  let base: Record<string, unknown> = {};
  if (o.config) {
    try {
      base = JSON.parse(withoutBom(await fsp.readFile(o.config, 'utf8'))) as Record<string, unknown>;
    } catch (e) {
      throw new LangneuronsError('E_OPTIONS', `${o.config}: cannot read the --config JSON: ${(e as Error).message}`, { file: o.config });
    }
    base = Object.fromEntries(Object.entries(base).map(([k, v]) => [k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()), v]));
  }
  const opts = { ...base } as unknown as PretrainOptions & Record<string, unknown>;
  if (o.vocab !== undefined && o.tokenizerVocab === undefined) o.tokenizerVocab = o.vocab;
  for (const [key, cli, flag] of NUMERIC) {
    const v = o[cli];
    if (typeof v === 'string') (opts as Record<string, unknown>)[key] = num(flag, v);
  }
  if (o.langs) opts.langs = list(o.langs);
  else if (typeof base['langs'] === 'string') opts.langs = list(base['langs']);
  const low = o.lowResource ?? (typeof base['lowResource'] === 'string' ? base['lowResource'] : undefined);
  if (low !== undefined) opts.lowResource = low === 'none' ? null : parseLowResource(low);
  if (o.heldout) opts.heldoutArticles = list(o.heldout).map((x) => num('heldout', x));
  if (o.dtype) opts.dtype = o.dtype as 'f32' | 'bf16';
  if (o.out) opts.out = o.out;
  if (o.work) opts.work = o.work;
  if (o.name) opts.name = o.name;
  if (o.force) opts.force = true;
  if (!Array.isArray(opts.langs) || opts.langs.length === 0) throw new LangneuronsError('E_OPTIONS', 'train needs --langs <ids> (UDHR language ids, comma-separated)', { field: 'langs' });
  if (!opts.out) throw new LangneuronsError('E_OPTIONS', 'train needs --out <dir>', { field: 'out' });
  const required = new Set<keyof PretrainOptions>(['layers', 'hidden', 'heads', 'kvHeads', 'ffn', 'tokenizerVocab', 'steps']);
  for (const [key, , flag] of NUMERIC.filter(([k]) => required.has(k)))
    if (opts[key] === undefined) throw new LangneuronsError('E_OPTIONS', `train needs --${flag} (or "${key}" in --config)`, { field: flag });
  opts.command = ['langneurons', ...argv].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
  return opts;
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('make a small multilingual Llama from scratch on the UDHR: data, byte-level BPE tokenizer, random init, training of every parameter, a Hugging Face folder with recipe.json')
    .option('--config <json>', 'JSON file with any of these options (camelCase or flag names); flags override it')
    .option('--layers <n>', 'transformer layers')
    .option('--hidden <n>', 'hidden size')
    .option('--heads <n>', 'attention heads')
    .option('--kv-heads <n>', 'key/value heads (GQA)')
    .option('--ffn <n>', 'MLP intermediate size')
    .option('--tokenizer-vocab <n>', 'BPE vocabulary: special tokens + 256 bytes + merges')
    .option('--vocab <n>', 'same as --tokenizer-vocab')
    .option('--langs <ids>', 'UDHR language ids, comma-separated (e.g. en,de,ru,zh)')
    .option('--low-resource <lang:n>', 'one language that keeps only its first n train articles (e.g. mt:3)')
    .option('--heldout <articles>', 'held-out article numbers (default 25,26,27,28,29,30)')
    .option('--chunk <n>', 'training context in tokens (256)')
    .option('--batch <n>', 'chunks per micro-batch (8)')
    .option('--accum <n>', 'micro-batches per step (1)')
    .option('--steps <n>', 'optimizer steps')
    .option('--lr <x>', 'peak learning rate (2e-3), cosine schedule to 0')
    .option('--warmup <n>', 'linear warm-up steps (0)')
    .option('--weight-decay <x>', 'AdamW weight decay (0.01)')
    .option('--clip <x>', 'max gradient norm (1.0)')
    .option('--beta2 <x>', 'AdamW beta2 (0.95)')
    .option('--seed <n>', 'seed of data order, tokenizer input order and initialization (0)')
    .option('--threads <n>', 'threads (2)')
    .option('--dtype <d>', 'stored weights: bf16 (default) or f32')
    .option('--save-every <n>', 'save the resumable state every n steps (50)')
    .option('--out <dir>', 'output model folder (written atomically when done; an existing one only if train made it, with --force)')
    .option('--force', 'replace --out when it holds a model made by train')
    .option('--work <dir>', 'work folder with each step\'s output, for resuming (default <out>.work)')
    .option('--name <s>', 'model name for README.md')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress lines')
    .action(async (o: TrainCli, cmd: Command) => {
      const raw = (cmd.parent as unknown as { rawArgs?: string[] } | null)?.rawArgs ?? process.argv;
      const opts = await options(o, raw.slice(2));
      const quiet = o.quiet || o.json;
      const say = quiet ? undefined : (m: string) => process.stderr.write(`train: ${m}\n`);
      const onStep = quiet ? undefined : (e: Record<string, unknown>) => {
        const s = e['step'] as number;
        if (typeof e['loss'] !== 'number') return;
        if (s % 10 === 0 || s === 1) process.stderr.write(`step ${s} loss ${(e['loss'] as number).toFixed(4)} lr ${(e['lr'] as number).toExponential(2)} ${Math.round(e['tokensPerSecond'] as number)} tok/s\n`);
      };
      const r = await pretrain(opts, say, onStep);
      printResult(o, r, () => {
        const lines = r.heldout.map((h) => `  ${h.lang.padEnd(8)} held-out ${h.meanNll.toFixed(3)}  train ${r.train.find((t) => t.lang === h.lang)!.meanNll.toFixed(3)}`);
        return `model          ${r.out} (${(r.bytes / 1e6).toFixed(2)} MB, ${r.parameters} parameters)\nsteps          ${r.steps} in ${Math.round(r.trainSeconds)} s (${Math.round(r.tokensPerSecond)} tokens/s)\n` +
          `loss           ${r.firstLoss?.toFixed(4)} -> ${r.lastLoss?.toFixed(4)}\nln(vocab)      ${r.lnVocab.toFixed(3)}\nNLL per language (nats/token):\n${lines.join('\n')}\n`;
      });
    });
}
