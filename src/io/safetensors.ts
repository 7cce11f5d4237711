/**
 * Safetensors reader and writer (https://github.com/huggingface/safetensors, "Format").
 *
 * Layout: u64 little-endian N, then N bytes of UTF-8 JSON (the header), then the data section.
 * The header maps tensor names to { dtype, shape, data_offsets: [begin, end] } (offsets relative to
 * the data section) plus an optional "__metadata__" string->string map.
 *
 * The reader never loads a whole file: it reads the header with positioned reads and validates it
 * strictly, so a corrupt or hostile file fails with a LangneuronsError naming the file and the
 * problem, before any engine code trusts the offsets.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';
import { writeFileAtomicStreaming } from './atomic.js';
import { bf16ArrayToF32, f16ArrayToF32 } from './float16.js';

export {
  bf16ToF32,
  f32ToBf16,
  f16ToF32,
  f32ToF16,
  bf16ArrayToF32,
  f16ArrayToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
} from './float16.js';

/** Bytes per element. F8_* are known (so headers parse) but no engine computes with them. */
export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
} as const;

export type Dtype = keyof typeof DTYPE_SIZES;

/** Largest header we accept (the reference implementation uses the same 100 MB cap). */
export const MAX_HEADER_BYTES = 100_000_000;

export function isDtype(value: unknown): value is Dtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, value);
}

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute offset in the file: 8 + headerLength + data_offsets[0]. */
  byteOffset: number;
  byteLength: number;
  /** Path of the file holding the tensor. */
  file: string;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  headerLength: number;
  /** Absolute offset of the data section (8 + headerLength). */
  dataOffset: number;
  /** Tensors in the order they appear in the header JSON. */
  tensors: TensorInfo[];
  metadata: Record<string, string> | null;
  /** Non-fatal oddities, e.g. bytes of the data section that no tensor covers. */
  warnings: string[];
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function fail(file: string, message: string, field?: string): never {
  throw new LangneuronsError('E_SAFETENSORS', `${path.basename(file)}: ${message}`, {
    file,
    ...(field === undefined ? {} : { field }),
  });
}

function isNonNegativeSafeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads exactly `length` bytes at `position`, or fails naming the file (short reads = truncation). */
async function readExactly(handle: fsp.FileHandle, file: string, length: number, position: number): Promise<Uint8Array> {
  return new Uint8Array(await readBytes(handle, file, length, position));
}

/** The largest part of a buffer read or written in one call, and so the largest Uint8Array made over it: one read or
 *  write call cannot pass 2 GiB - 1 bytes, and no typed array holds over 2^32 elements (a byte view of a tensor of
 *  over 4 GiB, e.g. the per-sequence means of 2,400 sequences at an 8B model's `act`, cannot be made at once). */
export const IO_PART_BYTES = 1 << 30;

/** `length` bytes at `position` in a fresh ArrayBuffer (offset 0, so typed views of it are aligned), of any size. */
async function readBytes(handle: fsp.FileHandle, file: string, length: number, position: number): Promise<ArrayBuffer> {
  const buffer = new ArrayBuffer(length);
  let done = 0;
  while (done < length) {
    const part = new Uint8Array(buffer, done, Math.min(length - done, IO_PART_BYTES));
    const { bytesRead } = await handle.read(part, 0, part.byteLength, position + done);
    if (bytesRead === 0) fail(file, `unexpected end of file: wanted ${length} bytes at offset ${position}, got ${done}`);
    done += bytesRead;
  }
  return buffer;
}

async function openForRead(file: string): Promise<fsp.FileHandle> {
  try {
    // stat first: opening a FIFO for reading would block forever.
    if (!(await fsp.stat(file)).isFile()) fail(file, 'is not a regular file');
    return await fsp.open(file, 'r');
  } catch (err) {
    if (err instanceof LangneuronsError) throw err;
    fail(file, `cannot open: ${describeError(err)}`);
  }
}

