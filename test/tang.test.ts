// Tang-format PyTorch files (src/io/torch-file.ts, src/io/pickle.ts, src/identify/tang.ts): files written by real
// PyTorch (test/fixtures-tang/make.py, committed with what torch.load read back) are read to the same values; a
// pickle naming another global is refused without running it; what we write reads back here and, when a python3
// with torch is on the machine, through real torch.load; the CLI imports and exports masks and counts.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { main } from '../src/cli/main.js';
import { readMask } from '../src/identify/masks.js';
import { maskFromTang, maskToTang, statsFromTang, statsToTang } from '../src/identify/tang.js';
import { pickle, unpickle, PickleGlobal, PickleReduce, PickleTuple } from '../src/io/pickle.js';
import { readTorchFile, writeTorchFile, type TorchTensor } from '../src/io/torch-file.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { readStats } from '../src/profile/stats.js';
import type { ModelIdentity } from '../src/profile/stats.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';
import { captureStdout } from './helpers/cli.js';

const FIX = path.join(repoRoot, 'test/fixtures-tang');
const expected = JSON.parse(readFileSync(path.join(FIX, 'expected.json'), 'utf8')) as {
  mask: number[][][]; counts: { n: number; over_zero: number[][]; sum1: number[][]; sum2: number[][] };
};

/** A python3 that imports torch (Debian's python3-torch lives under /usr/bin/python3), or null. */
function torchPython(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
      return py;
    } catch { /* next */ }
  }
  return null;
}
const PY = torchPython();

const num = (t: TorchTensor) => Array.from(t.data as ArrayLike<number | bigint>, Number);

