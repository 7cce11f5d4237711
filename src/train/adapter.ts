// LoRA adapters in Hugging Face PEFT's folder layout, and merging one into a full checkpoint.
//
//   adapter/adapter_config.json        peft_type LORA, r, lora_alpha, lora_dropout, target_modules, ...
//   adapter/adapter_model.safetensors  base_model.model.model.layers.{l}.mlp.gate_proj.lora_A.weight [r, in]
//                                      base_model.model.model.layers.{l}.mlp.gate_proj.lora_B.weight [out, r]
//
// A masked B (method neuron-lora) is written in full with zero rows outside the language's neurons, so PEFT loads
// it as an ordinary adapter and merges to the same weights. target_modules is the list of module names when every
// layer has an adapter on them, else a regular expression naming exactly the adapted modules (PEFT full-matches a
// string target_modules against module names). The base model's fingerprint is kept in the safetensors metadata
// (PEFT ignores it) so that merging into another model is refused.
//
// Merge: W' = W + (alpha / r) B A (alpha / sqrt(r) with use_rslora), computed in float32 (native GEMM) and rounded
// once to W's stored dtype; rows where B is zero are left byte-identical.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureOutputDir } from '../io/outdir.js';
import { readAllTensors, readSafetensorsHeader, toFloat32, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { modelIdentity } from '../profile/identity.js';
import { baseTensors, checkOutDir, writeCheckpoint } from './delta.js';
import { loraDelta, modulePath, tensorName, type NativeTrainer } from './native.js';
import { emptyMergeReport, patchTarget, type MergeDtype, type MergeReport, type PatchTarget } from './merge-precision.js';

/** PEFT module names -> trainer roles. */
export const PEFT_TARGETS = {
  q_proj: 'wq', k_proj: 'wk', v_proj: 'wv', o_proj: 'wo', gate_proj: 'w_gate', up_proj: 'w_up', down_proj: 'w_down',
} as const;
export type PeftTarget = keyof typeof PEFT_TARGETS;
export const isPeftTarget = (s: string): s is PeftTarget => Object.prototype.hasOwnProperty.call(PEFT_TARGETS, s);

const WEIGHTS = 'adapter_model.safetensors';
const CONFIG = 'adapter_config.json';
const PREFIX = 'base_model.model.';
const FINGERPRINT_KEY = 'langneurons.model_fingerprint', NAME_KEY = 'langneurons.model_name';

export interface AdapterConfig {
  peft_type: 'LORA'; task_type: string; r: number; lora_alpha: number; lora_dropout: number;
  target_modules: string[] | string; base_model_name_or_path: string; bias: 'none'; fan_in_fan_out: boolean;
  [k: string]: unknown;
}

function bad(file: string, msg: string): never {
  throw new LangneuronsError('E_ADAPTER', `${file}: ${msg}`, { file });
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** PEFT's target_modules for a set of adapted (layer, role) pairs. */
export function targetModules(adapted: { layer: number; role: string }[], numLayers: number): string[] | string {
  const byRole = new Map<string, Set<number>>();
  for (const a of adapted) {
    if (!byRole.has(a.role)) byRole.set(a.role, new Set());
    byRole.get(a.role)!.add(a.layer);
  }
  const roles = [...byRole.keys()].sort();
  const short = (role: string) => modulePath(role).split('.').pop()!;
  if (roles.every((r) => byRole.get(r)!.size === numLayers)) return roles.map(short).sort();
  return roles.map((r) => {
    const layers = [...byRole.get(r)!].sort((a, b) => a - b);
    const l = layers.length === numLayers ? '\\d+' : `(?:${layers.join('|')})`;
    return `model\\.layers\\.${l}\\.${escape(modulePath(r))}`;
  }).join('|');
}

/** Writes the trainer's LoRA matrices as a PEFT adapter folder. */
export async function writeAdapter(dir: string, tr: NativeTrainer, ckpt: Checkpoint,
  s: { r: number; alpha: number; dropout: number }): Promise<void> {
  const tensors: Record<string, TensorToWrite> = {};
  const adapted: { layer: number; role: string }[] = [];
  for (const p of tr.params()) {
    if (p.mode !== 'lora_a' && p.mode !== 'lora_b') continue;
    const name = PREFIX + tensorName(p.role, p.layer, ckpt.config.modelType);
    const values = tr.read('master', p.id);
    if (p.mode === 'lora_a') {
      tensors[name] = { dtype: 'F32', shape: [p.rows, p.cols], data: values };
      adapted.push({ layer: p.layer, role: p.role.slice(0, p.role.indexOf('.')) });
      continue;
    }
    let full = values;
    if (p.index) { // masked B: zero rows outside the selected output features
      full = new Float32Array(p.rows * p.cols);
      p.index.forEach((row, k) => full.set(values.subarray(k * p.cols, (k + 1) * p.cols), row * p.cols));
    }
    tensors[name] = { dtype: 'F32', shape: [p.rows, p.cols], data: full };
  }
  if (adapted.length === 0) throw new LangneuronsError('E_ADAPTER', 'the trainer has no LoRA adapters');
  const config: AdapterConfig = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: s.r, lora_alpha: s.alpha, lora_dropout: s.dropout,
    target_modules: targetModules(adapted, ckpt.config.numLayers), base_model_name_or_path: path.resolve(ckpt.dir),
    bias: 'none', fan_in_fan_out: false, inference_mode: true, init_lora_weights: true, modules_to_save: null,
    use_rslora: false, use_dora: false, layers_to_transform: null, layers_pattern: null, rank_pattern: {},
    alpha_pattern: {}, revision: null,
  };
  await ensureOutputDir(dir);
  const id = modelIdentity(ckpt);
  await writeSafetensors(path.join(dir, WEIGHTS), tensors, { format: 'pt', [FINGERPRINT_KEY]: id.fingerprint, [NAME_KEY]: id.name });
  await writeFileAtomic(path.join(dir, CONFIG), JSON.stringify(config, null, 2) + '\n');
}

/** PEFT's target_modules rule: a list names modules by their full name or its last parts (`q_proj` matches
 *  `model.layers.0.self_attn.q_proj`), a string is a regular expression the full name must match, `all-linear` names
 *  every linear layer; absent (null), nothing is checked. */
function targetsModule(targets: unknown, module: string, file: string): boolean {
  if (targets === undefined || targets === null || targets === 'all-linear') return true;
  if (typeof targets === 'string') {
    try { return new RegExp(`^(?:${targets})$`).test(module); } catch { bad(file, `target_modules ${JSON.stringify(targets)} is not a regular expression`); }
  }
  if (Array.isArray(targets) && targets.every((t) => typeof t === 'string'))
    return targets.some((t: string) => module === t || module.endsWith(`.${t}`));
  bad(file, `target_modules must be a list of module names or a regular expression, got ${JSON.stringify(targets)}`);
}

/** Whether dir looks like a PEFT adapter folder. */
export async function isAdapterDir(dir: string): Promise<boolean> {
  try {
    return (await fsp.stat(path.join(dir, CONFIG))).isFile();
  } catch {
    return false;
  }
}

export interface LoraModule { module: string; r: number; a: Float32Array; b: Float32Array; in: number; out: number }
export interface Adapter { config: AdapterConfig; scale: number; modules: LoraModule[]; fingerprint: string | null; modelName: string | null }

/** Reads and validates a PEFT LoRA adapter folder (plain LoRA: no DoRA, per-module patterns or fan_in_fan_out). */
export async function readAdapter(dir: string): Promise<Adapter> {
  const cf = path.join(dir, CONFIG), wf = path.join(dir, WEIGHTS);
  let config: AdapterConfig;
  try {
    config = JSON.parse(await fsp.readFile(cf, 'utf8')) as AdapterConfig;
  } catch (e) {
    bad(cf, `not a PEFT adapter config (${(e as Error).message})`);
  }
  if (config?.peft_type !== 'LORA') bad(cf, `peft_type is ${JSON.stringify(config?.peft_type)}, only LORA adapters are supported`);
  if (!Number.isInteger(config.r) || config.r < 1) bad(cf, `r must be a positive integer, got ${JSON.stringify(config.r)}`);
  if (typeof config.lora_alpha !== 'number' || !(config.lora_alpha > 0)) bad(cf, `lora_alpha must be a number > 0`);
  if (config.fan_in_fan_out) bad(cf, 'fan_in_fan_out adapters (GPT-2 style Conv1D) are not supported');
  if (config['use_dora']) bad(cf, 'DoRA adapters are not supported');
  for (const k of ['rank_pattern', 'alpha_pattern'])
    if (config[k] && Object.keys(config[k] as object).length) bad(cf, `${k} (per-module ranks) is not supported`);
  if (config['use_rslora'] !== undefined && config['use_rslora'] !== null && typeof config['use_rslora'] !== 'boolean')
    bad(cf, `use_rslora must be true or false, got ${JSON.stringify(config['use_rslora'])}`);
  const scale = config['use_rslora'] ? config.lora_alpha / Math.sqrt(config.r) : config.lora_alpha / config.r;
  let tensors: Awaited<ReturnType<typeof readAllTensors>>;
  try {
    tensors = await readAllTensors(wf);
  } catch (e) {
    bad(wf, `cannot read the adapter weights: ${(e as Error).message}`);
  }
  const parts = new Map<string, { a?: Float32Array; b?: Float32Array; ashape?: number[]; bshape?: number[] }>();
  for (const [name, t] of tensors) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/.exec(name);
    if (!m) bad(wf, `tensor ${name} is not a LoRA matrix (only lora_A / lora_B weights are supported)`);
    const e = parts.get(m[1]!) ?? {};
    const v = toFloat32(t.info, t.data);
    if (t.info.shape.length !== 2) bad(wf, `tensor ${name} is not 2-D`);
    if (m[2] === 'A') { e.a = v; e.ashape = t.info.shape; } else { e.b = v; e.bshape = t.info.shape; }
    parts.set(m[1]!, e);
  }
  const modules: LoraModule[] = [];
  for (const [module, e] of parts) {
    if (!e.a || !e.b) bad(wf, `module ${module} has lora_${e.a ? 'B' : 'A'} missing`);
    const [r, K] = e.ashape!, [N, rb] = e.bshape!;
    if (r !== config.r || rb !== config.r) bad(wf, `module ${module}: A [${e.ashape}] and B [${e.bshape}] do not have rank r = ${config.r}`);
    modules.push({ module, r: r!, a: e.a, b: e.b, in: K!, out: N! });
  }
  if (modules.length === 0) bad(wf, 'the adapter has no LoRA matrices');
  // PEFT puts adapters only on the modules target_modules names: a tensor of another module means a config that
  // does not belong to these weights (PEFT would not load it).
  for (const m of modules) if (!targetsModule(config.target_modules, m.module, cf))
    bad(cf, `target_modules ${JSON.stringify(config.target_modules)} does not name module ${m.module}, which the adapter's weights hold`);
  const meta = (await readSafetensorsHeader(wf)).metadata ?? {};
  return {
    config, scale, modules: modules.sort((x, y) => (x.module < y.module ? -1 : 1)), fingerprint: meta[FINGERPRINT_KEY] ?? null,
    modelName: meta[NAME_KEY] ?? null,
  };
}

