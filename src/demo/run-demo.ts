// runDemo: the whole pipeline on one model, step by step with the library's modules, into one folder:
//
//   stats/<lang>.safetensors      1. profile (train articles)        steps/profile.json
//   masks/lape.json               2. identify (LAPE)                 steps/identify.json
//   ppl-matrix.json|csv|svg       3. deactivation matrix (held-out)  steps/ppl-matrix.json
//                                 4. steering (forcing + n-gram id)  steps/steering.json
//   finetune/data, finetune/<m>/  5. fine-tuning per method          steps/finetune-*.json
//   report.json, report.html      6. report and checks
//
// A rerun reuses every step whose inputs did not change (src/demo/steps.ts).
import { existsSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { withOutputLock } from '../io/lock.js';
import { loadModelConfig } from '../model/config.js';
import { writeReport } from '../report/index.js';
import { diagonalCheck, finetuneCheck, identifierCheck, steeringCheck, type Check } from './checks.js';
import { createContext, type DemoContext } from './context.js';
import { finetuneDataStep, finetuneMethodStep, type MethodRun } from './finetune-step.js';
import { matrixStep } from './matrix-step.js';
import { identifyStep, profileStep } from './neurons-step.js';
import { resolveDemoOptions, type DemoOptions, type ResolvedDemoOptions } from './options.js';
import { checkDemoFolder, markDemoFolder } from './out-folder.js';
import { demoRecipe, type DemoRecipe } from './recipe.js';
import { buildReportAnalyses, buildReportData } from './report-step.js';
import { steeringStep } from './steering-step.js';
import { StepRunner, type StepEvent } from './steps.js';

export const DEMO_FORMAT = 'langneurons-demo/1';

export interface DemoSummary {
  format: typeof DEMO_FORMAT;
  model: string;
  outDir: string;
  report: { json: string; html: string };
  seconds: number;
  steps: { name: string; seconds: number; skipped: boolean }[];
  checks: Check[];
  ok: boolean;
  results: {
    /** Languages whose held-out text is hurt most by their own deactivation (columns), and the row view. */
    diagonalShare: number;
    diagonalRowShare: number;
    steering: { target: string; baseline: number; steered: Record<string, number> }[];
    finetune: { language: string; baseValidLoss: number; methods: Pick<MethodRun, 'method' | 'bestValid' | 'trainableParameters' | 'stepSeconds'>[] };
  };
}

const REQUIRED_FILES = ['config.json', 'tokenizer.json'];

export async function runDemo(modelDir: string, outDir: string, options: DemoOptions = {}, onProgress: (e: StepEvent) => void = () => {}): Promise<DemoSummary> {
  for (const f of REQUIRED_FILES)
    if (!existsSync(path.join(modelDir, f)))
      throw new LangneuronsError('E_IO', `${path.join(modelDir, f)}: the demo needs a model folder with ${REQUIRED_FILES.join(', ')} and safetensors weights`, { file: path.join(modelDir, f) });
  const o = resolveDemoOptions(options, (await loadModelConfig(modelDir)).maxPositions);
  const recipe = demoRecipe(modelDir, { ...(o.languages ? { languages: o.languages } : {}), ...(o.lowResource ? { lowResource: o.lowResource } : {}) });
  await checkDemoFolder(outDir);
  return withOutputLock(outDir, 'demo', async () => {
    await markDemoFolder(outDir, modelDir);
    return runSteps(modelDir, outDir, o, recipe, onProgress);
  });
}

/** The steps, the checks and the report, in the checked and locked output folder. */
async function runSteps(modelDir: string, outDir: string, o: ResolvedDemoOptions, recipe: DemoRecipe, onProgress: (e: StepEvent) => void): Promise<DemoSummary> {
  const started = performance.now();
  const runner = new StepRunner(outDir, onProgress);
  const ctx: DemoContext = await createContext(modelDir, outDir, o, recipe, runner);
  const steps: DemoSummary['steps'] = [];
  const track = <T extends { seconds: number; skipped: boolean }>(name: string, s: T): T => { steps.push({ name, seconds: s.seconds, skipped: s.skipped }); return s; };

  const profile = track('profile', await profileStep(ctx));
  const identify = track('identify', await identifyStep(ctx, profile));
  const low = recipe.lowResource!.language;
  if (!(identify.result.total[low]! > 0))
    throw new LangneuronsError('E_MASK', `${identify.result.maskFile}: LAPE (top rate ${String(identify.result.parameters['topRate'])}) found no neuron of "${low}", the language to fine-tune; ` +
      'choose another language (--low-resource) or a larger top rate (--top-rate)', { file: identify.result.maskFile });
  const matrix = track('ppl-matrix', await matrixStep(ctx, identify));
  const steering = track('steering', await steeringStep(ctx, profile, identify));
  const data = track('finetune-data', await finetuneDataStep(ctx));
  const runs: MethodRun[] = [];
  for (const m of o.methods) runs.push(track(`finetune-${m}`, await finetuneMethodStep(ctx, m, data, identify)).result);

  const checks = [diagonalCheck(matrix.result, o.diagonalShare), identifierCheck(steering.result), steeringCheck(steering.result), finetuneCheck(data.result, runs)];
  const ok = checks.every((c) => c.passed);
  const seconds = (performance.now() - started) / 1000;
  const reportData = buildReportData(ctx, { steps, seconds, checks, ok, identify: identify.result, matrix: matrix.result, steering: steering.result, data: data.result, runs });
  reportData.figures.analyses = await buildReportAnalyses(ctx, { identify: identify.result, data: data.result, runs });
  const report = await writeReport(outDir, reportData);
  return {
    format: DEMO_FORMAT, model: modelDir, outDir, report, seconds, steps, checks, ok,
    results: {
      diagonalShare: matrix.result.matrix.diagonal.share,
      diagonalRowShare: matrix.result.matrix.diagonal.rowShare,
      steering: steering.result.runs.map((r) => ({ target: r.target, baseline: r.baseline.share, steered: Object.fromEntries(Object.entries(r.settings).map(([k, v]) => [k, v.share])) })),
      finetune: { language: data.result.language, baseValidLoss: data.result.baseValidLoss,
        methods: runs.map((r) => ({ method: r.method, bestValid: r.bestValid, trainableParameters: r.trainableParameters, stepSeconds: r.stepSeconds })) },
    },
  };
}
