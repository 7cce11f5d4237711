// PyTorch's torch.save files (the zip format of torch >= 1.6), read and written without Python: the files of masks
// and counts that the seed papers' public code exchanges (Tang et al.'s activation_mask/<model> and
// activation.<lang>.train.<model>; see src/identify/tang.ts).
//
// The zip holds <archive>/data.pkl (the object, pickled), <archive>/data/<key> (one record per storage: raw
// little-endian elements), <archive>/version and <archive>/byteorder. data.pkl is read by the restricted unpickler
// of src/io/pickle.ts: tensors come from torch._utils._rebuild_tensor_v2 over a storage named by a persistent id;
// no other callable than those below is accepted, and none runs code from the file.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { unzipSync, zipSync } from 'fflate';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { ensureParentDir } from './outdir.js';
import { PickleError, PickleGlobal, PicklePersistent, PickleReduce, PickleTuple, pickle, unpickle, type PickleValue } from './pickle.js';

export type TorchDtype = 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool' | 'float64' | 'float32' | 'float16' | 'bfloat16';
type Elements = BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Float64Array | Float32Array | Uint16Array;

/** A tensor read from or written to a torch file: contiguous row-major elements (float16 / bfloat16: raw bits). */
export interface TorchTensor { dtype: TorchDtype; shape: number[]; data: Elements }

