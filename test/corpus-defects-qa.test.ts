// Corpus and statistics defects found by QA: a `<lang>` link to a folder was ignored by the folder scan; a manifest
// listing a file twice counted it twice, and a misspelt manifest key was ignored; GZIP / ZSTD Parquet files (common on
// the Hugging Face hub) failed in the middle of a run, after earlier languages were written; `stats show` hid what
// makes statistics files incomplete or unmergeable (a lone shard, the missing shards of a merge, the token budget, the
// compute mode); `profile --sites ""` leaked the engine's own message.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LangneuronsError } from '../src/errors.js';
import { openCorpus, readParquetDocuments } from '../src/corpus/index.js';
import { readRows } from '../src/eval/data.js';
import { readStats, SITES, writeStats } from '../src/profile/stats.js';
import { readFacts } from '../src/steer/lss.js';
import { runCli } from './helpers/cli.js';
import { collect, writeFiles } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const M = path.join(repoRoot, 'models', 'udhr20');
const FIXTURES = path.join(repoRoot, 'test', 'fixtures-corpus');
let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-corpus-qa-'); });
afterAll(async () => { await removeDir(tmp); });

let n = 0;
const folder = (files: Record<string, string> = {}): Promise<string> => writeFiles(path.join(tmp, `c${n++}`), files);

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(LangneuronsError);
  return (err as Error).message;
}

/** profile on the udhr20 model; returns the CLI's result (not checked). */
const profile = (corpus: string, out: string, ...args: string[]) =>
  runCli('profile', M, '--corpus', corpus, '--max-len', '64', '--threads', '1', '--out', out, ...args);

const texts = async (): Promise<string[]> => (await fsp.readFile(path.join(FIXTURES, 'texts.txt'), 'utf8')).split('\n').filter(Boolean);

describe('folder corpora: a <lang> link to a folder', () => {
  it('is read as the <lang>/ folder it points to, with the same fingerprint', async () => {
    const real = await folder({ 'en/part-0.txt': 'one\ntwo\n', 'en/part-1.txt': 'three\n' });
    const sym = await folder();
    await fsp.symlink(path.join(real, 'en'), path.join(sym, 'en'));
    const viaLink = await openCorpus(sym);
    expect(viaLink.languages).toEqual(['en']);
    expect(viaLink.source('en').files).toEqual(['en/part-0.txt', 'en/part-1.txt']);
    expect(await collect(viaLink.source('en').documents())).toEqual(['one', 'two', 'three']);
    // the names are taken relative to the corpus root, not to the link's target: moving the shards behind a link
    // does not change what the statistics record
    expect(await viaLink.fingerprint()).toBe(await (await openCorpus(real)).fingerprint());
  });

  it('profile reads it (it said "no corpus files found")', async () => {
    const real = await folder();
    await fsp.mkdir(path.join(real, 'en'));
    await fsp.writeFile(path.join(real, 'en', 'part-0.txt'), (await texts()).join('\n'));
    const sym = await folder();
    await fsp.symlink(path.join(real, 'en'), path.join(sym, 'en'));
    const out = path.join(tmp, 'sym-out');
    const r = await profile(sym, out, '--langs', 'en');
    expect(r.code, r.stderr).toBe(0);
    expect((await readStats(path.join(out, 'en.safetensors'))).meta.corpus.files).toEqual(['en/part-0.txt']);
  }, 60_000);

  it('a dangling or looping <lang> link is refused naming it, as a dangling <lang>.txt link is', async () => {
    const dangling = await folder({ 'de.txt': 'Hallo\n' });
    await fsp.symlink(path.join(tmp, 'nowhere'), path.join(dangling, 'en'));
    expect(await refusal(openCorpus(dangling))).toBe(`${path.join(dangling, 'en')}: a link that cannot be followed (its target does not exist); remove it or make it point to a <lang>/ folder of corpus files`);
    const loop = await folder({ 'de.txt': 'Hallo\n' });
    await fsp.symlink('sw', path.join(loop, 'sw'));
    expect(await refusal(openCorpus(loop))).toMatch(/\/sw: a link that cannot be followed \(it is a loop of links\)/);
    const file = await folder({ 'de.txt': 'Hallo\n' });
    await fsp.symlink(path.join(tmp, 'nowhere.txt'), path.join(file, 'en.txt'));
    expect(await refusal(openCorpus(file))).toMatch(/en\.txt: file not found \(corpus language "en"\)/);
    // what is not a language folder stays ignored: a link to a file of no corpus format, a link of a name that is
    // no language id (dangling or not), a link to a folder without corpus files
    const others = await folder({ 'de.txt': 'Hallo\n', 'notes': 'x', 'empty/README': 'y' });
    await fsp.symlink(path.join(others, 'notes'), path.join(others, 'readme'));
    await fsp.symlink(path.join(tmp, 'nowhere'), path.join(others, 'not a language'));
    await fsp.symlink(path.join(others, 'empty'), path.join(others, 'sw'));
    expect((await openCorpus(others)).languages).toEqual(['de']);
  });
});

