// `langneurons demo [model-dir]`: the whole pipeline on the bundled multilingual model (models/udhr20): profile,
// identify (LAPE), deactivation perplexity matrix, steering, fine-tuning against the baselines, and a report
// (report.html + report.json) whose checks decide the exit code. `--engine-check` runs the earlier engine check
// on the stories260k fixture instead.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { DEMO_STEER_SETTINGS, TOP_RATE_LADDER, runDemo, type DemoOptions, type DemoSummary, type StepEvent } from '../../demo/index.js';
import { readEngineReference, runEngineCheck } from '../../demo/engine-check.js';
import { LangneuronsError } from '../../errors.js';
import { loadAddon, packageRoot } from '../../native/addon.js';
import { resolveDevice } from '../../engine/device.js';
import { addModelOptions, deviceOption, openModel, type ModelCliOptions } from '../common.js';
import { parseFloatOption, parseIntOption, printResult } from '../output.js';

/** The bundled model the demo runs on by default. */
export function defaultDemoModel(): string {
  return path.join(packageRoot(), 'models', 'udhr20');
}

/** The fixture of the engine check (next to a source checkout of the package whose root is `root`). */
export function engineCheckModel(root = packageRoot()): string {
  return path.resolve(root, '..', 'shared', 'fixtures', 'models', 'stories260k');
}

/** The engine check's model folder: the one given, else the fixture, which an installed package does not have. */
export function engineCheckDir(dirArg: string | undefined, root = packageRoot()): string {
  if (dirArg !== undefined) return dirArg;
  const dir = engineCheckModel(root);
  if (!existsSync(dir))
    throw new LangneuronsError('E_OPTIONS', `demo --engine-check: no model folder given and the stories260k fixture is not at ${dir} (a source checkout has it); pass the model folder: langneurons demo <model-dir> --engine-check`, { field: 'model-dir' });
  return dir;
}

interface DemoCli extends ModelCliOptions {
  out: string; quick?: boolean; engineCheck?: boolean; langs?: string; lowResource?: string; methods?: string; steps?: number; targets?: string; settings?: string; topRate?: number;
}

const list = (s: string | undefined) => s?.split(',').map((x) => x.trim()).filter(Boolean);

/** Step lines on a terminal: one line per finished step, the current step's progress overwritten in place. */
function progressPrinter(enabled: boolean): (e: StepEvent) => void {
  let open = false;
  return (e) => {
    if (!enabled) return;
    if (e.state === 'progress') { process.stderr.write(`\r\x1b[K  ${e.step}: ${e.message}`); open = true; return; }
    if (open) { process.stderr.write('\r\x1b[K'); open = false; }
    if (e.state === 'start') process.stderr.write(`${e.step} ...\n`);
    else process.stderr.write(`${e.step} ${e.state === 'skipped' ? 'reused (inputs unchanged)' : `done in ${e.seconds!.toFixed(1)} s`}\n`);
  };
}

function summaryText(s: DemoSummary): string {
  const r = s.results;
  const lines = [
    `model       ${s.model}`,
    `runtime     ${s.seconds.toFixed(1)} s (${s.steps.map((x) => `${x.name} ${x.skipped ? 'reused' : `${x.seconds.toFixed(1)}s`}`).join(', ')})`,
    `diagonal    ${(100 * r.diagonalShare).toFixed(0)}% of the languages' texts hurt most by their own deactivation; ` +
      `${(100 * r.diagonalRowShare).toFixed(0)}% of the deactivations hurt their own text most`,
    ...r.steering.map((t) => `steering    → ${t.target}: ${(100 * t.baseline).toFixed(0)}% without intervention, ` +
      Object.entries(t.steered).map(([k, v]) => `${(100 * v).toFixed(0)}% with ${k}`).join(', ')),
    `fine-tune   ${r.finetune.language}: held-out loss ${r.finetune.baseValidLoss.toFixed(3)} before; best after: ` +
      r.finetune.methods.map((m) => `${m.method} ${m.bestValid.toFixed(3)} (${m.trainableParameters.toLocaleString('en-US')} params, ${(1000 * m.stepSeconds).toFixed(0)} ms/step)`).join(', '),
    ...s.checks.map((c) => `check       ${c.passed ? 'PASS' : 'FAIL'} ${c.name}: ${c.measured}`),
    `report      ${s.report.html}`,
    s.ok ? 'all checks passed' : 'SOME CHECKS FAILED',
  ];
  return lines.join('\n');
}

