// The resumable state of a fine-tuning run (master weights + Adam moments of every trainable tensor, and the
// loop's counters) as ONE file, `state/state.safetensors`, whose `__metadata__.langneurons_state` holds the
// counters: one atomic rename makes a save, so a kill leaves the previous complete save or the new one, never a
// mix. `state.json` beside it is a readable copy written after; it is not trusted on load. Folders saved by
// earlier versions (counters only in state.json, vouched for by the SHA-256 of the weights file) still load; the
// hash is streamed because the file can pass 2 GiB. Tensors are written and read one at a time, never the whole file.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { sha256File } from '../io/files.js';
import { readSafetensorsHeader, readTensor, writeSafetensors, type TensorToProduce } from '../io/safetensors.js';
import { ensureOutputDir } from '../io/outdir.js';
import { tensorName, type NativeTrainer } from './native.js';
import type { ModelType } from '../model/config.js';

/** optimizerStep: AdamW's step count (differs from step after --reset-optimizer-on-save; absent in older states). */
export interface StateFile {
  step: number; bestValid: number | null; bestStep: number | null; tokens: number; optimizerStep?: number;
  /** Only in state.json of folders saved before the counters moved into the safetensors metadata. */
  stateSha256?: string;
}
export type StateCounters = Omit<StateFile, 'stateSha256'>;

type StateTrainer = Pick<NativeTrainer, 'params' | 'read' | 'write' | 'setStepCount'>;

export const STATE_META_KEY = 'langneurons_state';
const ARENAS = ['master', 'm', 'v'] as const;

/** Whether dir holds a complete save (the file whose metadata vouches for itself, or a legacy pair). */
export async function hasSavedState(dir: string): Promise<boolean> {
  try {
    const h = await readSafetensorsHeader(path.join(dir, 'state.safetensors'));
    if (h.metadata?.[STATE_META_KEY]) return true;
  } catch {
    return false;
  }
  return fsp.access(path.join(dir, 'state.json')).then(() => true, () => false);
}

export async function saveState(dir: string, tr: StateTrainer, st: StateCounters, modelType?: ModelType): Promise<void> {
  // Each tensor is copied out of the trainer when the writer reaches it: one tensor in memory at a time, not the
  // whole state (three times the trainable parameters, past 2 GiB for full fine-tuning of a 180M model).
  const tensors: Record<string, TensorToProduce> = {};
  for (const p of tr.params()) {
    if (p.size === 0) continue;
    const n = tensorName(p.role, p.layer, modelType);
    for (const a of ARENAS) tensors[`${n}.${a}`] = { dtype: 'F32', shape: [p.size], produce: () => tr.read(a, p.id) };
  }
  await ensureOutputDir(dir);
  const counters: StateCounters = { step: st.step, bestValid: st.bestValid, bestStep: st.bestStep, tokens: st.tokens,
    ...(st.optimizerStep !== undefined ? { optimizerStep: st.optimizerStep } : {}) };
  await writeSafetensors(path.join(dir, 'state.safetensors'), tensors, { step: String(st.step), [STATE_META_KEY]: JSON.stringify(counters) });
  await writeFileAtomic(path.join(dir, 'state.json'), JSON.stringify(counters, null, 2) + '\n');
}

function resumeErr(file: string, msg: string): LangneuronsError {
  return new LangneuronsError('E_RESUME', `${file}: ${msg}`, { file });
}

/** Loads the save in dir into the trainer; null when dir holds no save at all (a run killed before its first). */
export async function loadState(dir: string, tr: StateTrainer, modelType?: ModelType): Promise<StateFile | null> {
  const jf = path.join(dir, 'state.json'), sf = path.join(dir, 'state.safetensors');
  const exists = async (f: string) => fsp.access(f).then(() => true, () => false);
  if (!(await exists(sf))) {
    if (await exists(jf)) throw resumeErr(jf, 'state.safetensors is missing beside it; the save is incomplete');
    return null;
  }
  const header = await readSafetensorsHeader(sf).catch((e: Error) => { throw resumeErr(sf, `unreadable saved state: ${e.message}`); });
  let st: StateFile;
  const meta = header.metadata?.[STATE_META_KEY];
  if (meta) {
    try { st = JSON.parse(meta) as StateFile; } catch (e) { throw resumeErr(sf, `metadata "${STATE_META_KEY}" is not JSON (${(e as Error).message})`); }
  } else {
    // Earlier format: the counters in state.json, tied to the weights by a hash.
    try { st = JSON.parse(await fsp.readFile(jf, 'utf8')) as StateFile; } catch (e) {
      throw resumeErr(jf, `cannot read the saved counters (${(e as Error).message})`);
    }
    if ((await sha256File(sf)) !== st.stateSha256) throw resumeErr(sf, 'does not match state.json (interrupted save?)');
  }
  if (!Number.isInteger(st.step) || st.step < 0) throw resumeErr(sf, `saved step ${JSON.stringify(st.step)} is not an integer >= 0`);
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  for (const p of tr.params()) {
    if (p.size === 0) continue;
    const n = tensorName(p.role, p.layer, modelType);
    for (const a of ARENAS) {
      const t = byName.get(`${n}.${a}`);
      if (!t || t.dtype !== 'F32' || t.byteLength !== p.size * 4) throw resumeErr(sf, `tensor ${n}.${a} is missing or has the wrong size`);
      tr.write(a, p.id, (await readTensor(sf, t)) as Float32Array);
    }
  }
  tr.setStepCount(st.optimizerStep ?? st.step);
  return st;
}
