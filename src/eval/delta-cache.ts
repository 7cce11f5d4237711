// `eval --delta`: the base model with a fine-tuning delta (or a PEFT adapter) applied, cached in the temp folder so
// that several evals of one variant merge it once. The cache is keyed by the base model's fingerprint and the
// delta's content (not by paths), built in a staging folder renamed into place, and vouched for by `cache.json`
// (written last) which records the merged model's own fingerprint: a cache that is partly written, damaged, or
// made from other inputs is rebuilt, never trusted. Staging folders of dead processes and caches unused for a
// week are removed; anything else in the temp folder is never touched.
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { processAlive, writeFileAtomic } from '../io/atomic.js';
import { sha256File } from '../io/files.js';
import { modelFingerprint } from '../model/fingerprint.js';
import { applyAdapter, isAdapterDir } from '../train/adapter.js';
import { applyDelta } from '../train/delta.js';
import { mergeDtype, roundingWarning, type MergeDtype, type MergeReport } from '../train/merge-precision.js';

// /2: merges record what they wrote (merge) and a float32 merge's base dtypes (its identity is its base's)
export const DELTA_CACHE_FORMAT = 'langneurons-delta-cache/2';
const PREFIX = 'langneurons-delta-';
const MAX_IDLE_MS = 7 * 24 * 3600 * 1000;
/** What a merge writes: a cache folder holding anything else is not ours and is left alone. */
const OURS = new Set(['cache.json', 'model.safetensors', 'config.json', 'generation_config.json', 'tokenizer.json',
  'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'chat_template.jinja']);

/** merge: what the merge wrote (merge-precision.ts; absent in caches made before it was recorded). */
interface CacheRecord { format: string; key: string; base: string; delta: string; model: string; merge?: Omit<MergeReport, 'patched'> }

/** Where caches live (LANGNEURONS_CACHE_DIR, for tests and shared machines, else the OS temp folder). */
export function deltaCacheRoot(): string {
  return process.env['LANGNEURONS_CACHE_DIR'] ?? os.tmpdir();
}

async function readRecord(dir: string): Promise<CacheRecord | null> {
  try {
    return JSON.parse(await fsp.readFile(path.join(dir, 'cache.json'), 'utf8')) as CacheRecord;
  } catch {
    return null;
  }
}

/** What a --delta names: a delta file, a PEFT adapter folder, a run folder holding either (its delta.safetensors,
 *  else its adapter/), or a merged checkpoint folder; anything else is a clear error. */
export async function deltaSource(delta: string): Promise<{ kind: 'delta' | 'adapter' | 'checkpoint'; path: string }> {
  if (!existsSync(delta)) throw new LangneuronsError('E_IO', `${delta}: --delta not found`, { file: delta });
  const d = path.resolve(delta);
  if (!statSync(d).isDirectory()) return { kind: 'delta', path: d };
  if (await isAdapterDir(d)) return { kind: 'adapter', path: d };
  if (existsSync(path.join(d, 'delta.safetensors'))) return { kind: 'delta', path: path.join(d, 'delta.safetensors') };
  if (await isAdapterDir(path.join(d, 'adapter'))) return { kind: 'adapter', path: path.join(d, 'adapter') };
  if (existsSync(path.join(d, 'config.json'))) return { kind: 'checkpoint', path: d };
  throw new LangneuronsError('E_INPUT', `${delta}: not a delta file, an adapter folder, a run folder holding delta.safetensors or adapter/, nor a checkpoint`, { file: delta });
}

/** What the merge of a cache folder wrote (null for caches made before it was recorded). */
export async function deltaCacheMerge(dir: string): Promise<Omit<MergeReport, 'patched'> | null> {
  return (await readRecord(dir))?.merge ?? null;
}

/** Whether dir is a complete cache for key: its record matches and the model in it is the one recorded. */
async function validCache(dir: string, key: string): Promise<boolean> {
  const r = await readRecord(dir);
  if (!r || r.format !== DELTA_CACHE_FORMAT || r.key !== key) return false;
  try {
    return (await modelFingerprint(dir)) === r.model;
  } catch {
    return false;
  }
}

/** Removes a cache folder, only if it holds nothing but what a merge writes (and is not a link). */
async function removeOurs(dir: string): Promise<void> {
  const st = await fsp.lstat(dir).catch(() => null);
  if (!st) return;
  if (!st.isDirectory()) throw new LangneuronsError('E_IO', `${dir}: is not a delta cache folder (a ${st.isSymbolicLink() ? 'symbolic link' : 'file'}); remove it or set LANGNEURONS_CACHE_DIR`, { file: dir });
  const names = await fsp.readdir(dir);
  const foreign = names.filter((n) => !OURS.has(n) && !/\.tmp-\d+(-[0-9a-f]+)?$/.test(n));
  if (foreign.length) throw new LangneuronsError('E_IO', `${dir}: holds files a delta merge does not write (${foreign.slice(0, 3).join(', ')}); not removing it: move it away or set LANGNEURONS_CACHE_DIR`, { file: dir });
  await fsp.rm(dir, { recursive: true, force: true });
}

/** Staging / replaced folders of dead processes, and caches unused for a week. */
export async function cleanDeltaCaches(root = deltaCacheRoot()): Promise<string[]> {
  const removed: string[] = [];
  const names = await fsp.readdir(root).catch(() => [] as string[]);
  for (const n of names) {
    if (!n.startsWith(PREFIX)) continue;
    const full = path.join(root, n);
    const m = /\.(tmp|old)-(\d+)$/.exec(n);
    try {
      if (m) {
        if (!processAlive(Number(m[2]))) { await removeOurs(full); removed.push(full); }
      } else if (/^[0-9a-f]{16}$/.test(n.slice(PREFIX.length))) {
        const st = await fsp.stat(path.join(full, 'cache.json')).catch(() => null);
        if (st && Date.now() - st.mtimeMs > MAX_IDLE_MS) { await removeOurs(full); removed.push(full); }
      }
    } catch {
      // Not ours after all (foreign files): left alone.
    }
  }
  return removed;
}

/** The merged model folder for base + delta (a delta.safetensors, or a PEFT adapter folder with adapter). */
export async function mergedDeltaModel(base: string, delta: string, adapter = false, root = deltaCacheRoot(), dtype: MergeDtype = 'stored'): Promise<string> {
  await cleanDeltaCaches(root);
  const h = createHash('sha256').update(DELTA_CACHE_FORMAT).update('\n').update(await modelFingerprint(base)).update('\n');
  if (dtype !== 'stored') h.update(`dtype ${dtype}\n`); // (stored: the keys of caches made before the option)
  if (adapter) for (const f of ['adapter_config.json', 'adapter_model.safetensors']) h.update(await sha256File(path.join(delta, f)));
  else h.update(await sha256File(delta));
  const key = h.digest('hex');
  const out = path.join(root, `${PREFIX}${key.slice(0, 16)}`);
  if (await validCache(out, key)) {
    const now = new Date();
    await fsp.utimes(path.join(out, 'cache.json'), now, now); // last use, for the clean-up
    return out;
  }
  const staging = `${out}.tmp-${process.pid}`;
  await removeOurs(staging);
  const { patched: _, ...merge } = adapter ? await applyAdapter(base, delta, staging, 2, { dtype }) : await applyDelta(base, delta, staging, { dtype });
  const record: CacheRecord = { format: DELTA_CACHE_FORMAT, key, base: path.resolve(base), delta: path.resolve(delta), model: await modelFingerprint(staging), merge };
  await writeFileAtomic(path.join(staging, 'cache.json'), JSON.stringify(record, null, 2) + '\n');
  // Another eval may have finished the same cache meanwhile: keep a valid one, replace an invalid one.
  if (await validCache(out, key)) {
    await removeOurs(staging);
    return out;
  }
  await removeOurs(out); // an invalid cache, after checking it holds only what a merge writes
  await fsp.rename(staging, out).catch(async (e: NodeJS.ErrnoException) => {
    if ((e.code === 'ENOTEMPTY' || e.code === 'EEXIST') && (await validCache(out, key))) return removeOurs(staging);
    throw new LangneuronsError('E_IO', `${out}: cannot put the merged model in place: ${e.message}`, { file: out });
  });
  return out;
}

/** A fine-tuned variant of `base` given as --delta: the model folder to load, its name in results and figures (after
 *  the run folder: runs/mt-neurons/delta.safetensors is mt-neurons), and the merge's rounding warning, if any. */
export interface DeltaVariant { dir: string; merged: boolean; dtype: MergeDtype; name: string; warning: string | null }

/**
 * --delta (with --delta-dtype): a delta file or PEFT adapter folder (or a run folder holding either) is merged into the
 * base once, in a cache folder named by its content hash, in the base's dtype or float32; a checkpoint folder is used
 * as it is (--delta-dtype refused for it). `eval` and `analyze alignment` take their variants from here.
 */
export async function deltaVariant(base: string, delta: string, dtypeOption?: string): Promise<DeltaVariant> {
  const dtype = mergeDtype(dtypeOption ?? 'stored', 'delta-dtype');
  const src = await deltaSource(delta);
  const merged = src.kind !== 'checkpoint';
  if (!merged && dtypeOption !== undefined)
    throw new LangneuronsError('E_OPTIONS', `--delta-dtype applies to a delta file or an adapter folder; ${delta} is a merged checkpoint`, { field: 'delta-dtype' });
  const dir = merged ? await mergedDeltaModel(base, src.path, src.kind === 'adapter', undefined, dtype) : src.path;
  const report = merged ? await deltaCacheMerge(dir) : null;
  const warning = report ? roundingWarning({ ...report, patched: [] }, `the merged model of ${delta}`, '--delta-dtype') : null;
  const d = path.resolve(delta);
  const name = (['delta.safetensors', 'adapter'].includes(path.basename(d)) ? path.basename(path.dirname(d)) : path.basename(d)) + (dtype !== 'stored' ? `-${dtype}` : '');
  return { dir, merged, dtype, name, warning };
}
