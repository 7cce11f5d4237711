// Tang et al.'s files (RUCAIBox/Language-Specific-Neurons), which Gurgurov's and Mondal's public code and the
// released neuron sets of 100+ languages also use, converted to and from langneurons' masks and statistics:
//  - masks (`activation_mask/<model>`, `*.neuron.pth`): torch.save of a list over languages of a list over layers of
//    int64 index tensors (ascending neuron indices). The file holds no language names: their order is given.
//  - counts (`activation.<lang>.train.<model>`): torch.save({'n': tokens, 'over_zero': int32 [layers, I],
//    'sum1'..'sum4': float32 [layers, I]}), at the activation act(gate(x)); sum1 / sum2 are the sum and the sum of
//    squares. Tang cuts one token stream into windows of the model's max length and counts every position.
import { checkLanguageId } from '../corpus/language-id.js';
import { LangneuronsError } from '../errors.js';
import { isTorchTensor, type TorchTensor, type TorchValue } from '../io/torch-file.js';
import { NEURON_SITES, siteWithoutSums, STATS_FORMAT, type ActivationStats, type ModelIdentity } from '../profile/stats.js';
import { MASK_FORMAT, validateMask, type NeuronMask } from './masks.js';

function bad(file: string, msg: string): never {
  throw new LangneuronsError('E_INPUT', `${file}: ${msg}`, { file });
}

const toNumbers = (t: TorchTensor): number[] => Array.from(t.data as ArrayLike<number | bigint>, Number);

/** A Tang mask file's object as a mask of `languages` (in file order) on `model`. */
export function maskFromTang(value: unknown, languages: string[], model: ModelIdentity, file: string,
  extra: { sha256?: string } = {}): NeuronMask {
  for (const l of languages) checkLanguageId(l, 'language (--langs)'); // they become keys of the mask and {lang} names
  if (!Array.isArray(value)) bad(file, 'a Tang mask file holds a list over languages of a list over layers of index tensors; this one holds no list');
  if (value.length !== languages.length)
    bad(file, `the file holds ${value.length} languages, --langs names ${languages.length} (${languages.join(', ')}); give one name per language, in the file's order`);
  const out: Record<string, number[][]> = {};
  value.forEach((perLayer, k) => {
    const lang = languages[k]!;
    if (!Array.isArray(perLayer) || perLayer.length !== model.layers)
      bad(file, `language ${k} (${lang}): expected a list of ${model.layers} per-layer index tensors (the model's layers), got ${Array.isArray(perLayer) ? perLayer.length : typeof perLayer}`);
    out[lang] = perLayer.map((t: unknown, l: number) => {
      if (!isTorchTensor(t) || t.shape.length > 1 || !['int64', 'int32', 'int16', 'int8', 'uint8'].includes(t.dtype))
        bad(file, `language ${k} (${lang}), layer ${l}: expected a 1-D integer tensor of neuron indices`);
      const units = [...new Set(toNumbers(t))].sort((a, b) => a - b);
      const wrong = units.find((u) => u < 0 || u >= model.intermediate);
      if (wrong !== undefined) bad(file, `language ${k} (${lang}), layer ${l}: neuron ${wrong} is outside [0, ${model.intermediate}) (the model's intermediate size)`);
      return units;
    });
  });
  if (new Set(languages).size !== languages.length) bad(file, `--langs names a language twice (${languages.join(', ')})`);
  return validateMask({
    format: MASK_FORMAT, method: 'tang-import', parameters: { file, ...extra, languages }, site: 'act', model: { ...model }, sources: [],
    layers: model.layers, width: model.intermediate, languages: out,
  }, file);
}

/**
 * A mask as Tang's list over languages (given order, default the mask's) of per-layer int64 index tensors. Tang's
 * indices are FFN neurons (act(gate(x))): a mask at another site (a projection's output units, the residual stream)
 * would come out as neuron indices that mean something else, so only the sites whose units are the FFN neurons are
 * written. `file` names the mask in errors. The languages must be the mask's, each once (the file holds no names: a
 * language twice or a missing one shifts every later language's neurons onto the wrong name).
 */
