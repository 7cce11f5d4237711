/**
 * The one error type the loaders throw for bad input (files, configs, tokenizers).
 *
 * Callers can rely on `instanceof LangneuronsError` to tell "the user's files are wrong" apart from
 * programming errors; `code` says which loader refused, `file` and `field` say where.
 */

export type LangneuronsErrorCode =
  | 'E_SAFETENSORS'
  | 'E_CONFIG'
  | 'E_CHECKPOINT'
  | 'E_TOKENIZER'
  | 'E_IO'
  | (string & {});

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
