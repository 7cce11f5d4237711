// Intervention specs (METHODS.md section 3): which neurons, which site, what operation, where. Two forms, one
// meaning: the canonical object (InterventionSpec, also the JSON form) and the CLI string parsed into it.
//
// CLI string: colon-separated fields. Fields `key=value` are options; the others are the verb and its arguments.
//   deactivate:<mask>:<lang>            set the language's neurons to 0 (Tang)
//   amplify:<mask>:<lang>[:<stat>]      set them to a statistic of that language (default p_max; Rahmanisa)
//   random:<mask>:<lang>                deactivate a random set of the same size per layer (seed=, default 0)
//   zero | set:<v> | set:<stat>:<lang>  set to 0, a constant, or a per-neuron statistic of a language
//   add:<v> | add:<α>:<stat>:<lang>     add a constant, or α × a statistic (Language Arithmetics "additive")
//   scale:<α>                           multiply
//   diffmean:<lang>[:<α>]               add α (μ_lang − mean of μ_k over the other languages k); neurons
//                                       default to lang's in mask=; others=a+b (default: the mask's other languages)
//   testtime:<=|*|+>:<rowstat>[:<k>]    combine with k × a statistic of the token's row at the site (Rahmanisa)
// Options: mask=<file> lang=<l>[+<l2>...|*] (a union) seed=<n> (random same-size set) neurons=all
//   site=act|gate|h|up|q|k|v|o|down  positions=all|non-padding|prompt|generated  layers=all|<a>-<b>|<a>,<b>-<c>
//   stats=<dir>|<file.safetensors> (dir: <dir>/<lang>.safetensors; default: the --stats option)  others=<l>+<l>
// Sites: the FFN neurons act (default), gate, h, up, and the output units of the projections q, k, v (after the bias,
// before q/k norm and RoPE), o and down (before any post-norm and the residual add); testtime works on act, gate, h.
// Statistics of a language (<stat>): mean, median, p<q> (e.g. p90; over tokens, from the histogram), p_max, p_median
// (max / median over sequences of the sequence mean; p_median is Kojima's forcing value, their on_p50). Row statistics
// (<rowstat>): mean, std, median, max, iqr, mad, p<q>.
// Example: deactivate:masks/lape.json:en:positions=prompt:layers=4-10
import { LangneuronsError } from '../errors.js';
import { withoutBom } from '../io/text.js';

/** Where an edit applies: the FFN neurons, or the output units of a projection (Kojima's method). Not `resid`. */
export type InterventionSite = 'act' | 'gate' | 'h' | 'up' | 'q' | 'k' | 'v' | 'o' | 'down';
export const INTERVENTION_SITES: readonly InterventionSite[] = ['act', 'gate', 'h', 'up', 'q', 'k', 'v', 'o', 'down'];
/** Sites a test-time rule may read (Rahmanisa's row statistics are over the FFN row). */
export const TESTTIME_SITES: readonly InterventionSite[] = ['act', 'gate', 'h'];
export type Positions = 'all' | 'non-padding' | 'prompt' | 'generated';
export const POSITIONS: readonly Positions[] = ['all', 'non-padding', 'prompt', 'generated'];

/** Every neuron, or a mask's languages (united), optionally replaced by a random set of the same size per layer. */
export type NeuronSet = 'all' | { mask: string; languages: string[]; randomSeed?: number };

/** A constant, or a per-neuron statistic of a language (mean, median, p<q>, p_max, p_median). */
export type ValueSpec = number | { statistic: string; language: string };

export type Operation =
  | { op: 'set'; value: ValueSpec }
  | { op: 'add'; value: ValueSpec; alpha?: number }
  | { op: 'scale'; factor: number }
  | { op: 'diffmean'; language: string; others?: string[]; alpha?: number }
  | { op: 'testtime'; combine: '=' | '*' | '+'; statistic: string; factor?: number };