async function engineCheck(dirArg: string | undefined, o: DemoCli): Promise<void> {
  const dir = engineCheckDir(dirArg);
  const ref = readEngineReference(dir);
  const model = await openModel(dir, o);
  const r = await runEngineCheck(model, ref);
  printResult(o, { model: dir, compute: model.compute, engine: model.info(), ...r }, () => [
    `model       ${dir} (${model.config.modelType}, ${model.checkpoint.parameterCount.toLocaleString('en-US')} parameters)`,
    `engine      ${model.info().kernel} kernels, ${model.threads} threads, compute ${model.compute}`,
    `greedy      ${r.greedyFromBos.tokens.length} tokens from BOS at ${r.greedyFromBos.tokensPerSecond.toFixed(0)} tokens/s` +
      (r.greedyFromBos.matching === null ? '' : `: ${r.greedyFromBos.matching}/${r.greedyFromBos.reference.length} equal to the llama2.c reference`),
    `score       reference input: mean NLL ${r.referenceInput.meanNll.toFixed(4)} nats/token, perplexity ${r.referenceInput.perplexity.toFixed(3)} over ${r.referenceInput.tokens} tokens`,
    r.ok ? 'check       OK' : 'check       FAILED: the greedy continuation differs from the reference',
  ].join('\n'));
  if (!r.ok) process.exitCode = 1;
}

export function registerDemo(program: Command): void {
  addModelOptions(program
    .command('demo [model-dir]')
    .description('run the whole pipeline on the bundled multilingual model (or model-dir) and check it: profile, identify, ' +
      'deactivation matrix, steering, fine-tuning; writes report.html and report.json')
    .option('--out <dir>', 'output folder (a rerun reuses the finished steps)', 'langneurons-demo')
    .option('--quick', 'score and generate less and train fewer steps (the same checks)')
    .option('--langs <list>', 'languages (default: the model\'s recipe.json)')
    .option('--low-resource <lang>', 'language whose neurons are fine-tuned (default: the recipe\'s low-resource language)')
    .option('--targets <list>', 'steering targets (default: up to three languages of different scripts)')
    .option('--settings <list>', `steering settings, the first one checked (default: ${DEMO_STEER_SETTINGS.join(',')})`)
    .option('--methods <list>', 'fine-tuning methods compared (default: neurons, random, mlp, full, lora, neuron-lora)')
    .option('--steps <n>', 'fine-tuning steps per method', parseIntOption('--steps', 1))
    .option('--top-rate <x>', `LAPE top rate (default: the first of ${TOP_RATE_LADDER.join(', ')} giving every language 30 neurons; METHODS.md: 0.01)`,
      parseFloatOption('--top-rate', (x) => x > 0 && x <= 1, 'in (0, 1]'))
    .option('--engine-check', 'instead: check the engine on the stories260k fixture against the llama2.c reference'))
    .action(async (dirArg: string | undefined, o: DemoCli) => {
      if (o.engineCheck) return engineCheck(dirArg, o);
      const dir = dirArg ?? defaultDemoModel();
      // An explicit --device cuda without a usable GPU is refused before the demo folder is made (auto falls back).
      if (o.device !== undefined && deviceOption(o.device).startsWith('cuda')) resolveDevice(o.device, loadAddon(), o.threads ?? 2);
      const options: DemoOptions = {
        quick: !!o.quick, compute: o.compute ?? 'f32', ...(o.threads ? { threads: o.threads } : {}), ...(o.device !== undefined ? { device: deviceOption(o.device) } : {}),
        ...(o.langs ? { languages: list(o.langs)! } : {}), ...(o.lowResource ? { lowResource: o.lowResource } : {}),
        ...(o.targets ? { steerTargets: list(o.targets)! } : {}), ...(o.settings ? { steerSettings: list(o.settings)! } : {}), ...(o.methods ? { methods: list(o.methods)! } : {}),
        ...(o.steps ? { steps: o.steps } : {}), ...(o.topRate ? { topRate: o.topRate } : {}),
      };
      const summary = await runDemo(dir, o.out, options, progressPrinter(Boolean(process.stderr.isTTY) && !o.json));
      printResult(o, summary, () => summaryText(summary));
      if (!summary.ok) process.exitCode = 1;
    });
}
