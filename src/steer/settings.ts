// Interventions as the steering measures see them (METHODS.md §3-4). The measures never look inside an
// intervention: they receive opaque values from the caller and hand them back to the
// scorer / generator callbacks, which pass them to the engine (`{ intervene }` options). What this module
// owns is the user-facing vocabulary of the measures: which neurons (a mask language) and which amplification
// setting (`p_max`, `scale:2`, `add:max` ...), parsed and validated, and turned into the engine's spec text
// by `src/steer/engine.ts` (canonical specs of src/intervene/spec.ts).
import { LangneuronsError } from '../errors.js';
import { FLOAT32_MAX, fitsFloat32, parseDecimal } from '../intervene/spec.js';

/** An intervention as the engine accepts it; the measures only pass it through. */
export type InterventionLike = unknown;

/** Row statistics the engine computes at test time (Rahmanisa): of the current token's layer row. */
export const ROW_STATS = ['mean', 'std', 'median', 'max', 'iqr', 'mad'] as const;
export type RowStatName = (typeof ROW_STATS)[number] | `p${number}`;

/** Per-neuron statistics of the target language taken from profiling (METHODS.md §3 `set stat`). */
export const NEURON_STATS = ['p_max', 'p_median', 'mean'] as const;
export type NeuronStatName = (typeof NEURON_STATS)[number];

/**
 * How the target language's neurons are amplified:
 * - `neuron-stat`: set each neuron to its own statistic in the target language (`p_max`, `p_median`, `mean`);
 * - `scale`: multiply by α (`scale:2`);
 * - `set` / `add` / `mul` with a constant (`set:5`, `add:1.5`) or a test-time row statistic times an integer
 *   factor (`set:max`, `add:max`, `add:2*median`, `set:p90`): Rahmanisa's `=`, `+`, `*`.
 */
export type AmplifySetting =
  | { name: string; kind: 'neuron-stat'; stat: NeuronStatName }
  /** Language Arithmetics "additive": add α·μ_target (`add-mean:<α>`), "diffmean": add α(μ_target − mean_k μ_k) (`diffmean:<α>`). */
  | { name: string; kind: 'add-mean' | 'diffmean'; alpha: number }
  | { name: string; kind: 'scale'; factor: number }
  | { name: string; kind: 'set' | 'add' | 'mul'; value: number }
  | { name: string; kind: 'set' | 'add' | 'mul'; rowStat: RowStatName; factor: number };

const isRowStat = (s: string): s is RowStatName =>
  (ROW_STATS as readonly string[]).includes(s) || (/^p(\d+(\.\d+)?)$/.test(s) && Number(s.slice(1)) <= 100);

function badSetting(text: string, why: string): never {
  throw new LangneuronsError('E_OPTIONS', `amplification setting "${text}": ${why} (known: p_max, p_median, mean, add-mean[:<α>], diffmean[:<α>], scale:<α>, ` +
    `set:<v|stat>, add:<v|stat>, mul:<v|stat>, with stat one of ${ROW_STATS.join(', ')}, p<q>, optionally <k>*stat)`, { field: '--settings' });
}

/** A number of a setting: written in decimal (`0x10` or `" 1"` are refused, as the intervention specs refuse them),
 *  and within float32, which the engine's edits hold (1e40 would become Inf there). */
function settingNumber(name: string, text: string, needs: string): number {
  const x = parseDecimal(text);
  if (Number.isNaN(x)) badSetting(name, `${needs} a finite number written in decimal (such as 2, -1.5 or 1e-3), got "${text}"`);
  if (!fitsFloat32(x)) badSetting(name, `${text} overflows float32 (largest ${FLOAT32_MAX.toExponential(4)})`);
  return x;
}

/** Parses one setting name (see AmplifySetting). */
export function parseSetting(text: string): AmplifySetting {
  const name = text.trim();
  if ((NEURON_STATS as readonly string[]).includes(name)) return { name, kind: 'neuron-stat', stat: name as NeuronStatName };
  const lm = /^(add-mean|diffmean)(?::(.*))?$/.exec(name);
  if (lm) {
    const alpha = lm[2] === undefined ? 1 : settingNumber(name, lm[2], `${lm[1]} takes as α`);
    return { name, kind: lm[1] as 'add-mean' | 'diffmean', alpha };
  }
  const m = /^(scale|set|add|mul):(.+)$/.exec(name);
  if (!m) badSetting(name, 'unknown setting');
  const op = m[1] as 'scale' | 'set' | 'add' | 'mul';
  // (not trimmed: "scale: 2" is refused, as the specs refuse it)
  const arg = m[2]!;
  if (op === 'scale') return { name, kind: 'scale', factor: settingNumber(name, arg, 'scale needs') };
  // A number, else a row statistic: what looks like a number (a digit, a sign or a point first) is read as one, so a
  // number in another notation (0x10) or beyond float32 is named as such.
  if (/^[+\-.\d]/.test(arg) && !/^\d+(?:\.\d+)?\s*\*/.test(arg)) return { name, kind: op, value: settingNumber(name, arg, `${op} takes`) };
  const sm = /^(?:(\d+(?:\.\d+)?)\s*\*\s*)?([a-z0-9.]+)$/.exec(arg);
  if (!sm || !isRowStat(sm[2]!)) badSetting(name, `"${arg}" is neither a number nor a row statistic`);
  const factor = sm[1] === undefined ? 1 : Number(sm[1]);
  return { name, kind: op, rowStat: sm[2] as RowStatName, factor };
}

/** Parses a comma-separated list, refusing an empty list and repeats. */
export function parseSettings(list: string): AmplifySetting[] {
  const parts = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new LangneuronsError('E_OPTIONS', '--settings: give at least one amplification setting', { field: '--settings' });
  const out = parts.map(parseSetting);
  const seen = new Set<string>();
  for (const s of out) {
    if (seen.has(s.name)) throw new LangneuronsError('E_OPTIONS', `--settings: "${s.name}" is given twice`, { field: '--settings' });
    seen.add(s.name);
  }
  return out;
}

/** The settings Rahmanisa compared (downstream work uses p_max). */
export const DEFAULT_SETTINGS = 'p_max,p_median,set:max,add:max';
