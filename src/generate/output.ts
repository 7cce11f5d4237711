/**
 * `generate --out <dir>`: generations of a prompt list written as they are made, so that a long run (a prompt file
 * of thousands of lines) loses nothing when it stops and resumes where it stopped.
 *
 * `<dir>/generations.jsonl`: a header line `{ "schema", "key", "engine" }`, then one line per prompt, in prompt order,
 * appended as the generations end. The key is the sha256 of what the generations depend on (model files, prompts,
 * settings, intervention inputs, device and compute mode); a file with another key was written for something else and
 * is left alone. One of this key made on another engine kind (a CPU of another kernel family) is started again: the
 * generations of one run come from one engine. Each prompt samples from its own random stream (Rng.forSequence), so
 * the prompts done after a resume are what an uninterrupted run makes, up to the float rounding of other batch shapes
 * (docs/RELIABILITY.md). A line cut short by a crash is removed before appending. When every prompt is done, `<dir>/run.json` says so (atomically).
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { appendToFile } from '../io/files.js';
import { readRunLog, startRunLog } from '../io/run-log.js';
import type { Generation } from './generate.js';

export const GENERATIONS_SCHEMA = 'langneurons.generations/1';
export const GENERATIONS_FILE = 'generations.jsonl';

/** One line of generations.jsonl. */
export interface GenerationLine extends Generation { index: number }

/** The identity of a generation run: everything its outputs depend on. */
export function generationKey(fields: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify({ schema: GENERATIONS_SCHEMA, ...fields })).digest('hex');
}

/**
 * Opens `<dir>/generations.jsonl` for a run of `key` on engine kind `engine` (LanguageModel.engineKind()): the
 * generations already made (prompt order, from index 0), and an append function for the next ones. Refuses a file of
 * another key; one of this key made on another engine is started again (`notice` says how many generations went).
 */
export async function openGenerations(dir: string, key: string, engine: string, notice?: (message: string) => void): Promise<{ file: string; done: GenerationLine[]; append: (lines: GenerationLine[]) => Promise<void> }> {
  const file = path.join(dir, GENERATIONS_FILE);
  const header = JSON.stringify({ schema: GENERATIONS_SCHEMA, key, engine });
  const dropped = (n: number, earlier: string | null) => notice?.(`${file}: ${n} generation(s) made on ${earlier ?? 'an engine not recorded'} are made again on ${engine} (the generations of a run come from one engine)`);
  const done: GenerationLine[] = [];
  // The run.json written at the end must be generate's to replace (a fine-tuning run's, or a user's, is not).
  const summary = path.join(dir, 'run.json');
  if (existsSync(summary)) {
    const schema = await fsp.readFile(summary, 'utf8').then((t) => (JSON.parse(t) as { schema?: unknown }).schema, () => undefined);
    if (schema !== GENERATIONS_SCHEMA)
      throw new LangneuronsError('E_OPTIONS', `${summary}: not a generate run's summary (it would be replaced); use another --out`, { file: summary });
  }
  const lines = await readRunLog(file, header, () =>
    new LangneuronsError('E_DATA', `${file}: not this generate run's (another run's, of other model, prompts or settings, or not generate's: its first line is not ${header}); use another --out, or move the file away to start again`, { file }),
  { otherEngine: { dropped } });
  for (const line of lines ?? []) {
    let g: GenerationLine;
    try { g = JSON.parse(line) as GenerationLine; } catch { throw new LangneuronsError('E_DATA', `${file}: line ${done.length + 2} is not JSON; move the file away to start again`, { file }); }
    if (g.index !== done.length) throw new LangneuronsError('E_DATA', `${file}: line ${done.length + 2} is prompt ${g.index}, expected ${done.length}; move the file away to start again`, { file });
    done.push(g);
  }
  if (lines === null) await startRunLog(file, header);
  const append = (lines: GenerationLine[]) => appendToFile(file, lines.map((l) => JSON.stringify(l) + '\n').join(''), { sync: true });
  return { file, done, append };
}

/** `<dir>/run.json`, once every prompt is done. */
export async function writeGenerationSummary(dir: string, summary: Record<string, unknown>): Promise<void> {
  await writeFileAtomic(path.join(dir, 'run.json'), JSON.stringify({ schema: GENERATIONS_SCHEMA, ...summary }, null, 2) + '\n');
}
