// The sweep's graph of steps: text → profile (per language and shard) → merge → identify → ppl-matrix / fine-tune
// → eval. A step is one langneurons command line (the same code as the CLI: `sweep exec` runs it in-process) with
// placeholders for the paths it reads and writes: {out} its own output folder, {step:<id>} another step's, {model:<i>}
// the i-th model. Its output folder is named by a hash of everything that determines it: the command line with
// every placeholder replaced by what it stands for (a step's hash, a model's fingerprint), the content of every
// input file, and the tool version. Re-running skips finished steps, changing one parameter re-runs only what
// depends on it, and sweeps sharing steps share their outputs. Engine threads are not in the hash (an executor
// assigns them; results do not depend on them).
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import { openCorpusSpec } from '../corpus/index.js';
import type { Corpus } from '../corpus/sources.js';
import { LangneuronsError } from '../errors.js';
import { modelFingerprint } from '../model/fingerprint.js';
import { openEvalCorpus } from '../steer/engine.js';
import { parseInterventionSpec, specNeedsStats } from '../intervene/spec.js';
import { needsStats, parseSetting, parseSettings, DEFAULT_SETTINGS } from '../steer/index.js';
import { inputHasher } from './input-digests.js';
import { journalFile } from './journal.js';
import { forcingSettings, langidArg } from './load-steer.js';
import {
  MASK_METHODS, modelsOf, STEP_KINDS, toolVersion, type IdentifyEntry, type LanguageSelection, type LoadedSweep, type Resources, type Rule, type StepKind,
  type SteerGeneration, type Value,
} from './load.js';

export type CellField = 'model' | 'language' | 'identify' | 'method' | 'task' | 'variant' | 'intervention';
export type Cell = Partial<Record<CellField, string>>;

export interface Step {
  /** Readable and stable: kind/model/…; the CLI's `sweep exec <sweep> <id>`. */
  id: string;
  kind: StepKind;
  hash: string;
  deps: string[];
  /** The command line, with {out}, {step:<id>} and {model:<i>} placeholders. */
  argv: string[];
  cell: Cell;
  /** Commands that take --threads get the step's CPUs as threads. */
  threaded: boolean;
  /** identify: the mask files it writes in its folder (mask.json, or a joint ranking's mask.<site>.json per site). */
  masks?: string[];
}

export interface SweepPlan {
  sweep: LoadedSweep;
  name: string;
  out: string;
  models: { name: string; dir: string; fingerprint: string }[];
  steps: Step[];
  byId: Map<string, Step>;
  resources(kind: StepKind): Resources;
  retries: number;
}

export const stepDir = (plan: Pick<SweepPlan, 'out'>, s: Pick<Step, 'kind' | 'hash'>) => path.join(plan.out, 'steps', s.kind, s.hash);
export const stepWorkDir = (plan: Pick<SweepPlan, 'out'>, s: Pick<Step, 'kind' | 'hash'>) => `${stepDir(plan, s)}.work`;
export const isDone = (plan: Pick<SweepPlan, 'out'>, s: Pick<Step, 'kind' | 'hash'>) => existsSync(path.join(stepDir(plan, s), 'step.json'));

const asList = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const isUdhr = (s: string) => s === 'udhr' || s.startsWith('udhr:');

/** Identification settings: each entry's lists expanded, each with a label (its name, or its method and values). */
export function identifySettings(entries: IdentifyEntry[]): { label: string; entry: number; args: string[]; sites: string[] | null }[] {
  const out: { label: string; entry: number; args: string[]; sites: string[] | null }[] = [];
  entries.forEach((e, i) => {
    const axes: [string, string, Value[]][] = [['topRate', '--top-rate', asList(e.topRate)], ['filterRate', '--filter-rate', asList(e.filterRate)], ['n', '--n', asList(e.n)]];
    let combos: { label: string[]; args: string[] }[] = [{ label: [], args: [] }];
    for (const [key, flag, values] of axes) {
      if (!values.length) continue;
      const many = values.length > 1 || !e.name;
      combos = combos.flatMap((c) => values.map((v) => ({ label: many ? [...c.label, `${key}=${v}`] : c.label, args: [...c.args, flag, String(v)] })));
    }
    const fixed = ['--method', e.method, ...(e.preset ? ['--preset', e.preset] : []), ...(e.quantile ? ['--quantile', e.quantile] : []), ...(e.keepTies ? ['--keep-ties'] : []),
      // Only the percentile variants read --percentile-of (identify refuses it given to act-prob-zero / mean-abs).
      ...(/^act-prob-\d+p$/.test(e.method) ? ['--percentile-of', 'pooled-histogram'] : []),
      ...(e.site ? ['--site', e.site] : []), ...(e.sites ? ['--sites', e.sites] : [])];
    const sites = e.sites ? e.sites.split(',') : null;
    for (const c of combos) out.push({ label: [e.name ?? e.method, ...c.label].join('-'), entry: i, args: [...fixed, ...c.args], sites });
  });
  return out;
}

