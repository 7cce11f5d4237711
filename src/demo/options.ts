// The demo's settings: every number the pipeline uses, with the defaults of METHODS.md where they apply and the
// demo's own (named, recorded in the report) where a 20-language model of a few million parameters needs other
// ones. `--quick` scores and generates less and trains fewer steps; its checks are the same.
import type { DeviceRequest } from '../engine/device.js';
import { LangneuronsError } from '../errors.js';
import { METHODS } from '../train/methods.js';

export interface DemoOptions {
  /** Engine and trainer threads (default 2). */
  threads?: number;
  /** Engine compute mode of profiling, scoring and generation (default f32; the trainer computes in f32). */
  compute?: 'f32' | 'bf16';
  /** Where the model and the trainer run: auto (default: a usable GPU, else the CPU), cpu, cuda, cuda:N. */
  device?: DeviceRequest;
  /** Less text scored, fewer generations and training steps. */
  quick?: boolean;
  /** Languages (default: the model's recipe). */
  languages?: string[];
  /** Language whose neurons are fine-tuned (default: the recipe's low-resource language). */
  lowResource?: string;

  /** Profiling: tokens per window (Tang's windows, BOS fed before each) and token budget per language (0: all). */
  profileWindow?: number;
  profileTokens?: number;
  /** LAPE top rate: a number, or 'auto' (default: see TOP_RATE_LADDER); METHODS.md's default is 0.01. */
  topRate?: number | 'auto';
  /** With topRate 'auto': neurons every language must have. */
  minNeurons?: number;
  filterRate?: number;

  /** Held-out tokens scored per language in the deactivation matrix (0: all). */
  matrixTokens?: number;
  /** Share of languages whose text must be hurt most by their own deactivation (the diagonal check). */
  diagonalShare?: number;

  /** Steering: target languages (default: up to three of different scripts), settings and generation. */
  steerTargets?: string[];
  steerSettings?: string[];
  promptsPerLanguage?: number;
  promptTokens?: number;
  maxNewTokens?: number;
  /** Hugging Face repetition penalty of the greedy generations (default 1.3: a small model otherwise loops). */
  repetitionPenalty?: number;

  /** Fine-tuning: methods compared (default: every method of src/train/methods.ts that needs no extra option). */
  methods?: string[];
  steps?: number;
  chunk?: number;
  batch?: number;
  evalEvery?: number;
  /** Learning rate per method (default: DEMO_LEARNING_RATES). */
  learningRates?: Record<string, number>;
  seed?: number;
}

/**
 * LAPE's top rate for the demo. METHODS.md's 0.01 keeps 1% of all neurons over all languages: on Llama-2 7B that is
 * 3.5k neurons for 7 languages; on a model with two thousand FFN neurons and 22 languages it leaves most languages
 * without a neuron, and a language without neurons can be neither deactivated nor steered nor fine-tuned. With
 * 'auto' the demo takes the first rate of this ladder (METHODS.md's 0.01, Gurgurov's 0.05, then larger) at which
 * every language has at least `minNeurons` neurons (default 30), and records it. Why 30: with 5-15 neurons a
 * language's deactivation moves a 2k-neuron model's loss by ~0.01 nats, the size of the differences between
 * languages it is compared with, and the diagonal of the deactivation matrix is then mostly noise (measured on
 * the bundled model: 41% of the languages diagonal-dominant at 5+ neurons each, 64% at 30+).
 */
export const TOP_RATE_LADDER: readonly number[] = [0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3];

/**
 * Learning rates of the demo's short fine-tuning runs. METHODS.md's reference settings (neurons 1e-4, full and
 * mlp 1e-5) are meant for thousands of steps on a pretrained 7B model; in the demo's few dozen steps they move a
 * small model by almost nothing, so every method gets ten times its reference rate (the ratios between methods
 * are the reference's).
 */
export const DEMO_LEARNING_RATES: Record<string, number> = {
  full: 1e-4, mlp: 1e-4, neurons: 1e-3, random: 1e-3, lora: 1e-3, 'neuron-lora': 1e-3,
};

/**
 * Amplification settings of the steering step (src/steer/settings.ts), the first one checked: Language Arithmetics'
 * additive setting (add α·μ of the target to its neurons, α = 4) and Rahmanisa's p_max.
 */
export const DEMO_STEER_SETTINGS: readonly string[] = ['add-mean:4', 'p_max'];

/** Methods that need nothing beyond the mask and the language (others, e.g. with a classification head, are left out). */
const DEMO_METHODS = ['neurons', 'random', 'mlp', 'full', 'lora', 'neuron-lora'];