export function maskToTang(mask: NeuronMask, languages = Object.keys(mask.languages), file = 'the mask'): TorchValue {
  if (!NEURON_SITES.includes(mask.site) || mask.width !== mask.model.intermediate)
    throw new LangneuronsError('E_MASK', `${file}: a mask at site ${mask.site} (${mask.width} units per layer) cannot be written in Tang's format, whose indices are ` +
      `FFN neurons (${mask.model.intermediate} per layer): only masks at ${NEURON_SITES.join(', ')} can`, { file });
  if (!languages.length) throw new LangneuronsError('E_OPTIONS', 'languages (--langs) names no language', { field: 'langs' });
  const twice = languages.find((l, i) => languages.indexOf(l) !== i);
  if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `languages (--langs): ${twice} is given twice`, { field: 'langs' });
  return languages.map((lang) => {
    if (!Object.prototype.hasOwnProperty.call(mask.languages, lang))
      throw new LangneuronsError('E_OPTIONS', `${file}: the mask has no language "${lang}" (it has ${Object.keys(mask.languages).join(', ')})`, { field: 'langs' });
    const perLayer = mask.languages[lang]!;
    return perLayer.map((units): TorchTensor => ({ dtype: 'int64', shape: [units.length], data: BigInt64Array.from(units, (u) => BigInt(u)) }));
  });
}

/** The float64 values of a [layers, I] tensor of the counts file. */
function layerMatrix(t: unknown, key: string, model: ModelIdentity, file: string): Float64Array {
  if (!isTorchTensor(t) || t.shape.length !== 2 || t.shape[0] !== model.layers || t.shape[1] !== model.intermediate)
    bad(file, `'${key}' must be a [${model.layers}, ${model.intermediate}] tensor (layers × the model's intermediate size)${isTorchTensor(t) ? `, got [${t.shape}]` : ''}`);
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') bad(file, `'${key}' is ${t.dtype}: save it as float32 or float64`);
  return Float64Array.from(t.data as ArrayLike<number | bigint>, Number);
}

export interface TangStatsOptions {
  language: string;
  model: ModelIdentity;
  /** Tokens per window of the run that wrote the file (Tang: the model's max length). */
  maxLen: number;
  /** sha256 of the file (the corpus fingerprint: the corpus itself is not known). */
  sha256: string;
}

/**
 * A Tang counts file's object ({n, over_zero, sum1, sum2, ...}) as statistics at site act. Every value is checked
 * (counts in [0, n], finite sums, sums of squares ≥ 0): one bad value would move the masks without a word. A file
 * with only n and over_zero imports with its sums recorded as absent (means refused, counts usable), never as zeros.
 * Its part is the file's content (sha256), so `stats merge` refuses it given twice.
 */
