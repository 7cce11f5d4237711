// What the analyses that run a model (`analyze alignment`, `analyze logit-lens`) do around their computation: one run
// per analysis and --out folder (`<out>/<name>.partial.jsonl.lock`), the figures' files checked before a model is
// opened (a folder holding someone else's `alignment-similarity.png` is refused at once, not after hours), and their
// engine work logged in units in `<out>/<name>.partial.jsonl` (src/io/unit-log.ts): a killed run, run again, takes the
// finished units and writes the figures an uninterrupted run writes.
import path from 'node:path';

import type { LanguageModel } from '../../engine/model.js';
import { inputHashes } from '../../eval/inputs.js';
import { withFileOutputLock } from '../../io/lock.js';
import { openUnitLog, unitRunKey, type UnitLogKind, type UnitOf } from '../../io/unit-log.js';
import { checkFigureName } from '../../report/figures.js';
import { engineIdentity } from '../common.js';
import { finishUnitLog } from '../output.js';

export const ANALYZE_PARTIAL_SCHEMA = 'langneurons-analyze-partial/1';
const ANALYZE_LOG: UnitLogKind = { schema: ANALYZE_PARTIAL_SCHEMA, owner: 'langneurons analyze' };

export interface AnalysisLog {
  /**
   * The units of a model's work: addressed by the model's content, device, compute mode and engine kind, by the
   * intervention (`intervention`: its specs, files and statistics as given on the command line) and the content of
   * the files it reads, besides each unit's arguments.
   */
  unitsOf(model: LanguageModel, dir: string, intervention?: string[]): Promise<UnitOf>;
}

/** `<out>/<name>.partial.jsonl`. */
export const analysisPartialFile = (out: string, name: string): string => path.join(out, `${name}.partial.jsonl`);

/**
 * Runs analysis `name` into folder `out` (figures `figures`), its units keyed by `settings` (what every unit depends
 * on besides its arguments and model: lengths, batch sizes). `work` writes the figures; then this run's units go.
 */
export async function withAnalysisRun<T>(out: string, name: string, figures: string[], settings: Record<string, unknown>,
  o: { json?: boolean }, work: (log: AnalysisLog) => Promise<T>): Promise<T> {
  const file = analysisPartialFile(out, name);
  return withFileOutputLock(file, `analyze ${name}`, async () => {
    for (const f of figures) checkFigureName(out, f);
    const log = await openUnitLog(file, ANALYZE_LOG, unitRunKey(ANALYZE_LOG, { analysis: name, ...settings }), inputHashes);
    const result = await work({
      async unitsOf(model, dir, intervention = []) {
        const id = { ...await engineIdentity(model, dir), intervention };
        return (args, compute) => log.unit([id, args], intervention, compute);
      },
    });
    await finishUnitLog(log, o);
    return result;
  });
}
