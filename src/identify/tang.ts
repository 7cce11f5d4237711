// Tang et al.'s files (RUCAIBox/Language-Specific-Neurons), which Gurgurov's and Mondal's public code and the
// released neuron sets of 100+ languages also use, converted to and from langneurons' masks and statistics:
//  - masks (`activation_mask/<model>`, `*.neuron.pth`): torch.save of a list over languages of a list over layers of
//    int64 index tensors (ascending neuron indices). The file holds no language names: their order is given.
//  - counts (`activation.<lang>.train.<model>`): torch.save({'n': tokens, 'over_zero': int32 [layers, I],
//    'sum1'..'sum4': float32 [layers, I]}), at the activation act(gate(x)); sum1 / sum2 are the sum and the sum of
//    squares. Tang cuts one token stream into windows of the model's max length and counts every position.
import { LangneuronsError } from '../errors.js';
import { isTorchTensor, type TorchTensor, type TorchValue } from '../io/torch-file.js';
import { STATS_FORMAT, type ActivationStats, type ModelIdentity } from '../profile/stats.js';
import { MASK_FORMAT, validateMask, type NeuronMask } from './masks.js';

function bad(file: string, msg: string): never {
  throw new LangneuronsError('E_INPUT', `${file}: ${msg}`, { file });
}

const toNumbers = (t: TorchTensor): number[] => Array.from(t.data as ArrayLike<number | bigint>, Number);

/** A Tang mask file's object as a mask of `languages` (in file order) on `model`. */
export function maskFromTang(value: unknown, languages: string[], model: ModelIdentity, file: string,
  extra: { sha256?: string } = {}): NeuronMask {
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

/** A mask as Tang's list over languages (given order, default the mask's) of per-layer int64 index tensors. */
export function maskToTang(mask: NeuronMask, languages = Object.keys(mask.languages)): TorchValue {
  return languages.map((lang) => {
    const perLayer = mask.languages[lang];
    if (!perLayer) throw new LangneuronsError('E_OPTIONS', `the mask has no language "${lang}" (it has ${Object.keys(mask.languages).join(', ')})`, { field: 'langs' });
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

/** A Tang counts file's object ({n, over_zero, sum1, sum2, ...}) as statistics at site act. */
export function statsFromTang(value: unknown, o: TangStatsOptions, file: string): ActivationStats {
  if (!(value instanceof Map)) bad(file, "a Tang counts file holds a dict {'n': …, 'over_zero': …}; this one holds no dict");
  const get = (k: string) => { if (!value.has(k)) bad(file, `the dict has no '${k}' (keys: ${[...value.keys()].join(', ')})`); return value.get(k); };
  let n = get('n');
  if (isTorchTensor(n) && n.data.length === 1) n = Number(n.data[0]);
  if (typeof n === 'bigint') n = Number(n);
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) bad(file, `'n' must be a token count, got ${String(n)}`);
  const overZero = layerMatrix(get('over_zero'), 'over_zero', o.model, file);
  const zeros = () => new Float64Array(overZero.length);
  const sum = value.has('sum1') ? layerMatrix(value.get('sum1'), 'sum1', o.model, file) : zeros();
  const sumSq = value.has('sum2') ? layerMatrix(value.get('sum2'), 'sum2', o.model, file) : zeros();
  return {
    meta: {
      format: STATS_FORMAT, model: { ...o.model }, language: o.language,
      scope: { mode: 'windows', maxLen: o.maxLen, bos: false, countPadding: false, tokenBudget: 0 },
      layers: Array.from({ length: o.model.layers }, (_, l) => l), corpus: { files: [file], fingerprint: o.sha256 },
      toolVersion: 'tang-import', shards: 1,
    },
    tokens: n, sequences: o.maxLen > 0 ? Math.floor(n / o.maxLen) : 0,
    sites: new Map([['act', { site: 'act', width: o.model.intermediate, overZero, sum, sumSq }]]),
  };
}

/** Statistics (all layers, site act) as Tang's counts dict: n, over_zero int32, sum1 / sum2 float32. */
export function statsToTang(s: ActivationStats): TorchValue {
  const act = s.sites.get('act');
  if (!act) throw new LangneuronsError('E_STATS', 'the statistics have no site act (Tang counts act(gate(x)) > 0)');
  if (s.meta.layers.length !== s.meta.model.layers)
    throw new LangneuronsError('E_STATS', `the statistics cover ${s.meta.layers.length} of ${s.meta.model.layers} layers; Tang's counts have every layer`);
  const shape = [s.meta.layers.length, act.width];
  return {
    n: s.tokens,
    over_zero: { dtype: 'int32', shape, data: Int32Array.from(act.overZero) },
    sum1: { dtype: 'float32', shape, data: Float32Array.from(act.sum) },
    sum2: { dtype: 'float32', shape, data: Float32Array.from(act.sumSq) },
  };
}