export function statsFromTang(value: unknown, o: TangStatsOptions, file: string): ActivationStats {
  checkLanguageId(o.language, 'language (--lang)'); // it becomes a file name and a key of masks
  if (!Number.isInteger(o.maxLen) || o.maxLen < 1)
    throw new LangneuronsError('E_OPTIONS', `maxLen (--max-len) must be an integer >= 1 (the window length the counts were taken with), got ${o.maxLen}`, { field: 'max-len' });
  if (!(value instanceof Map)) bad(file, "a Tang counts file holds a dict {'n': …, 'over_zero': …}; this one holds no dict");
  const get = (k: string) => { if (!value.has(k)) bad(file, `the dict has no '${k}' (keys: ${[...value.keys()].join(', ')})`); return value.get(k); };
  let n = get('n');
  if (isTorchTensor(n) && n.data.length === 1) n = Number(n.data[0]);
  if (typeof n === 'bigint') n = Number(n);
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) bad(file, `'n' must be the number of tokens counted (at least 1), got ${typeof n === 'string' ? JSON.stringify(n) : String(n)}`);
  const tokens = n;
  const I = o.model.intermediate;
  const overZero = checked(layerMatrix(get('over_zero'), 'over_zero', o.model, file), I, 'over_zero', file,
    (v) => Number.isInteger(v) && v >= 0 && v <= tokens, `a count of tokens (an integer from 0 to n = ${tokens})`);
  const site = { site: 'act' as const, width: I, overZero };
  const [hasSum, hasSumSq] = [value.has('sum1'), value.has('sum2')];
  if (hasSum !== hasSumSq) bad(file, `the dict has '${hasSum ? 'sum1' : 'sum2'}' but no '${hasSum ? 'sum2' : 'sum1'}': give both sums or neither`);
  const act = hasSum
    ? { ...site,
      sum: checked(layerMatrix(value.get('sum1'), 'sum1', o.model, file), I, 'sum1', file, Number.isFinite, 'a finite sum'),
      sumSq: checked(layerMatrix(value.get('sum2'), 'sum2', o.model, file), I, 'sum2', file, (v) => Number.isFinite(v) && v >= 0, 'a finite sum of squares (≥ 0)') }
    : siteWithoutSums(site, file);
  return {
    meta: {
      format: STATS_FORMAT, model: { ...o.model }, language: o.language,
      // Tang's activation.py counts whole windows only (ids[:l // max_length * max_length]): profile --drop-partial
      scope: { mode: 'windows', maxLen: o.maxLen, bos: false, countPadding: false, tokenBudget: 0, partialWindow: 'drop' },
      layers: Array.from({ length: o.model.layers }, (_, l) => l), corpus: { files: [file], fingerprint: o.sha256 },
      toolVersion: 'tang-import', shards: 1,
      // The corpus is not known: the file's content stands for it, and is the part's id (one file, one part).
      parts: [{ corpus: o.sha256, shard: null, budget: 0, id: `tang-import:${o.sha256}` }],
    },
    tokens, sequences: o.maxLen > 0 ? Math.floor(tokens / o.maxLen) : 0,
    sites: new Map([['act', act]]),
  };
}

/** xs ([layers, width]) when every value passes `ok`; else one line naming the file, the key and the first bad value's place. */
function checked(xs: Float64Array, width: number, key: string, file: string, ok: (v: number) => boolean, what: string): Float64Array {
  for (let i = 0; i < xs.length; i++)
    if (!ok(xs[i]!)) bad(file, `'${key}' holds ${xs[i]} at layer ${Math.floor(i / width)}, neuron ${i % width}, which is not ${what}`);
  return xs;
}

/** Largest count Tang's int32 over_zero holds. */
const INT32_MAX = 2 ** 31 - 1;

/**
 * Statistics (all layers, site act) as Tang's counts dict: n, over_zero int32, sum1 / sum2 float32. A count beyond
 * int32 (a neuron active on more than 2^31 − 1 tokens) is refused: Int32Array would wrap it to a negative count.
 * `file` names the statistics in errors.
 */
export function statsToTang(s: ActivationStats, file = 'the statistics'): TorchValue {
  const act = s.sites.get('act');
  if (!act) throw new LangneuronsError('E_STATS', `${file}: the statistics have no site act (Tang counts act(gate(x)) > 0)`, { file });
  if (s.meta.layers.length !== s.meta.model.layers)
    throw new LangneuronsError('E_STATS', `${file}: the statistics cover ${s.meta.layers.length} of ${s.meta.model.layers} layers; Tang's counts have every layer`, { file });
  for (let i = 0; i < act.overZero.length; i++)
    if (act.overZero[i]! > INT32_MAX)
      throw new LangneuronsError('E_STATS', `${file}: over_zero of layer ${s.meta.layers[Math.floor(i / act.width)]}, neuron ${i % act.width} is ${act.overZero[i]}, ` +
        `more than Tang's int32 counts hold (at most ${INT32_MAX})`, { file });
  const shape = [s.meta.layers.length, act.width];
  const counts = { n: s.tokens, over_zero: { dtype: 'int32', shape, data: Int32Array.from(act.overZero) } satisfies TorchTensor };
  if (act.sumsAbsent) return counts; // no sums were recorded: none written, rather than zeros
  return {
    ...counts,
    sum1: { dtype: 'float32', shape, data: Float32Array.from(act.sum) },
    sum2: { dtype: 'float32', shape, data: Float32Array.from(act.sumSq) },
  };
}
