import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import {
  bf16ToF32,
  f16ToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16,
  f32ToF16,
  readSafetensorsHeader,
  readTensor,
  toFloat32,
  writeSafetensors,
} from '../src/io/safetensors.js';
import { float32FromBits } from '../src/io/float16.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

let tmp: string;
beforeAll(async () => {
  tmp = await makeTempDir();
});
afterAll(async () => {
  await removeDir(tmp);
});

/** Writes a raw safetensors file: 8-byte length (or an override), header text, data bytes. */
async function rawFile(name: string, header: unknown, dataBytes: number, lengthOverride?: bigint): Promise<string> {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const headerBytes = Buffer.from(text, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(headerBytes.length));
  const file = path.join(tmp, name);
  await fsp.writeFile(file, Buffer.concat([prefix, headerBytes, Buffer.alloc(dataBytes, 7)]));
  return file;
}

async function expectRefusal(file: string, pattern: RegExp): Promise<void> {
  const err = await readSafetensorsHeader(file).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LangneuronsError);
  const e = err as LangneuronsError;
  expect(e.code).toBe('E_SAFETENSORS');
  expect(e.file).toBe(file);
  expect(e.message).toContain(path.basename(file));
  expect(e.message).toMatch(pattern);
}

const t = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });

describe('readSafetensorsHeader validation', () => {
  it('accepts a minimal valid file and reports absolute offsets', async () => {
    const file = await rawFile('ok.safetensors', { __metadata__: { format: 'pt' }, a: t('F32', [2, 3], 0, 24), b: t('I8', [4], 24, 28) }, 28);
    const h = await readSafetensorsHeader(file);
    expect(h.metadata).toEqual({ format: 'pt' });
    expect(h.tensors.map((x) => x.name)).toEqual(['a', 'b']);
    const a = h.tensors[0]!;
    expect(a.byteOffset).toBe(8 + h.headerLength);
    expect(a.byteLength).toBe(24);
    expect(a.file).toBe(file);
    expect(h.warnings).toEqual([]);
  });

  it('refuses a file shorter than 8 bytes', async () => {
    const file = path.join(tmp, 'short.safetensors');
    await fsp.writeFile(file, Buffer.from([1, 2, 3]));
    await expectRefusal(file, /3 bytes, shorter than the 8-byte header length/);
  });

  it('refuses a header length past the end of the file', async () => {
    const file = await rawFile('pasteof.safetensors', { a: t('U8', [1], 0, 1) }, 1, 5000n);
    await expectRefusal(file, /header length 5000 runs past the end of the file/);
  });

  it('refuses an oversized header length', async () => {
    const file = await rawFile('huge.safetensors', {}, 0, 2n ** 40n);
    await expectRefusal(file, /exceeds the 100000000-byte limit/);
  });

  it('refuses invalid JSON', async () => {
    await expectRefusal(await rawFile('badjson.safetensors', '{"a": ', 0), /not valid JSON/);
  });

  it('refuses invalid UTF-8', async () => {
    const file = path.join(tmp, 'badutf8.safetensors');
    const header = Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d, 0x20]);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    await fsp.writeFile(file, Buffer.concat([prefix, header]));
    await expectRefusal(file, /not valid UTF-8/);
  });

  it('refuses a header that is not an object', async () => {
    await expectRefusal(await rawFile('array.safetensors', '[1, 2]', 0), /must be a JSON object, got an array/);
    await expectRefusal(await rawFile('null.safetensors', 'null', 0), /got null/);
  });

  it('refuses an unknown dtype', async () => {
    await expectRefusal(await rawFile('dtype.safetensors', { w: t('F128', [1], 0, 16) }, 16), /tensor "w" has unknown dtype "F128"/);
  });

  it('refuses bad shapes', async () => {
    await expectRefusal(await rawFile('shape1.safetensors', { w: t('F32', [-1], 0, 4) }, 4), /tensor "w" has invalid shape \[-1\]/);
    await expectRefusal(await rawFile('shape2.safetensors', { w: t('F32', [1.5] as number[], 0, 4) }, 4), /invalid shape/);
    await expectRefusal(await rawFile('shape3.safetensors', { w: { dtype: 'F32', shape: 'x', data_offsets: [0, 4] } }, 4), /invalid shape "x"/);
  });

  it('refuses offsets out of range or malformed', async () => {
    await expectRefusal(
      await rawFile('range.safetensors', { 'model.layers.0.mlp.up_proj.weight': t('F32', [4], 0, 16) }, 12),
      /tensor "model\.layers\.0\.mlp\.up_proj\.weight" has byte range \[0, 16\) outside the data section of 12 bytes/,
    );
    await expectRefusal(await rawFile('rev.safetensors', { w: t('F32', [0], 8, 4) }, 8), /begin > end/);
    await expectRefusal(await rawFile('neg.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 8), /invalid data_offsets/);
    await expectRefusal(await rawFile('three.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } }, 8), /invalid data_offsets/);
  });

  it('refuses overlapping tensors', async () => {
    await expectRefusal(
      await rawFile('overlap.safetensors', { a: t('F32', [4], 0, 16), b: t('F32', [2], 8, 16) }, 16),
      /tensors "a" \[0, 16\) and "b" \[8, 16\) overlap/,
    );
  });

  it('refuses shape x dtype size != byte length', async () => {
    await expectRefusal(await rawFile('size.safetensors', { w: t('BF16', [3, 2], 0, 8) }, 8), /needs 12 bytes but data_offsets \[0, 8\) hold 8/);
  });

  it('refuses extra fields and bad metadata', async () => {
    await expectRefusal(await rawFile('extra.safetensors', { w: { ...t('U8', [1], 0, 1), foo: 1 } }, 1), /unexpected field\(s\) "foo"/);
    await expectRefusal(await rawFile('meta.safetensors', { __metadata__: { a: 1 } }, 0), /"__metadata__" value for "a" must be a string/);
  });

  it('reports gaps as warnings, not errors', async () => {
    const h = await readSafetensorsHeader(await rawFile('gap.safetensors', { a: t('U8', [4], 0, 4), b: t('U8', [4], 8, 12) }, 16));
    expect(h.warnings).toHaveLength(2);
    expect(h.warnings[0]).toMatch(/bytes \[4, 8\)/);
    expect(h.warnings[1]).toMatch(/bytes \[12, 16\) at the end/);
  });

  it('names a missing file', async () => {
    await expectRefusal(path.join(tmp, 'nope.safetensors'), /cannot open/);
  });
});

describe('fixture files', () => {
  it('reads reference.safetensors input_ids equal to reference.json', async () => {
    for (const name of ['stories260k', 'tiny-llama3', 'tiny-qwen2', 'tiny-mistral'] as const) {
      const file = fixturePath(name, 'reference.safetensors');
      const header = await readSafetensorsHeader(file);
      const info = header.tensors.find((x) => x.name === 'input_ids')!;
      expect(info.dtype).toBe('I32');
      const ids = await readTensor(file, info);
      expect(ids).toBeInstanceOf(Int32Array);
      const ref = JSON.parse(await fsp.readFile(fixturePath(name, 'reference.json'), 'utf8')) as { input_ids: number[] };
      expect(Array.from(ids as Int32Array)).toEqual(ref.input_ids);
      const logits = header.tensors.find((x) => x.name === 'logits')!;
      expect(logits.shape).toEqual([ref.input_ids.length, logits.shape[1]]);
    }
  });

  it('reads BF16 and F16 weights as raw bits and widens them', async () => {
    const file = fixturePath('tiny-llama3', 'model-00002-of-00002.safetensors');
    const info = (await readSafetensorsHeader(file)).tensors.find((x) => x.name === 'model.norm.weight')!;
    const raw = await readTensor(file, info);
    expect(raw).toBeInstanceOf(Uint16Array);
    const values = toFloat32(info, raw);
    expect(values.length).toBe(64);
    expect(values.every((v) => Number.isFinite(v))).toBe(true);
    expect(values[0]).toBe(bf16ToF32((raw as Uint16Array)[0]!));

    const mfile = fixturePath('tiny-mistral', 'model.safetensors');
    const minfo = (await readSafetensorsHeader(mfile)).tensors.find((x) => x.dtype === 'F16')!;
    const mvals = toFloat32(minfo, await readTensor(mfile, minfo));
    expect(mvals.every((v) => Number.isFinite(v))).toBe(true);
  });
});

describe('writeSafetensors', () => {
  it('round-trips tensors, metadata, and pads the header to 8 bytes', async () => {
    const file = path.join(tmp, 'round.safetensors');
    const f32 = new Float32Array([1, -2.5, 3e-8, Infinity]);
    const bf = f32ArrayToBf16(new Float32Array([1, 2, 3]));
    const i64 = new BigInt64Array([1n, -(2n ** 62n)]);
    const u8 = Buffer.from([1, 2, 3]);
    await writeSafetensors(file, {
      'z.f32': { dtype: 'F32', shape: [2, 2], data: f32 },
      'a.bf16': { dtype: 'BF16', shape: [3], data: bf },
      'm.i64': { dtype: 'I64', shape: [2], data: i64 },
      'b.u8': { dtype: 'U8', shape: [3], data: u8 },
      'empty': { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    }, { note: 'hi' });
    const h = await readSafetensorsHeader(file);
    expect(h.headerLength % 8).toBe(0);
    expect(h.metadata).toEqual({ note: 'hi' });
    expect(h.warnings).toEqual([]);
    // Largest element size first, then by name.
    expect(h.tensors.map((x) => x.name)).toEqual(['m.i64', 'empty', 'z.f32', 'a.bf16', 'b.u8']);
    const get = async (name: string) => readTensor(file, h.tensors.find((x) => x.name === name)!);
    expect(Array.from((await get('z.f32')) as Float32Array)).toEqual(Array.from(f32));
    expect(Array.from((await get('a.bf16')) as Uint16Array)).toEqual(Array.from(bf));
    expect(Array.from((await get('m.i64')) as BigInt64Array)).toEqual(Array.from(i64));
    expect(Array.from((await get('b.u8')) as Uint8Array)).toEqual([1, 2, 3]);
    expect(((await get('empty')) as Float32Array).length).toBe(0);
    expect((await fsp.readdir(tmp)).some((f) => f.includes('.tmp-'))).toBe(false);
  });

  it('handles tensors at unaligned offsets', async () => {
    const file = path.join(tmp, 'unaligned.safetensors');
    await writeSafetensors(file, { a: { dtype: 'U8', shape: [3], data: Buffer.from([9, 9, 9]) }, b: { dtype: 'I8', shape: [1], data: new Int8Array([1]) } });
    // Hand-build a file whose F32 tensor starts at an odd offset.
    const odd = await rawFile('odd.safetensors', { p: t('U8', [1], 0, 1), x: t('F32', [2], 1, 9) }, 0);
    const base = await fsp.readFile(odd);
    const data = Buffer.alloc(9);
    data[0] = 5;
    Buffer.from(new Float32Array([1.5, -3]).buffer).copy(data, 1);
    await fsp.writeFile(odd, Buffer.concat([base, data]));
    const h = await readSafetensorsHeader(odd);
    const x = await readTensor(odd, h.tensors.find((v) => v.name === 'x')!);
    expect(Array.from(x as Float32Array)).toEqual([1.5, -3]);
  });

  it('refuses data whose size does not match the shape', async () => {
    await expect(writeSafetensors(path.join(tmp, 'bad.safetensors'), { w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).rejects.toThrow(
      /tensor "w" \(F32, shape \[3\]\) needs 12 bytes, data has 8/,
    );
  });
});

describe('half-precision conversion', () => {
  const bits = (x: number) => f32ToF16(x).toString(16).padStart(4, '0');
  it('f32 -> f16, round to nearest even', () => {
    expect(bits(1)).toBe('3c00');
    expect(bits(-2)).toBe('c000');
    expect(bits(0.5)).toBe('3800');
    expect(bits(65504)).toBe('7bff'); // largest half
    expect(bits(65519)).toBe('7bff'); // below the midpoint to 65536
    expect(bits(65520)).toBe('7c00'); // tie with 65536 (even): overflows to inf
    expect(bits(Infinity)).toBe('7c00');
    expect(bits(-0)).toBe('8000');
    expect(bits(2 ** -14)).toBe('0400'); // smallest normal
    expect(bits(2 ** -24)).toBe('0001'); // smallest subnormal
    expect(bits(2 ** -25)).toBe('0000'); // tie between 0 and 2^-24: to even (0)
    expect(bits(1.5 * 2 ** -25)).toBe('0001');
    expect(bits(3 * 2 ** -25)).toBe('0002'); // 1.5 units: tie, to even (2)
    expect(bits(float32FromBits(0x3f801000))).toBe('3c00'); // 1 + 2^-11: tie, to even
    expect(bits(float32FromBits(0x3f803000))).toBe('3c02'); // 1 + 3*2^-11: tie, to even (up)
    expect(bits(float32FromBits(0x3f801001))).toBe('3c01'); // just above the tie
    expect(bits(1 / 3)).toBe('3555');
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(NaN) & 0x3ff).not.toBe(0);
  });

  it('f16 -> f32', () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(f16ToF32(0x7e00))).toBe(true);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    // Every finite half survives a round trip through f32.
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      if (f32ToF16(f16ToF32(h)) !== h) throw new Error(`round trip of ${h.toString(16)}`);
    }
  });

  it('f32 <-> bf16, round to nearest even', () => {
    const b = (x: number) => f32ToBf16(x).toString(16).padStart(4, '0');
    expect(b(1)).toBe('3f80');
    expect(b(-2)).toBe('c000');
    expect(b(float32FromBits(0x3f808000))).toBe('3f80'); // tie, to even (down)
    expect(b(float32FromBits(0x3f818000))).toBe('3f82'); // tie, to even (up)
    expect(b(float32FromBits(0x3f808001))).toBe('3f81');
    expect(b(float32FromBits(0x7f7fffff))).toBe('7f80'); // max float rounds to inf
    expect(b(Infinity)).toBe('7f80');
    expect(b(-0)).toBe('8000');
    expect(f32ToBf16(NaN) & 0x7f80).toBe(0x7f80);
    expect(f32ToBf16(NaN) & 0x7f).not.toBe(0);
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0x4049)).toBe(3.140625);
    const arr = f32ArrayToF16(new Float32Array([1, 2, 65504]));
    expect(Array.from(arr)).toEqual([0x3c00, 0x4000, 0x7bff]);
  });
});

describe('non-regular files', () => {
  it('refuses a directory and a FIFO without blocking', async () => {
    await expectRefusal(tmp, /is not a regular file/);
    const fifo = path.join(tmp, 'fifo.safetensors');
    const { execFileSync } = await import('node:child_process');
    try {
      execFileSync('mkfifo', [fifo]);
    } catch {
      return; // no mkfifo on this platform
    }
    await expectRefusal(fifo, /is not a regular file/);
  });
});

describe('large headers', () => {
  it('reads a large header (> 256 KB, 4000 tensors)', async () => {
    const file = path.join(tmp, 'bigheader.safetensors');
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (let i = 0; i < 4000; i++) tensors[`model.layers.${i}.some_rather_long_parameter_name_to_make_the_header_big.weight`] = { dtype: 'F32', shape: [1], data: new Float32Array([i]) };
    await writeSafetensors(file, tensors);
    const h = await readSafetensorsHeader(file);
    expect(h.headerLength).toBeGreaterThan(256 * 1024);
    expect(h.tensors).toHaveLength(4000);
    const info = h.tensors.find((x) => x.name.startsWith('model.layers.3999.'))!;
    expect(Array.from((await readTensor(file, info)) as Float32Array)).toEqual([3999]);
  });
});