const STORAGES: Record<string, { dtype: TorchDtype; bytes: number; make: (b: ArrayBuffer, o: number, n: number) => Elements }> = {
  LongStorage: { dtype: 'int64', bytes: 8, make: (b, o, n) => new BigInt64Array(b, o, n) },
  IntStorage: { dtype: 'int32', bytes: 4, make: (b, o, n) => new Int32Array(b, o, n) },
  ShortStorage: { dtype: 'int16', bytes: 2, make: (b, o, n) => new Int16Array(b, o, n) },
  CharStorage: { dtype: 'int8', bytes: 1, make: (b, o, n) => new Int8Array(b, o, n) },
  ByteStorage: { dtype: 'uint8', bytes: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  BoolStorage: { dtype: 'bool', bytes: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  DoubleStorage: { dtype: 'float64', bytes: 8, make: (b, o, n) => new Float64Array(b, o, n) },
  FloatStorage: { dtype: 'float32', bytes: 4, make: (b, o, n) => new Float32Array(b, o, n) },
  HalfStorage: { dtype: 'float16', bytes: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
  BFloat16Storage: { dtype: 'bfloat16', bytes: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
};
const STORAGE_OF: Record<TorchDtype, string> = Object.fromEntries(Object.entries(STORAGES).map(([k, v]) => [v.dtype, k])) as Record<TorchDtype, string>;

const REBUILD = ['torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_tensor'];
const ALLOWED = new Set([...REBUILD, 'collections.OrderedDict', ...Object.keys(STORAGES).map((s) => `torch.${s}`)]);

interface Storage { dtype: TorchDtype; data: Elements }

const isStorage = (x: unknown): x is Storage => typeof x === 'object' && x !== null && 'dtype' in x && 'data' in x && !('shape' in x);
export const isTorchTensor = (x: unknown): x is TorchTensor => typeof x === 'object' && x !== null && 'dtype' in x && 'shape' in x && 'data' in x;

function ints(x: unknown, what: string): number[] {
  if (!Array.isArray(x) || x.some((v) => typeof v !== 'number' || !Number.isInteger(v) || v < 0)) throw new PickleError(`${what} is not a tuple of non-negative ints`);
  return x as number[];
}

/** A tensor from a storage, an offset, a size and a stride: the viewed elements gathered in row-major order. */
function rebuildTensor(args: unknown[]): TorchTensor {
  const [storage, offset, size, stride] = args;
  if (!isStorage(storage)) throw new PickleError('_rebuild_tensor: the first argument is not a storage');
  if (typeof offset !== 'number') throw new PickleError('_rebuild_tensor: the storage offset is not an int');
  const shape = ints(size, 'the size'), strides = ints(stride, 'the stride');
  if (shape.length !== strides.length) throw new PickleError('_rebuild_tensor: size and stride differ in length');
  const n = shape.reduce((a, b) => a * b, 1);
  const src = storage.data;
  // A view may repeat elements (stride 0), so its size is not bounded by its storage's: cap what it may allocate.
  if (n * src.BYTES_PER_ELEMENT > 2 ** 31) throw new PickleError(`_rebuild_tensor: a view of [${shape}] is too large (over 2 GiB)`);
  const out = new (src.constructor as new (n: number) => Elements)(n);
  let last = offset;
  shape.forEach((s, d) => { if (s > 0) last += (s - 1) * strides[d]!; });
  if (n > 0 && (offset < 0 || last >= src.length)) throw new PickleError(`_rebuild_tensor: the view [${shape}] reaches past its storage of ${src.length} elements`);
  const idx = new Array<number>(shape.length).fill(0);
  for (let k = 0; k < n; k++) {
    let at = offset;
    for (let d = 0; d < shape.length; d++) at += idx[d]! * strides[d]!;
    (out as unknown as Elements & { [i: number]: number | bigint })[k] = src[at]!;
    for (let d = shape.length - 1; d >= 0; d--) { if (++idx[d]! < shape[d]!) break; idx[d] = 0; }
  }
  return { dtype: storage.dtype, shape, data: out };
}

function torchError(file: string, msg: string): LangneuronsError {
  return new LangneuronsError('E_INPUT', `${file}: ${msg}`, { file });
}

/** Reads a torch.save file. Tensors come back as TorchTensor, dicts as Map, lists and tuples as arrays. */
export async function readTorchFile(file: string): Promise<unknown> {
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(await fsp.readFile(file));
  } catch (e) {
    throw new LangneuronsError('E_IO', `${file}: cannot read: ${(e as Error).message}`, { file });
  }
  if (raw.length >= 2 && raw[0] === 0x80 && raw[1]! <= 5)
    throw torchError(file, 'a PyTorch file of the legacy format (torch < 1.6); load and save it again with a newer torch (the zip format) to read it here');
  if (!(raw[0] === 0x50 && raw[1] === 0x4b)) throw torchError(file, 'not a PyTorch file (expected the zip container torch.save writes)');
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(raw);
  } catch (e) {
    throw torchError(file, `broken zip container: ${(e as Error).message}`);
  }
  const pkl = Object.keys(entries).find((k) => /^[^/]+\/data\.pkl$/.test(k));
  if (!pkl) throw torchError(file, 'no <archive>/data.pkl in the zip: not a torch.save file');
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const order = entries[`${prefix}byteorder`];
  if (order && new TextDecoder().decode(order).trim() !== 'little') throw torchError(file, 'big-endian storages are not supported');
  const storages = new Map<string, Storage>();
  try {
    return unpickle(entries[pkl]!, {
      allowed: ALLOWED,
      call(fn, args) {
        if (fn.qualified === 'collections.OrderedDict') {
          if (args.length) throw new PickleError('OrderedDict with constructor arguments');
          return new Map();
        }
        if (REBUILD.includes(fn.qualified)) return rebuildTensor(args);
        throw new PickleError(`the global '${fn.qualified}' is a type, not a function: it cannot be called`);
      },
      persistentLoad(pid) {
        if (!Array.isArray(pid) || pid[0] !== 'storage' || !(pid[1] instanceof PickleGlobal) || typeof pid[2] !== 'string')
          throw new PickleError(`unexpected persistent id ${JSON.stringify(pid, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
        const key = pid[2];
        const kind = STORAGES[pid[1].name];
        if (!kind) throw new PickleError(`unknown storage type ${pid[1].qualified}`);
        let s = storages.get(key);
        if (!s) {
          const rec = entries[`${prefix}data/${key}`];
          if (!rec) throw new PickleError(`the storage record data/${key} is missing`);
          const numel = typeof pid[4] === 'number' ? pid[4] : rec.length / kind.bytes;
          if (!Number.isInteger(numel) || numel * kind.bytes > rec.length)
            throw new PickleError(`the storage record data/${key} holds ${rec.length} bytes, not ${String(pid[4])} ${kind.dtype} elements`);
          const copy = new ArrayBuffer(numel * kind.bytes); // aligned for the typed array
          new Uint8Array(copy).set(rec.subarray(0, numel * kind.bytes));
          s = { dtype: kind.dtype, data: kind.make(copy, 0, numel) };
          storages.set(key, s);
        }
        return s;
      },
    });
  } catch (e) {
    if (e instanceof PickleError) throw torchError(file, `data.pkl: ${e.message}`);
    throw e;
  }
}

/** A value to write: plain values, arrays (lists), Maps / plain objects (dicts) and tensors. */
export type TorchValue = null | boolean | number | bigint | string | TorchTensor | TorchValue[] | Map<string | number, TorchValue> | { [k: string]: TorchValue };

/** Writes `value` as torch.save does (zip format, pickle protocol 2), atomically; torch.load reads it back. */
export async function writeTorchFile(file: string, value: TorchValue): Promise<void> {
  const archive = path.basename(file).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9_.-]/g, '_') || 'archive';
  const records: Record<string, Uint8Array> = {};
  const storageType = (d: TorchDtype) => new PickleGlobal('torch', STORAGE_OF[d]);
  const convert = (v: TorchValue): PickleValue => {
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map(convert);
    if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, convert(x)]));
    if (isTorchTensor(v)) {
      const key = String(Object.keys(records).length);
      const n = v.shape.reduce((a, b) => a * b, 1);
      if (v.data.length !== n) throw new LangneuronsError('E_INPUT', `${file}: a tensor of shape [${v.shape}] needs ${n} elements, has ${v.data.length}`, { file });
      records[`${archive}/data/${key}`] = new Uint8Array(v.data.buffer.slice(v.data.byteOffset, v.data.byteOffset + v.data.byteLength));
      const strides = v.shape.map((_, d) => v.shape.slice(d + 1).reduce((a, b) => a * b, 1));
      const pid = new PickleTuple(['storage', storageType(v.dtype), key, 'cpu', n]);
      return new PickleReduce(new PickleGlobal('torch._utils', '_rebuild_tensor_v2'), [
        new PicklePersistent(pid), 0, new PickleTuple(v.shape), new PickleTuple(strides), false,
        new PickleReduce(new PickleGlobal('collections', 'OrderedDict'), []),
      ]);
    }
    return new Map(Object.entries(v).map(([k, x]) => [k, convert(x)]));
  };
  const pkl = pickle(convert(value));
  // A fixed entry time (the ZIP format's earliest, 1980-01-01 00:00 local) keeps the bytes a function of the content:
  // the same tensors written at any two moments give the same file.
  const entry = { level: 0, mtime: new Date(1980, 0, 1) } as const;
  const zip = zipSync({
    [`${archive}/data.pkl`]: [pkl, entry],
    [`${archive}/byteorder`]: [new TextEncoder().encode('little'), entry],
    ...Object.fromEntries(Object.entries(records).map(([k, b]) => [k, [b, entry]])),
    [`${archive}/version`]: [new TextEncoder().encode('3\n'), entry],
  });
  await ensureParentDir(file);
  await writeFileAtomic(file, zip);
}
