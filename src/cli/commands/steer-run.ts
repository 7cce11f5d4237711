// What every steering measure does around its computation: it holds its --out (one run per output file, never over
// an input or a file of another kind) and logs its units of engine work so that a killed run resumes (src/steer/resume.ts).
import { promises as fsp } from 'node:fs';

import { inputHashes } from '../../eval/inputs.js';
import type { LanguageModel } from '../../engine/model.js';
import { withFileOutputLock } from '../../io/lock.js';
import { checkOutput, checkOutputWithSidecars, sidecarPaths } from '../../io/outdir.js';
import type { SteerRequest } from '../../steer/index.js';
import type { UnitLog } from '../../io/unit-log.js';
import { openSteerLog, partialFile, steerRunKey } from '../../steer/resume.js';
import { engineIdentity, requireOutputFile } from '../common.js';

/**
 * Runs a measure holding its --out (`<out>.lock`: one run per output file), after refusing an --out that names a
 * folder (requireOutputFile: checked before the lock beside it is made), one of
 * the inputs (`inputs`: the options' paths, lists split at commas) or an existing file that is not this measure's
 * earlier result (its JSON's `format`); `sidecars`: the measure also writes <stem>.csv and <stem>.svg, refused alike.
 */
export async function withMeasureOutput<T>(out: string, measure: string, format: string, sidecars: boolean, inputs: (string | undefined)[], work: () => Promise<T>): Promise<T> {
  const paths = inputs.flatMap((i) => i?.split(',') ?? []).map((p) => p.slice(p.indexOf('=') + 1).trim()).filter(Boolean);
  const ours = async (f: string) => (JSON.parse(await fsp.readFile(f, 'utf8')) as { format?: unknown } | null)?.format === format;
  requireOutputFile(out);
  // The files written beside --out under its lock: their temporaries left by a killed run are removed when it is taken.
  const companions = [partialFile(out), ...(sidecars ? Object.values(sidecarPaths(out)) : [])];
  return withFileOutputLock(out, `steer ${measure}`, async () => {
    await (sidecars ? checkOutputWithSidecars : checkOutput)(out, paths, `a langneurons ${measure} result`, ours);
    return work();
  }, companions);
}

/**
 * The unit log (src/steer/resume.ts, src/io/unit-log.ts) of this run of `measure`: keyed by the model's files, its device and compute mode,
 * the engine's kind (the CPU's kernel family: AVX2 and AVX-512 products differ in the last bits; the GPU and cuBLASLt
 * its describe names) and what its unit computation holds fixed (`fixed`: generation settings, the scoring window); a
 * unit's address adds its arguments and the content of the files its intervention reads (requestFiles).
 */
export async function openMeasureLog(measure: string, dir: string, model: LanguageModel, out: string, fixed: unknown): Promise<UnitLog> {
  const key = steerRunKey({ measure, ...await engineIdentity(model, dir), fixed });
  return openSteerLog(out, key, inputHashes);
}

/** The files a request's interventions read: masks and statistics. */
export const requestFiles = (req: SteerRequest | null): string[] =>
  req?.specs.flatMap((s) => [...(s.neurons === 'all' ? [] : [s.neurons.mask]), ...(s.stats === undefined ? [] : [s.stats])]) ?? [];
