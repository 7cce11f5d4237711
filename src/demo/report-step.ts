// Step 6: the demo's results as the report's data (src/report/report-data.ts): one figure per pipeline step.
import path from 'node:path';

import { existsSync } from 'node:fs';

import { analyzeOverlap } from '../analyze/masks.js';
import { analyzeWeightUpdates, readChanges, resolveDeltaSource } from '../analyze/weights.js';
import { maskLanguage, readMask } from '../identify/masks.js';
import { REPORT_FORMAT, type AnalysesFigure, type ReportData } from '../report/report-data.js';
import type { Check } from './checks.js';
import type { DemoContext } from './context.js';
import type { FinetuneData, MethodRun } from './finetune-step.js';
import type { MatrixResult } from './matrix-step.js';
import type { IdentifyResult } from './neurons-step.js';
import type { SteeringResult } from './steering-step.js';

export interface DemoResults {
  steps: { name: string; seconds: number; skipped: boolean }[];
  seconds: number;
  checks: Check[];
  ok: boolean;
  identify: IdentifyResult;
  matrix: MatrixResult;
  steering: SteeringResult;
  data: FinetuneData;
  runs: MethodRun[];
}

export function buildReportData(ctx: DemoContext, r: DemoResults): ReportData {
  const c = ctx.checkpoint.config, langs = ctx.recipe.languages;
  const m = r.matrix.matrix, s = r.steering;
  const settings = ['none', ...s.settings];
  return {
    format: REPORT_FORMAT,
    title: `langneurons demo: ${ctx.identity.name}`,
    generatedAt: new Date().toISOString(),
    model: { dir: path.resolve(ctx.modelDir), name: ctx.identity.name, parameters: ctx.checkpoint.parameterCount, layers: c.numLayers, hidden: c.hiddenSize,
      intermediate: c.intermediateSize, vocab: c.vocabSize, recipe: ctx.recipe.source === 'options' ? 'none (languages from the options)' : path.basename(ctx.recipe.source) },
    languages: langs,
    lowResource: ctx.recipe.lowResource?.language ?? null,
    seconds: r.seconds,
    steps: r.steps,
    options: { ...ctx.options },
    checks: r.checks,
    ok: r.ok,
    figures: {
      neurons: {
        method: r.identify.method, parameters: r.identify.parameters, languages: langs, layers: r.identify.layers,
        ...(r.identify.derived['topRateLadder'] ? { topRateLadder: r.identify.derived['topRateLadder'] as { topRate: number; fewest: number }[] } : {}),
        perLayer: langs.map((l) => r.identify.perLayer[l] ?? []), total: langs.map((l) => r.identify.total[l] ?? 0), union: r.identify.union,
      },
      deactivation: {
        rows: m.rows, columns: m.columns, deltaNll: m.deltaNll, baselineNll: m.baseline.nll, baselinePerplexity: m.baseline.perplexity,
        tokens: m.baseline.tokens, diagonalShare: m.diagonal.share, rowShare: m.diagonal.rowShare, misses: m.diagonal.misses,
      },
      steering: {
        identifier: s.identifier.name, identifierAccuracy: s.identifier.accuracy.accuracy, targets: s.targets, settings,
        share: s.runs.map((run) => settings.map((k) => (k === 'none' ? run.baseline : run.settings[k]!).share)),
        generations: s.runs.map((run) => run.baseline.generations), maxNewTokens: s.maxNewTokens, baselineKeepsPromptLanguage: s.baselineKeepsPromptLanguage,
        examples: s.runs.flatMap((run) => settings.flatMap((k) => (k === 'none' ? run.baseline : run.settings[k]!).examples.slice(0, 2)
          .map((e) => ({ target: run.target, setting: k, source: e.source, prompt: e.prompt, text: e.text, detected: e.detected })))),
      },
      training: {
        language: r.data.language, trainArticles: r.data.trainArticles, validArticles: r.data.validArticles, baseValidLoss: r.data.baseValidLoss,
        methods: r.runs.map((x) => ({
          method: x.method, lr: x.lr, trainableParameters: x.trainableParameters, trainableShare: x.trainableShare, steps: x.steps, stepSeconds: x.stepSeconds,
          tokensPerSecond: x.tokensPerSecond, bestValid: x.bestValid, bestStep: x.bestStep, finalValid: x.validLoss[x.validLoss.length - 1]![1],
          trainLoss: x.trainLoss, validLoss: x.validLoss,
        })),
      },
    },
  };
}

/** The analyses of the run for the report: the mask's language overlap, and each fine-tuning run's weight change with its
 * share on the fine-tuned language's neurons. */
export async function buildReportAnalyses(ctx: DemoContext, r: Pick<DemoResults, 'identify' | 'data' | 'runs'>): Promise<AnalysesFigure> {
  const mask = await readMask(r.identify.maskFile);
  const neurons = maskLanguage(mask, r.data.language, r.identify.maskFile);
  const weightUpdates: NonNullable<AnalysesFigure['weightUpdates']> = [];
  for (const run of r.runs) {
    if (!existsSync(path.join(run.runDir, 'delta.safetensors')) && !existsSync(path.join(run.runDir, 'adapter'))) continue;
    const src = await resolveDeltaSource(run.runDir, ctx.modelDir);
    weightUpdates.push({ method: run.method, analysis: analyzeWeightUpdates(await readChanges(src), ctx.checkpoint.config.numLayers, run.runDir, src.kind,
      { source: `${path.basename(r.identify.maskFile)}:${r.data.language}`, layers: neurons }) });
  }
  return { overlap: analyzeOverlap(mask), weightUpdates };
}