export interface InterventionSpec {
  neurons: NeuronSet;
  operation: Operation;
  site?: InterventionSite;        // default act
  positions?: Positions;          // default all
  /** 'all' (default) or inclusive [from, to] ranges of layers. */
  layers?: 'all' | [number, number][];
  /** Statistics: a folder of <language>.safetensors or one file. */
  stats?: string;
  /** What the spec was parsed from, for messages. */
  source?: string;
}

export const NEURON_STATISTICS = 'mean, median, p<q> (e.g. p90), p_max, p_median';
export const ROW_STATISTICS = 'mean, std, median, max, iqr, mad, p<q> (e.g. p90)';
const PERCENTILE = /^p(\d+(\.\d+)?)$/;

export const isNeuronStatistic = (s: string): boolean =>
  ['mean', 'median', 'p_max', 'p_median'].includes(s) || (PERCENTILE.test(s) && Number(s.slice(1)) <= 100);
export const isRowStatistic = (s: string): boolean =>
  ['mean', 'std', 'median', 'max', 'iqr', 'mad'].includes(s) || (PERCENTILE.test(s) && Number(s.slice(1)) <= 100);

function specError(source: string | undefined, message: string): LangneuronsError {
  return new LangneuronsError('E_INTERVENE', source ? `intervention "${source}": ${message}` : `intervention: ${message}`, { field: 'intervene' });
}

/** Activations are float32: a value beyond this becomes Inf in the engine. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** A decimal number as people write one (`-1.5`, `.5`, `2e-3`), nothing around it. Number() alone also takes
 *  `0x10`, `0b1`, `0o7` and surrounding blanks (" 1"), so a typo such as `add:0x10` silently became 16. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** The value of a decimal number (DECIMAL), or NaN for any other text. */
export function parseDecimal(text: string): number {
  return DECIMAL.test(text) ? Number(text) : NaN;
}

/** Whether x is a number the engine's float32 arithmetic holds (finite, within ±FLOAT32_MAX). */
export const fitsFloat32 = (x: number): boolean => Number.isFinite(x) && Math.abs(x) <= FLOAT32_MAX;

/** Why a number cannot be an intervention's value, or null when it can. */
function float32Problem(x: number): string | null {
  if (!Number.isFinite(x)) return 'is not a finite number';
  return Math.abs(x) > FLOAT32_MAX ? `overflows float32 (largest ${FLOAT32_MAX.toExponential(4)})` : null;
}

function parseNumber(text: string, what: string, source: string): number {
  const x = parseDecimal(text);
  if (Number.isNaN(x)) throw specError(source, `${what} must be a finite number, got "${text}" (written in decimal, such as 2, -1.5 or 1e-3)`);
  const problem = float32Problem(x);
  if (problem) throw specError(source, `${what} ${text} ${problem}`);
  return x;
}

/** "all" or "4-10" or "1,3,5-7" into inclusive ranges. */
export function parseLayers(text: string, source = ''): 'all' | [number, number][] {
  if (text === 'all') return 'all';
  return text.split(',').map((part) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw specError(source, `layers must be "all", "<a>-<b>" or a comma list of those, got "${text}"`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw specError(source, `layer range ${part} is reversed`);
    return [a, b] as [number, number];
  });
}

const OPTION_KEYS = ['mask', 'lang', 'seed', 'neurons', 'site', 'positions', 'layers', 'stats', 'others'] as const;
type OptionKey = (typeof OPTION_KEYS)[number];

/**
 * Parses the CLI form (see the top of this file). `defaultStats` is the --stats option; `where` names the spec in
 * messages (default: its text), e.g. `iv.json[2]` for an entry of an --intervene-file.
 */