describe('manifests', () => {
  it('a file listed twice for one language is refused naming the manifest and the file; through a link too', async () => {
    const root = await folder({ 'a.txt': 'one\ntwo\n', 'c.txt': 'three\n' });
    await fsp.symlink('a.txt', path.join(root, 'b.txt'));
    const twice = path.join(root, 'twice.json');
    await fsp.writeFile(twice, JSON.stringify({ languages: { en: { files: ['a.txt', 'c.txt', 'a.txt'] } } }));
    expect(await refusal(openCorpus(twice))).toBe(`${twice}: language "en" lists "a.txt" twice: its documents would be counted twice; list each file once`);
    const other = path.join(root, 'other.json');
    await fsp.writeFile(other, JSON.stringify({ languages: { en: { files: ['./a.txt', 'b.txt'] } } }));
    expect(await refusal(openCorpus(other))).toBe(`${other}: language "en" lists "a.txt" and "b.txt", which are the same file (${await fsp.realpath(path.join(root, 'a.txt'))}): its documents would be counted twice; list each file once`);
    // a <lang>/ folder holding a file and a link to it
    const shards = await folder({ 'en/a.txt': 'one\n' });
    await fsp.symlink('a.txt', path.join(shards, 'en', 'b.txt'));
    expect(await refusal(openCorpus(shards))).toMatch(/: language "en" holds "en\/a\.txt" and "en\/b\.txt", which are the same file \(.*\): its documents would be counted twice; keep one$/);
    // one file for two languages is not counted twice in either
    expect((await openCorpus({ languages: { en: { files: ['a.txt'] }, de: { files: ['a.txt'] } } }, { baseDir: root })).languages).toEqual(['en', 'de']);

    const out = path.join(tmp, 'twice-out');
    const r = await profile(twice, out, '--langs', 'en');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('lists "a.txt" twice');
    expect(existsSync(path.join(out, 'en.safetensors'))).toBe(false);
  }, 60_000);

  it('unknown keys are refused at every level, naming the key and the allowed ones', async () => {
    const root = await folder({ 'a.jsonl': '{"text": "one", "body": "two"}\n' });
    const inLanguage = path.join(root, 'lang.json');
    await fsp.writeFile(inLanguage, JSON.stringify({ languages: { en: { files: ['a.jsonl'], feild: 'body' } } }));
    expect(await refusal(openCorpus(inLanguage))).toBe(`${inLanguage}: unknown key "feild" in languages.en (allowed: "files", "field")`);
    const top = path.join(root, 'top.json');
    await fsp.writeFile(top, JSON.stringify({ feild: 'body', languages: { en: { files: ['a.jsonl'] } } }));
    expect(await refusal(openCorpus(top))).toBe(`${top}: unknown key "feild" at the top level (allowed: "field", "languages")`);
    // the keys spelt right still work
    const good = await openCorpus({ field: 'body', languages: { en: { files: ['a.jsonl'] } } }, { baseDir: root });
    expect(await collect(good.source('en').documents())).toEqual(['two']);

    const out = path.join(tmp, 'feild-out');
    const r = await profile(inLanguage, out, '--langs', 'en');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown key "feild" in languages.en');
    expect(existsSync(path.join(out, 'en.safetensors'))).toBe(false);
  }, 60_000);
});

/** A Parquet file whose columns are written with the given codecs (hyparquet-writer; `compress` per codec). */
function writeCompressed(file: string, columns: Record<string, { data: (string | null)[]; codec: string }>, compress: Record<string, (b: Uint8Array) => Uint8Array>): void {
  parquetWriteFile({
    filename: file,
    columnData: Object.entries(columns).map(([name, c]) => ({ name, data: c.data, type: 'STRING' as const, codec: c.codec as 'SNAPPY' })),
    compressors: compress,
    rowGroupSize: 2,
  });
}
/** A stand-in for LZO, which no JavaScript decoder reads: the bytes kept as they are, the footer saying LZO. */
const fakeLzo = { LZO: (b: Uint8Array) => b };