function ruleMatches(rule: Rule, cell: Cell): boolean | null {
  let applies = true;
  for (const [k, v] of Object.entries(rule)) {
    const have = cell[k as CellField];
    if (have === undefined) { applies = false; continue; }
    if (!asList(v as Value | Value[]).map(String).includes(have)) return false;
  }
  return applies ? true : null; // null: the rule names a field this step does not have
}

/** Exclude when some exclude rule matches; with include rules, a step they apply to must match one. */
export function keepCell(cell: Cell, include: Rule[] | undefined, exclude: Rule[] | undefined): boolean {
  if ((exclude ?? []).some((r) => ruleMatches(r, cell) === true)) return false;
  const inc = include ?? [];
  const applicable = inc.filter((r) => Object.keys(r).every((k) => cell[k as CellField] !== undefined));
  return applicable.length === 0 || applicable.some((r) => ruleMatches(r, cell) === true);
}

/** A corpus named by the sweep (a folder or a manifest), opened; `inputs` are the files some languages read. */
interface SweepCorpus { inputs(languages?: readonly string[]): string[] }

/**
 * Opens a corpus the sweep names with the corpus code's own checks (src/corpus: a manifest's keys and files, every
 * file present, not empty, its Parquet column readable) and, given `languages`, requires a source for each. A refusal
 * is the sweep's: "<file>:<line>: <key>: <what the corpus code says>".
 */
async function openSweepCorpus(sweep: LoadedSweep, spec: string, at: (string | number)[], languages?: readonly string[], evalText = false): Promise<SweepCorpus> {
  const refuse = (message: string): never => { throw new LangneuronsError('E_SWEEP', `${sweep.where(at)}: ${message}`, { file: sweep.file, field: at.join('.') }); };
  let corpus: Corpus;
  try {
    // as the step opens it: profile's --corpus, or steer ppl-matrix's --eval-text (which also takes a list of files)
    corpus = evalText ? await openEvalCorpus(spec, undefined) : await openCorpusSpec(spec);
  } catch (e) {
    return refuse(e instanceof Error ? e.message : String(e));
  }
  const missing = (languages ?? []).filter((l) => !corpus.languages.includes(l));
  if (missing.length) refuse(`${spec}: no corpus for ${missing.join(', ')} (languages there: ${corpus.languages.join(', ')})`);
  // The files the languages read (the corpus code's own paths), after the spec itself where it is a file (a manifest:
  // its fields and columns change what is read).
  const specFile = statSync(spec, { throwIfNoEntry: false })?.isFile() ? [spec] : [];
  return { inputs: (langs = corpus.languages) => [...new Set([...specFile, ...langs.flatMap((l) => corpus.source(l).paths)])] };
}

export interface PlanOptions { out?: string }

