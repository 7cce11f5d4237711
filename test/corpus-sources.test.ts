import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import { openCorpus, readDocuments, readLines, readParquetDocuments, type ReadCounter } from '../src/corpus/index.js';
import { collect, jsonl, writeFiles, writeParquet } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir('langneurons-corpus-');
});
afterAll(async () => {
  await removeDir(dir);
});

/** A fresh sub-folder of the test's temp dir. */
let n = 0;
async function folder(files: Record<string, string> = {}): Promise<string> {
  return writeFiles(path.join(dir, `c${n++}`), files);
}

async function expectCorpusError(p: Promise<unknown>, ...fragments: string[]): Promise<LangneuronsError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(LangneuronsError);
  for (const f of fragments) expect((err as Error).message).toContain(f);
  return err as LangneuronsError;
}

const docsOf = async (root: string, lang: string, options = {}) => collect((await openCorpus(root, options)).source(lang).documents());

describe('readers', () => {
  it('plain text: one document per line, blank lines skipped, CRLF and BOM handled', async () => {
    const root = await folder({ 'en.txt': '\uFEFFfirst line\r\n\r\n   \nsecond line\nthird, no newline' });
    expect(await docsOf(root, 'en')).toEqual(['first line', 'second line', 'third, no newline']);
  });

  it('lines: multi-byte characters split across chunk boundaries survive', async () => {
    const text = 'ħażż 中文 🤖 Ελληνικά\n'.repeat(50);
    const file = path.join(await folder({ 'x.txt': text }), 'x.txt');
    const lines = await collect(readLines(file, { chunkBytes: 7 }));
    expect(lines).toHaveLength(50);
    expect(lines.every((l) => l.text === 'ħażż 中文 🤖 Ελληνικά')).toBe(true);
    expect(lines.at(-1)!.lineNumber).toBe(50);
  });

  it('JSONL: the named field, default "text", dotted paths into objects, nulls skipped', async () => {
    const root = await folder({
      'sw.jsonl': jsonl([{ text: 'habari', id: 1 }, { text: null }, { text: 'asante' }]) + '\n',
      'de.jsonl': jsonl([{ translation: { de: 'Hallo', en: 'Hello' } }, { translation: { de: 'Welt', en: 'world' } }]),
    });
    expect(await docsOf(root, 'sw')).toEqual(['habari', 'asante']);
    expect(await docsOf(root, 'de', { field: 'translation.de' })).toEqual(['Hallo', 'Welt']);
  });

  it('JSONL errors name the file and the line', async () => {
    const root = await folder({ 'mt.jsonl': '{"text": "bonġu"}\n{"text": "grazzi"\n' });
    const err = await expectCorpusError(docsOf(root, 'mt'), 'mt.jsonl', 'line 2', 'not valid JSON');
    expect(err.file).toBe(path.join(root, 'mt.jsonl'));

    const missing = await folder({ 'mt.jsonl': jsonl([{ text: 'a' }, { body: 'b', id: 2 }]) });
    await expectCorpusError(docsOf(missing, 'mt'), 'mt.jsonl', 'line 2', 'no field "text"', 'fields: body, id');

    const notString = await folder({ 'mt.jsonl': jsonl([{ text: 'a' }, { text: 'b' }, { text: 42 }]) });
    await expectCorpusError(docsOf(notString, 'mt'), 'line 3', 'field "text" is a number, expected a string');

    const notObject = await folder({ 'mt.jsonl': '["text"]\n' });
    await expectCorpusError(docsOf(notObject, 'mt'), 'line 1', 'is an array, expected a JSON object');
  });

  it('Parquet: the named column, read row group by row group', async () => {
    const root = await folder();
    const texts = Array.from({ length: 25 }, (_, i) => `sentence ${i}`);
    writeParquet(path.join(root, 'en.parquet'), { id: texts.map((_, i) => String(i)), text: texts }, 10);
    expect(await docsOf(root, 'en')).toEqual(texts);
    expect(await docsOf(root, 'en', { field: 'id' })).toEqual(texts.map((_, i) => String(i)));
    const other = await folder();
    writeParquet(path.join(other, 'ru.parquet'), { content: ['привет', null, 'мир'] });
    expect(await docsOf(other, 'ru', { field: 'content' })).toEqual(['привет', 'мир']);

    // One row group per read: stopping early reads one; a full pass reads the three (10 + 10 + 5 rows).
    const counter: ReadCounter = { chunks: 0, bytes: 0 };
    for await (const _ of readParquetDocuments(path.join(root, 'en.parquet'), { field: 'text', counter })) break;
    expect(counter.chunks).toBe(1);
    counter.chunks = 0;
    expect(await collect(readParquetDocuments(path.join(root, 'en.parquet'), { field: 'text', counter }))).toHaveLength(25);
    expect(counter.chunks).toBe(3);
  });

  it('Parquet: fetches only the bytes of the row groups it reads', async () => {
    const file = path.join(await folder(), 'big.parquet');
    // Incompressible-ish text so that each row group is ~1/4 of the file.
    let seed = 7;
    const word = () => Array.from({ length: 200 }, () => String.fromCharCode(97 + ((seed = (seed * 48271) % 2147483647) % 26))).join('');
    writeParquet(file, { text: Array.from({ length: 2000 }, word) }, 500);
    const size = (await fsp.stat(file)).size;
    const counter: ReadCounter = { chunks: 0, bytes: 0 };
    for await (const _ of readParquetDocuments(file, { field: 'text', counter })) break;
    expect(counter.chunks).toBe(1);
    expect(counter.bytes).toBeLessThan(size / 2);
  });

  it('Parquet: a missing column is an error listing the available ones', async () => {
    const root = await folder();
    writeParquet(path.join(root, 'mt.parquet'), { sentence: ['a'], lang: ['mt'] });
    await expectCorpusError(openCorpus(root), 'mt.parquet', 'no column "text"', 'available columns: sentence, lang');
    await expectCorpusError(collect(readParquetDocuments(path.join(root, 'mt.parquet'), { field: 'body' })), 'no column "body"', 'sentence, lang');
  });
});

