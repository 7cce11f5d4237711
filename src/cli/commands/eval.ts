import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { LangneuronsError } from '../../errors.js';
import { ModelScorer } from '../../eval/scorer.js';
import { requireChatTemplate, type ChatPrompting } from '../../generate/chat.js';
import { addInterventionOptions, interventionFromCli } from '../../intervene/index.js';
import { datasetDir, isTask, languagesIn, prepareTask, TASKS, type TaskName } from '../../eval/tasks.js';
import { runPlan, type EvalResult, type Variant } from '../../eval/run.js';
import { applyAdapter, isAdapterDir } from '../../train/adapter.js';
import { applyDelta } from '../../train/delta.js';
import { HeadClassifier } from '../../train/head.js';
import { addModelOptions, openModel, type ModelCliOptions } from '../common.js';
import { parseIntOption, printResult, Progress } from '../output.js';

interface EvalCli extends ModelCliOptions {
  task: string; langs?: string; pairs?: string; data?: string; text?: string; prompt?: string; split?: string; out: string;
  intervene: string[]; interveneFile?: string; stats?: string; delta?: string; variant?: string; limit?: number; batchItems: number; langName: string[];
  head?: string; chatTemplate?: boolean; system?: string;
}

const collect = (v: string, acc: string[]) => [...acc, v];