/**
 * Refuses an adapter made for another model: by its recorded base fingerprint (when there is one), and always by its
 * modules, each of which must be a linear weight of the model of the adapter's [out, in] shape. `file` names it.
 */
export function checkAdapterFits(ad: Adapter, ckpt: Checkpoint, file: string): void {
  const id = modelIdentity(ckpt);
  if (ad.fingerprint !== null && ad.fingerprint !== id.fingerprint)
    bad(file, `adapter was made for ${ad.modelName ?? 'another model'} (${ad.fingerprint.slice(0, 12)}), not for ${id.name} (${id.fingerprint.slice(0, 12)})`);
  for (const m of ad.modules) {
    const info = ckpt.tensors.get(`${m.module}.weight`);
    if (!info || info.shape.length !== 2) bad(file, `module ${m.module} is not a linear layer of the model`);
    const [N, K] = info!.shape as [number, number];
    if (m.out !== N || m.in !== K) bad(file, `module ${m.module}: adapter is for a [${m.out}, ${m.in}] weight, the model's is [${N}, ${K}]`);
  }
}

/**
 * Writes base model + adapter as a Hugging Face checkpoint in outDir (same files as applyDelta). Refuses an adapter
 * made for another model (fingerprint, when recorded; shapes always) and an outDir holding anything the merge does not write (checkOutDir).
 */
