// `analyze alignment <model> --parallel …`: cross-lingual alignment across layers (src/analyze/alignment.ts),
// before and after fine-tuning in one figure.
import type { Command } from 'commander';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { alignModel, readParallel, type AlignmentAnalysis } from '../../analyze/alignment.js';
import { LangneuronsError } from '../../errors.js';
import { loadModelConfig } from '../../model/config.js';
import { alignmentFigures } from '../../report/analysis-figures.js';
import { addModelOptions, openModel, type ModelCliOptions } from '../common.js';
import { parseIntOption, Progress } from '../output.js';
import { emitFigures } from '../figures.js';
import { deltaVariant } from '../../eval/delta-cache.js';
import { distinctNames } from '../../analyze/series-names.js';
import { withAnalysisRun } from './analyze-run.js';

/** The fine-tuned model of a --delta: a delta file, a PEFT adapter folder, a run folder holding either, or a checkpoint
 *  (merged as eval --delta merges it, with its rounding warning and --delta-dtype). */
export async function variantModel(base: string, delta: string, dtype?: string): Promise<{ dir: string; name: string; label: string }> {
  const v = await deltaVariant(base, delta, dtype);
  if (v.warning) process.stderr.write(`warning: ${v.warning}\n`);
  return { dir: v.dir, name: `delta-${v.name}`, label: v.merged ? `${base} + ${delta}${v.dtype !== 'stored' ? ` (${v.dtype})` : ''}` : delta };
}

interface AlignmentCliOptions extends ModelCliOptions {
  parallel: string; langs: string; anchor: string; delta: string[]; deltaDtype?: string; compareModel: string[];
  maxSentences?: number; maxTokens: number; batch: number; center: boolean; out: string;
}

export function registerAlignment(analyze: Command): void {
  addModelOptions(analyze
    .command('alignment <model>')
    .description('cosine similarity to an anchor language and parallel-sentence retrieval accuracy per layer, before and after fine-tuning')
    .requiredOption('--parallel <spec>', 'parallel sentences: udhr[:train|heldout|all] or flores:<dir>[:split] (FLORES layout, default split devtest)')
    .requiredOption('--langs <list>', 'languages, comma-separated (the anchor is added if missing)')
    .option('--anchor <lang>', 'language every other is compared with', 'en')
    .option('--delta <path>', 'a fine-tuned variant: delta.safetensors, PEFT adapter folder, run folder or checkpoint (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--delta-dtype <dtype>', "the merged tensors of every --delta file or adapter: stored (default: the base model's dtype) or f32 (the trained values exactly)")
    .option('--compare-model <dir>', 'another model to draw in the same figure (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--max-sentences <n>', 'use the first n parallel sentences', parseIntOption('--max-sentences', 2))
    .option('--max-tokens <n>', 'tokens of a sentence kept, BOS included (longer ones are cut; at least 2)', parseIntOption('--max-tokens', 2), 128)
    .option('--center', 'subtract each language\u2019s mean vector (per layer) before the cosines: sentence content, not the language\u2019s offset', false)
    .option('--batch <n>', 'sentences per forward', parseIntOption('--batch', 1, 4096), 16)
    .requiredOption('--out <dir>', 'folder for the figures'))
    .action(async (dir: string, o: AlignmentCliOptions) => {
      const named = o.langs.split(',').map((s) => s.trim()).filter(Boolean);
      const twice = named.find((l, i) => named.indexOf(l) !== i);
      if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `--langs ${o.langs}: names ${twice} twice; name each language once`, { field: '--langs' });
      const langs = [...new Set([o.anchor, ...named])];  // the anchor is added if missing
      if (langs.length < 2) throw new LangneuronsError('E_OPTIONS', `--langs: at least one language besides the anchor ${o.anchor}`, { field: '--langs' });
      if (o.deltaDtype !== undefined && o.delta.length === 0)
        throw new LangneuronsError('E_OPTIONS', '--delta-dtype needs --delta (a delta file or an adapter folder)', { field: 'delta-dtype' });
      // Every model of the figure before any work (as each --delta is resolved below): a --compare-model that is
      // missing, or of other layers, found after the base model's whole pass left that pass for nothing.
      const baseLayers = (await loadModelConfig(dir)).numLayers;
      for (const m of o.compareModel) {
        if (!(await fsp.stat(m).catch(() => null))?.isDirectory())
          throw new LangneuronsError('E_OPTIONS', `--compare-model ${m}: no such model folder`, { file: m, field: '--compare-model' });
        const layers = (await loadModelConfig(m)).numLayers;
        if (layers !== baseLayers)
          throw new LangneuronsError('E_INPUT', `--compare-model ${m}: ${layers} layers, but ${dir} has ${baseLayers}: one figure needs the same layers`, { file: m, field: '--compare-model' });
      }
      const set = await readParallel(o.parallel, langs, o.maxSentences ?? Infinity);
      const given = [{ dir, name: 'base', label: dir }];
      for (const d of o.delta) given.push(await variantModel(dir, d, o.deltaDtype));
      for (const m of o.compareModel) given.push({ dir: m, name: path.basename(path.resolve(m)), label: m });
      const variants = distinctNames(given);
      const analysis: AlignmentAnalysis = { source: set.source, centered: o.center, anchor: o.anchor, languages: langs, sentences: set.ids.length, layers: 0, maxTokens: o.maxTokens, runs: [] };
      // Resumable: each model's languages are units of the run's log (analyze-run.ts).
      await withAnalysisRun(o.out, 'alignment', ['alignment-similarity', 'alignment-retrieval'], { maxTokens: o.maxTokens, batch: o.batch, center: o.center }, o, async (log) => {
        for (const v of variants) {
          const model = await openModel(v.dir, o);
          if (analysis.layers && model.config.numLayers !== analysis.layers)
            throw new LangneuronsError('E_INPUT', `${v.dir}: ${model.config.numLayers} layers, but ${variants[0]!.dir} has ${analysis.layers}: one figure needs the same layers`, { file: v.dir });
          analysis.layers = model.config.numLayers;
          const bar = new Progress(`alignment ${v.name}`, o);
          const run = await alignModel(model, set, o.anchor, v.name, { maxTokens: o.maxTokens, batch: o.batch, center: o.center, unit: await log.unitsOf(model, v.dir),
            onProgress: (d, t) => bar.update(d, t) });
          analysis.runs.push({ ...run, model: v.label });  // the merged delta's cache folder means nothing to a reader
          bar.done();
          await model.dispose();
        }
        await emitFigures(o, alignmentFigures(analysis), () => analysis.runs.flatMap((r) => [
          `${r.variant} (${r.model}): similarity to ${o.anchor} / retrieval per layer`,
          ...Object.keys(r.similarity).map((l) => `  ${l.padEnd(8)} ${r.similarity[l]!.map((s, k) => `${s.toFixed(3)}/${(100 * r.retrieval[l]![k]!).toFixed(0)}%`).join(' ')}`),
        ]));
      });
    });
}
