// The sweep file: YAML (comments allowed) checked against schemas/sweep.schema.json, then for what a schema cannot
// say (an unknown language, a method that needs a mask without an identification setting, a missing model or
// corpus). Every refusal is one line naming the file, the line and the key, before anything runs.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';

import { isLanguageId } from '../corpus/language-id.js';
import { resolveUdhrLanguage } from '../corpus/udhr.js';
import { LangneuronsError } from '../errors.js';
import { parseModelConfig } from '../model/config.js';
import { packageRoot } from '../native/addon.js';
import { TOOL_VERSION } from '../version.js';
import { withoutBom } from '../io/text.js';
import { DEFAULT_SETTINGS, parseSettings } from '../steer/index.js';
import { checkGeneratingSteer, checkSettingsStats } from './load-steer.js';
import { NEURON_SITES, SITES } from '../profile/stats.js';

export type Value = string | number | boolean;
export type Rule = Partial<Record<'model' | 'language' | 'identify' | 'method' | 'task' | 'variant', Value | Value[]>>;
export interface Resources { cpus?: number; mem?: string; time?: string; gpus?: number; partition?: string }
export const STEP_KINDS = ['text', 'profile', 'merge', 'identify', 'ppl-matrix', 'lss', 'forcing', 'fallback', 'finetune', 'eval'] as const;
export type StepKind = typeof STEP_KINDS[number];
export type LanguageSelection = 'all' | 'low' | string[];

export interface IdentifyEntry {
  name?: string; method: string; preset?: string; topRate?: number | number[]; filterRate?: number | number[]; n?: number | number[];
  quantile?: string; keepTies?: boolean;
  /** identify --site, or (ap) --sites: a joint ranking that gives one mask per site (the steer steps take them as a set). */
  site?: string; sites?: string;
}

/** The generation and language identification of the steer steps that generate (forcing, fallback). */
export interface SteerGeneration { langid?: string; maxNewTokens?: number; stop?: string[]; repetitionPenalty?: number }

/** The sweep file as written (after the schema), with paths resolved against the file's folder. */
export interface SweepFile {
  name?: string;
  out?: string;
  models: string | string[];
  languages: string[];
  lowResource?: string[];
  profile: { corpus: string; tokens?: number | string; shards?: number; scope?: 'windows' | 'sentences'; maxLen?: number; sites?: string; histogram?: string; seqMeans?: boolean;
    countBos?: boolean; dropLong?: boolean; dropPartial?: boolean };
  identify: IdentifyEntry[];
  steer?: {
    pplMatrix?: { evalText?: string; maxTokens?: number; deactivateValue?: number | number[] }; lss?: { facts: string; settings?: string };
    forcing?: SteerGeneration & { prompts: string; targets?: LanguageSelection; amplify?: string | string[]; deactivateValue?: number; deactivateSource?: boolean };
    fallback?: SteerGeneration & { prompts: string; deactivate: string[]; each?: boolean; deactivateValue?: number };
  };
  finetune?: {
    methods: string[]; languages?: LanguageSelection; train: string; valid?: string; steps?: number; chunk?: number; batch?: number; accum?: number;
    evalEvery?: number; seed?: number; lr?: number | Record<string, number>; schedule?: string; warmup?: number;
  };
  eval?: {
    tasks: string[]; languages?: LanguageSelection; text?: string; data?: string; prompt?: string; limit?: number; maxGenToks?: number; base?: boolean; finetuned?: boolean;
    interventions?: string[];
  };
  include?: Rule[];
  exclude?: Rule[];
  resources?: Partial<Record<'default' | StepKind, Resources>>;
  local?: { devices?: (string | number)[] };
  slurm?: { partition?: string; account?: string; qos?: string; extra?: string[]; setup?: string; node?: string; poll?: number };
  retries?: number;
}

export interface LoadedSweep {
  /** Absolute path of the sweep file. */
  file: string;
  dir: string;
  spec: SweepFile;
  /** "file:line: key" of a path in the document, for messages of later checks. */
  where(keyPath: (string | number)[]): string;
}

/** The package root (holds package.json and schemas/), found from this module's folder in src/ and in dist/src/. */
export { packageRoot };

export function toolVersion(): string {
  return TOOL_VERSION;
}

let validator: ValidateFunction | null = null;
function schemaValidator(): ValidateFunction {
  if (!validator) {
    const schema = JSON.parse(readFileSync(path.join(packageRoot(), 'schemas', 'sweep.schema.json'), 'utf8')) as object;
    validator = new Ajv({ allErrors: true, strict: false }).compile(schema);
  }
  return validator;
}

