import path from 'node:path';

import type { Command } from 'commander';

import { LangneuronsError } from '../../errors.js';
import { withOutputLock } from '../../io/lock.js';
import { applyAdapter, isAdapterDir } from '../../train/adapter.js';
import { applyDelta } from '../../train/delta.js';
import { finetune, mergeDtype, resume, type FinetuneOptions, type Schedule } from '../../train/finetune.js';
import { roundingWarning } from '../../train/merge-precision.js';
import type { PairFormat } from '../../train/head.js';
import type { FinetuneMethod } from '../../train/methods.js';
import { formatTrainerMemory } from '../../train/placement.js';
import { printResult } from '../output.js';

interface FinetuneCli {
  method?: string; masks?: string; lang?: string; train?: string; valid?: string; out?: string; resume?: string;
  lr?: string; weightDecay?: string; clip?: string; chunk?: string; batch?: string; accum?: string; steps?: string;
  warmup?: string; schedule?: string; evalEvery?: string; saveEvery?: string; seed?: string; threads?: string;
  json?: boolean; quiet?: boolean; device?: string; compute?: string; saveDtype?: string;
  loraR?: string; loraAlpha?: string; loraDropout?: string; loraInitStd?: string; loraTargets?: string; resetOptimizerOnSave?: boolean; recompute?: boolean;
  head?: string; numLabels?: string; textField?: string; labelField?: string; pairFormat?: string; warmupRatio?: string; beta1?: string; beta2?: string;
  headBias?: boolean;
}

/** Options a resumed run takes (the rest are recorded in run.json). */
const RESUME_OPTIONS = new Set(['resume', 'device', 'compute', 'json', 'quiet']);

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

// Numbers are parsed here (not by commander) so that a bad value names its option.
function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new LangneuronsError('E_OPTIONS', `--${name} must be a number, got '${v}'`, { field: name });
  return x;
}

