// ap and raw-activated read the per-sequence means from the statistics files a block of units at a time (sequence
// means left out of memory: readStats(file, { seqMeans: false }), what `identify` does): memory is bounded by
// seqMeansBudget / --seq-means-budget and not by the files (Kojima's 1.38 M units × 10,000 sentences: 55 GB of means),
// and the masks are byte for byte those of the means held in memory.
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readStatsInputs } from '../src/cli/commands/identify.js';
import { identifyAveragePrecision, identifyAveragePrecisionJoint } from '../src/identify/average-precision.js';
import type { LanguageStats, SequenceMeansBlock } from '../src/identify/common.js';
import { readMask, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { identifyRawActivated } from '../src/identify/raw-activated.js';
import { readSafetensorsHeader } from '../src/io/safetensors.js';
import { readStats, writeStats, type Site } from '../src/profile/stats.js';
import { runCli } from './helpers/cli.js';
import { fixturePath } from './helpers/fixtures.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-identify-streaming-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const MiB = 2 ** 20;

/** The bytes writeMask writes for `mask` (JSON). */
async function maskBytes(mask: NeuronMask, name: string): Promise<Buffer> {
  const file = path.join(tmp, `${name}-${Math.random().toString(36).slice(2)}.json`);
  await writeMask(file, mask);
  return readFileSync(file);
}

/**
 * Writes a statistics file of `sequences` per-sequence means at `act` (layers × width units) without ever holding
 * them: one row is filled by `row(s, values)` and written at a time, so the test process holds no copy of the means.
 */
function writeLargeStats(file: string, language: string, sequences: number, layers: number, width: number, row: (s: number, values: Float32Array) => void): number {
  const units = layers * width;
  const meta = {
    format: 'langneurons-stats/1', language, layers: Array.from({ length: layers }, (_, i) => i),
    model: { name: 'synthetic', modelType: 'llama', layers, hidden: 16, intermediate: width, fingerprint: 'e'.repeat(64) },
    scope: { mode: 'sentences', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0 },
    corpus: { files: [`${language}.txt`], fingerprint: `c-${language}` }, toolVersion: 'test', shards: 1, compute: 'f32',
  };
  const tensors: [string, string, number[], number][] = [
    ['act.seq_means', 'F32', [sequences, layers, width], sequences * units * 4],
    ['act.sum', 'F64', [layers, width], units * 8], ['act.sum_sq', 'F64', [layers, width], units * 8],
    ['act.over_zero', 'I64', [layers, width], units * 8], ['sequences', 'I64', [1], 8], ['tokens', 'I64', [1], 8],
  ];
  const header: Record<string, unknown> = { __metadata__: { langneurons: JSON.stringify(meta) } };
  let offset = 0;
  for (const [name, dtype, shape, bytes] of tensors) { header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] }; offset += bytes; }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, prefix);
    writeSync(fd, Buffer.from(json));
    const values = new Float32Array(units), bytes = new Uint8Array(values.buffer);
    for (let s = 0; s < sequences; s++) { row(s, values); writeSync(fd, bytes); }
    writeSync(fd, Buffer.alloc(units * 8 * 3)); // sums, sums of squares and counts: zeros
    const counts = new BigInt64Array([BigInt(sequences), BigInt(sequences * 10)]);
    writeSync(fd, new Uint8Array(counts.buffer));
  } finally {
    closeSync(fd);
  }
  return sequences * units * 4;
}

/** A value in [-1, 1) from (language, sequence, unit): a hash, cheap enough for 10^8 values. */
function noise(lang: number, s: number, u: number): number {
  let h = Math.imul(lang * 0x9e3779b1 + s, 0x85ebca6b) ^ Math.imul(u + 0x27d4eb2f, 0xc2b2ae35);
  h ^= h >>> 15; h = Math.imul(h, 0x2c1b3c6d); h ^= h >>> 12;
  return (h >>> 8) / 2 ** 23 - 1;
}

// Units every sentence of a language pushes above zero (raw-activated keeps exactly these), and units that tell the
// language apart perfectly (AP 1: in ap's top end).
const alwaysOn = (lang: number, u: number) => (lang === 0 ? u % 5 === 0 || u % 1000 === 3 : u % 7 === 0 || u % 1000 === 7);
const perfect = (lang: number, u: number) => u % 1000 === (lang === 0 ? 3 : 7);

