// `langneurons analyze …`: the papers' analyses as figures (docs/ANALYSES.md). Each writes, per figure, an SVG, a
// PNG, the data as CSV and JSON and a caption into --out; --json prints the data and the files on stdout.
import type { Command } from 'commander';

import { analyzeLayers, analyzeOverlap } from '../../analyze/masks.js';
import { analyzeTraining } from '../../analyze/training.js';
import { readMask } from '../../identify/index.js';
import { layersFigures, overlapFigures } from '../../report/analysis-figures.js';
import { trainingFigures } from '../../report/training-figures.js';
import { emitFigures } from '../figures.js';
import { parseIntOption } from '../output.js';
import { registerAlignment } from './analyze-alignment.js';
import { registerLogitLens } from './analyze-logit-lens.js';
import { registerActivations, registerDelta } from './analyze-weights.js';

export function registerAnalyze(program: Command): void {
  const analyze = program.command('analyze').description('the papers\u2019 analyses as figures: SVG, PNG, CSV, JSON and a caption each');
  analyze
    .command('layers <mask>')
    .description('neurons per language and layer (stacked bars) and each language\u2019s share per layer')
    .requiredOption('--out <dir>', 'folder for the figures')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { out: string; json?: boolean }) => {
      const a = analyzeLayers(await readMask(file));
      await emitFigures(o, layersFigures(a, file), () => a.languages.map((l, i) => `${l.padEnd(8)} ${String(a.total[i]).padStart(7)}  per layer ${a.perLayer[i]!.join(' ')}`));
    });
  analyze
    .command('overlap <mask>')
    .description('language × language overlap of the neuron sets (counts, Jaccard, overlap coefficient), clustered order')
    .requiredOption('--out <dir>', 'folder for the figures')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { out: string; json?: boolean }) => {
      const a = analyzeOverlap(await readMask(file));
      const w = Math.max(6, ...a.languages.map((l) => l.length));
      await emitFigures(o, overlapFigures(a, file), () => [
        `Jaccard   ${''.padStart(w)} ${a.languages.map((l) => l.padStart(w)).join(' ')}`,
        ...a.languages.map((x, i) => `          ${x.padStart(w)} ${a.jaccard[i]!.map((v) => v.toFixed(3).padStart(w)).join(' ')}`),
      ]);
    });
  analyze
    .command('training <runs...>')
    .description('training dynamics of fine-tuning runs: training loss per step (smoothed), validation loss, gradient norm, and a summary each')
    .option('--smooth <n>', 'steps in the moving average of the training loss (default: a fiftieth of the longest run, at least 1)', parseIntOption('--smooth', 1))
    .requiredOption('--out <dir>', 'folder for the figures')
    .option('--json', 'print one JSON document on stdout')
    .action(async (dirs: string[], o: { smooth?: number; out: string; json?: boolean }) => {
      const a = await analyzeTraining(dirs, o.smooth);
      await emitFigures(o, trainingFigures(a), () => a.runs.map((r) => {
        const s = r.summary;
        return `${r.name.padEnd(16)} ${r.method.padEnd(11)} ${String(s.steps).padStart(6)} steps  loss ${s.firstLoss?.toFixed(4) ?? '-'} -> ${s.lastLoss?.toFixed(4) ?? '-'}` +
          `  best valid ${s.bestValid === null ? '-' : `${s.bestValid.toFixed(4)} (step ${s.bestStep})`}  ${s.medianTokensPerSecond === null ? '' : `${s.medianTokensPerSecond.toFixed(0)} tokens/s`}`;
      }));
    });
  registerAlignment(analyze);
  registerLogitLens(analyze);
  registerActivations(analyze);
  registerDelta(analyze);
}