describe('Parquet compression', () => {
  it('GZIP and ZSTD files written by pyarrow are read, as corpora and as eval data', async () => {
    const want = await texts();
    for (const codec of ['gzip', 'zstd']) {
      const file = path.join(FIXTURES, `${codec}.parquet`);
      expect(await collect(readParquetDocuments(file, { field: 'text' }))).toEqual(want);
      const rows = await readRows(file);
      expect(rows.map((r) => r.text)).toEqual(want);
      expect(rows.map((r) => r.id)).toEqual(want.map((_, i) => i));
    }
  });

  it('a GZIP file written by hyparquet-writer with node:zlib is read too (corpus, eval data, steer facts)', async () => {
    const root = await folder();
    const file = path.join(root, 'mt.parquet');
    writeCompressed(file, { text: { data: ['bonġu', null, 'grazzi', 'saħħa'], codec: 'GZIP' } }, { GZIP: (b) => gzipSync(b) });
    expect(await collect((await openCorpus(root)).source('mt').documents())).toEqual(['bonġu', 'grazzi', 'saħħa']);
    expect((await readRows(file)).map((r) => r.text)).toEqual(['bonġu', null, 'grazzi', 'saħħa']);
    const facts = path.join(root, 'P1.parquet');
    writeCompressed(facts, { template: { data: ['[X] is in [Y].'], codec: 'GZIP' }, sub_en: { data: ['Paris'], codec: 'GZIP' }, obj_en: { data: ['France'], codec: 'GZIP' } }, { GZIP: (b) => gzipSync(b) });
    const set = await readFacts(facts);
    expect(set.facts.map((f) => f.fields)).toEqual([{ template: '[X] is in [Y].', sub_en: 'Paris', obj_en: 'France' }]);
  });

  it('profiles a ZSTD and a GZIP file to the same counts as the same text in a .txt file', async () => {
    const root = await folder();
    await fsp.copyFile(path.join(FIXTURES, 'zstd.parquet'), path.join(root, 'en.parquet'));
    await fsp.copyFile(path.join(FIXTURES, 'gzip.parquet'), path.join(root, 'sw.parquet'));
    await fsp.copyFile(path.join(FIXTURES, 'texts.txt'), path.join(root, 'de.txt'));
    const out = path.join(tmp, 'codec-out');
    const r = await profile(root, out, '--langs', 'de,en,sw');
    expect(r.code, r.stderr).toBe(0);
    const [de, en, sw] = await Promise.all(['de', 'en', 'sw'].map((l) => readStats(path.join(out, `${l}.safetensors`))));
    for (const s of [en!, sw!]) {
      expect(s.tokens).toBe(de!.tokens);
      expect(s.sequences).toBe(de!.sequences);
      expect(s.sites.get('act')!.overZero).toEqual(de!.sites.get('act')!.overZero);
    }
  }, 60_000);

  it('a codec no decoder reads is refused when the corpus is opened, naming the file and the codec, before any language is written', async () => {
    const root = await folder({ 'de.txt': (await texts()).join('\n') });
    writeCompressed(path.join(root, 'mt.parquet'), { text: { data: ['bonġu', 'grazzi'], codec: 'LZO' } }, fakeLzo);
    const said = `${path.join(root, 'mt.parquet')}: column "text" (row group 0) is compressed with LZO, which langneurons cannot decode (readable: UNCOMPRESSED, SNAPPY, GZIP, BROTLI, ZSTD, LZ4, LZ4_RAW)`;
    expect(await refusal(openCorpus(root))).toContain(said);
    // de comes first: it was profiled and written, then mt failed at its first row group
    const out = path.join(tmp, 'lzo-out');
    const r = await profile(root, out, '--langs', 'de,mt');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(said);
    expect(existsSync(path.join(out, 'de.safetensors'))).toBe(false);
  }, 60_000);

  it('only the columns read are judged: a corpus reads its text column, eval data (every column) is refused', async () => {
    const root = await folder();
    const file = path.join(root, 'mt.parquet');
    writeCompressed(file, { text: { data: ['bonġu', 'grazzi'], codec: 'SNAPPY' }, notes: { data: ['a', 'b'], codec: 'LZO' } }, fakeLzo);
    expect(await collect((await openCorpus(root)).source('mt').documents())).toEqual(['bonġu', 'grazzi']);
    expect(await refusal(readRows(file))).toContain(`${file}: column "notes" (row group 0) is compressed with LZO, which langneurons cannot decode`);
    expect(await refusal(readFacts(file))).toContain('column "notes" (row group 0) is compressed with LZO');
  });
});

