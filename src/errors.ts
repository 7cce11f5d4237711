/**
 * The one error type the library throws for bad input (files, configs, tokenizers, options, requests).
 *
 * Callers can rely on `instanceof LangneuronsError` to tell "the user's files are wrong" apart from
 * programming errors; `code` (one of ERROR_CODES) says what was refused, `file` and `field` say where.
 */

/**
 * Every `code` a LangneuronsError carries, so that a caller can `switch` on it (a misspelt code is a type error).
 * E_OPTIONS: an option or argument of a call; E_INPUT: a request the engine refuses (tokens, batch, cache); E_IO: a
 * file that cannot be read or written. The others name the input at fault: a model folder (E_CHECKPOINT, E_CONFIG,
 * E_SAFETENSORS, E_TOKENIZER), a corpus or data set (E_CORPUS, E_SCOPE, E_DATA), statistics, masks and interventions
 * (E_STATS, E_MASK, E_IDENTIFY, E_INTERVENE), an output folder or run (E_RESUME, E_EXISTS, E_LOCKED), fine-tuning's
 * and training's files (E_DELTA, E_ADAPTER, E_HEAD, E_RECIPE), the engine (E_DEVICE, E_NATIVE, E_NONFINITE),
 * steering's prompts, facts and identifiers (E_PROMPTS, E_FACTS, E_LANGID), sweeps (E_SWEEP, E_STEP, E_BUSY, E_SLURM).
 */
export const ERROR_CODES = [
  'E_OPTIONS', 'E_INPUT', 'E_IO',
  'E_CHECKPOINT', 'E_CONFIG', 'E_SAFETENSORS', 'E_TOKENIZER',
  'E_CORPUS', 'E_SCOPE', 'E_DATA',
  'E_STATS', 'E_MASK', 'E_IDENTIFY', 'E_INTERVENE',
  'E_RESUME', 'E_EXISTS', 'E_LOCKED',
  'E_DELTA', 'E_ADAPTER', 'E_HEAD', 'E_RECIPE',
  'E_DEVICE', 'E_NATIVE', 'E_NONFINITE',
  'E_PROMPTS', 'E_FACTS', 'E_LANGID',
  'E_SWEEP', 'E_STEP', 'E_BUSY', 'E_SLURM',
] as const;

export type LangneuronsErrorCode = (typeof ERROR_CODES)[number];

export interface LangneuronsErrorOptions {
  file?: string;
  field?: string;
  cause?: unknown;
}

export class LangneuronsError extends Error {
  readonly code: LangneuronsErrorCode;
  readonly file?: string;
  readonly field?: string;

  constructor(code: LangneuronsErrorCode, message: string, options: LangneuronsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LangneuronsError';
    this.code = code;
    if (options.file !== undefined) this.file = options.file;
    if (options.field !== undefined) this.field = options.field;
  }
}

/** Message of an unknown thrown value, for wrapping fs / JSON errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