export function parseInterventionSpec(text: string, defaultStats?: string, where?: string): InterventionSpec {
  const source = where ?? text;
  const opts = new Map<OptionKey, string>();
  const pos: string[] = [];
  for (const field of text.split(':')) {
    const m = /^([a-z_]+)=(.*)$/.exec(field);
    if (!m) { pos.push(field); continue; }
    const key = m[1] as OptionKey;
    if (!OPTION_KEYS.includes(key)) throw specError(source, `unknown option "${m[1]}" (options: ${OPTION_KEYS.join(', ')})`);
    if (opts.has(key)) throw specError(source, `option "${key}" is given twice`);
    opts.set(key, m[2]!);
  }
  const [verb = '', ...args] = pos;
  const arity = (min: number, max: number, usage: string) => {
    if (args.length < min || args.length > max) throw specError(source, `expected ${usage}`);
  };
  const value = (a: string[], usage: string): ValueSpec => {
    if (a.length === 1) return parseNumber(a[0]!, 'the value', source);
    if (a.length === 2) return { statistic: a[0]!, language: a[1]! };
    throw specError(source, `expected ${usage}`);
  };
  let mask = opts.get('mask'), lang = opts.get('lang');
  let operation: Operation;
  switch (verb) {
    case 'deactivate': case 'random': case 'amplify':
      if (verb === 'amplify') arity(2, 3, 'amplify:<mask>:<language>[:<statistic>]');
      else arity(2, 2, `${verb}:<mask>:<language>`);
      if (mask !== undefined || lang !== undefined) throw specError(source, `${verb} takes the mask and language as arguments, not as options`);
      [mask, lang] = [args[0]!, args[1]!];
      operation = verb === 'amplify' ? { op: 'set', value: { statistic: args[2] ?? 'p_max', language: args[1]! } } : { op: 'set', value: 0 };
      break;
    case 'zero': arity(0, 0, 'zero with no arguments'); operation = { op: 'set', value: 0 }; break;
    case 'set': operation = { op: 'set', value: value(args, 'set:<value> or set:<statistic>:<language>') }; break;
    case 'add':
      if (args.length === 3) operation = { op: 'add', alpha: parseNumber(args[0]!, 'α', source), value: value(args.slice(1), '') };
      else operation = { op: 'add', value: value(args, 'add:<value> or add:<α>:<statistic>:<language>') };
      break;
    case 'scale': arity(1, 1, 'scale:<factor>'); operation = { op: 'scale', factor: parseNumber(args[0]!, 'the factor', source) }; break;
    case 'diffmean':
      arity(1, 2, 'diffmean:<language>[:<α>]');
      operation = { op: 'diffmean', language: args[0]!, ...(args[1] !== undefined ? { alpha: parseNumber(args[1], 'α', source) } : {}),
        ...(opts.has('others') ? { others: opts.get('others')!.split('+') } : {}) };
      lang ??= args[0]!;
      break;
    case 'testtime':
      arity(2, 3, 'testtime:<=|*|+>:<row statistic>[:<factor>]');
      operation = { op: 'testtime', combine: args[0] as '=', statistic: args[1]!, ...(args[2] !== undefined ? { factor: parseNumber(args[2], 'the factor', source) } : {}) };
      break;
    default:
      throw specError(source, `unknown operation "${verb}" (deactivate, amplify, random, zero, set, add, scale, diffmean, testtime)`);
  }
  if (opts.has('others') && verb !== 'diffmean') throw specError(source, 'option "others" is for diffmean only');
  let neurons: NeuronSet;
  if (opts.get('neurons') !== undefined) {
    if (opts.get('neurons') !== 'all') throw specError(source, `neurons= takes only "all", got "${opts.get('neurons')}"`);
    if (mask !== undefined) throw specError(source, 'give either neurons=all or a mask, not both');
    neurons = 'all';
  } else {
    if (mask === undefined || lang === undefined)
      throw specError(source, 'no neurons selected: give mask=<file> and lang=<language> (or neurons=all)');
    const seed = verb === 'random' ? opts.get('seed') ?? '0' : opts.get('seed');
    neurons = { mask, languages: lang.split('+'), ...(seed !== undefined ? { randomSeed: parseNumber(seed, 'seed', source) } : {}) };
  }
  const stats = opts.get('stats') ?? defaultStats;
  return validateSpec({
    neurons, operation, source,
    ...(opts.has('site') ? { site: opts.get('site') as InterventionSite } : {}),
    ...(opts.has('positions') ? { positions: opts.get('positions') as Positions } : {}),
    ...(opts.has('layers') ? { layers: parseLayers(opts.get('layers')!, source) } : {}),
    ...(stats !== undefined ? { stats } : {}),
  });
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isFiniteNumber = (x: unknown): x is number => typeof x === 'number' && fitsFloat32(x); // beyond: Inf in the engine
const isStringList = (x: unknown): x is string[] => Array.isArray(x) && x.length > 0 && x.every((s) => typeof s === 'string' && s.length > 0);

/** The keys of a spec object and of its parts: any other key is refused (a misspelt "sitee" must not pass unseen). */
const SPEC_KEYS = ['neurons', 'operation', 'site', 'positions', 'layers', 'stats', 'source'];
const NEURONS_KEYS = ['mask', 'languages', 'randomSeed'];
const VALUE_KEYS = ['statistic', 'language'];
const OPERATION_KEYS: Record<Operation['op'], string[]> = {
  set: ['op', 'value'], add: ['op', 'value', 'alpha'], scale: ['op', 'factor'],
  diffmean: ['op', 'language', 'others', 'alpha'], testtime: ['op', 'combine', 'statistic', 'factor'],
};

/**
 * Checks an untrusted canonical spec (a JSON entry, or a TypeScript caller's object); returns it with defaults.
 * `where` names it in messages (an --intervene-file entry: `iv.json[0]`); without it, its `source`.
 */
export function validateSpec(raw: unknown, where?: string): InterventionSpec {
  if (!isObject(raw)) throw specError(where, 'a spec must be an object or a spec string');
  const source = where ?? (typeof raw['source'] === 'string' ? raw['source'] : undefined);
  const bad = (msg: string): never => { throw specError(source, msg); };
  const onlyKeys = (x: Record<string, unknown>, keys: readonly string[], what: string) => {
    const unknown = Object.keys(x).find((k) => x[k] !== undefined && !keys.includes(k));
    if (unknown !== undefined) bad(`unknown key ${JSON.stringify(unknown)} in ${what} (its keys: ${keys.join(', ')})`);
  };
  onlyKeys(raw, SPEC_KEYS, 'the spec');
  const n = raw['neurons'];
  if (n !== 'all') {
    if (!isObject(n) || typeof n['mask'] !== 'string' || !n['mask'] || !isStringList(n['languages']))
      bad('neurons must be "all" or { mask: <file>, languages: [<language>, ...], randomSeed?: <integer> }');
    onlyKeys(n as Record<string, unknown>, NEURONS_KEYS, '"neurons"');
    const seed = (n as Record<string, unknown>)['randomSeed'];
    if (seed !== undefined && !(Number.isSafeInteger(seed) && (seed as number) >= 0)) bad(`randomSeed must be an integer >= 0, got ${JSON.stringify(seed)}`);
  }
  const o = raw['operation'];
  if (!isObject(o)) return bad('operation must be an object with an "op"');
  // A number the engine cannot hold is named as such (1e40 overflows float32), not as a value of the wrong kind.
  const numberProblem = (what: string, x: unknown) => { if (typeof x === 'number' && float32Problem(x)) bad(`${what} ${x} ${float32Problem(x)}`); };
  const checkValue = (v: unknown) => {
    if (isFiniteNumber(v)) return;
    numberProblem('value', v);
    if (!isObject(v) || typeof v['statistic'] !== 'string' || typeof v['language'] !== 'string' || !v['language'])
      bad('value must be a finite number or { statistic, language }');
    onlyKeys(v as Record<string, unknown>, VALUE_KEYS, 'the operation\'s "value"');
    if (!isNeuronStatistic((v as Record<string, string>)['statistic']!)) bad(`unknown statistic "${String((v as Record<string, unknown>)['statistic'])}" (statistics: ${NEURON_STATISTICS})`);
  };
  const optionalNumber = (k: string) => {
    numberProblem(k, o[k]);
    if (o[k] !== undefined && !isFiniteNumber(o[k])) bad(`${k} must be a finite number, got ${JSON.stringify(o[k])}`);
  };
  switch (o['op']) {
    case 'set': checkValue(o['value']); break;
    case 'add': checkValue(o['value']); optionalNumber('alpha'); break;
    case 'scale': numberProblem('factor', o['factor']); if (!isFiniteNumber(o['factor'])) bad('scale needs a finite factor'); break;
    case 'diffmean':
      if (typeof o['language'] !== 'string' || !o['language']) bad('diffmean needs a language');
      if (o['others'] !== undefined && !isStringList(o['others'])) bad('others must be a non-empty list of languages');
      optionalNumber('alpha');
      break;
    case 'testtime':
      if (!['=', '*', '+'].includes(o['combine'] as string)) bad(`testtime combines with =, * or +, got ${JSON.stringify(o['combine'])}`);
      if (typeof o['statistic'] !== 'string' || !isRowStatistic(o['statistic'])) bad(`unknown row statistic ${JSON.stringify(o['statistic'])} (statistics: ${ROW_STATISTICS})`);
      optionalNumber('factor');
      break;
    default: bad(`unknown op ${JSON.stringify(o['op'])} (set, add, scale, diffmean, testtime)`);
  }
  onlyKeys(o, OPERATION_KEYS[o['op'] as Operation['op']], `a ${String(o['op'])} operation`);
  const site = raw['site'] ?? 'act';
  if (!INTERVENTION_SITES.includes(site as InterventionSite)) bad(`site must be one of ${INTERVENTION_SITES.join(', ')}, got ${JSON.stringify(site)}`);
  if (o['op'] === 'testtime' && !TESTTIME_SITES.includes(site as InterventionSite))
    bad(`testtime works on ${TESTTIME_SITES.join(', ')} only, not at site ${String(site)}`);
  const positions = raw['positions'] ?? 'all';
  if (!POSITIONS.includes(positions as Positions)) bad(`positions must be one of ${POSITIONS.join(', ')}, got ${JSON.stringify(positions)}`);
  let layers = raw['layers'] ?? 'all';
  if (typeof layers === 'string') layers = parseLayers(layers, source);
  if (layers !== 'all' && !(Array.isArray(layers) && layers.every((r) => Array.isArray(r) && r.length === 2 &&
      r.every((x) => Number.isSafeInteger(x) && x >= 0) && r[0] <= r[1])))
    bad('layers must be "all", a string such as "4-10", or a list of inclusive [from, to] pairs');
  if (raw['stats'] !== undefined && typeof raw['stats'] !== 'string') bad('stats must be a path');
  return { ...(raw as unknown as InterventionSpec), site: site as InterventionSite, positions: positions as Positions, layers: layers as InterventionSpec['layers'] };
}

/** The --intervene-file form: a JSON array whose entries are spec strings or canonical spec objects. (JSON only:
 *  no YAML parser is among the project's dependencies.) */
export function parseInterventionFile(text: string, file: string, defaultStats?: string): InterventionSpec[] {
  let raw: unknown;
  const json = withoutBom(text);
  try { raw = JSON.parse(json); } catch (e) { throw specError(file, `not valid JSON: ${(e as Error).message}`); }
  if (!Array.isArray(raw)) throw specError(file, 'expected a JSON array of specs');
  // Each entry is named <file>[<index>] in messages, also those found when it is resolved (a missing mask or statistic).
  return raw.map((entry, i) => {
    const where = `${file}[${i}]`;
    if (typeof entry === 'string') return parseInterventionSpec(entry, defaultStats, where);
    const spec = { ...validateSpec(entry, where), source: where };
    return spec.stats === undefined && defaultStats !== undefined ? { ...spec, stats: defaultStats } : spec;
  });
}

/** Whether a spec reads per-language profiling statistics (a statistic value, diffmean) and names none of its own. */
export function specNeedsStats(spec: InterventionSpec): boolean {
  if (spec.stats !== undefined) return false;
  const op = spec.operation;
  return op.op === 'diffmean' || ((op.op === 'set' || op.op === 'add') && typeof op.value === 'object');
}