export function registerFinetune(program: Command): void {
  program
    .command('finetune [model-dir]')
    .description('fine-tune a model: every parameter (full), the MLPs (mlp), a language\'s neurons (neurons), as many random neurons ' +
      '(random), LoRA (lora) or LoRA masked to a language\'s gate_proj rows + attention LoRA (neuron-lora); optionally with a classification head')
    .option('--method <m>', 'full | mlp | neurons | random | lora | neuron-lora', 'neurons')
    .option('--masks <file>', 'neuron mask (langneurons identify) for neurons / random / neuron-lora')
    .option('--lang <langs>', 'language(s) of the mask, comma-separated (union)')
    .option('--train <file>', 'training text (UTF-8, one document per line), or JSONL of {"prompt", "completion"} or chat {"messages"} records ' +
      '(one sequence each, the loss on the completion / assistant tokens only; --chunk caps their length)')
    .option('--valid <file>', 'validation text: loss every --eval-every steps, the best weights kept')
    .option('--out <dir>', 'run directory (must not hold a run)')
    .option('--resume <dir>', 'continue the run in <dir> from its last saved state')
    .option('--lr <x>', 'peak learning rate (default per method: full/mlp 1e-5, neurons/random/lora/neuron-lora 1e-4; neuron-lora + head 1e-5)')
    .option('--lora-r <n>', 'LoRA rank (lora 32, neuron-lora 8)')
    .option('--lora-alpha <x>', 'LoRA alpha; the update is scaled by alpha / r (lora 64, neuron-lora 16)')
    .option('--lora-dropout <x>', 'dropout on the LoRA input while training (lora 0.1, neuron-lora 0)')
    .option('--lora-init-std <x>', "LoRA A's initial values: 0, PEFT's kaiming-uniform (lora); > 0, normal(0, x) (neuron-lora: 0.01, as Mondal et al.)")
    .option('--lora-targets <modules>', 'PEFT module names (lora: gate_proj,up_proj,down_proj; neuron-lora: q_proj,k_proj,v_proj,o_proj + the masked gate_proj)')
    .option('--head <kind>', 'classification: a linear head on the last position (data: JSONL items), saved as score.weight (and score.bias) in <run>/head/')
    .option('--num-labels <n>', 'classes of the head (3)')
    .option('--text-field <fields>', 'JSONL text field(s) of an item, comma-separated, tokenised as a pair (premise,hypothesis)')
    .option('--pair-format <f>', 'pair: each field with its BOS, as tokenizer(premise, hypothesis) (default); eos-joined: premise + " <eos> " + hypothesis as one text (Mondal et al.\'s code)')
    .option('--label-field <field>', 'JSONL integer label field (label)')
    .option('--head-bias', 'the head has a bias (score.bias; off, as transformers\' score layer; on with neuron-lora + head, as Mondal et al.\'s nn.Linear)')
    .option('--no-head-bias', 'the head has no bias (also with neuron-lora + head)')
    .option('--beta1 <x>', 'AdamW beta1 (0.9; neuron-lora + head 0.95)')
    .option('--beta2 <x>', 'AdamW beta2 (0.999)')
    .option('--warmup-ratio <x>', 'warm-up as a fraction of the steps, rounded down, when --warmup is 0 (0; neuron-lora + head 0.01)')
    .option('--reset-optimizer-on-save', 'zero the AdamW moments and step count whenever a new best checkpoint is saved (Gurgurov et al.\'s reference re-creates its optimizer then; off)')
    .option('--weight-decay <x>', 'AdamW decoupled weight decay (0.01; neuron-lora + head 0.1)')
    .option('--clip <x>', 'max gradient norm (full 0.5, else 1.0; neuron-lora + head 10; 0: none)')
    .option('--chunk <n>', "tokens per chunk (512, or the model's context where shorter; neuron-lora + head 256 per item)")
    .option('--batch <n>', 'chunks per micro-batch (2; neuron-lora + head 1)')
    .option('--accum <n>', 'micro-batches per step (1; neuron-lora + head 8)')
    .option('--steps <n>', 'optimizer steps (default: one epoch, each chunk once; its last step holds the chunks left, as transformers\' Trainer)')
    .option('--warmup <n>', 'linear warm-up steps, as transformers\' schedulers: lr x s / n at step s = 0, 1, … (0)')
    .option('--schedule <s>', 'constant | linear | cosine after the warm-up (constant; neuron-lora + head linear)')
    .option('--eval-every <n>', 'validation every n steps (500; 0: only after the last step)')
    .option('--save-every <n>', 'save the resumable state every n steps (default: --eval-every; 100 with --eval-every 0)')
    .option('--seed <n>', 'seed of the data order and of method random (0)')
    .option('--threads <n>', 'threads of the CPU trainer (2)')
    .option('--device <device>', 'auto (default: a usable GPU, else the CPU), cpu, cuda, cuda:N; recorded in the run: --resume continues only there')
    .option('--compute <mode>', 'CUDA trainer: bf16 (default: bf16 weights and activations, float32 master copies and optimizer state) or f32 (exact float32, for checks); the CPU trainer computes in f32')
    .option('--recompute', 'CUDA trainer: keep only each layer\'s input and run the layer\'s forward again in the backward (activation checkpointing): one layer\'s activations on the device instead of every layer\'s, one more forward a step, the same results')
    .option('--save-dtype <dtype>', "the checkpoint's trained tensors (run/model): stored (default: the base model's dtype, e.g. BF16, loadable as it was) or f32 (float32: keeps changes below a BF16 step; the delta is float32 either way)")
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no per-step lines')
    .action(async (dir: string | undefined, o: FinetuneCli, cmd: Command) => {
      const onLog = o.quiet || o.json ? undefined : (e: Record<string, unknown>) => process.stderr.write(JSON.stringify(e) + '\n');
      let r;
      if (o.resume) {
        if (dir || o.train || o.out) throw new LangneuronsError('E_OPTIONS', '--resume takes everything from the run directory: give no model, --train or --out');
        // Everything else is run.json's: an option given here would be dropped without a word (a longer --steps,
        // another --lr), so it is refused. Only where the run continues (and how it reports) may change.
        const ignored = cmd.options.filter((opt) => cmd.getOptionValueSource(opt.attributeName()) === 'cli' && !RESUME_OPTIONS.has(opt.attributeName()));
        if (ignored.length > 0)
          throw new LangneuronsError('E_OPTIONS', `--resume continues the run with the settings its run.json records: ${ignored.map((opt) => opt.long).join(', ')} cannot be ` +
            'changed (only --device, --compute, --json and --quiet are taken); start a new run with --out to change them', { field: ignored[0]!.long ?? 'resume' });
        r = await resume(o.resume, onLog ? { onLog } : {}, { ...(o.device !== undefined ? { device: o.device } : {}), ...(o.compute !== undefined ? { compute: o.compute } : {}) });
      } else {
        if (!dir) throw new LangneuronsError('E_OPTIONS', 'finetune needs a model directory (or --resume <run-dir>)');
        if (!o.train) throw new LangneuronsError('E_OPTIONS', 'finetune needs --train <file>', { field: 'train' });
        if (!o.out) throw new LangneuronsError('E_OPTIONS', 'finetune needs --out <run-dir>', { field: 'out' });
        const opts: FinetuneOptions = {
          method: (o.method ?? 'neurons') as FinetuneMethod, train: o.train,
          ...(o.masks ? { masks: o.masks } : {}), ...(o.lang ? { langs: o.lang.split(',').map((s) => s.trim()).filter(Boolean) } : {}),
          ...(o.valid ? { valid: o.valid } : {}),
          ...(o.schedule ? { schedule: o.schedule as Schedule } : {}),
          ...(o.loraTargets !== undefined ? { loraTargets: list(o.loraTargets) } : {}),
          ...(o.resetOptimizerOnSave ? { resetOptimizerOnSave: true } : {}),
          ...(o.head !== undefined ? { head: o.head as 'classification' } : {}),
          ...(o.textField !== undefined ? { textFields: list(o.textField) } : {}),
          ...(o.labelField !== undefined ? { labelField: o.labelField } : {}),
          ...(o.pairFormat !== undefined ? { pairFormat: o.pairFormat as PairFormat } : {}),
          ...(o.headBias !== undefined ? { headBias: o.headBias } : {}),
          ...(o.device !== undefined ? { device: o.device } : {}),
          ...(o.compute !== undefined ? { compute: o.compute as 'f32' | 'bf16' } : {}),
          ...(o.recompute ? { recompute: true } : {}),
          ...(o.saveDtype !== undefined ? { saveDtype: mergeDtype(o.saveDtype, 'save-dtype') } : {}),
        };
        const nums: [keyof FinetuneOptions, string, string | undefined][] = [
          ['lr', 'lr', o.lr], ['weightDecay', 'weight-decay', o.weightDecay], ['clip', 'clip', o.clip], ['chunk', 'chunk', o.chunk],
          ['batch', 'batch', o.batch], ['accum', 'accum', o.accum], ['steps', 'steps', o.steps], ['warmup', 'warmup', o.warmup],
          ['evalEvery', 'eval-every', o.evalEvery], ['saveEvery', 'save-every', o.saveEvery], ['seed', 'seed', o.seed], ['threads', 'threads', o.threads],
          ['loraR', 'lora-r', o.loraR], ['loraAlpha', 'lora-alpha', o.loraAlpha], ['loraDropout', 'lora-dropout', o.loraDropout], ['loraInitStd', 'lora-init-std', o.loraInitStd],
          ['numLabels', 'num-labels', o.numLabels], ['warmupRatio', 'warmup-ratio', o.warmupRatio], ['beta1', 'beta1', o.beta1], ['beta2', 'beta2', o.beta2]];
        for (const [k, name, v] of nums) {
          const x = num(name, v);
          if (x !== undefined) (opts as unknown as Record<string, unknown>)[k] = x;
        }
        r = await finetune(dir, opts, o.out, onLog ? { onLog } : {});
      }
      printResult(o, r, () => `run            ${r.runDir}\ndevice         ${r.trainer.device} (${r.trainer.compute})${r.trainer.describe ? `: ${r.trainer.describe}` : ''}\n` +
        (r.trainer.memory ? `memory         ${formatTrainerMemory(r.trainer.memory)}\n` : '') +
        `steps          ${r.steps}\ntrainable      ${r.trainableParameters}\n` +
        `loss           ${r.firstLoss?.toFixed(4) ?? '-'} -> ${r.lastLoss?.toFixed(4) ?? '-'}\n` +
        (r.bestStep !== null ? `best valid     ${r.bestValid!.toFixed(4)} at step ${r.bestStep}\n` : '') +
        (r.written ? `checkpoint     ${r.written.dir} (trained tensors ${r.written.dtypes.join('/')}; ${r.written.roundedAway} of ${r.written.changed} changed values rounded back to the base)\n` : ''));
      if (r.written?.warning) process.stderr.write(`warning: ${r.written.warning}\n`);
    });

  program
    .command('delta')
    .description('sparse weight deltas of fine-tuning runs')
    .command('apply <model-dir> <delta>')
    .description('write model + delta (runs/x/delta.safetensors) or model + merged PEFT LoRA adapter (a folder with ' +
      'adapter_config.json, e.g. runs/x/adapter/) as a Hugging Face checkpoint')
    .requiredOption('--out <dir>', 'output folder')
    .option('--threads <n>', 'threads of the adapter merge (2)')
    .option('--json', 'print the result as JSON')
    .option('--dtype <dtype>', "the changed tensors: stored (default: the base model's dtype) or f32 (float32: the trained values exactly)")
    .action(async (dir: string, delta: string, o: { out: string; json?: boolean; threads?: string; dtype?: string }) => {
      const threads = num('threads', o.threads) ?? 2;
      if (!Number.isInteger(threads) || threads < 1) throw new LangneuronsError('E_OPTIONS', `--threads must be an integer >= 1, got '${o.threads}'`, { field: 'threads' });
      if (path.resolve(o.out) === path.resolve(dir))
        throw new LangneuronsError('E_OPTIONS', `${o.out}: the output folder is the base model folder; choose another --out`, { field: '--out' });
      // One merge per folder (a second is refused naming the holder); checkOutDir allows the lock file.
      const dtype = mergeDtype(o.dtype ?? 'stored', 'dtype');
      const r = await withOutputLock(o.out, 'delta apply', async () =>
        await isAdapterDir(delta) ? applyAdapter(dir, delta, o.out, threads, { dtype }) : applyDelta(dir, delta, o.out, { dtype }));
      const warning = roundingWarning(r, o.out, '--dtype');
      printResult(o, { out: o.out, patched: r.patched, dtypes: r.dtypes, changed: r.changed, roundedAway: r.roundedAway, warning },
        () => `wrote ${o.out} (${r.patched.length} tensors changed, written as ${r.dtypes.join('/')}; ${r.roundedAway} of ${r.changed} changed values rounded back to the base)\n`);
      if (warning) process.stderr.write(`warning: ${warning}\n`);
    });
}