const keyText = (p: (string | number)[]) => p.length ? p.map((k, i) => (typeof k === 'number' ? `[${k}]` : i ? `.${k}` : k)).join('') : '(top level)';

/** The node at a path (the deepest one that exists) and its line. */
function lineOf(doc: Document, lc: LineCounter, keyPath: (string | number)[], key = false): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const k of keyPath) {
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(k));
      if (!pair) break;
      offset = (key ? (pair.key as Node).range?.[0] : (pair.value as Node | null)?.range?.[0] ?? (pair.key as Node).range?.[0]) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof k === 'number' && node.items[k]) {
      node = node.items[k];
      offset = (node as Node).range?.[0] ?? offset;
    } else break;
  }
  return lc.linePos(offset).line;
}

function schemaMessage(e: ErrorObject): { path: (string | number)[]; message: string; atKey: boolean } {
  const p = e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': return { path: [...p, String(params['additionalProperty'])], message: `unknown key '${String(params['additionalProperty'])}'`, atKey: true };
    case 'required': return { path: p, message: `missing key '${String(params['missingProperty'])}'`, atKey: false };
    case 'enum': return { path: p, message: `must be one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`, atKey: false };
    case 'propertyNames': return { path: [...p, String(params['propertyName'])], message: `'${String(params['propertyName'])}' is not allowed here`, atKey: true };
    case 'pattern': if (params['pattern'] === '^[^,]+$') return { path: p, message: 'one setting per list item (no comma)', atKey: false }; break;
  }
  return { path: p, message: e.message ?? e.keyword, atKey: false };
}

/** Reads and checks a sweep file; throws a LangneuronsError "<file>:<line>: <key>: <what>" at the first problem. */
export function loadSweep(file: string): LoadedSweep {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch {
    throw new LangneuronsError('E_IO', `${file}: cannot read the sweep file`, { file });
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new LangneuronsError('E_SWEEP', `${file}:${lc.linePos(e.pos[0]).line}: not valid YAML: ${e.message.split('\n')[0]}`, { file });
  }
  const data: unknown = doc.toJS();
  const where = (keyPath: (string | number)[], key = false) => `${file}:${lineOf(doc, lc, keyPath, key)}: ${keyText(keyPath)}`;
  const fail = (keyPath: (string | number)[], message: string, key = false): never => {
    throw new LangneuronsError('E_SWEEP', `${where(keyPath, key)}: ${message}`, { file, field: keyText(keyPath) });
  };
  if (typeof data !== 'object' || data === null || Array.isArray(data)) fail([], 'the sweep file must be a mapping of keys (models, languages, profile, identify, ...)');
  const validate = schemaValidator();
  if (!validate(data)) {
    // The most specific error first: anyOf reports its branches' errors and then its own summary.
    // Of anyOf's branches, the one about the value as written: the deepest path, then not a mere type mismatch (a list
    // of settings with an empty or comma-holding item is not reported as "must be string").
    const depth = (e: ErrorObject) => e.instancePath.split('/').length;
    const errors = (validate.errors ?? []).filter((e: ErrorObject) => e.keyword !== 'anyOf' && e.keyword !== 'if')
      .map((e, i) => ({ e, i })).sort((a, b) => depth(b.e) - depth(a.e) || Number(a.e.keyword === 'type') - Number(b.e.keyword === 'type') || a.i - b.i).map(({ e }) => e);
    const e = schemaMessage(errors[0] ?? validate.errors![0]!);
    fail(e.path, e.message, e.atKey);
  }
  const spec = data as SweepFile;
  // steer.lss.settings as a YAML list: the settings that one LSS step compares (`steer lss --settings a,b`)
  const lss = spec.steer?.lss as { settings?: string | string[] } | undefined;
  if (lss && Array.isArray(lss.settings)) lss.settings = lss.settings.join(',');
  const dir = path.dirname(abs);
  checkSemantics(spec, dir, fail);
  return { file: abs, dir, spec, where };
}

const isUdhr = (s: string) => s === 'udhr' || s.startsWith('udhr:');
const asList = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
export const modelsOf = (s: SweepFile): string[] => asList(s.models);
export const MASK_METHODS = ['neurons', 'random', 'neuron-lora'];

