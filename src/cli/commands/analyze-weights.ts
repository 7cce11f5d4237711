// `analyze activations <stats…> --neurons mask[:lang]` and `analyze delta <run|delta|adapter|checkpoint>`:
// chosen neurons' activations across languages, and where fine-tuning changed the weights.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { analyzeActivations, readStatsInputs } from '../../analyze/activations.js';
import { analyzeWeightUpdates, readChanges, resolveDeltaSource, type NeuronSet } from '../../analyze/weights.js';
import { LangneuronsError } from '../../errors.js';
import { maskLanguage, readMask, type NeuronMask } from '../../identify/masks.js';
import { loadModelConfig } from '../../model/config.js';
import { NEURON_SITES, SITES, type Site } from '../../profile/stats.js';
import { activationsFigures, weightUpdateFigures } from '../../report/analysis-figures.js';
import { emitFigures } from '../figures.js';
import { parseFloatOption, parseIntOption } from '../output.js';

/** `file.json` (every language's neurons, united), `file.json:lang` (one language's) or `file.json:mt,en` (the
 *  union of those languages', as `finetune --lang mt,en` trains). */
export async function readMaskRef(spec: string): Promise<{ mask: NeuronMask; language: string | null; layers: number[][]; source: string }> {
  const colon = spec.lastIndexOf(':');
  const [file, language] = existsSync(spec) || colon <= 0 ? [spec, null] : [spec.slice(0, colon), spec.slice(colon + 1)];
  const mask = await readMask(file);
  const unite = (perLanguage: number[][][]) =>
    Array.from({ length: mask.layers }, (_, l) => [...new Set(perLanguage.flatMap((units) => units[l] ?? []))].sort((a, b) => a - b));
  const layers = language !== null ? unite(language.split(',').map((x) => maskLanguage(mask, x.trim(), file)))
    : unite(Object.values(mask.languages));
  return { mask, language, layers, source: language !== null ? `${file}:${language}` : `${file} (all languages)` };
}

