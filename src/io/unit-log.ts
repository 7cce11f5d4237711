/**
 * The unit log of a resumable run whose engine work comes in independent units (the steering measures: a text scored
 * under one intervention, the prompts generated under one; the analyses: a language's alignment scores, a layer's
 * logit lens over a batch of prompts). Each finished unit is appended to the log under its address: the run's key
 * (what every unit depends on: model content, device, compute mode, engine kind, fixed settings) with the unit's
 * arguments and the content of the files it reads (masks, statistics). The same command again takes every unit found
 * there at its address and computes the rest, so a killed run resumes to the result an uninterrupted one writes
 * (values are stored as computed: JSON keeps doubles exactly). A command with other options takes the units they
 * share. Once the result is written the run's lines go, and the file with them when no other run's remain.
 */
import { promises as fsp } from 'node:fs';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { appendToFile, sha256Hex as sha256 } from './files.js';
import { readRunLog, startRunLog } from './run-log.js';

/** Which runs write a kind of log: its header's schema, and the owner named when a file of its name is not such a log. */
export interface UnitLogKind { schema: string; owner: string }

/** A unit of resumable work: the value logged at the address of `args` when an earlier run finished it, else
 *  `compute()` (logged). What the analyses take, so that they run alike with a log and without one. */
export type UnitOf = <T>(args: unknown, compute: () => Promise<T>) => Promise<T>;

/** Without a log: every unit computed. */
export const computeEveryUnit: UnitOf = (_args, compute) => compute();

export interface UnitLog {
  readonly file: string;
  /** Units taken from the log so far. */
  readonly taken: number;
  /**
   * The value of a unit of `args` whose intervention reads `files` (their content is part of its address): the
   * logged one when an earlier run finished it, else `compute()`, logged.
   */
  unit<T>(args: unknown, files: string[], compute: () => Promise<T>): Promise<T>;
  /** Once the result is written: removes this run's lines (the file when no other run's remain). */
  finish(): Promise<void>;
}

/** The key of a run of `kind`: what every unit's value depends on besides its arguments. */
export function unitRunKey(kind: UnitLogKind, fields: Record<string, unknown>): string {
  return sha256(JSON.stringify({ schema: kind.schema, ...fields }));
}

/** The JSON of `value`, or null where JSON would not give it back as it is (NaN and ±Infinity become null, -0 becomes 0):
 *  such a unit is not logged. */
function exactJson(value: unknown): string | null {
  let exact = true;
  const text = JSON.stringify(value, (_k, v: unknown) => { if (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0))) exact = false; return v; });
  return exact ? text : null;
}

interface LogLine { run: string; unit: string; value: unknown }

function parseLine(line: string): LogLine | null {
  try {
    const u = JSON.parse(line) as Partial<LogLine>;
    return typeof u.run === 'string' && typeof u.unit === 'string' ? u as LogLine : null;
  } catch {
    return null;  // a damaged line: its unit is computed again
  }
}

const header = (kind: UnitLogKind) => JSON.stringify({ schema: kind.schema });
const readLog = (file: string, kind: UnitLogKind) => readRunLog(file, header(kind), () =>
  new LangneuronsError('E_DATA', `${file}: exists and is not a partial result of ${kind.owner}; move it away or choose another --out`, { file }));

/**
 * Opens the unit log `file` of `kind` for a run of `key`. `fileHashes` gives the content hashes of the files a unit
 * reads (called once per distinct list). The file is made with the first finished unit, so a run that fails before
 * one leaves none behind; a file of that name that is not such a log is refused.
 */
export async function openUnitLog(file: string, kind: UnitLogKind, key: string, fileHashes: (files: string[]) => Promise<unknown>): Promise<UnitLog> {
  const lines = await readLog(file, kind);
  const done = new Map<string, unknown>();
  for (const l of lines ?? []) {
    const u = parseLine(l);
    if (u?.run === key) done.set(u.unit, u.value);
  }
  const hashes = new Map<string, Promise<unknown>>();
  const hashesOf = (files: string[]) => {
    const k = JSON.stringify(files);
    if (!hashes.has(k)) hashes.set(k, fileHashes(files));
    return hashes.get(k)!;
  };
  let started = lines !== null, taken = 0;
  return {
    file,
    get taken() { return taken; },
    async unit<T>(args: unknown, files: string[], compute: () => Promise<T>): Promise<T> {
      const id = sha256(JSON.stringify([args ?? null, await hashesOf(files)]));
      if (done.has(id)) { taken++; return done.get(id) as T; }
      const value = await compute();
      const text = exactJson(value);
      if (text === null) return value;
      if (!started) { await startRunLog(file, header(kind)); started = true; }
      await appendToFile(file, `{"run":"${key}","unit":"${id}","value":${text}}\n`, { sync: true });
      return value;
    },
    async finish() {
      const now = await readLog(file, kind);
      const others = (now ?? []).filter((l) => { const u = parseLine(l); return u !== null && u.run !== key; });
      if (others.length === 0) await fsp.rm(file, { force: true });
      else await writeFileAtomic(file, [header(kind), ...others].join('\n') + '\n');
    },
  };
}
