import type { Command } from 'commander';

import { LangneuronsError } from '../../errors.js';
import { parseLowResource } from '../../pretrain/corpus.js';
import { checkPretrainOptions, pretrain, type PretrainOptions } from '../../pretrain/train.js';
import { readTextFile } from '../../io/text.js';
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

/** What a --config key holds: its option, the flag it stands for, and the JSON type it must have. */
interface ConfigKey {
  option: keyof PretrainOptions;
  flag: string;
  kind: 'number' | 'string' | 'boolean' | 'langs' | 'heldout' | 'lowResource';
}

/**
 * The keys a --config file may hold, in camelCase (a flag's spelling, `kv-heads`, is turned into `kvHeads` first).
 * Every flag but --config, --json and --quiet (how this invocation prints, not what it makes); `heldoutArticles` is
 * the name recipe.json records for --heldout.
 */
const CONFIG_KEYS: Record<string, ConfigKey> = {
  ...Object.fromEntries(NUMERIC.map(([option, cli, flag]) => [cli, { option, flag, kind: 'number' }])),
  vocab: { option: 'tokenizerVocab', flag: 'tokenizer-vocab', kind: 'number' },
  langs: { option: 'langs', flag: 'langs', kind: 'langs' },
  lowResource: { option: 'lowResource', flag: 'low-resource', kind: 'lowResource' },
  heldout: { option: 'heldoutArticles', flag: 'heldout', kind: 'heldout' },
  heldoutArticles: { option: 'heldoutArticles', flag: 'heldout', kind: 'heldout' },
  dtype: { option: 'dtype', flag: 'dtype', kind: 'string' },
  out: { option: 'out', flag: 'out', kind: 'string' },
  work: { option: 'work', flag: 'work', kind: 'string' },
  name: { option: 'name', flag: 'name', kind: 'string' },
  force: { option: 'force', flag: 'force', kind: 'boolean' },
};

const camelCase = (key: string) => key.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** One key's value as its option takes it; errors name the file and the key. */
function configValue(file: string, key: string, spec: ConfigKey, v: unknown): unknown {
  const bad = (what: string) => new LangneuronsError('E_OPTIONS', `${file}: "${key}" must be ${what}, got ${JSON.stringify(v)}`, { file, field: key });
  switch (spec.kind) {
    case 'number':
      if (typeof v !== 'number') throw bad('a number');
      return v;
    case 'string':
      if (typeof v !== 'string' || v.trim() === '') throw bad('a non-empty string');
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw bad('true or false');
      return v;
    case 'langs': {
      const ids = typeof v === 'string' ? list(v) : v;
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => typeof x === 'string' && x.trim() !== '')) throw bad('UDHR language ids (["en", "ru"] or "en,ru")');
      return ids.map((x: string) => x.trim());
    }
    case 'heldout': {
      const articles = typeof v === 'string' ? list(v).map(Number) : v;
      if (!Array.isArray(articles) || !articles.every((x) => typeof x === 'number' && Number.isFinite(x))) throw bad('article numbers ([25, 26] or "25,26")');
      return articles;
    }
    case 'lowResource': {
      if (v === null || v === 'none') return null;
      if (typeof v === 'string') {
        try {
          return parseLowResource(v);
        } catch {
          throw bad('"<lang>:<train articles>" (e.g. "mt:3"), {"lang": "mt", "articles": 3}, "none" or null');
        }
      }
      const o = (typeof v === 'object' && !Array.isArray(v) ? v : {}) as Record<string, unknown>;
      if (Object.keys(o).sort().join() !== 'articles,lang' || typeof o['lang'] !== 'string' || typeof o['articles'] !== 'number')
        throw bad('"<lang>:<train articles>" (e.g. "mt:3"), {"lang": "mt", "articles": 3}, "none" or null');
      return { lang: o['lang'], articles: o['articles'] };
    }
  }
}

/**
 * Reads --config: a JSON object whose keys are options (camelCase or flag names). Returns the options and, per flag,
 * the key that gave it (for errors found later, which must name the file and the key too).
 */