describe('stats show', () => {
  const show = async (file: string) => {
    const text = await runCli('stats', 'show', file);
    const json = await runCli('stats', 'show', file, '--json');
    expect(text.code, text.stderr).toBe(0);
    return { text: text.stdout, json: JSON.parse(json.stdout) as Record<string, unknown> };
  };

  it('shows a lone shard, the shards a merge holds and lacks, the token budget and the compute mode', async () => {
    const dir = path.join(tmp, 'shards');
    for (const k of [1, 2, 3]) {
      const r = await profile('udhr:train', path.join(dir, `s${k}`), '--langs', 'en', '--tokens', '600', '--shard', `${k}/3`);
      expect(r.code, r.stderr).toBe(0);
    }
    const shard = (k: number) => path.join(dir, `s${k}`, 'en.safetensors');

    const lone = await show(shard(2));
    expect(lone.text).toContain('parts      shard 2/3 only (shards 1, 3 of the run not in this file: stats merge them with it for the whole corpus)');
    expect(lone.text).toContain("budget     600 tokens per language (the run's, shared by its shards)");
    expect(lone.text).toContain('compute    f32');
    expect(lone.json).toMatchObject({ tokenBudget: 600, compute: 'f32', complete: false, coverage: [{ budget: 600, shardCount: 3, shards: [2], missing: [1, 3] }] });

    const some = path.join(dir, 'm13.safetensors');
    expect((await runCli('stats', 'merge', shard(1), shard(3), '--out', some)).code).toBe(0);
    const merged = await show(some);
    expect(merged.text).toContain('parts      shards 1, 3 of 3 merged; missing shard 2 of the run (stats merge it with this file for the whole corpus)');
    expect(merged.text).not.toMatch(/2 shards\)/);
    expect(merged.json).toMatchObject({ complete: false, coverage: [{ shardCount: 3, shards: [1, 3], missing: [2] }] });

    const all = path.join(dir, 'all.safetensors');
    expect((await runCli('stats', 'merge', shard(1), shard(2), shard(3), '--out', all)).code).toBe(0);
    const whole = await show(all);
    expect(whole.text).toContain('parts      shards 1-3 of 3 merged: every shard of the run');
    expect(whole.json).toMatchObject({ complete: true, coverage: [{ shardCount: 3, shards: [1, 2, 3], missing: [] }] });
  }, 120_000);

  it('an unsharded run without a budget, and a file that records neither parts nor compute mode', async () => {
    const out = path.join(tmp, 'unsharded');
    expect((await profile('udhr:train', out, '--langs', 'de')).code).toBe(0);
    const file = path.join(out, 'de.safetensors');
    const one = await show(file);
    expect(one.text).toContain('budget     none (the whole corpus)');
    expect(one.text).toContain('parts      the whole corpus');
    expect(one.json).toMatchObject({ tokenBudget: 0, compute: 'f32', complete: true, coverage: [{ shardCount: null, shards: [], missing: [] }] });

    // as files written before parts and the compute mode were recorded: said so, not shown as one whole corpus
    const s = await readStats(file);
    const { parts: _parts, compute: _compute, ...meta } = s.meta;
    const old = path.join(tmp, 'old.safetensors');
    await writeStats(old, { ...s, meta: { ...meta, shards: 2 } });
    const shown = await show(old);
    expect(shown.text).toContain('compute    not recorded (imported, or written before the mode was recorded)');
    expect(shown.text).toContain('parts      not recorded (a file written before parts were recorded); 2 shards merged');
    expect(shown.json).toMatchObject({ compute: null, coverage: null, complete: null });
  }, 60_000);
});

describe('profile --sites', () => {
  it('an empty list is refused with the --sites message, nothing written', async () => {
    for (const sites of ['', ',']) {
      const out = path.join(tmp, `sites-${sites.length}`);
      const r = await profile('udhr:train', out, '--langs', 'en', '--sites', sites);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`langneurons: error: --sites: no site given (sites: ${SITES.join(', ')})`);
      expect(existsSync(path.join(out, 'en.safetensors'))).toBe(false);
    }
  });
});