export async function applyAdapter(modelDir: string, adapterDir: string, outDir: string, threads = 2, o: { dtype?: MergeDtype } = {}): Promise<MergeReport> {
  const ckpt = await openCheckpoint(modelDir);
  const ad = await readAdapter(adapterDir);
  const wf = path.join(adapterDir, WEIGHTS);
  checkAdapterFits(ad, ckpt, wf);
  await checkOutDir(modelDir, outDir);
  // Each weight is read, patched and written in turn (the writer produces one tensor at a time).
  const out = baseTensors(ckpt);
  const report = emptyMergeReport();
  const widened: Record<string, string> = Object.fromEntries(ckpt.baseDtypes ?? []);
  for (const m of ad.modules) {
    const name = `${m.module}.weight`;
    const base = out[name]!; // checkAdapterFits: a [N, K] linear weight of the model
    const [N, K] = base.shape as [number, number];
    if (base.dtype !== 'F32' && base.dtype !== 'BF16' && base.dtype !== 'F16') bad(wf, `cannot merge into a ${base.dtype} weight`);
    // Only the rows where B is non-zero change (all of them for plain LoRA, the neurons' rows for a masked B).
    const rows: number[] = [];
    for (let n = 0; n < N; n++) if (m.b.subarray(n * m.r, (n + 1) * m.r).some((x) => x !== 0)) rows.push(n);
    if (rows.length === 0) continue;
    const bsel = new Float32Array(rows.length * m.r);
    rows.forEach((n, k) => bsel.set(m.b.subarray(n * m.r, (n + 1) * m.r), k * m.r));
    const baseDtype = base.dtype as 'F32' | 'BF16' | 'F16';
    if (baseDtype !== 'F32' && o.dtype === 'f32') widened[name] = baseDtype;
    out[name] = { dtype: baseDtype === 'F32' || o.dtype === 'f32' ? 'F32' : baseDtype, shape: base.shape,
      produce: async () => patchRows(patchTarget(baseDtype, await base.produce() as Float32Array | Uint16Array, o.dtype ?? 'stored', report), rows, loraDelta(m.a, bsel, m.r, ad.scale, threads), K) };
    report.patched.push(name);
  }
  await writeCheckpoint(modelDir, outDir, out, widened);
  return report;
}

/** A copy of base with rows[k] += delta[k] (float32), rounded once to the target's dtype. */
function patchRows(target: PatchTarget, rows: number[], delta: Float32Array, K: number): Float32Array | Uint16Array {
  const { get, put } = target;
  rows.forEach((n, k) => {
    for (let c = 0; c < K; c++) put(n * K + c, Math.fround(get(n * K + c) + delta[k * K + c]!));
  });
  return target.data;
}