export function registerActivations(analyze: Command): void {
  analyze
    .command('activations <stats...>')
    .description('activation probability, values and per-sequence means of chosen neurons across languages, from statistics files; polysemantic neurons flagged')
    .requiredOption('--neurons <mask[:lang]>', 'the neurons: a mask file (all its languages) or mask:lang (one language\u2019s)')
    .option('--site <site>', 'site of the statistics (default: the mask\u2019s)')
    .option('--active-quantile <q>', 'a neuron is active for a language at or above this quantile of its neurons\u2019 activation probabilities', parseFloatOption('--active-quantile', (x) => x > 0 && x < 1, 'in (0, 1)'), 0.95)
    .option('--min-languages <n>', 'polysemantic: active for at least this many languages', parseIntOption('--min-languages', 2), 2)
    .option('--max-rows <n>', 'neurons drawn in the heatmap (those with the highest peak)', parseIntOption('--max-rows', 1, 1000), 40)
    .requiredOption('--out <dir>', 'folder for the figures')
    .option('--json', 'print one JSON document on stdout')
    .action(async (inputs: string[], o: { neurons: string; site?: string; activeQuantile: number; minLanguages: number; maxRows: number; out: string; json?: boolean }, cmd: Command) => {
      const ref = await readMaskRef(o.neurons);
      const site = (o.site ?? ref.mask.site) as Site;
      if (!SITES.includes(site)) throw new LangneuronsError('E_OPTIONS', `--site: unknown site '${site}' (sites: ${SITES.join(', ')})`, { field: '--site' });
      const stats = await readStatsInputs(inputs);
      const statsModel = stats[0]!.stats.meta.model;
      if (ref.mask.model.fingerprint !== statsModel.fingerprint)
        throw new LangneuronsError('E_MASK', `--neurons ${o.neurons}: a mask of model ${ref.mask.model.name} (${ref.mask.model.fingerprint.slice(0, 12)}), ` +
          `but ${stats[0]!.file} holds statistics of ${statsModel.name} (${statsModel.fingerprint.slice(0, 12)}): give a mask made on the statistics' model`, { field: '--neurons' });
      // A mask's units index its own site: read at a site of another width they would name other neurons (or none).
      const read = stats[0]!.stats.sites.get(site);
      if (read && read.width !== ref.mask.width)
        throw new LangneuronsError('E_MASK', `--neurons ${o.neurons}: a mask of site '${ref.mask.site}', ${ref.mask.width} units wide, but site '${site}' of ${stats[0]!.file} is ` +
          `${read.width} wide${o.site !== undefined ? `: give --site a site of ${ref.mask.width} units, or leave it out (the mask's)` : ''}`, { field: o.site !== undefined ? '--site' : '--neurons' });
      // Given (not the default 2, which one language's statistics are read with): more than there are finds nothing.
      if (o.minLanguages > stats.length && cmd.getOptionValueSource('minLanguages') === 'cli')
        throw new LangneuronsError('E_OPTIONS', `--min-languages ${o.minLanguages}: only ${stats.length} language(s) given (${stats.map((x) => x.stats.meta.language).join(', ')}), so no neuron could be polysemantic; give at most ${stats.length}`, { field: '--min-languages' });
      const neurons = ref.layers.flatMap((units, layer) => units.map((unit) => ({ layer, unit })));
      if (!neurons.length) throw new LangneuronsError('E_INPUT', `${ref.source}: no neurons`);
      const a = analyzeActivations(stats, neurons, { site, neuronsSource: ref.source, activeQuantile: o.activeQuantile, minLanguages: o.minLanguages });
      await emitFigures(o, activationsFigures(a, inputs.join(', '), o.maxRows), () => [
        `${a.neurons.length} neurons (${a.neuronsSource}), site ${a.site}: mean P(value > 0) per language`,
        ...a.languages.map((l, k) => `  ${l.padEnd(8)} chosen ${(100 * a.chosenProbability[k]!).toFixed(2)}%  all ${(100 * a.allProbability[k]!).toFixed(2)}%`),
        `polysemantic (active for ≥ ${a.minLanguages} languages): ${a.polysemantic.length}`,
      ]);
    });
}

export function registerDelta(analyze: Command): void {
  analyze
    .command('delta <path>')
    .description('where fine-tuning changed the weights: ‖ΔW‖ per layer and projection, and the share on a mask\u2019s neurons')
    .option('--base <model>', 'the base model (default: the run\u2019s, from run.json); needed for a checkpoint')
    .option('--mask <mask[:lang[,lang]]>', 'report the share of the change on these FFN neurons (languages united, as finetune --lang)')
    .requiredOption('--out <dir>', 'folder for the figures')
    .option('--json', 'print one JSON document on stdout')
    .action(async (p: string, o: { base?: string; mask?: string; out: string; json?: boolean }) => {
      const src = await resolveDeltaSource(p, o.base);
      const changes = await readChanges(src);
      const config = src.base ? await loadModelConfig(src.base) : null;
      let mask: NeuronSet | undefined;
      if (o.mask) {
        const ref = await readMaskRef(o.mask);
        if (!NEURON_SITES.includes(ref.mask.site)) throw new LangneuronsError('E_MASK', `${o.mask}: a mask of site '${ref.mask.site}'; the weight share needs FFN neurons (${NEURON_SITES.join(', ')})`, { field: '--mask' });
        if (config && (ref.mask.width !== config.intermediateSize || ref.mask.layers !== config.numLayers))
          throw new LangneuronsError('E_MASK', `${o.mask}: ${ref.mask.layers} layers × ${ref.mask.width} neurons, but the model has ${config.numLayers} × ${config.intermediateSize}`, { field: '--mask' });
        mask = { source: ref.source, layers: ref.layers };
      }
      const layers = config?.numLayers ?? Math.max(mask?.layers.length ?? 0, ...changes.map((c) => c.layer + 1));
      const source = src.kind === 'delta' ? src.file : src.kind === 'adapter' ? src.dir : src.tuned;
      const a = analyzeWeightUpdates(changes, layers, path.resolve(source), src.kind, mask);
      await emitFigures(o, weightUpdateFigures(a), () => [
        `‖ΔW‖ per layer (${a.projections.join(', ')}), total ${a.totalNorm.toPrecision(4)}`,
        ...a.layerNorm.map((n, l) => `  layer ${String(l).padStart(3)} ${n.toPrecision(4)}${a.mask ? `  on the mask ${a.mask.fractionPerLayer[l] === null ? '-' : `${(100 * a.mask.fractionPerLayer[l]!).toFixed(1)}%`}` : ''}`),
        ...(a.mask ? [`share on ${a.mask.source}: ${a.mask.fraction === null ? '- (nothing changed)' : `${(100 * a.mask.fraction).toFixed(2)}%`}`] : []),
      ]);
    });
}