/** What a schema cannot check: references between keys and files that must exist. */
function checkSemantics(s: SweepFile, dir: string, fail: (p: (string | number)[], m: string) => never): void {
  const langs = new Set(s.languages);
  // Ids become folder and file names of steps (profile/<model>/<lang>, <lang>.safetensors): plain names only.
  s.languages.forEach((l, i) => { if (!isLanguageId(l)) fail(['languages', i], `language id ${JSON.stringify(l)} is not a plain name (letters, digits, '_', '-', '.'; no path separators or '..')`); });
  const dupe = s.languages.find((l, i) => s.languages.indexOf(l) !== i);
  if (dupe) fail(['languages'], `language '${dupe}' is listed twice`);
  (s.lowResource ?? []).forEach((l, i) => { if (!langs.has(l)) fail(['lowResource', i], `'${l}' is not one of the sweep's languages (${s.languages.join(', ')})`); });
  modelsOf(s).forEach((m, i) => {
    const p = path.resolve(dir, m);
    const at = Array.isArray(s.models) ? ['models', i] : ['models'];
    if (!existsSync(path.join(p, 'config.json'))) fail(at, `${p}: no model there (no config.json)`);
    // Profile windows and fine-tuning chunks must fit the model's context, as the commands check it, but before the
    // hours of the steps before them (the BOS fed before a sentence takes one position).
    let context: number;
    try { context = parseModelConfig(JSON.parse(readFileSync(path.join(p, 'config.json'), 'utf8')), path.join(p, 'config.json')).maxPositions; } catch (e) {
      return fail(at, `${p}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const maxLen = s.profile.maxLen ?? 512, bos = (s.profile.scope ?? 'windows') === 'sentences' ? 1 : 0;
    if (maxLen + bos > context)
      fail(s.profile.maxLen === undefined ? ['profile'] : ['profile', 'maxLen'], `${s.profile.maxLen === undefined ? 'the default maxLen ' : ''}${maxLen}${bos ? ' plus BOS' : ''} exceeds the context of ${p} (${context} tokens): give a maxLen of at most ${context - bos}`);
    if (s.finetune?.chunk !== undefined && s.finetune.chunk > context)
      fail(['finetune', 'chunk'], `${s.finetune.chunk} is longer than the context of ${p} (${context} tokens)`);
  });
  const names = new Set<string>();
  s.identify.forEach((e, i) => {
    if (e.name) { if (names.has(e.name)) fail(['identify', i, 'name'], `identification setting name '${e.name}' is used twice`); names.add(e.name); }
    if (e.method !== 'lape' && (e.preset !== undefined || e.filterRate !== undefined || e.quantile !== undefined || e.keepTies !== undefined))
      fail(['identify', i, 'method'], `preset, filterRate, quantile and keepTies are LAPE settings; method is '${e.method}'`);
    if (e.method !== 'ap' && e.n !== undefined) fail(['identify', i, 'n'], `n applies to method ap only; method is '${e.method}'`);
    if ((e.method === 'ap' || e.method === 'raw-activated') && e.topRate !== undefined) fail(['identify', i, 'topRate'], `topRate applies to methods lape and act-prob-*; method is '${e.method}'`);
    if (e.method.startsWith('act-prob-') && !s.profile.histogram) fail(['identify', i, 'method'], `${e.method} needs per-neuron quantiles: give profile.histogram (e.g. -0.5:4:256)`);
    if (e.method === 'ap' && !s.profile.seqMeans) fail(['identify', i, 'method'], 'ap needs sequence means: set profile.seqMeans: true');
    if (Array.isArray(e.topRate) && new Set(e.topRate).size !== e.topRate.length) fail(['identify', i, 'topRate'], 'a value is listed twice');
    // The sites ranked must have been profiled; a joint ranking (ap) gives a mask per site, which only steer takes.
    if (e.site !== undefined && e.sites !== undefined) fail(['identify', i, 'sites'], 'give site (one site) or sites (a joint ranking), not both');
    if (e.sites !== undefined && e.method !== 'ap') fail(['identify', i, 'sites'], `sites (a joint ranking over several sites) applies to method ap; method is '${e.method}'`);
    const profiled = (s.profile.sites ?? 'act').split(',').map((x) => x.trim());
    const joint = e.sites !== undefined, key = joint ? 'sites' : 'site';
    const ranked = joint ? e.sites!.split(',') : [e.site ?? 'act'];
    ranked.forEach((site) => {
      if (!(SITES as readonly string[]).includes(site)) fail(['identify', i, key], `unknown site '${site}' (sites: ${SITES.join(', ')})`);
      if (!profiled.includes(site)) fail(['identify', i, key], `site ${site} is not profiled: add it to profile.sites (${profiled.join(',')})`);
    });
    const ffnOnly = ranked.length === 1 && (NEURON_SITES as readonly string[]).includes(ranked[0]!);
    if (!ffnOnly) {
      const what = joint ? `a joint ranking gives one mask per site (${e.sites})` : `its units are ${ranked[0]} outputs, not FFN neurons`;
      const masked = (s.finetune?.methods ?? []).filter((m) => MASK_METHODS.includes(m));
      if (masked.length) fail(['identify', i, key], `${what}: fine-tuning a mask's neurons (finetune.methods ${masked.join(', ')}) needs an FFN mask; measure it with steer in a sweep of its own`);
      // {mask} is one mask: a joint ranking's set cannot fill it; a projection's mask can, edited at its own site.
      const withMask = (s.eval?.interventions ?? []).filter((spec) => spec.includes('{mask}'));
      if (joint && withMask.length)
        fail(['identify', i, 'sites'], `${what}: eval.interventions with {mask} take one mask; measure the set with steer in a sweep of its own`);
      const atSite = withMask.find((spec) => !spec.split(':').includes(`site=${ranked[0]}`));
      if (!joint && atSite !== undefined)
        fail(['identify', i, 'site'], `${what}: eval.interventions "${atSite}" must edit them there (add :site=${ranked[0]})`);
    }
  });
  if (s.profile.dropPartial && s.profile.scope === 'sentences') fail(['profile', 'dropPartial'], 'dropPartial applies to scope: windows');
  if ((s.profile.countBos || s.profile.dropLong) && s.profile.scope !== 'sentences')
    fail(['profile', s.profile.countBos ? 'countBos' : 'dropLong'], `${s.profile.countBos ? 'countBos' : 'dropLong'} applies to scope: sentences`);
  checkCorpus(s.profile.corpus, dir, ['profile', 'corpus'], fail);
  checkProfileLanguages(s.profile.corpus, s.languages, dir, ['profile', 'corpus'], fail);
  const selection = (sel: LanguageSelection | undefined, at: (string | number)[]) => {
    if (sel === 'low' && !(s.lowResource ?? []).length) fail(at, "'low' selects the lowResource languages, and the sweep names none");
    if (Array.isArray(sel)) sel.forEach((l, i) => { if (!langs.has(l)) fail([...at, i], `'${l}' is not one of the sweep's languages (${s.languages.join(', ')})`); });
  };
  const selected = (sel: LanguageSelection | undefined) => (sel === undefined || sel === 'all' ? s.languages : sel === 'low' ? s.lowResource ?? [] : sel);
  if (s.finetune) {
    selection(s.finetune.languages, ['finetune', 'languages']);
    checkText(s.finetune.train, selected(s.finetune.languages), dir, ['finetune', 'train'], fail);
    if (s.finetune.valid) checkText(s.finetune.valid, selected(s.finetune.languages), dir, ['finetune', 'valid'], fail);
    if (typeof s.finetune.lr === 'object') for (const m of Object.keys(s.finetune.lr))
      if (!s.finetune.methods.includes(m)) fail(['finetune', 'lr', m], `a learning rate for method '${m}', which finetune.methods does not list`);
  }
  if (s.eval) {
    selection(s.eval.languages, ['eval', 'languages']);
    s.eval.tasks.forEach((t, i) => {
      if (t === 'ppl' && !s.eval!.text) fail(['eval', 'tasks', i], 'task ppl needs eval.text (udhr:heldout or a folder of <lang>.txt)');
      if (t !== 'ppl' && !s.eval!.data) fail(['eval', 'tasks', i], `task ${t} needs eval.data (a dataset folder)`);
    });
    if (s.eval.text) checkText(s.eval.text, selected(s.eval.languages), dir, ['eval', 'text'], fail);
    if (s.eval.data && !existsSync(path.resolve(dir, s.eval.data))) fail(['eval', 'data'], `${path.resolve(dir, s.eval.data)}: no such folder`);
    (s.eval.interventions ?? []).forEach((spec, i) => {
      const unknown = [...spec.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]).find((k) => k !== 'mask' && k !== 'lang');
      if (unknown !== undefined) fail(['eval', 'interventions', i], `unknown placeholder {${unknown}} (placeholders: {mask}, {lang})`);
    });
  }
  if (s.steer?.lss) {
    let settings: ReturnType<typeof parseSettings> = [];
    try { settings = parseSettings(s.steer.lss.settings ?? DEFAULT_SETTINGS); } catch (e) { fail(['steer', 'lss', 'settings'], (e as Error).message); }
    checkSettingsStats(s, settings, ['steer', 'lss', 'settings'], fail);
  }
  if (s.steer?.lss && !existsSync(path.resolve(dir, s.steer.lss.facts))) fail(['steer', 'lss', 'facts'], `${path.resolve(dir, s.steer.lss.facts)}: no such file or folder`);
  if (s.steer?.pplMatrix?.evalText) checkCorpus(s.steer.pplMatrix.evalText, dir, ['steer', 'pplMatrix', 'evalText'], fail);
  checkGeneratingSteer(s, dir, fail, selection);
}