async function readConfig(file: string): Promise<{ options: Partial<PretrainOptions>; keyOfFlag: Map<string, string> }> {
  const text = await readTextFile(file, '--config');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LangneuronsError('E_OPTIONS', `${file}: not valid JSON: ${(e as Error).message}`, { file });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new LangneuronsError('E_OPTIONS', `${file}: --config must hold a JSON object of options ({"layers": 2, ...}), got ${Array.isArray(json) ? 'an array' : JSON.stringify(json)}`, { file });
  const options: Record<string, unknown> = {};
  const keyOfFlag = new Map<string, string>();
  const keyOfOption = new Map<string, string>();
  for (const [key, v] of Object.entries(json)) {
    const spec = Object.hasOwn(CONFIG_KEYS, camelCase(key)) ? CONFIG_KEYS[camelCase(key)]! : undefined;
    if (!spec)
      throw new LangneuronsError('E_OPTIONS', `${file}: unknown key "${key}" (the options of train, camelCase or as flags: ${Object.keys(CONFIG_KEYS).join(', ')})`, { file, field: key });
    const earlier = keyOfOption.get(spec.option);
    if (earlier !== undefined)
      throw new LangneuronsError('E_OPTIONS', `${file}: "${earlier}" and "${key}" both give --${spec.flag}; keep one`, { file, field: key });
    keyOfOption.set(spec.option, key);
    keyOfFlag.set(spec.flag, key);
    options[spec.option] = configValue(file, key, spec, v);
  }
  return { options: options as Partial<PretrainOptions>, keyOfFlag };
}

/** An option error about a value from --config, reworded to name the file and the key (`--layers must …` → `"layers" must …`). */
function fromConfig(e: unknown, file: string, keyOfFlag: Map<string, string>): unknown {
  if (!(e instanceof LangneuronsError) || e.field === undefined) return e;
  const key = keyOfFlag.get(e.field);
  if (key === undefined) return e;
  const prefix = `--${e.field} `;
  const said = e.message.startsWith(prefix) ? ` ${e.message.slice(prefix.length)}` : `: ${e.message}`;
  return new LangneuronsError(e.code, `${file}: "${key}"${said}`, { file, field: key, cause: e });
}

/** --config file (JSON with the option names in camelCase or as flags), then the flags on top; every option checked. */
async function options(o: TrainCli, argv: string[]): Promise<PretrainOptions> {
  const config = o.config ? await readConfig(o.config) : { options: {}, keyOfFlag: new Map<string, string>() };
  const opts = { ...config.options } as PretrainOptions;
  const set = <K extends keyof PretrainOptions>(key: K, flag: string, v: PretrainOptions[K]) => {
    opts[key] = v;
    config.keyOfFlag.delete(flag); // a flag overrides the config: errors about it name the flag
  };
  if (o.vocab !== undefined && o.tokenizerVocab === undefined) o.tokenizerVocab = o.vocab;
  for (const [key, cli, flag] of NUMERIC) {
    const v = o[cli];
    if (typeof v === 'string') set(key, flag, num(flag, v));
  }
  if (o.langs) set('langs', 'langs', list(o.langs));
  if (o.lowResource !== undefined) set('lowResource', 'low-resource', o.lowResource === 'none' ? null : parseLowResource(o.lowResource));
  if (o.heldout) set('heldoutArticles', 'heldout', list(o.heldout).map((x) => num('heldout', x)));
  if (o.dtype) set('dtype', 'dtype', o.dtype as 'f32' | 'bf16');
  if (o.out) set('out', 'out', o.out);
  if (o.work) set('work', 'work', o.work);
  if (o.name) set('name', 'name', o.name);
  if (o.force) set('force', 'force', true);
  try {
    if (!Array.isArray(opts.langs) || opts.langs.length === 0) throw new LangneuronsError('E_OPTIONS', 'train needs --langs <ids> (UDHR language ids, comma-separated)', { field: 'langs' });
    if (!opts.out) throw new LangneuronsError('E_OPTIONS', 'train needs --out <dir>', { field: 'out' });
    const required = new Set<keyof PretrainOptions>(['layers', 'hidden', 'heads', 'kvHeads', 'ffn', 'tokenizerVocab', 'steps']);
    for (const [key, , flag] of NUMERIC.filter(([k]) => required.has(k)))
      if (opts[key] === undefined) throw new LangneuronsError('E_OPTIONS', `train needs --${flag} (or "${key}" in --config)`, { field: flag });
    checkPretrainOptions(opts);
  } catch (e) {
    throw o.config ? fromConfig(e, o.config, config.keyOfFlag) : e;
  }
  opts.command = ['langneurons', ...argv].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
  return opts;
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('make a small multilingual Llama from scratch on the UDHR: data, byte-level BPE tokenizer, random init, training of every parameter, a Hugging Face folder with recipe.json')
    .option('--config <file>', 'a JSON file holding an object with any of the options below but --json and --quiet, by name in camelCase or as the flag ("kvHeads" or "kv-heads"); flags override it')
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
    .option('--force', 'replace --out when it holds a model made by train with other options, and start over a work folder of such a run')
    .option('--work <dir>', 'work folder with each step\'s output, for resuming (default <out>.work; not inside --out, nor holding it)')
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