export interface ResolvedDemoOptions {
  threads: number;
  compute: 'f32' | 'bf16';
  device: DeviceRequest;
  quick: boolean;
  languages: string[] | null;
  lowResource: string | null;
  profileWindow: number;
  profileTokens: number;
  topRate: number | 'auto';
  minNeurons: number;
  filterRate: number;
  matrixTokens: number;
  diagonalShare: number;
  steerTargets: string[] | null;
  steerSettings: readonly string[];
  promptsPerLanguage: number;
  promptTokens: number;
  maxNewTokens: number;
  repetitionPenalty: number;
  methods: string[];
  steps: number;
  chunk: number;
  batch: number;
  evalEvery: number;
  learningRates: Record<string, number>;
  seed: number;
}

function check(name: string, v: number, ok: (x: number) => boolean, want: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new LangneuronsError('E_OPTIONS', `demo option ${name} must be ${want}, got ${String(v)}`, { field: name });
  return v;
}
const int = (name: string, v: number, min: number) => check(name, v, (x) => Number.isInteger(x) && x >= min, `an integer >= ${min}`);
const rate = (name: string, v: number) => check(name, v, (x) => x > 0 && x <= 1, 'in (0, 1]');

/** The methods of src/train/methods.ts the demo compares by default, `neurons` first. */
export function defaultMethods(): string[] {
  return DEMO_METHODS.filter((m) => (METHODS as readonly string[]).includes(m));
}

/**
 * The demo's settings with their defaults. `context`, the model's context length when known, caps the fine-tuning
 * chunk: the default (128) is lowered to it, and a chunk given above it is refused before any step runs.
 */
export function resolveDemoOptions(o: DemoOptions = {}, context?: number): ResolvedDemoOptions {
  const quick = !!o.quick;
  const methods = o.methods ?? defaultMethods();
  for (const m of methods)
    if (!(METHODS as readonly string[]).includes(m)) throw new LangneuronsError('E_OPTIONS', `unknown fine-tuning method "${m}" (methods: ${METHODS.join(', ')})`, { field: 'methods' });
  if (methods.length === 0) throw new LangneuronsError('E_OPTIONS', 'give at least one fine-tuning method', { field: 'methods' });
  const learningRates = { ...DEMO_LEARNING_RATES, ...(o.learningRates ?? {}) };
  for (const m of methods) check(`learningRates.${m}`, learningRates[m] ?? NaN, (x) => x > 0, 'a number > 0');
  const steerSettings = o.steerSettings ?? DEMO_STEER_SETTINGS;
  if (steerSettings.length === 0) throw new LangneuronsError('E_OPTIONS', 'give at least one steering setting', { field: 'steerSettings' });
  const chunk = int('chunk', o.chunk ?? Math.min(128, context ?? 128), 8);
  if (context !== undefined && chunk > context)
    throw new LangneuronsError('E_OPTIONS', `demo option chunk ${chunk} exceeds the model's context of ${context} tokens`, { field: 'chunk' });
  return {
    threads: int('threads', o.threads ?? 2, 1),
    compute: o.compute ?? 'f32',
    device: o.device ?? 'auto',
    quick,
    languages: o.languages ?? null,
    lowResource: o.lowResource ?? null,
    profileWindow: int('profileWindow', o.profileWindow ?? 128, 2),
    profileTokens: int('profileTokens', o.profileTokens ?? 0, 0),
    topRate: o.topRate === undefined || o.topRate === 'auto' ? 'auto' : rate('topRate', o.topRate),
    minNeurons: int('minNeurons', o.minNeurons ?? 30, 1),
    filterRate: rate('filterRate', o.filterRate ?? 0.95),
    matrixTokens: int('matrixTokens', o.matrixTokens ?? (quick ? 300 : 600), 0),
    diagonalShare: rate('diagonalShare', o.diagonalShare ?? 0.6),
    steerTargets: o.steerTargets ?? null,
    steerSettings,
    promptsPerLanguage: int('promptsPerLanguage', o.promptsPerLanguage ?? (quick ? 2 : 4), 1),
    promptTokens: int('promptTokens', o.promptTokens ?? 8, 1),
    maxNewTokens: int('maxNewTokens', o.maxNewTokens ?? (quick ? 24 : 32), 4),
    repetitionPenalty: check('repetitionPenalty', o.repetitionPenalty ?? 1.3, (x) => x >= 1, 'a number >= 1'),
    methods,
    steps: int('steps', o.steps ?? (quick ? 15 : 40), 1),
    chunk,
    batch: int('batch', o.batch ?? 4, 1),
    evalEvery: int('evalEvery', o.evalEvery ?? 5, 1),
    learningRates,
    seed: int('seed', o.seed ?? 0, 0),
  };
}