/**
 * A text spec read once per language (finetune.train / valid, eval.text): udhr[:split], a folder holding
 * <lang>.txt, or a path with {lang}; the file of every language that reads it must exist now, not when its step runs.
 */
function checkText(spec: string, langs: readonly string[], dir: string, at: (string | number)[], fail: (p: (string | number)[], m: string) => never): void {
  checkCorpus(spec, dir, at, fail);
  if (isUdhr(spec)) return checkUdhrLanguages(langs, at, fail);
  const folder = path.resolve(dir, spec);
  if (!spec.includes('{lang}') && !statSync(folder).isDirectory())
    fail(at, `${folder}: is a file; give a folder holding <lang>.txt, or a path with {lang} (e.g. ${spec.replace(/[^/]*$/, '{lang}.txt')})`);
  for (const lang of langs) {
    const file = path.resolve(dir, spec.includes('{lang}') ? spec.replaceAll('{lang}', lang) : path.join(spec, `${lang}.txt`));
    if (!existsSync(file) || !statSync(file).isFile()) fail(at, `${file}: no such file (language ${lang})`);
  }
}

function checkUdhrLanguages(langs: readonly string[], at: (string | number)[], fail: (p: (string | number)[], m: string) => never): void {
  for (const lang of langs) {
    try {
      resolveUdhrLanguage(lang);
    } catch (e) {
      fail(at, (e as Error).message);
    }
  }
}