describe('streaming', () => {
  it('reads a large text file chunk by chunk, never the whole file at once', async () => {
    const root = await folder();
    const file = path.join(root, 'big.txt');
    const line = 'The quick brown fox jumps over the lazy dog, again and again and again.\n';
    const handle = await fsp.open(file, 'w');
    for (let i = 0; i < 40; i++) await handle.write(line.repeat(10_000)); // ~28 MB
    await handle.close();
    const size = (await fsp.stat(file)).size;

    // Stopping after the first documents reads only the first chunk.
    const early: ReadCounter = { chunks: 0, bytes: 0 };
    for await (const _ of readDocuments(file, 'txt', { field: 'text', counter: early })) break;
    expect(early.chunks).toBe(1);
    expect(early.bytes).toBeLessThanOrEqual(64 * 1024);

    // A full pass reads it in 64 KiB chunks with bounded memory growth.
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    let peak = before;
    const counter: ReadCounter = { chunks: 0, bytes: 0 };
    let docs = 0;
    for await (const _ of readDocuments(file, 'txt', { field: 'text', counter })) {
      if (++docs % 20_000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
    expect(docs).toBe(400_000);
    expect(counter.bytes).toBe(size);
    expect(counter.chunks).toBe(Math.ceil(size / (64 * 1024)));
    // Loose: the file is ~28 MB (~56 MB as JS strings); garbage may pile up between collections.
    expect(peak - before).toBeLessThan(size);
  });
});

describe('corpora', () => {
  it('a folder of <lang>.<ext> files and <lang>/ shard folders, languages sorted', async () => {
    const root = await folder({ 'sw.jsonl': jsonl([{ text: 'habari' }]), 'en.txt': 'hello\n', 'README.md': '# not a language', 'mt/b.txt': 'tnejn\n', 'mt/a.txt': 'wieħed\n' });
    const corpus = await openCorpus(root);
    expect(corpus.languages).toEqual(['en', 'mt', 'sw']);
    expect(corpus.source('mt').files).toEqual(['mt/a.txt', 'mt/b.txt']);
    expect(await collect(corpus.source('mt').documents())).toEqual(['wieħed', 'tnejn']);
  });

  it('a manifest: files relative to it, per-language field, in order', async () => {
    const root = await folder({ 'data/a.txt': 'one\ntwo\n', 'data/b.jsonl': jsonl([{ body: 'three' }]) });
    writeParquet(path.join(root, 'data', 'c.parquet'), { text: ['four'] });
    const manifest = { languages: { en: { files: ['data/a.txt', 'data/b.jsonl'], field: 'body' }, de: { files: ['data/c.parquet'] } } };
    await fsp.writeFile(path.join(root, 'corpus.json'), JSON.stringify(manifest));
    const corpus = await openCorpus(path.join(root, 'corpus.json'));
    expect(corpus.languages).toEqual(['en', 'de']);
    expect(await collect(corpus.source('en').documents())).toEqual(['one', 'two', 'three']);
    expect(await collect(corpus.source('de').documents())).toEqual(['four']);
    // The same manifest given as an object.
    const fromObject = await openCorpus(manifest, { baseDir: root });
    expect(await collect(fromObject.source('en').documents())).toEqual(['one', 'two', 'three']);
    expect(await fromObject.fingerprint()).toBe(await corpus.fingerprint());
  });

  it('errors: unknown language, missing and empty files, bad manifests, empty folders', async () => {
    const root = await folder({ 'en.txt': 'a\n', 'de.txt': 'b\n' });
    const corpus = await openCorpus(root);
    expect(() => corpus.source('fr')).toThrow(/no language "fr" .*languages: de, en/);

    await expectCorpusError(openCorpus(path.join(root, 'nope')), 'corpus not found');
    await writeFiles(root, { 'm.json': JSON.stringify({ languages: { en: { files: ['missing.txt'] } } }) });
    const missing = await expectCorpusError(openCorpus(path.join(root, 'm.json')), 'missing.txt', 'file not found');
    expect(missing.file).toBe(path.join(root, 'missing.txt'));
    await writeFiles(root, { 'bad.json': JSON.stringify({ languages: { en: { files: [] } } }) });
    await expectCorpusError(openCorpus(path.join(root, 'bad.json')), 'languages.en', 'at least one path');
    await writeFiles(root, { 'ext.json': JSON.stringify({ languages: { en: { files: ['a.csv'] } } }) });
    await expectCorpusError(openCorpus(path.join(root, 'ext.json')), '"a.csv" is not a .txt, .jsonl or .parquet file');

    await expectCorpusError(openCorpus(await folder({ 'en.txt': '' })), 'en.txt', 'the file is empty');
    const blank = await openCorpus(await folder({ 'en.txt': '\n  \n\n' }));
    await expectCorpusError(collect(blank.source('en').documents()), 'en.txt', 'has no documents');
    await expectCorpusError(openCorpus(await folder({ 'notes.md': 'x' })), 'no corpus files found');
    await expectCorpusError(openCorpus(await folder({ 'en.txt': 'a\n', 'en.jsonl': jsonl([{ text: 'b' }]) })), 'two sources for language "en"');
  });
});

describe('fingerprint', () => {
  it('is stable, and changes with content, names and reading options only', async () => {
    const files = { 'en.txt': 'hello\nworld\n', 'sw.jsonl': jsonl([{ text: 'habari', alt: 'jambo' }]) };
    const a = await openCorpus(await folder(files));
    const b = await openCorpus(await folder(files)); // another folder, same files
    const fa = await a.fingerprint();
    expect(fa).toMatch(/^[0-9a-f]{64}$/);
    expect(await a.fingerprint()).toBe(fa);
    expect(await b.fingerprint()).toBe(fa);
    expect(await (await openCorpus(a.origin)).fingerprint()).toBe(fa);

    // Same size, one byte different.
    const changed = await openCorpus(await folder({ ...files, 'en.txt': 'hello\nworle\n' }));
    expect(await changed.fingerprint()).not.toBe(fa);
    expect(await changed.source('sw').fingerprint()).toBe(await a.source('sw').fingerprint());
    expect(await changed.source('en').fingerprint()).not.toBe(await a.source('en').fingerprint());
    // The field changes what a JSONL file yields, not what a text file yields.
    const alt = await openCorpus(a.origin, { field: 'alt' });
    expect(await alt.source('sw').fingerprint()).not.toBe(await a.source('sw').fingerprint());
    expect(await alt.source('en').fingerprint()).toBe(await a.source('en').fingerprint());
    // Renaming a language's file changes it.
    const renamed = await openCorpus(await folder({ 'en.txt': files['en.txt'], 'sw2.jsonl': files['sw.jsonl'] }));
    expect(await renamed.fingerprint()).not.toBe(fa);
    // A subset of languages has its own fingerprint.
    expect(await changed.fingerprint(['sw'])).toBe(await a.fingerprint(['sw']));
    expect(await a.fingerprint(['en'])).not.toBe(fa);
  });
});
