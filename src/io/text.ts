// Text input files (corpora, training text, eval data) are UTF-8. Invalid bytes decode to U+FFFD; that must not
// pass silently: a file with some is read with one warning naming it and the count, a file that is mostly not
// text (NUL bytes, or invalid UTF-8 in a large share of it) is refused.
import { promises as fsp } from 'node:fs';

import { LangneuronsError, describeError } from '../errors.js';

/** Share of bad bytes (NUL or invalid UTF-8) above which a file is refused as binary. */
export const BINARY_SHARE = 0.1;

let sink: (message: string) => void = (m) => process.stderr.write(`warning: ${m}\n`);
const said = new Set<string>();

/** Where warnings go (stderr by default; tests capture them). Each message is given once per process. */
export function setWarningSink(f: (message: string) => void): void { sink = f; said.clear(); }
export function warn(message: string): void {
  if (said.has(message)) return;
  said.add(message);
  sink(message);
}

/**
 * Counts the bytes of a UTF-8 stream that a decoder replaces with U+FFFD, and NUL bytes, across chunk boundaries.
 * (Counts bytes, not replacement characters: what "N bytes replaced" in a message means.)
 */
export class Utf8Check {
  invalid = 0;
  nul = 0;
  bytes = 0;
  private need = 0; // continuation bytes still expected
  private lo = 0x80; private hi = 0xbf; // allowed range of the next continuation byte
  private held = 0; // bytes of the current incomplete sequence
  private refused = false;

  update(b: Uint8Array): void {
    this.bytes += b.length;
    for (let i = 0; i < b.length; i++) {
      const x = b[i]!;
      if (this.need > 0) {
        if (x >= this.lo && x <= this.hi) {
          this.need--; this.held++; this.lo = 0x80; this.hi = 0xbf;
          if (this.need === 0) this.held = 0;
          continue;
        }
        this.invalid += this.held; // the truncated sequence is replaced; x is looked at afresh
        this.need = 0; this.held = 0; this.lo = 0x80; this.hi = 0xbf;
      }
      if (x === 0) { this.nul++; continue; }
      if (x < 0x80) continue;
      if (x >= 0xc2 && x <= 0xdf) { this.need = 1; }
      else if (x >= 0xe0 && x <= 0xef) { this.need = 2; if (x === 0xe0) this.lo = 0xa0; if (x === 0xed) this.hi = 0x9f; }
      else if (x >= 0xf0 && x <= 0xf4) { this.need = 3; if (x === 0xf0) this.lo = 0x90; if (x === 0xf4) this.hi = 0x8f; }
      else { this.invalid++; continue; }
      this.held = 1;
    }
  }

  /** End of input: an unfinished sequence is invalid. */
  end(): void {
    if (this.need > 0) this.invalid += this.held;
    this.need = 0; this.held = 0;
  }

  /**
   * Throws for a mostly-binary file (judged on what was seen so far, at least 512 bytes or the whole file).
   * `strings`: what was checked when it is not the whole file (`column "text"`, `string columns` of a Parquet file).
   */
  refuseBinary(file: string, whole: boolean, strings?: string): void {
    if (!whole && this.bytes < 512) return;
    const bad = this.invalid + this.nul;
    if (bad > BINARY_SHARE * this.bytes) {
      this.refused = true;
      throw new LangneuronsError('E_INPUT', strings
        ? `${file}: ${strings}: not UTF-8 text (${bad} of the first ${this.bytes} bytes of its strings are NUL or invalid UTF-8); is it binary data?`
        : `${file}: is not UTF-8 text (${bad} of the first ${this.bytes} bytes are NUL or invalid UTF-8); is it a binary file?`, { file });
    }
  }

  /** Warns once when bytes were replaced (not after a refusal: its error says it all). */
  warnReplaced(file: string, strings?: string): void {
    if (this.invalid > 0 && !this.refused) warn(`${file}: ${strings ? `${strings}: ` : ''}${this.invalid} byte(s) of invalid UTF-8 replaced by U+FFFD`);
  }
}

/**
 * hyparquet's string parser (it decodes Parquet strings itself, replacing invalid UTF-8 without a word) with each
 * value's bytes counted into `check`, for the same warning and refusal as text files. Pass as `parsers`.
 */
export function checkedStringParsers(check: Utf8Check): { stringFromBytes(bytes: Uint8Array): string } {
  const decoder = new TextDecoder();
  return {
    stringFromBytes(bytes) {
      if (!bytes) return bytes; // null / undefined values pass through, as hyparquet's own parser does
      check.update(bytes);
      check.end(); // each value is a whole string: a sequence cut at its end is invalid
      return decoder.decode(bytes);
    },
  };
}

/**
 * Reads a whole UTF-8 text file (what = "training", "eval data", ...): refuses binary, warns on invalid bytes, and
 * drops a leading byte order mark (U+FEFF, as the corpus reader does), so it is never read as text.
 */
export async function readTextFile(file: string, what: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EISDIR' ? 'it is a folder; give one of its files' : code === 'ENOENT' ? 'no such file' : describeError(e);
    throw new LangneuronsError('E_IO', `${file}: cannot read the ${what} file: ${why}`, { file, cause: e });
  }
  const check = new Utf8Check();
  check.update(bytes);
  check.end();
  check.refuseBinary(file, true);
  check.warnReplaced(file);
  return withoutBom(bytes.toString('utf8'));
}

/** Text without a leading byte order mark (U+FEFF): editors on Windows write one, and it is neither text nor JSON. */
export function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