/** Reads and validates the header of a safetensors file (reads 8 + N bytes, never the data). */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const handle = await openForRead(file);
  try {
    const fileSize = (await handle.stat()).size;
    if (fileSize < 8) fail(file, `file is ${fileSize} bytes, shorter than the 8-byte header length field`);
    const lengthBytes = await readExactly(handle, file, 8, 0);
    const declared = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (declared > BigInt(MAX_HEADER_BYTES)) {
      fail(file, `header length ${declared} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt length field?)`);
    }
    const headerLength = Number(declared);
    if (headerLength > fileSize - 8) {
      fail(file, `header length ${headerLength} runs past the end of the file (${fileSize} bytes, so at most ${fileSize - 8})`);
    }
    const headerBytes = await readExactly(handle, file, headerLength, 8); // never the data section
    return parseHeaderBytes(file, fileSize, headerBytes);
  } finally {
    await handle.close();
  }
}

/** Validates header JSON bytes; exported for tests and for callers that already hold the bytes. */
export function parseHeaderBytes(file: string, fileSize: number, headerBytes: Uint8Array): SafetensorsHeader {
  const headerLength = headerBytes.byteLength;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    fail(file, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail(file, `header is not valid JSON: ${describeError(err)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    fail(file, `header must be a JSON object, got ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json}`);
  }

  const dataOffset = 8 + headerLength;
  const dataSize = fileSize - dataOffset;
  let metadata: Record<string, string> | null = null;
  const tensors: TensorInfo[] = [];
  const ranges: Array<{ name: string; begin: number; end: number }> = [];

  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, entry);
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(file, `${where} must be an object`, name);
    const keys = Object.keys(entry);
    const unexpected = keys.filter((k) => k !== 'dtype' && k !== 'shape' && k !== 'data_offsets');
    if (unexpected.length > 0) fail(file, `${where} has unexpected field(s) ${unexpected.map((k) => JSON.stringify(k)).join(', ')}`, name);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isDtype(dtype)) {
      fail(file, `${where} has unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(DTYPE_SIZES).join(', ')})`, name);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeSafeInteger)) {
      fail(file, `${where} has invalid shape ${JSON.stringify(shape)} (expected an array of non-negative integers)`, name);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeSafeInteger)) {
      fail(file, `${where} has invalid data_offsets ${JSON.stringify(offsets)} (expected [begin, end], non-negative integers)`, name);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) fail(file, `${where} has data_offsets [${begin}, ${end}] with begin > end`, name);
    if (end > dataSize) {
      fail(file, `${where} has byte range [${begin}, ${end}) outside the data section of ${dataSize} bytes`, name);
    }
    // BigInt: a shape like [2^40, 2^40] must not overflow into a false match.
    const expected = (shape as number[]).reduce((acc, d) => acc * BigInt(d), 1n) * BigInt(DTYPE_SIZES[dtype]);
    if (expected !== BigInt(end - begin)) {
      fail(file, `${where} (${dtype}, shape [${(shape as number[]).join(', ')}]) needs ${expected} bytes but data_offsets [${begin}, ${end}) hold ${end - begin}`, name);
    }
    tensors.push({ name, dtype, shape: [...(shape as number[])], byteOffset: dataOffset + begin, byteLength: end - begin, file });
    ranges.push({ name, begin, end });
  }

  const warnings = checkLayout(file, ranges, dataSize);
  return { file, fileSize, headerLength, dataOffset, tensors, metadata, warnings };
}

function parseMetadata(file: string, entry: unknown): Record<string, string> {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(file, '"__metadata__" must be an object of strings', '__metadata__');
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') fail(file, `"__metadata__" value for ${JSON.stringify(k)} must be a string, got ${JSON.stringify(v)}`, '__metadata__');
    out[k] = v;
  }
  return out;
}

/** Overlaps are errors; gaps and uncovered trailing bytes are warnings (the spec wants full coverage). */
function checkLayout(file: string, ranges: Array<{ name: string; begin: number; end: number }>, dataSize: number): string[] {
  const warnings: string[] = [];
  const nonEmpty = ranges.filter((r) => r.end > r.begin).sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: { name: string; begin: number; end: number } | undefined;
  for (const r of nonEmpty) {
    if (previous && r.begin < covered) {
      fail(file, `tensors ${JSON.stringify(previous.name)} [${previous.begin}, ${previous.end}) and ${JSON.stringify(r.name)} [${r.begin}, ${r.end}) overlap`, r.name);
    }
    if (r.begin > covered) warnings.push(`${path.basename(file)}: bytes [${covered}, ${r.begin}) of the data section belong to no tensor`);
    covered = r.end;
    previous = r;
  }
  if (covered < dataSize) warnings.push(`${path.basename(file)}: bytes [${covered}, ${dataSize}) at the end of the data section belong to no tensor`);
  return warnings;
}

export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

function assertLittleEndian(): void {
  if (os.endianness() !== 'LE') throw new LangneuronsError('E_SAFETENSORS', 'safetensors data is little-endian; big-endian hosts are not supported');
}

/** Wraps raw little-endian bytes (offset 0 of their own buffer, so aligned) as the dtype's typed array. */
function viewAs(dtype: Dtype, buffer: ArrayBuffer): TensorData {
  const byteOffset = 0, byteLength = buffer.byteLength;
  const size = DTYPE_SIZES[dtype];
  const n = byteLength / size;
  switch (dtype) {
    case 'F64': return new Float64Array(buffer, byteOffset, n);
    case 'F32': return new Float32Array(buffer, byteOffset, n);
    case 'F16':
    case 'BF16': return new Uint16Array(buffer, byteOffset, n); // raw bits; see toFloat32
    case 'I64': return new BigInt64Array(buffer, byteOffset, n);
    case 'I32': return new Int32Array(buffer, byteOffset, n);
    case 'I16': return new Int16Array(buffer, byteOffset, n);
    case 'I8': return new Int8Array(buffer, byteOffset, n);
    case 'U8':
    case 'BOOL':
    case 'F8_E4M3':
    case 'F8_E5M2': return new Uint8Array(buffer, byteOffset, n);
  }
}

/**
 * Reads one tensor's bytes into a fresh, aligned buffer (tensor offsets in a file need not be
 * aligned to the element size) and returns the matching typed array. F16/BF16 come back as raw
 * Uint16Array bits.
 */
export async function readTensor(file: string, info: TensorInfo): Promise<TensorData> {
  assertLittleEndian();
  const handle = await openForRead(file);
  try {
    return viewAs(info.dtype, await readBytes(handle, file, info.byteLength, info.byteOffset));
  } finally {
    await handle.close();
  }
}

/** Float32 values of a tensor read by readTensor (converts F16/BF16/F64/integers; F32 is returned as is). */
export function toFloat32(info: Pick<TensorInfo, 'dtype' | 'name'>, data: TensorData): Float32Array {
  switch (info.dtype) {
    case 'F32': return data as Float32Array;
    case 'BF16': return bf16ArrayToF32(data as Uint16Array);
    case 'F16': return f16ArrayToF32(data as Uint16Array);
    case 'F8_E4M3':
    case 'F8_E5M2':
      throw new LangneuronsError('E_SAFETENSORS', `tensor ${JSON.stringify(info.name)}: dtype ${info.dtype} is not supported for computation`);
    case 'I64': { // a loop: Float32Array.from(data, mapFn) copies into a JS array first, which V8 aborts on past ~112M values
      const ints = data as BigInt64Array, out = new Float32Array(ints.length);
      for (let i = 0; i < ints.length; i++) out[i] = Number(ints[i]!);
      return out;
    }
    default: return Float32Array.from(data as Exclude<TensorData, BigInt64Array>);
  }
}

export interface TensorToWrite {
  dtype: Dtype;
  shape: number[];
  data: TensorData | Buffer;
}

/**
 * A tensor whose bytes are produced only when the writer reaches it (read from a trainer or a base model, patched):
 * the writer holds one such tensor at a time, so a file of any size is written in the memory of its largest tensor.
 */
export interface TensorToProduce {
  dtype: Dtype;
  shape: number[];
  produce: () => TensorData | Buffer | Promise<TensorData | Buffer>;
}

/** The bytes of `data` as views of at most IO_PART_BYTES each (a tensor may hold over 4 GiB). */
function* bytesOf(data: TensorData | Buffer): Generator<Uint8Array> {
  for (let done = 0; done < data.byteLength; done += IO_PART_BYTES)
    yield new Uint8Array(data.buffer, data.byteOffset + done, Math.min(data.byteLength - done, IO_PART_BYTES));
}

/**
 * Writes a safetensors file atomically, streaming: the header first (it needs only dtypes and shapes), then each
 * tensor's bytes in turn (a TensorToProduce is produced at that moment and dropped once written). Tensors are
 * ordered by element size (largest first) then by name, so the output is deterministic and every tensor starts
 * aligned to its element size; the header is padded with spaces so the data section starts at a multiple of 8.
 */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, TensorToWrite | TensorToProduce>,
  metadata?: Record<string, string>,
): Promise<void> {
  assertLittleEndian();
  const names = Object.keys(tensors).sort((a, b) => {
    const sa = DTYPE_SIZES[tensors[a]!.dtype] ?? 0;
    const sb = DTYPE_SIZES[tensors[b]!.dtype] ?? 0;
    return sb - sa || (a < b ? -1 : a > b ? 1 : 0);
  });
  // Null prototype: a tensor named "__proto__" must become a key, not a prototype.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata) {
    // The format's metadata is a map of strings (readSafetensorsHeader refuses anything else): refused before writing.
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string') fail(file, `metadata value for ${JSON.stringify(k)} must be a string, got ${typeof v}`, k);
    header['__metadata__'] = { ...metadata };
  }
  const sizes = new Map<string, number>();
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') fail(file, 'a tensor cannot be named "__metadata__"');
    const t = tensors[name]!;
    if (!isDtype(t.dtype)) fail(file, `tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(t.dtype)}`, name);
    if (!Array.isArray(t.shape) || !t.shape.every(isNonNegativeSafeInteger)) fail(file, `tensor ${JSON.stringify(name)}: invalid shape ${JSON.stringify(t.shape)}`, name);
    const expected = elementCount(t.shape) * DTYPE_SIZES[t.dtype];
    if ('data' in t) checkSize(file, name, t, t.data, expected);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    sizes.set(name, expected);
    offset += expected;
  }
  let json = JSON.stringify(header);
  const rawLength = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (rawLength % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  await writeFileAtomicStreaming(file, async (sink) => {
    await sink.write(prefix);
    await sink.write(headerBytes);
    for (const name of names) {
      const t = tensors[name]!;
      const data = 'data' in t ? t.data : await t.produce();
      if (!('data' in t)) checkSize(file, name, t, data, sizes.get(name)!);
      for (const part of bytesOf(data)) await sink.write(part);
    }
  });
}

function checkSize(file: string, name: string, t: { dtype: Dtype; shape: number[] }, data: TensorData | Buffer, expected: number): void {
  if (data.byteLength !== expected) {
    fail(file, `tensor ${JSON.stringify(name)} (${t.dtype}, shape [${t.shape.join(', ')}]) needs ${expected} bytes, data has ${data.byteLength}`, name);
  }
}

/** Convenience: header plus every tensor, keyed by name (for small files such as references). */
export async function readAllTensors(file: string): Promise<Map<string, { info: TensorInfo; data: TensorData }>> {
  const header = await readSafetensorsHeader(file);
  const out = new Map<string, { info: TensorInfo; data: TensorData }>();
  for (const info of header.tensors) out.set(info.name, { info, data: await readTensor(file, info) });
  return out;
}