export function registerEval(program: Command): void {
  addInterventionOptions(addModelOptions(program
    .command('eval <model-dir>')
    .description(`evaluate on local datasets (tasks: ${TASKS.join(', ')}); one result JSON per task, language and variant`)
    .requiredOption('--task <tasks>', 'comma-separated tasks')
    .option('--langs <langs>', 'comma-separated languages (dataset config names or ISO codes), or "all"')
    .option('--pairs <pairs>', 'flores: comma-separated <src>-<tgt> pairs, e.g. eng_Latn-mlt_Latn')
    .option('--data <dir>', 'dataset folder (with several tasks: a folder holding one sub-folder per task)')
    .option('--text <dir>', 'ppl: held-out text folder (<lang>.txt / .jsonl / .parquet with a "text" column)')
    .option('--prompt <format>', 'prompt format (flores: gurgurov, rahmanisa; belebele: generate, loglik; xnli: lm-eval, generate, head; include/mmlu: loglik, generate)')
    .option('--head <dir>', 'xnli --prompt head: the classification head of a `finetune --head classification` run (runs/x/ or runs/x/head/); ' +
      'evaluate it on the run\'s trained model (runs/x/model, or the base with --delta runs/x/adapter)')
    .option('--split <name>', 'dataset split (default per task: devtest, test or validation)')
    .option('--out <dir>', 'results folder', 'results')
    .option('--delta <path>', 'fine-tuned variant: a delta.safetensors from `finetune` or a PEFT LoRA adapter folder (runs/x/adapter; both merged once into a cache folder), or a merged checkpoint folder')
    .option('--variant <name>', 'variant name recorded in the results (default: base / intervene / delta)')
    .option('--limit <n>', 'first n items per language only', parseIntOption('--limit', 1))
    .option('--batch-items <n>', 'items per batched engine call', parseIntOption('--batch-items', 1), 16)
    .option('--lang-name <code=Name>', 'English name of a FLORES code for the translation prompts (repeatable)', collect, [])
    .option('--chat-template', "generative prompts (flores, belebele/xnli/include/mmlu --prompt generate, xquad) go through the model's chat template as a user turn; log-likelihood scoring stays on raw text")
    .option('--system <text>', 'with --chat-template: a system turn before each prompt')))
    .action(async (dir: string, o: EvalCli) => {
      const tasks = o.task.split(',').map((t) => t.trim()).filter(Boolean);
      for (const t of tasks) if (!isTask(t)) throw new LangneuronsError('E_OPTIONS', `unknown task '${t}' (tasks: ${TASKS.join(', ')})`, { field: 'task' });
      let modelDir = dir;
      const variant: Variant = { name: o.variant ?? 'base' };
      if (o.head) {
        if (o.prompt !== undefined && o.prompt !== 'head') throw new LangneuronsError('E_OPTIONS', `--head scores with the head: give --prompt head (or no --prompt), not '${o.prompt}'`, { field: 'prompt' });
        if (tasks.some((t) => t !== 'xnli')) throw new LangneuronsError('E_OPTIONS', '--head applies to --task xnli only', { field: 'task' });
        if (o.intervene.length || o.interveneFile) throw new LangneuronsError('E_OPTIONS', '--head cannot be combined with --intervene', { field: 'head' });
        o.prompt = 'head';
      } else if (o.prompt === 'head') {
        throw new LangneuronsError('E_OPTIONS', '--prompt head needs --head <run-dir> (a `finetune --head classification` run)', { field: 'head' });
      }
      if (o.delta) {
        if (!existsSync(o.delta)) throw new LangneuronsError('E_IO', `${o.delta}: --delta not found`, { file: o.delta });
        // A delta file or a PEFT adapter folder is merged into the base model once, in a cache folder named by its
        // content hash; a merged checkpoint folder is used as it is.
        modelDir = !statSync(o.delta).isDirectory() ? await mergedDeltaModel(dir, o.delta)
          : await isAdapterDir(o.delta) ? await mergedDeltaModel(dir, o.delta, true) : o.delta;
        variant.delta = o.delta;
        // a run's delta (runs/mt-neurons/delta.safetensors) or adapter (runs/mt-lora/adapter) is named after its run folder
        const d = path.resolve(o.delta);
        variant.name = o.variant ?? `delta-${['delta.safetensors', 'adapter'].includes(path.basename(d)) ? path.basename(path.dirname(d)) : path.basename(d)}`;
      }
      if (o.head) {
        variant.head = path.resolve(o.head);
        variant.name = o.variant ?? `head-${path.basename(path.resolve(o.head)) === 'head' ? path.basename(path.dirname(path.resolve(o.head))) : path.basename(path.resolve(o.head))}`;
        // The head was trained together with the run's weights: scoring it on the untouched base model is a mistake.
        const runModel = path.join(path.resolve(o.head), 'model');
        if (!o.delta && existsSync(runModel) && path.resolve(dir) !== runModel && !o.json)
          process.stderr.write(`note: ${o.head} holds a trained model (${runModel}); the head is evaluated on ${dir}\n`);
      }
      const specs = [...o.intervene, ...(o.interveneFile ? [`file:${o.interveneFile}`] : [])];
      if (specs.length) { variant.intervene = specs.join(' + '); variant.name = o.variant ?? `intervene-${specs.join('+')}`; }
      const langNames = Object.fromEntries(o.langName.map((s) => {
        const k = s.indexOf('=');
        if (k <= 0) throw new LangneuronsError('E_OPTIONS', `--lang-name takes code=Name, got '${s}'`, { field: 'lang-name' });
        return [s.slice(0, k), s.slice(k + 1)];
      }));
      if (o.system !== undefined && !o.chatTemplate) throw new LangneuronsError('E_OPTIONS', '--system needs --chat-template', { field: 'system' });
      let chat: ChatPrompting | undefined;
      if (o.chatTemplate) {
        chat = { template: await requireChatTemplate(dir, '--chat-template'), ...(o.system !== undefined ? { system: o.system } : {}) };
        variant.chatTemplate = chat.template.source;
        if (o.system !== undefined) variant.system = o.system;
        variant.name = o.variant ?? `${variant.name}-chat`;
      }
      const model = await openModel(modelDir, o);
      const intervene = await interventionFromCli(model, o);
      const head = o.head ? await HeadClassifier.load(model.checkpoint, o.head, model.threads) : undefined;
      const scorer = new ModelScorer(model, { ...(intervene ? { intervene } : {}), ...(head ? { head } : {}), ...(chat ? { chat } : {}) });
      const results: EvalResult[] = [];
      for (const task of tasks as TaskName[]) {
        const root = task === 'ppl' ? o.text ?? o.data : o.data;
        if (!root) throw new LangneuronsError('E_OPTIONS', `${task} needs ${task === 'ppl' ? '--text' : '--data'} <dir>`, { field: task === 'ppl' ? 'text' : 'data' });
        const ddir = datasetDir(root, task);
        let langs: string[];
        if (task === 'flores') {
          if (!o.pairs) throw new LangneuronsError('E_OPTIONS', 'flores needs --pairs <src>-<tgt>[,...]', { field: 'pairs' });
          langs = o.pairs.split(',').map((s) => s.trim()).filter(Boolean);
        } else {
          if (!o.langs) throw new LangneuronsError('E_OPTIONS', `${task} needs --langs`, { field: 'langs' });
          langs = o.langs === 'all' ? languagesIn(task, ddir, o.split) : o.langs.split(',').map((s) => s.trim()).filter(Boolean);
        }
        for (const lang of langs) {
          const plan = await prepareTask(task, {
            dir: ddir, lang, langNames, ...(o.prompt && task !== 'ppl' ? { prompt: o.prompt } : {}),
            ...(o.split ? { split: o.split } : {}), ...(o.limit ? { limit: o.limit } : {}),
          });
          const progress = new Progress(`${task} ${lang}`, o);
          const r = await runPlan(plan, { scorer, outDir: o.out, model: path.resolve(modelDir), variant, batchItems: o.batchItems, onProgress: (d, t) => progress.update(d, t, 'items') });
          progress.done();
          results.push(r);
          if (!o.json) process.stderr.write(`${task} ${lang} [${variant.name}, ${plan.prompt}]: ${Object.entries(r.metrics).filter(([, v]) => typeof v === 'number').map(([k, v]) => `${k}=${(v as number).toFixed(4)}`).join(' ')}\n`);
        }
      }
      printResult(o, { results }, () => `${results.length} result file(s) in ${o.out}`);
    });
}

/**
 * The base model with a fine-tuning delta (or a PEFT adapter folder) applied, cached in the temp folder by the
 * sha256 of the delta file (of the adapter's config and weights).
 */
async function mergedDeltaModel(base: string, deltaFile: string, adapter = false): Promise<string> {
  const h = createHash('sha256');
  if (adapter) { // (an adapter does not pin its base model's weights: the base folder is part of the key)
    h.update(path.resolve(base));
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) h.update(await readFile(path.join(deltaFile, f)));
  }
  else h.update(await readFile(deltaFile));
  const hash = h.digest('hex').slice(0, 16);
  const out = path.join(os.tmpdir(), `langneurons-delta-${hash}`);
  if (existsSync(path.join(out, 'model.safetensors'))) return out;
  const staging = `${out}.tmp-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  if (adapter) await applyAdapter(base, deltaFile, staging);
  else await applyDelta(base, deltaFile, staging);
  await rm(out, { recursive: true, force: true });
  await rename(staging, out); // a killed merge never leaves a half-written model where the cache looks
  return out;
}