/** profile.corpus must hold every language: UDHR knows it, or the folder / manifest has a source for it. */
function checkProfileLanguages(spec: string, langs: readonly string[], dir: string, at: (string | number)[], fail: (p: (string | number)[], m: string) => never): void {
  if (isUdhr(spec)) return checkUdhrLanguages(langs, at, fail);
  const root = path.resolve(dir, spec);
  let has: (lang: string) => boolean;
  if (statSync(root).isDirectory()) {
    has = (lang) => ['txt', 'jsonl', 'parquet'].some((ext) => existsSync(path.join(root, `${lang}.${ext}`))) ||
      (existsSync(path.join(root, lang)) && statSync(path.join(root, lang)).isDirectory());
  } else {
    let manifest: { languages?: unknown };
    try {
      manifest = JSON.parse(withoutBom(readFileSync(root, 'utf8'))) as { languages?: unknown };
    } catch (e) {
      return fail(at, `${root}: not a corpus folder nor a valid JSON manifest (${(e as Error).message})`);
    }
    const listed = typeof manifest.languages === 'object' && manifest.languages !== null ? Object.keys(manifest.languages) : [];
    has = (lang) => listed.includes(lang);
  }
  const missing = langs.filter((l) => !has(l));
  if (missing.length > 0) fail(at, `${root}: no corpus for ${missing.join(', ')} (expected <lang>.txt, .jsonl, .parquet or a <lang>/ folder)`);
}

/** A corpus spec: udhr[:split], or a path (with {lang} standing for each language) that must exist. */
function checkCorpus(spec: string, dir: string, at: (string | number)[], fail: (p: (string | number)[], m: string) => never): void {
  if (isUdhr(spec)) {
    if (!['udhr', 'udhr:train', 'udhr:heldout', 'udhr:all'].includes(spec)) fail(at, `'${spec}': the UDHR splits are udhr:train, udhr:heldout and udhr:all`);
    return;
  }
  if (spec.includes('{lang}')) {
    const folder = path.resolve(dir, path.dirname(spec));
    if (!existsSync(folder) || !statSync(folder).isDirectory()) fail(at, `${folder}: no such folder`);
    return;
  }
  if (!existsSync(path.resolve(dir, spec))) fail(at, `${path.resolve(dir, spec)}: no such file or folder`);
}