// First in the file: process.resourceUsage().maxRSS is the process's peak so far, and this test measures how far
// identifying raises it, before the fixture profile below has run.
describe('memory: the per-sequence means are never all held', () => {
  const layers = 4, width = 6250, units = layers * width, sequences = 2000; // 200 MB of means a language
  const dir = path.join(tmp, 'large');
  let seqMeansBytes = 0;

  it('ap and raw-activated over 400 MB of means hold a small budget of them (library and command)', async () => {
    mkdirSync(dir);
    for (const [lang, name] of ['en', 'fr'].entries()) {
      seqMeansBytes += writeLargeStats(path.join(dir, `${name}.safetensors`), name, sequences, layers, width, (s, values) => {
        for (let u = 0; u < units; u++) {
          const x = noise(lang, s, u);
          // Off units: never positive in sequence 0, so never "always positive"
          values[u] = perfect(lang, u) ? 5 + x : alwaysOn(lang, u) ? 0.25 + Math.abs(x) : s === 0 ? -0.01 - Math.abs(x) : x;
        }
      });
    }
    expect(seqMeansBytes).toBe(400_000_000);
    const inputs = await readStatsInputs([dir], undefined, { seqMeans: false });

    const rss0 = process.resourceUsage().maxRSS * 1024, buffers0 = process.memoryUsage().arrayBuffers;
    let peakBuffers = 0;
    const blocks: SequenceMeansBlock[] = [];
    const onBlock = (b: SequenceMeansBlock) => { blocks.push(b); peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers - buffers0); };
    const budget = 16 * MiB;
    const ap = identifyAveragePrecision(inputs, { n: 100, seqMeansBudget: budget, onBlock });
    const apGrowth = process.resourceUsage().maxRSS * 1024 - rss0;
    // As many units as 16 MiB hold of all 4,000 sequences: 1,048 a block, the last one partial.
    expect(blocks.map((b) => b.size)).toEqual([...new Array(23).fill(1048), units - 23 * 1048]);
    // At every block, the buffers held had grown by the budget and the sorting scratch, not by the files' 400 MB.
    expect(peakBuffers).toBeGreaterThan(budget / 2);
    expect(peakBuffers).toBeLessThan(seqMeansBytes / 8);
    expect(apGrowth).toBeLessThan(seqMeansBytes / 3);
    for (const [lang, name] of ['en', 'fr'].entries()) {
      expect(ap.languages[name]!.flat().length).toBe(100);
      // The 25 units that tell the language apart perfectly are among its 50 highest APs.
      const chosen = new Set(ap.languages[name]!.flatMap((ns, l) => ns.map((n) => l * width + n)));
      const perfectUnits = Array.from({ length: units }, (_, u) => u).filter((u) => perfect(lang, u));
      expect(perfectUnits).toHaveLength(25);
      expect(perfectUnits.filter((u) => !chosen.has(u))).toEqual([]);
    }

    // The command: readStatsInputs and identify as `identify --method raw-activated --seq-means-budget 16` runs them.
    const out = path.join(tmp, 'large-raw.json');
    const r = await runCli('identify', dir, '--method', 'raw-activated', '--seq-means-budget', '16', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(process.resourceUsage().maxRSS * 1024 - rss0).toBeLessThan(seqMeansBytes / 3);
    const raw = await readMask(out);
    for (const [lang, name] of ['en', 'fr'].entries())
      expect(raw.languages[name]!.flatMap((ns, l) => ns.map((n) => l * width + n))).toEqual(Array.from({ length: units }, (_, u) => u).filter((u) => alwaysOn(lang, u)));
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});

describe('streamed masks are byte for byte the masks of the means held in memory', () => {
  const stats = path.join(tmp, 'stats');
  let inMemory: LanguageStats[], streamed: LanguageStats[];
  let S = 0;

  beforeAll(async () => {
    const p = await runCli('profile', fixturePath('stories260k'), '--corpus', 'udhr:train', '--langs', 'en,de,ru', '--tokens', '3000', '--max-len', '128',
      '--seq-means', '--sites', 'act,q,down', '--threads', '1', '--out', stats);
    expect(p.code, p.stderr).toBe(0);
    inMemory = await readStatsInputs([stats], undefined, { seqMeans: true });
    streamed = await readStatsInputs([stats], undefined, { seqMeans: false });
    S = inMemory.reduce((a, x) => a + x.stats.sequences, 0);
  }, 120_000);

  it('the statistics read without their means know where the means lie', () => {
    expect(S).toBeGreaterThan(40);
    for (const { file, stats: st } of streamed) {
      const site = st.sites.get('act')!;
      expect(site.seqMeans).toBeUndefined();
      expect(site.seqMeansInFile).toMatchObject({ file, tensor: 'act.seq_means', shape: [st.sequences, 5, 172] });
    }
  });

  /** Block sizes seen by onBlock for `run`. */
  function blocksOf(run: (onBlock: (b: SequenceMeansBlock) => void) => unknown): SequenceMeansBlock[] {
    const seen: SequenceMeansBlock[] = [];
    run((b) => seen.push(b));
    return seen;
  }

  it('ap, one site: many blocks and a last partial one, or one unit a block, give the in-memory mask', async () => {
    const want = await maskBytes(identifyAveragePrecision(inMemory, { n: 100 }), 'ap-mem');
    // 37 units of all S sequences a block: 860 = 23 × 37 + 9
    const budget = 4 * S * 37;
    let mask!: NeuronMask;
    const blocks = blocksOf((onBlock) => { mask = identifyAveragePrecision(streamed, { n: 100, seqMeansBudget: budget, onBlock }); });
    expect(blocks.map((b) => b.size)).toEqual([...new Array(23).fill(37), 9]);
    expect(blocks.map((b) => b.start)).toEqual(Array.from({ length: 24 }, (_, i) => i * 37));
    expect(await maskBytes(mask, 'ap-stream')).toEqual(want);
    // A budget below one unit of every sequence still reads one unit at a time.
    const q = await maskBytes(identifyAveragePrecision(inMemory, { site: 'q', n: 40, part: 'top' }), 'apq-mem');
    const one = blocksOf((onBlock) => { mask = identifyAveragePrecision(streamed, { site: 'q', n: 40, part: 'top', seqMeansBudget: 1, onBlock }); });
    expect(one).toHaveLength(5 * 64);
    expect(one.every((b) => b.size === 1)).toBe(true);
    expect(await maskBytes(mask, 'apq-stream')).toEqual(q);
    // The in-memory inputs stream the same way (no copy), whatever the budget.
    expect(await maskBytes(identifyAveragePrecision(inMemory, { n: 100, seqMeansBudget: budget }), 'ap-mem-budget')).toEqual(want);
  });

  it('ap, Kojima\'s joint ranking over several sites: every site\'s mask is the in-memory one', async () => {
    const sites: Site[] = ['act', 'q', 'down'];
    const want = identifyAveragePrecisionJoint(inMemory, sites, { n: 300 });
    let got!: Map<Site, NeuronMask>;
    const blocks = blocksOf((onBlock) => { got = identifyAveragePrecisionJoint(streamed, sites, { n: 300, seqMeansBudget: 4 * S * 50, onBlock }); });
    // 50 units a block: act 860 = 17 × 50 + 10, q and down 320 = 6 × 50 + 20
    expect(blocks.filter((b) => b.site === 'act').map((b) => b.size)).toEqual([...new Array(17).fill(50), 10]);
    for (const site of ['q', 'down'] as const) expect(blocks.filter((b) => b.site === site).map((b) => b.size)).toEqual([...new Array(6).fill(50), 20]);
    for (const site of sites) expect(await maskBytes(got.get(site)!, `joint-${site}-stream`)).toEqual(await maskBytes(want.get(site)!, `joint-${site}-mem`));
  });

  it('raw-activated: each language in blocks of its own sequences gives the in-memory mask', async () => {
    for (const site of ['act', 'down'] as const) {
      const want = identifyRawActivated(inMemory, { site });
      expect(Object.values(want.languages).some((ls) => ls.flat().length > 0)).toBe(true);
      let got!: NeuronMask;
      const blocks = blocksOf((onBlock) => { got = identifyRawActivated(streamed, { site, seqMeansBudget: 4 * 24 * 30, onBlock }); });
      expect(new Set(blocks.map((b) => b.languages.join()))).toEqual(new Set(['de', 'en', 'ru']));
      expect(blocks.length).toBeGreaterThan(3 * 10);
      expect(await maskBytes(got, `raw-${site}-stream`)).toEqual(await maskBytes(want, `raw-${site}-mem`));
    }
  });

  it('the command streams: identify --method ap / raw-activated write the in-memory masks, whatever --seq-means-budget', async () => {
    const apWant = await maskBytes(identifyAveragePrecision(inMemory, { n: 100 }), 'cli-ap-mem');
    const rawWant = await maskBytes(identifyRawActivated(inMemory), 'cli-raw-mem');
    for (const budget of [[], ['--seq-means-budget', '0.01']]) {
      const ap = path.join(tmp, `cli-ap-${budget.length}.json`), raw = path.join(tmp, `cli-raw-${budget.length}.json`);
      expect((await runCli('identify', stats, '--method', 'ap', '--n', '100', ...budget, '--out', ap)).code).toBe(0);
      expect(readFileSync(ap)).toEqual(apWant);
      expect((await runCli('identify', stats, '--method', 'raw-activated', ...budget, '--out', raw)).code).toBe(0);
      expect(readFileSync(raw)).toEqual(rawWant);
    }
    const line = (await runCli('identify', stats, '--method', 'lape', '--seq-means-budget', '16', '--out', path.join(tmp, 'lape.json'))).stderr;
    expect(line).toMatch(/--seq-means-budget is not used by --method lape: it applies to ap, raw-activated/);
    expect((await runCli('identify', stats, '--method', 'ap', '--seq-means-budget', '0', '--out', path.join(tmp, 'zero.json'))).stderr)
      .toMatch(/--seq-means-budget must be a number of MiB > 0, got '0'/);
  });

  it('merged shards (stats merge) are one tensor: streamed as any file', async () => {
    for (const k of [1, 2]) {
      const p = await runCli('profile', fixturePath('stories260k'), '--corpus', 'udhr:train', '--langs', 'en,de', '--tokens', '3000', '--max-len', '128',
        '--seq-means', '--threads', '1', '--shard', `${k}/2`, '--out', path.join(tmp, `shard${k}`));
      expect(p.code, p.stderr).toBe(0);
    }
    const merged = path.join(tmp, 'merged');
    for (const lang of ['en', 'de']) {
      const m = await runCli('stats', 'merge', path.join(tmp, 'shard1', `${lang}.safetensors`), path.join(tmp, 'shard2', `${lang}.safetensors`), '--out', path.join(merged, `${lang}.safetensors`));
      expect(m.code, m.stderr).toBe(0);
      expect((await readSafetensorsHeader(path.join(merged, `${lang}.safetensors`))).tensors.filter((t) => t.name.endsWith('seq_means')).map((t) => t.name)).toEqual(['act.seq_means']);
    }
    const mem = await readStatsInputs([merged], undefined, { seqMeans: true }), lean = await readStatsInputs([merged], undefined, { seqMeans: false });
    expect(await maskBytes(identifyAveragePrecision(lean, { n: 50, seqMeansBudget: 4 * 48 * 7 }), 'merged-stream'))
      .toEqual(await maskBytes(identifyAveragePrecision(mem, { n: 50 }), 'merged-mem'));
  }, 60_000);

  describe('refusals, in the words of reading the means whole', () => {
    /** A copy of the fixture statistics with the f32 `value` written over element (s, unit) of `lang`'s act.seq_means. */
    async function withValue(name: string, patches: { lang: string; s: number; unit: number; value: number }[]): Promise<string> {
      const dir = path.join(tmp, name);
      mkdirSync(dir);
      for (const lang of ['de', 'en', 'ru']) {
        const file = path.join(dir, `${lang}.safetensors`);
        await writeStats(file, await readStats(path.join(stats, `${lang}.safetensors`)));
        const at = (await readSafetensorsHeader(file)).tensors.find((t) => t.name === 'act.seq_means')!.byteOffset;
        for (const p of patches.filter((x) => x.lang === lang)) {
          const fd = openSync(file, 'r+');
          writeSync(fd, new Uint8Array(Float32Array.of(p.value).buffer), 0, 4, at + (p.s * 860 + p.unit) * 4);
          closeSync(fd);
        }
      }
      return dir;
    }
    const refusal = async (f: () => unknown): Promise<Error> => { try { await f(); } catch (e) { return e as Error; } throw new Error('not refused'); };

    it('a value that is not finite is refused naming the file and the element, as readStats names them', async () => {
      // In the last block of en; ru's NaN is in the first block, read first, but en comes first in the inputs: en is
      // named, as reading the files whole (in order) named it.
      const dir = await withValue('nan', [{ lang: 'en', s: 20, unit: 850, value: NaN }, { lang: 'en', s: 22, unit: 3, value: NaN }, { lang: 'ru', s: 0, unit: 0, value: Infinity }]);
      const whole = (await refusal(() => readStats(path.join(dir, 'en.safetensors')))).message;
      expect(whole).toBe(`${path.join(dir, 'en.safetensors')}: tensor "act.seq_means" holds NaN at [20, 4, 162], which is not a finite mean`);
      const lean = await readStatsInputs([dir], undefined, { seqMeans: false });
      for (const run of [
        () => identifyAveragePrecision(lean, { n: 100, seqMeansBudget: 4 * S * 37 }),
        () => identifyAveragePrecisionJoint(lean, ['q', 'act'], { n: 100, seqMeansBudget: 4 * S * 37 }),
        () => identifyRawActivated(lean, { seqMeansBudget: 4 * 24 * 10 }),
      ]) {
        const e = await refusal(run);
        expect(e.message).toBe(whole);
        expect(e).toMatchObject({ code: 'E_STATS', file: path.join(dir, 'en.safetensors') });
      }
      const cli = await runCli('identify', dir, '--method', 'ap', '--seq-means-budget', '0.01', '--out', path.join(tmp, 'nan.json'));
      expect(cli.code).toBe(1);
      expect(cli.stderr).toContain(whole);
      // ru alone: its Infinity, named as readStats names it.
      const ru = (await refusal(() => readStats(path.join(dir, 'ru.safetensors')))).message;
      expect(ru).toMatch(/ru\.safetensors: tensor "act\.seq_means" holds Infinity at \[0, 0, 0\], which is not a finite mean$/);
      expect((await refusal(() => identifyRawActivated(lean.filter((x) => x.stats.meta.language === 'ru'), { seqMeansBudget: 1 }))).message).toBe(ru);
    });

    it('missing or empty sequence means, and a file changed since it was read, are refused naming the file', async () => {
      const dir = path.join(tmp, 'missing');
      mkdirSync(dir);
      const en = await readStats(path.join(stats, 'en.safetensors'));
      delete en.sites.get('act')!.seqMeans;
      await writeStats(path.join(dir, 'en.safetensors'), en);
      const de = await readStats(path.join(stats, 'de.safetensors'));
      for (const st of de.sites.values()) st.seqMeans = new Float32Array(0);
      de.sequences = 0;
      await writeStats(path.join(dir, 'de.safetensors'), de);
      const [leanDe, leanEn] = await readStatsInputs([dir], undefined, { seqMeans: false });
      const ru = streamed.find((x) => x.stats.meta.language === 'ru')!;
      expect((await refusal(() => identifyAveragePrecision([leanEn!, ru]))).message)
        .toBe(`${path.join(dir, 'en.safetensors')}: average precision needs per-sequence means at site "act" for "en"; profile with sequence means`);
      expect((await refusal(() => identifyRawActivated([ru, leanDe!]))).message)
        .toBe(`${path.join(dir, 'de.safetensors')}: language "de" has no sequence means (0 sentences)`);

      // Read, then written anew with another layout (a profile or merge replacing it): not read at the old offsets.
      const file = path.join(dir, 'ru.safetensors');
      await writeStats(file, await readStats(ru.file));
      const [early] = await readStatsInputs([file], undefined, { seqMeans: false });
      const other = await readStats(ru.file);
      other.sites.delete('q');
      await writeStats(file, other);
      expect((await refusal(() => identifyRawActivated([early!]))).message).toMatch(/ru\.safetensors: changed since its statistics were read \(tensor "act\.seq_means" is F32 \[24, 5, 172\] at byte \d+, was F32 \[24, 5, 172\] at byte \d+\): run again on the file as it is now$/);
    });
  });
});
