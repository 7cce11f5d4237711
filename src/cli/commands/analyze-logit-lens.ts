// `analyze logit-lens <model> --prompts …`: which language the model's intermediate layers predict (the logit lens,
// src/analyze/logit-lens.ts), optionally under an intervention.
import type { Command } from 'commander';

import { logitLens } from '../../analyze/logit-lens.js';
import { LangneuronsError } from '../../errors.js';
import { addInterventionOptions, interventionFromCli, parseLayers, type InterventionCliOptions } from '../../intervene/index.js';
import { logitLensFigures } from '../../report/analysis-figures.js';
import { loadIdentifier, parseIdentifier, readPrompts } from '../../steer/index.js';
import { addModelOptions, openModel, type ModelCliOptions } from '../common.js';
import { emitFigures } from '../figures.js';
import { parseIntOption, Progress } from '../output.js';
import { withAnalysisRun } from './analyze-run.js';

interface LogitLensCli extends ModelCliOptions, InterventionCliOptions { prompts: string; topK: number; layers?: string; langid: string; batch: number; out: string }

/** "all", "3", "0-5" or "0,4,8-10" (the intervention specs' layers syntax), as a sorted list of layers. */
function parseLayerList(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  let ranges: ReturnType<typeof parseLayers>;
  try {
    ranges = parseLayers(text.trim());
  } catch {
    throw new LangneuronsError('E_OPTIONS', `--layers "${text}": expected all, a layer, a range a-b or a comma-separated list of them`, { field: '--layers' });
  }
  if (ranges === 'all') return undefined;
  const out = new Set<number>();
  for (const [a, b] of ranges) for (let l = a; l <= b; l++) out.add(l);
  return [...out].sort((x, y) => x - y);
}

export function registerLogitLens(analyze: Command): void {
  addModelOptions(addInterventionOptions(analyze
    .command('logit-lens <model>')
    .description('the logit lens: the language of the next tokens each layer predicts (final norm and LM head on its stream), per prompt language')
    .requiredOption('--prompts <path>', 'a folder of <lang>.txt (one prompt per line; the stem is the prompt language) or .jsonl files, or one file')
    .option('--top-k <k>', 'next tokens read per layer', parseIntOption('--top-k', 1), 5)
    .option('--layers <list>', 'layers to read: all (default), 12, 4-20 or 0,8,16-20')
    .option('--langid <name>', 'language identifier of the tokens: fasttext (lid.176.ftz, default), fasttext:<model>, cld or eld', 'fasttext')
    .option('--batch <n>', 'prompts per forward', parseIntOption('--batch', 1, 4096), 16)
    .requiredOption('--out <dir>', 'folder for the figure')))
    .action(async (dir: string, o: LogitLensCli) => {
      const layers = parseLayerList(o.layers);
      const langid = parseIdentifier(o.langid);
      const prompts = await readPrompts(o.prompts);
      const identifier = await loadIdentifier(langid);
      const given = [...(o.intervene ?? []), ...(o.interveneFile ? [o.interveneFile] : [])];
      // Resumable: each layer's lens over a batch of prompts is a unit of the run's log (analyze-run.ts).
      await withAnalysisRun(o.out, 'logit-lens', ['logit-lens'], {}, o, async (log) => {
        const model = await openModel(dir, o);
        const intervene = await interventionFromCli(model, o);
        const unit = await log.unitsOf(model, dir, intervene ? [...given, ...(o.stats ? [o.stats] : [])] : []);
        const bar = new Progress('logit lens', o);
        const analysis = await logitLens(model, prompts, identifier, { topK: o.topK, batch: o.batch, ...(layers ? { layers } : {}),
          ...(intervene ? { intervene } : {}), unit, onProgress: (d, t) => bar.update(d, t) });
        bar.done();
        if (intervene) analysis.intervention = given;
        await emitFigures(o, logitLensFigures(analysis), () => Object.entries(analysis.byLanguage).map(([l, x]) =>
          `${l.padEnd(8)} own ${x.own.map((v) => v.toFixed(2)).join(' ')} | en ${x.english.map((v) => v.toFixed(2)).join(' ')}`));
      });
    });
}
