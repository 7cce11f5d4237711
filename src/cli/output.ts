// CLI output: human-readable text and progress bars on a terminal; one JSON document on stdout with --json.
import { LangneuronsError } from '../errors.js';
import { parseDecimal } from '../intervene/spec.js';
import type { UnitLog } from '../io/unit-log.js';

export interface OutputOptions { json?: boolean; quiet?: boolean }

export function printResult(opts: OutputOptions, json: unknown, human: () => string): void {
  if (opts.json) process.stdout.write(JSON.stringify(json, null, 2) + '\n');
  else {
    const text = human();
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

/** A progress bar on stderr, drawn only when stderr is a terminal and output is not JSON. */
export class Progress {
  private readonly enabled: boolean;
  private last = 0;
  constructor(private readonly label: string, opts: OutputOptions) {
    this.enabled = Boolean(process.stderr.isTTY) && !opts.json && !opts.quiet;
  }
  update(done: number, total: number, extra = ''): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 100 && done < total) return;
    this.last = now;
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const bar = '█'.repeat(Math.round(frac * width)).padEnd(width, '░');
    process.stderr.write(`\r${this.label} ${bar} ${(frac * 100).toFixed(0).padStart(3)}% ${done}/${total} ${extra}`);
  }
  /** Clears the bar's line, so that output written next does not share it (the next update draws it again). */
  clear(): void { if (this.enabled) { process.stderr.write('\r\x1b[K'); this.last = 0; } }
  done(): void { if (this.enabled) process.stderr.write('\n'); }
}

export function parseIntOption(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new LangneuronsError('E_OPTIONS', `${name} must be an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}], got '${v}'`, { field: name });
    return n;
  };
}

/** A number option: written in decimal (as the intervention specs take numbers: Number() alone also reads 0x10,
 *  0b1 and " 1"), finite, and passing `check`. */
export function parseFloatOption(name: string, check: (x: number) => boolean, want: string) {
  return (v: string): number => {
    const n = parseDecimal(v);
    if (!Number.isFinite(n) || !check(n))
      throw new LangneuronsError('E_OPTIONS', `${name} must be ${want}, got '${v}'`, { field: name });
    return n;
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** After a resumable run's result is written: the units taken from an earlier run said on stderr (not with --json),
 *  this run's lines of its unit log removed. */
export async function finishUnitLog(log: UnitLog, o: { json?: boolean }): Promise<void> {
  if (log.taken > 0 && !o.json) process.stderr.write(`langneurons: resumed: ${log.taken} finished unit(s) of an earlier run taken from ${log.file}\n`);
  await log.finish();
}
