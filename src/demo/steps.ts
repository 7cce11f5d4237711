// Resumable pipeline steps. Each step's result is written atomically to `<outDir>/steps/<name>.json` with a key:
// the sha256 of everything the step depends on (the model's fingerprint, its options, the keys of the steps it
// reads). A rerun skips a step whose file holds the same key, and redoes it (and, through the keys, every step
// after it) when anything it depends on changed.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { sha256 } from '../corpus/sources.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureParentDir } from '../io/outdir.js';
import { TOOL_VERSION } from '../version.js';

export const STEP_FORMAT = 'langneurons-demo-step/1';

export interface StepRecord<T> {
  format: typeof STEP_FORMAT;
  name: string;
  key: string;
  seconds: number;
  finishedAt: string;
  result: T;
}

export interface StepOutcome<T> { result: T; key: string; seconds: number; skipped: boolean }

export type StepEvent = { step: string; state: 'start' | 'done' | 'skipped'; seconds?: number } | { step: string; state: 'progress'; message: string };

export class StepRunner {
  constructor(readonly outDir: string, private readonly onEvent: (e: StepEvent) => void = () => {}) {}

  file(name: string): string {
    return path.join(this.outDir, 'steps', `${name}.json`);
  }

  /** The finished record of a step, if any. */
  finished<T>(name: string): StepRecord<T> | null {
    const f = this.file(name);
    if (!existsSync(f)) return null;
    try {
      const r = JSON.parse(readFileSync(f, 'utf8')) as StepRecord<T>;
      return r.format === STEP_FORMAT && r.name === name ? r : null;
    } catch {
      return null; // unreadable: redo the step
    }
  }

  progress(step: string, message: string): void {
    this.onEvent({ step, state: 'progress', message });
  }

  /** Runs `fn` unless the step finished earlier with the same inputs, by this version of the tool (whose defaults
   *  the inputs do not spell out). */
  async run<T>(name: string, inputs: unknown, fn: () => Promise<T>): Promise<StepOutcome<T>> {
    const key = sha256(JSON.stringify({ tool: TOOL_VERSION, inputs }));
    const done = this.finished<T>(name);
    if (done && done.key === key) {
      this.onEvent({ step: name, state: 'skipped', seconds: done.seconds });
      return { result: done.result, key, seconds: done.seconds, skipped: true };
    }
    this.onEvent({ step: name, state: 'start' });
    const started = performance.now();
    const result = await fn();
    const seconds = (performance.now() - started) / 1000;
    const record: StepRecord<T> = { format: STEP_FORMAT, name, key, seconds, finishedAt: new Date().toISOString(), result };
    await ensureParentDir(this.file(name));
    await writeFileAtomic(this.file(name), JSON.stringify(record, null, 1) + '\n');
    this.onEvent({ step: name, state: 'done', seconds });
    return { result, key, seconds, skipped: false };
  }
}