describe('PyTorch files (Tang format)', () => {
  let tmp: string, identity: ModelIdentity;
  beforeAll(async () => {
    tmp = await makeTempDir('langneurons-tang-');
    identity = modelIdentity(await openCheckpoint(fixturePath('stories260k')));
  });
  afterAll(async () => { await removeDir(tmp); });

  it("reads torch.save's mask file (int64 lists, an empty layer, a strided view, an int32 tensor) as torch.load does", async () => {
    const v = (await readTorchFile(path.join(FIX, 'mask.pt'))) as TorchTensor[][];
    expect(v.map((lang) => lang.map(num))).toEqual(expected.mask);
    expect(v[0]![0]!.dtype).toBe('int64');
    expect(v[1]![1]!.dtype).toBe('int32');
    const mask = maskFromTang(v, ['en', 'sw'], identity, 'mask.pt');
    expect(mask.languages).toEqual({ en: expected.mask[0], sw: expected.mask[1] });
    expect([mask.layers, mask.width, mask.site, mask.model.fingerprint]).toEqual([5, 172, 'act', identity.fingerprint]);
  });

  it("reads torch.save's counts dict (n, float32 sums, int32 over_zero) as statistics at act", async () => {
    const v = await readTorchFile(path.join(FIX, 'counts.pt'));
    const s = statsFromTang(v, { language: 'en', model: identity, maxLen: 100, sha256: 'x' }, 'counts.pt');
    expect(s.tokens).toBe(expected.counts.n);
    expect(s.sequences).toBe(10);
    const act = s.sites.get('act')!;
    expect(Array.from(act.overZero)).toEqual(expected.counts.over_zero.flat());
    expect(Array.from(act.sum)).toEqual(expected.counts.sum1.flat()); // float32 values, exactly
    expect(Array.from(act.sumSq)).toEqual(expected.counts.sum2.flat());
  });

  it('refuses a pickle that names any other global, without running it, and says which', async () => {
    await expect(readTorchFile(path.join(FIX, 'evil.pt'))).rejects.toThrow(/evil\.pt: data\.pkl: refuses the global '(posix|os)\.system'/);
    const call = pickle(new PickleReduce(new PickleGlobal('builtins', 'eval'), ['1+1']));
    expect(() => unpickle(call, { allowed: new Set(), call: () => { throw new Error('called'); }, persistentLoad: () => null }))
      .toThrow(/refuses the global 'builtins\.eval'/);
    // An accepted global that is a type cannot be called.
    const tmpFile = path.join(tmp, 'call-storage.pt');
    const bad = pickle(new PickleReduce(new PickleGlobal('torch', 'LongStorage'), [new PickleTuple([3])]));
    const { zipSync } = await import('fflate');
    writeFileSync(tmpFile, zipSync({ 'x/data.pkl': bad, 'x/version': new TextEncoder().encode('3\n') }));
    await expect(readTorchFile(tmpFile)).rejects.toThrow(/'torch\.LongStorage' is a type, not a function/);
    writeFileSync(tmpFile, 'not a torch file');
    await expect(readTorchFile(tmpFile)).rejects.toThrow(/not a PyTorch file/);
  });

  it('a truncated or corrupted data.pkl is one clear error, never a crash', async () => {
    const { unzipSync, zipSync } = await import('fflate');
    const entries = unzipSync(new Uint8Array(readFileSync(path.join(FIX, 'mask.pt'))));
    const pkl = entries['mask/data.pkl']!;
    const f = path.join(tmp, 'cut.pt');
    for (let n = 0; n < pkl.length; n += 7) {
      writeFileSync(f, zipSync({ ...entries, 'mask/data.pkl': pkl.subarray(0, n) }));
      await expect(readTorchFile(f), `cut at ${n}`).rejects.toThrow(/cut\.pt: data\.pkl: /);
    }
    const { 'mask/data/0': _gone, ...rest } = entries;
    writeFileSync(f, zipSync(rest));
    await expect(readTorchFile(f)).rejects.toThrow(/the storage record data\/0 is missing/);
  });

  it('pickles values and reads them back (ints of every width, floats, strings, nesting)', () => {
    const v = [0, 255, 256, 65535, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 40, -(2 ** 40), 12345678901234567890n, 0.5, -1e-300, 'ü€', null, true, false,
      new Map<string | number, never>([['a', [1, [2]] as never], [3, 'x' as never]])];
    const back = unpickle(pickle(v as never), { allowed: new Set(), call: () => null, persistentLoad: () => null });
    expect(back).toEqual(v);
  });

  /** Our writer's mask (languages reordered) and counts of the fixtures. */
  async function writeBoth(): Promise<{ maskFile: string; countsFile: string; stats: ReturnType<typeof statsFromTang> }> {
    const mask = maskFromTang(await readTorchFile(path.join(FIX, 'mask.pt')), ['en', 'sw'], identity, 'mask.pt');
    const maskFile = path.join(tmp, 'out-mask.pt');
    await writeTorchFile(maskFile, maskToTang(mask, ['sw', 'en']));
    const stats = statsFromTang(await readTorchFile(path.join(FIX, 'counts.pt')), { language: 'en', model: identity, maxLen: 100, sha256: 'x' }, 'c');
    const countsFile = path.join(tmp, 'out-counts.pt');
    await writeTorchFile(countsFile, statsToTang(stats));
    return { maskFile, countsFile, stats };
  }

  it('writes masks and counts that read back here', async () => {
    const { maskFile, countsFile, stats } = await writeBoth();
    expect(((await readTorchFile(maskFile)) as TorchTensor[][]).map((l) => l.map(num))).toEqual([expected.mask[1], expected.mask[0]]);
    const again = statsFromTang(await readTorchFile(countsFile), { language: 'en', model: identity, maxLen: 100, sha256: 'x' }, 'c');
    expect(again.sites.get('act')).toEqual(stats.sites.get('act'));
  });

  it('the same value written at two moments is the same file (no clock time in the archive)', async () => {
    const value = maskToTang(maskFromTang(await readTorchFile(path.join(FIX, 'mask.pt')), ['en', 'sw'], identity, 'mask.pt'), ['en', 'sw']);
    const files = [path.join(tmp, 'when-1', 'mask.pt'), path.join(tmp, 'when-2', 'mask.pt')]; // one name: the archive's folder is the file's stem
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(new Date(2026, 0, 1, 10, 0, 0));
      await writeTorchFile(files[0]!, value);
      vi.setSystemTime(new Date(2031, 6, 9, 17, 33, 7));
      await writeTorchFile(files[1]!, value);
    } finally { vi.useRealTimers(); }
    expect(readFileSync(files[1]!)).toEqual(readFileSync(files[0]!));
  });

  it.skipIf(!PY)('real torch.load reads what we write (needs a python3 with torch, e.g. Debian python3-torch)', async () => {
    const { maskFile, countsFile } = await writeBoth();
    const script = 'import json,sys,torch\n' +
      'm=torch.load(sys.argv[1]); c=torch.load(sys.argv[2])\n' +
      'print(json.dumps({"mask":[[[t.dtype==torch.int64]+t.tolist() for t in l] for l in m],' +
      '"n":c["n"],"oz":c["over_zero"].tolist(),"ozdt":str(c["over_zero"].dtype),"s1":c["sum1"].tolist(),"s2":c["sum2"].tolist()}))';
    const got = JSON.parse(execFileSync(PY!, ['-c', script, maskFile, countsFile], { encoding: 'utf8', timeout: 120_000 }));
    expect(got.mask).toEqual([expected.mask[1], expected.mask[0]].map((l) => l.map((u) => [true, ...u])));
    expect([got.n, got.ozdt]).toEqual([1000, 'torch.int32']);
    expect(got.oz).toEqual(expected.counts.over_zero);
    expect(got.s1).toEqual(expected.counts.sum1);
    expect(got.s2).toEqual(expected.counts.sum2);
  }, 120_000);

  it('masks import / export --format tang and stats import / export through the CLI; bad input is one clear line', async () => {
    const model = fixturePath('stories260k');
    const run = async (args: string[]) => captureStdout(() => main(['node', 'langneurons', ...args, '--json']));
    const imported = path.join(tmp, 'tang.json');
    let r = await run(['masks', 'import', path.join(FIX, 'mask.pt'), '--langs', 'en,sw', '--model', model, '--out', imported]);
    expect(r.value).toBe(0);
    expect(JSON.parse(r.out).total).toEqual({ en: 10, sw: 4 });
    expect((await readMask(imported)).languages.en).toEqual(expected.mask[0]);
    const exported = path.join(tmp, 'exported.pt');
    r = await run(['masks', 'export', imported, '--format', 'tang', '--out', exported]);
    expect(r.value).toBe(0);
    expect(((await readTorchFile(exported)) as TorchTensor[][]).map((l) => l.map(num))).toEqual(expected.mask);
    // The imported mask drives an intervention on its model.
    r = await run(['score', model, '--text', 'Once upon a time there was a cat.', '--intervene', `deactivate:${imported}:en`]);
    expect(r.value).toBe(0);
    const statsFile = path.join(tmp, 'en.safetensors');
    r = await run(['stats', 'import', path.join(FIX, 'counts.pt'), '--lang', 'en', '--model', model, '--out', statsFile, '--max-len', '100']);
    expect(r.value).toBe(0);
    const st = await readStats(statsFile);
    expect([st.tokens, st.meta.language, st.meta.scope.mode, st.meta.model.fingerprint]).toEqual([1000, 'en', 'windows', identity.fingerprint]);
    expect(st.meta.scope.partialWindow).toBe('drop'); // Tang counts whole windows only (profile --drop-partial)
    expect(Array.from(st.sites.get('act')!.overZero)).toEqual(expected.counts.over_zero.flat());
    r = await run(['stats', 'export', statsFile, '--format', 'tang', '--out', path.join(tmp, 'en.pt')]);
    expect(r.value).toBe(0);
    // Bad input: wrong number of languages, a file of another model's shape, the evil file, an unknown format.
    expect((await run(['masks', 'import', path.join(FIX, 'mask.pt'), '--langs', 'en', '--model', model, '--out', path.join(tmp, 'x.json')])).value).toBe(1);
    expect((await run(['masks', 'import', path.join(FIX, 'mask.pt'), '--langs', 'en,sw', '--model', fixturePath('tiny-llama3'), '--out', path.join(tmp, 'x.json')])).value).toBe(1);
    expect((await run(['masks', 'import', path.join(FIX, 'evil.pt'), '--langs', 'en', '--model', model, '--out', path.join(tmp, 'x.json')])).value).toBe(1);
    expect((await run(['masks', 'export', imported, '--format', 'npz', '--out', path.join(tmp, 'x.pt')])).value).toBe(1);
  }, 60_000);
});