export async function planSweep(sweep: LoadedSweep, o: PlanOptions = {}): Promise<SweepPlan> {
  const s = sweep.spec;
  const version = toolVersion();
  const name = s.name ?? path.basename(sweep.file).replace(/\.ya?ml$/, '');
  const out = path.resolve(o.out ?? (s.out ? path.resolve(sweep.dir, s.out) : path.join(sweep.dir, `${name}-out`)));
  const hashFile = inputHasher(out, () => existsSync(journalFile(out)));
  const modelDirs = modelsOf(s).map((m) => path.resolve(sweep.dir, m));
  const baseNames = modelDirs.map((d) => path.basename(d));
  const models = await Promise.all(modelDirs.map(async (dir, i) => ({
    name: baseNames.indexOf(baseNames[i]!) === i && baseNames.lastIndexOf(baseNames[i]!) === i ? baseNames[i]! : `${baseNames[i]}.${i}`,
    dir, fingerprint: await modelFingerprint(dir),
  })));
  const steps: Step[] = [];
  const byId = new Map<string, Step>();
  const dropped = new Set<string>();

  /** The hash: the command line with placeholders replaced by what they stand for, and the input files' contents. */
  const add = (kind: StepKind, id: string, argv: string[], cell: Cell, inputs: string[] = [], threaded = true): string | null => {
    const prior = byId.get(id);
    if (prior || dropped.has(id)) return prior ? id : null;
    const deps = new Set<string>();
    let missing = false;
    const keyArgv = argv.map((a) => a.replace(/\{step:([^}]+)\}/g, (_, dep: string) => {
      const d = byId.get(dep);
      if (!d) { missing = true; return '?'; }
      deps.add(dep);
      return `{step:${d.hash}}`;
    }).replace(/\{model:(\d+)\}/g, (_, i: string) => `{model:${models[Number(i)]!.fingerprint}}`));
    if (missing || (['identify', 'ppl-matrix', 'lss', 'forcing', 'fallback', 'finetune', 'eval'].includes(kind) && !keepCell(cell, s.include, s.exclude))) { dropped.add(id); return null; }
    const hash = sha(JSON.stringify({ kind, version, argv: keyArgv, inputs: inputs.map((f) => [f, hashFile(f)]) })).slice(0, 20);
    const step: Step = { id, kind, hash, deps: [...deps], argv, cell, threaded };
    steps.push(step);
    byId.set(id, step);
    return id;
  };

  /** A text folder holding <lang>.txt for a corpus spec: a `corpus udhr` step, or the user's folder. */
  const textFor = (spec: string, lang: string): { folder: string; file: string; inputs: string[] } => {
    if (isUdhr(spec)) {
      const split = spec === 'udhr' ? 'all' : spec.slice(5);
      const id = add('text', `text/${spec}/${lang}`, ['corpus', 'udhr', '--langs', lang, '--split', split, '--out', '{out}', '--json'], { language: lang }, [], false)!;
      return { folder: `{step:${id}}`, file: `{step:${id}}/${lang}.txt`, inputs: [] };
    }
    const file = path.resolve(sweep.dir, spec.includes('{lang}') ? spec.replaceAll('{lang}', lang) : path.join(spec, `${lang}.txt`));
    return { folder: path.dirname(file), file, inputs: [file] };
  };
  const select = (sel: LanguageSelection | undefined): string[] =>
    sel === undefined || sel === 'all' ? s.languages : sel === 'low' ? s.lowResource ?? [] : sel;

  const p = s.profile;
  const shards = p.shards ?? 1;
  // The corpora the sweep names, opened by the corpus code now (a bad manifest or folder is refused before any step
  // runs, as its step would refuse it); a language's files, also those behind a manifest or in a <lang>/ folder, are
  // inputs of the steps reading them.
  const profileCorpus = isUdhr(p.corpus) ? null : await openSweepCorpus(sweep, path.resolve(sweep.dir, p.corpus), ['profile', 'corpus'], s.languages);
  const corpusInputs = (lang: string): string[] => profileCorpus?.inputs([lang]) ?? [];
  const profileArgs = ['--corpus', isUdhr(p.corpus) ? p.corpus : path.resolve(sweep.dir, p.corpus), '--tokens', String(p.tokens ?? 0),
    '--scope', p.scope ?? 'windows', '--max-len', String(p.maxLen ?? 512), ...(p.sites ? ['--sites', p.sites] : []),
    ...(p.histogram ? ['--histogram', p.histogram] : []), ...(p.seqMeans ? ['--seq-means'] : []),
    ...(p.countBos ? ['--count-bos'] : []), ...(p.dropLong ? ['--drop-long'] : []), ...(p.dropPartial ? ['--drop-partial'] : [])];
  const settings = identifySettings(s.identify);
  const ftMethods = s.finetune?.methods ?? [];
  const ftLangs = new Set(select(s.finetune?.languages));
  const evalLangs = s.eval ? select(s.eval.languages) : [];

  let evalTexts: SweepCorpus | undefined;
  for (const [mi, m] of models.entries()) {
    const model = `{model:${mi}}`;
    // profile (+ merge): one statistics file per language
    const stats = new Map<string, string>();
    for (const lang of s.languages) {
      const parts: string[] = [];
      for (let k = 1; k <= shards; k++) {
        const id = `profile/${m.name}/${lang}${shards > 1 ? `/${k}of${shards}` : ''}`;
        parts.push(add('profile', id, ['profile', model, '--langs', lang, ...profileArgs, ...(shards > 1 ? ['--shard', `${k}/${shards}`] : []), '--out', '{out}', '--json'],
          { model: m.name, language: lang }, corpusInputs(lang))!);
      }
      if (shards === 1) stats.set(lang, `{step:${parts[0]}}/${lang}.safetensors`);
      else {
        const id = add('merge', `merge/${m.name}/${lang}`, ['stats', 'merge', ...parts.map((x) => `{step:${x}}/${lang}.safetensors`), '--out', `{out}/${lang}.safetensors`, '--json'],
          { model: m.name, language: lang }, [], false)!;
        stats.set(lang, `{step:${id}}/${lang}.safetensors`);
      }
    }
    // identify, and the measures of each identification setting
    const masks = new Map<string, string>();
    for (const st of settings) {
      const id = add('identify', `identify/${m.name}/${st.label}`, ['identify', ...s.languages.map((l) => stats.get(l)!), ...st.args, '--out', '{out}/mask.json', '--json'],
        { model: m.name, identify: st.label }, [], false);
      if (!id) continue;
      // A joint ranking writes mask.<site>.json per site: the steer steps take them as one --masks set.
      const files = st.sites ? st.sites.map((site) => `mask.${site}.json`) : ['mask.json'];
      byId.get(id)!.masks = files;
      const mask = files.map((f) => `{step:${id}}/${f}`).join(',');
      masks.set(st.label, mask);
      const pm = s.steer?.pplMatrix;
      if (pm) {
        const values = asList(pm.deactivateValue);
        for (const v of values.length ? values : [undefined]) {
          const evalText = pm.evalText ?? 'udhr:heldout';
          const texts = isUdhr(evalText) ? null : (evalTexts ??= await openSweepCorpus(sweep, path.resolve(sweep.dir, evalText), ['steer', 'pplMatrix', 'evalText'], undefined, true));
          add('ppl-matrix', `ppl-matrix/${m.name}/${st.label}${v === undefined ? '' : `/value=${v}`}`, ['steer', 'ppl-matrix', model, '--masks', mask,
            '--eval-text', isUdhr(evalText) ? evalText : path.resolve(sweep.dir, evalText), '--langs', s.languages.join(','),
            ...(pm.maxTokens ? ['--max-tokens', String(pm.maxTokens)] : []), ...(v === undefined ? [] : ['--deactivate-value', String(v)]), '--out', '{out}/matrix.json', '--json'],
          { model: m.name, identify: st.label, ...(v === undefined ? {} : { variant: `value=${v}` }) }, texts?.inputs() ?? []);
        }
      }
    }
    // Language Steering Shift per setting (facts: MLAMA-dod style, src/steer/lss.ts)
    // Steps whose interventions read statistics get every language's final statistics file (a --stats list).
    const statsArg = ['--stats', s.languages.map((l) => stats.get(l)!).join(',')];
    const lss = s.steer?.lss;
    if (lss) for (const [label, mask] of masks) {
      const facts = path.resolve(sweep.dir, lss.facts);
      const withStats = parseSettings(lss.settings ?? DEFAULT_SETTINGS).some(needsStats) ? statsArg : [];
      add('lss', `lss/${m.name}/${label}`, ['steer', 'lss', model, '--masks', mask, '--facts', facts, ...(lss.settings ? ['--settings', lss.settings] : []),
        ...withStats, '--out', '{out}/lss.json', '--json'], { model: m.name, identify: label }, [facts]);
    }
    // Language forcing per setting and amplification, language fallback per setting (Language Arithmetics)
    // The generation and identifier options of a generating step, and its input files (the prompts, a fastText model).
    const generation = (g: SteerGeneration, prompts: string): { args: string[]; inputs: string[] } => {
      const langid = langidArg(g.langid, sweep.dir);
      return {
        args: [...(langid ? ['--langid', langid] : []), ...(g.maxNewTokens ? ['--max-new-tokens', String(g.maxNewTokens)] : []),
          ...(g.stop ?? []).flatMap((x) => ['--stop', x.replace(/\n/g, '\\n')]), ...(g.repetitionPenalty !== undefined ? ['--repetition-penalty', String(g.repetitionPenalty)] : [])],
        inputs: [prompts, ...(langid?.startsWith('fasttext:') ? [langid.slice('fasttext:'.length)] : [])],
      };
    };
    const fo = s.steer?.forcing;
    if (fo) for (const [label, mask] of masks) {
      const prompts = path.resolve(sweep.dir, fo.prompts);
      const g = generation(fo, prompts);
      const amplify = forcingSettings(fo.amplify);
      for (const a of amplify) {
        add('forcing', `forcing/${m.name}/${label}${amplify.length > 1 ? `/amplify=${a}` : ''}`, ['steer', 'forcing', model, '--masks', mask, '--prompts', prompts,
          '--target', select(fo.targets).join(','), '--amplify', a, ...(needsStats(parseSetting(a)) ? statsArg : []),
          ...(fo.deactivateValue !== undefined ? ['--deactivate-value', String(fo.deactivateValue)] : []), ...(fo.deactivateSource === false ? ['--no-deactivate-source'] : []),
          ...g.args, '--out', '{out}/forcing.json', '--json'],
        { model: m.name, identify: label, ...(amplify.length > 1 ? { variant: `amplify=${a}` } : {}) }, g.inputs);
      }
    }
    const fb = s.steer?.fallback;
    if (fb) for (const [label, mask] of masks) {
      const prompts = path.resolve(sweep.dir, fb.prompts);
      const g = generation(fb, prompts);
      add('fallback', `fallback/${m.name}/${label}`, ['steer', 'fallback', model, '--masks', mask, '--prompts', prompts, '--deactivate', fb.deactivate.join(','),
        ...(fb.each ? ['--each'] : []), ...(fb.deactivateValue !== undefined ? ['--deactivate-value', String(fb.deactivateValue)] : []),
        ...g.args, '--out', '{out}/fallback.json', '--json'], { model: m.name, identify: label }, g.inputs);
    }
    // fine-tuning: per method and language (and identification setting, for the methods that train a mask's neurons)
    const finetuned = new Map<string, { id: string; method: string; identify?: string }[]>();
    const f = s.finetune;
    if (f) for (const lang of s.languages) {
      if (!ftLangs.has(lang)) continue;
      const train = textFor(f.train, lang), valid = f.valid ? textFor(f.valid, lang) : null;
      for (const method of ftMethods) {
        const lr = typeof f.lr === 'number' ? f.lr : f.lr?.[method];
        const common = ['--train', train.file, ...(valid ? ['--valid', valid.file] : []), ...(f.steps ? ['--steps', String(f.steps)] : []),
          ...(f.chunk ? ['--chunk', String(f.chunk)] : []), ...(f.batch ? ['--batch', String(f.batch)] : []), ...(f.accum ? ['--accum', String(f.accum)] : []),
          ...(f.evalEvery !== undefined ? ['--eval-every', String(f.evalEvery)] : []), ...(f.seed !== undefined ? ['--seed', String(f.seed)] : []),
          ...(lr !== undefined ? ['--lr', String(lr)] : []), ...(f.schedule ? ['--schedule', f.schedule] : []), ...(f.warmup !== undefined ? ['--warmup', String(f.warmup)] : []),
          '--out', '{out}', '--quiet', '--json'];
        const inputs = [...train.inputs, ...(valid?.inputs ?? [])];
        const list = finetuned.get(lang) ?? [];
        if (MASK_METHODS.includes(method)) {
          for (const [label, mask] of masks) {
            const id = add('finetune', `finetune/${m.name}/${label}/${method}/${lang}`, ['finetune', model, '--method', method, '--masks', mask, '--lang', lang, ...common],
              { model: m.name, language: lang, method, identify: label }, inputs);
            if (id) list.push({ id, method, identify: label });
          }
        } else {
          const id = add('finetune', `finetune/${m.name}/${method}/${lang}`, ['finetune', model, '--method', method, ...common], { model: m.name, language: lang, method }, inputs);
          if (id) list.push({ id, method });
        }
        finetuned.set(lang, list);
      }
    }
    // eval: the unmodified model, each fine-tuned model (on its own language), each intervention per setting
    const e = s.eval;
    if (e) for (const task of e.tasks) for (const lang of evalLangs) {
      const text = task === 'ppl' ? textFor(e.text!, lang) : null;
      const data = task === 'ppl' ? ['--text', text!.folder] : ['--data', path.resolve(sweep.dir, e.data!)];
      // a dataset folder is an input too: its files at any depth (an edited dataset re-runs its evaluations)
      const inputs = text ? text.inputs : [path.resolve(sweep.dir, e.data!)];
      const evalStep = (variant: string, extra: string[], cell: Cell) => add('eval', `eval/${m.name}/${task}/${lang}/${variant}`, ['eval', model, '--task', task, '--langs', lang, ...data,
        ...(e.prompt ? ['--prompt', e.prompt] : []), ...(e.limit ? ['--limit', String(e.limit)] : []),
        ...(e.maxGenToks ? ['--max-gen-toks', String(e.maxGenToks)] : []), ...extra, '--variant', variant, '--out', '{out}', '--json'],
      { model: m.name, language: lang, task, variant, ...cell }, inputs);
      if (e.base !== false) evalStep('base', [], {});
      if (e.finetuned !== false) for (const ft of finetuned.get(lang) ?? [])
        evalStep(`ft-${ft.method}${ft.identify ? `@${ft.identify}` : ''}`, ['--delta', `{step:${ft.id}}/model`], { method: ft.method, ...(ft.identify ? { identify: ft.identify } : {}) });
      (e.interventions ?? []).forEach((tpl, i) => {
        const uses = tpl.includes('{mask}');
        for (const [label, mask] of uses ? masks : new Map([['', '']])) {
          const spec = tpl.replaceAll('{mask}', mask).replaceAll('{lang}', lang);
          const short = tpl.split(':')[0]!.replace(/[^A-Za-z0-9._-]/g, '');
          const withStats = specNeedsStats(parseInterventionSpec(tpl.replaceAll('{mask}', 'mask.json').replaceAll('{lang}', lang))) ? statsArg : [];
          // the spec as written, {lang} filled ({mask} stands for the identify setting's mask): what the report shows
          evalStep(`iv${i}-${short}${label ? `@${label}` : ''}`, ['--intervene', spec, ...withStats], { intervention: tpl.replaceAll('{lang}', lang), ...(label ? { identify: label } : {}) });
        }
      });
    }
  }
  const resources = (kind: StepKind): Resources => ({ ...(s.resources?.default ?? {}), ...(s.resources?.[kind] ?? {}) });
  await hashFile.save();
  return { sweep, name, out, models, steps, byId, resources, retries: s.retries ?? 1 };
}

/** The command line of a step with its placeholders filled in (paths of this plan's folders and models). */
export function resolveArgv(plan: SweepPlan, step: Step, outDir: string, threads?: number): string[] {
  const argv = step.argv.map((a) => a.replaceAll('{out}', outDir).replace(/\{step:([^}]+)\}/g, (_, dep: string) => stepDir(plan, plan.byId.get(dep)!))
    .replace(/\{model:(\d+)\}/g, (_, i: string) => plan.models[Number(i)]!.dir));
  return step.threaded && threads ? [...argv, '--threads', String(threads)] : argv;
}

export const KIND_ORDER: readonly StepKind[] = STEP_KINDS;
