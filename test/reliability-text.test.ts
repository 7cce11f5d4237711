// Reliability of text inputs (issue 19, item 10): invalid UTF-8 in corpus, training and eval files is counted and
// reported once per file; a file that is mostly binary is refused. The byte counts are checked against a
// hand-worked count and against Node's own decoder (one U+FFFD per maximal invalid subpart). Parquet string columns
// (decoded by hyparquet itself) get the same checks.
import { mkdtempSync, promises as fsp, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { parquetWriteFile } from 'hyparquet-writer';

import { readLines } from '../src/corpus/lines.js';
import { readParquetDocuments } from '../src/corpus/readers.js';
import { readRows } from '../src/eval/data.js';
import { readTextFile, setWarningSink, Utf8Check } from '../src/io/text.js';
import { runCli } from './helpers/cli.js';
import { fixturePath } from './helpers/fixtures.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-rel-text-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });
let warnings: string[] = [];
afterEach(() => { warnings = []; setWarningSink((m) => warnings.push(m)); });
setWarningSink((m) => warnings.push(m));

const count = (bytes: number[], split?: number) => {
  const c = new Utf8Check();
  const b = Uint8Array.from(bytes);
  if (split === undefined) c.update(b); else { c.update(b.subarray(0, split)); c.update(b.subarray(split)); }
  c.end();
  return c.invalid;
};

describe('UTF-8 checks', () => {
  it('counts invalid bytes like a decoder replaces them, across chunk boundaries', () => {
    expect(count([0x61, 0xc3, 0xa9, 0x62])).toBe(0); // "aéb"
    expect(count([0xe2, 0x82, 0xac], 1)).toBe(0); // "€" split across two reads
    expect(count([0xef, 0xbf, 0xbd])).toBe(0); // a real U+FFFD is text
    expect(count([0x61, 0xff, 0x62])).toBe(1); // a stray 0xFF
    expect(count([0xe2, 0x82, 0x61])).toBe(2); // a truncated 3-byte sequence, then "a"
    expect(count([0xc0, 0xaf])).toBe(2); // overlong: both bytes invalid
    expect(count([0xed, 0xa0, 0x80])).toBe(3); // a UTF-16 surrogate
    expect(count([0xf0, 0x9f, 0x98])).toBe(3); // cut at the end of the file
    // Node's decoder makes one U+FFFD per invalid byte in all of these cases.
    for (const b of [[0x61, 0xff, 0x62], [0xc0, 0xaf], [0xed, 0xa0, 0x80]])
      expect([...Buffer.from(b).toString('utf8')].filter((ch) => ch === '\ufffd').length).toBe(count(b));
  });

  it('a corpus file with invalid bytes is read with one warning naming it and the count; a binary file is refused', async () => {
    const f = path.join(tmp, 'mt.txt');
    writeFileSync(f, Buffer.concat([Buffer.from('Il-bnedmin kollha jitwieldu\n'), Buffer.from([0xff, 0xfe]), Buffer.from(' ħielsa\n')]));
    const lines: string[] = [];
    for await (const l of readLines(f, { chunkBytes: 7 })) lines.push(l.text);
    expect(lines).toHaveLength(2);
    expect(warnings).toEqual([`${f}: 2 byte(s) of invalid UTF-8 replaced by U+FFFD`]);
    expect(await readTextFile(f, 'training')).toContain('ħielsa');

    const bin = path.join(tmp, 'model.bin.txt');
    writeFileSync(bin, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) & 255)));
    await expect(readTextFile(bin, 'training')).rejects.toThrow(/model\.bin\.txt: is not UTF-8 text \(\d+ of the first 4096 bytes/);
    await expect((async () => { for await (const _ of readLines(bin)) void _; })()).rejects.toThrow(/is not UTF-8 text/);
    const clean = path.join(tmp, 'clean.txt');
    writeFileSync(clean, 'Alle Menschen sind frei.\n');
    warnings = [];
    await readTextFile(clean, 'training');
    expect(warnings).toEqual([]);
  });
});

/** A Parquet file whose STRING column values are raw bytes (hyparquet-writer stores a Uint8Array as it is). */
function writeRawParquet(file: string, columns: Record<string, (Uint8Array | string | null)[]>, rowGroupSize = 1000): void {
  parquetWriteFile({ filename: file, columnData: Object.entries(columns).map(([name, data]) => ({ name, data, type: 'STRING' as const })), rowGroupSize });
}
const bytes = (...parts: (string | number[])[]) => Uint8Array.from(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))));
const replacements = (docs: string[]) => docs.join('').split('').filter((ch) => ch === '\ufffd').length;

describe('Parquet string columns', () => {
  // 1 (a stray 0xFF) + 2 (0xE2 0x82 cut by "a") + 1 (0xC3 at the very end of a value) = 4 bytes.
  const dirty = [bytes('Il-bnedmin kollha ', [0xff], 'jitwieldu'), null, bytes('ħielsa ', [0xe2, 0x82], 'a'), 'u ugwali', bytes('fid-dinjità', [0xc3])];

  it('a corpus column with invalid UTF-8 is read with one warning naming the file, the column and the byte count', async () => {
    const f = path.join(tmp, 'mt.parquet');
    writeRawParquet(f, { text: dirty, id: ['1', '2', '3', '4', '5'] }, 2);
    warnings = [];
    const docs: string[] = [];
    for await (const d of readParquetDocuments(f, { field: 'text' })) docs.push(d);
    expect(docs).toHaveLength(4);
    expect(docs[0]).toBe('Il-bnedmin kollha \ufffdjitwieldu');
    // The decoder's U+FFFD: one per maximal invalid subpart, so the cut 0xE2 0x82 is one character for two bytes.
    expect(replacements(docs)).toBe(3);
    expect(warnings).toEqual([`${f}: column "text": 4 byte(s) of invalid UTF-8 replaced by U+FFFD`]);

    // A reader that stops early still reports what it read (the first row group: 1 byte).
    warnings = [];
    setWarningSink((m) => warnings.push(m)); // forget what was said
    for await (const d of readParquetDocuments(f, { field: 'text' })) { void d; break; }
    expect(warnings).toEqual([`${f}: column "text": 1 byte(s) of invalid UTF-8 replaced by U+FFFD`]);

    // A clean file says nothing; the other, clean column of the dirty file neither.
    const clean = path.join(tmp, 'clean.parquet');
    writeRawParquet(clean, { text: ['Alle Menschen sind frei.', 'ħielsa'] });
    warnings = [];
    for await (const d of readParquetDocuments(clean, { field: 'text' })) void d;
    for await (const d of readParquetDocuments(f, { field: 'id' })) void d;
    expect(warnings).toEqual([]);
  });

  it('a column that is mostly not text is refused at its first row group', async () => {
    const f = path.join(tmp, 'images.parquet');
    const blob = (k: number) => Uint8Array.from({ length: 1024 }, (_, i) => (i * 131 + k * 7) & 255);
    writeRawParquet(f, { text: [blob(0), blob(1), blob(2), blob(3)], caption: ['a', 'b', 'c', 'd'] }, 2);
    await expect((async () => { for await (const d of readParquetDocuments(f, { field: 'text' })) void d; })())
      .rejects.toThrow(/images\.parquet: column "text": not UTF-8 text \(\d+ of the first 2048 bytes of its strings are NUL or invalid UTF-8\)/);
  });

  it('eval data and CLI runs on Parquet files get the same checks (one line, exit code 1 for binary)', async () => {
    const f = path.join(tmp, 'eval-mt.parquet');
    writeRawParquet(f, { text: dirty.filter((x) => x !== null) });
    warnings = [];
    const rows = await readRows(f);
    expect(rows).toHaveLength(4);
    expect(warnings).toEqual([`${f}: string columns: 4 byte(s) of invalid UTF-8 replaced by U+FFFD`]);
    const bin = path.join(tmp, 'eval-bin.parquet');
    writeRawParquet(bin, { text: [Uint8Array.from({ length: 600 }, (_, i) => (i * 131) & 255)] });
    await expect(readRows(bin)).rejects.toThrow(/eval-bin\.parquet: string columns: not UTF-8 text/);

    // profile with a Parquet corpus folder: the warning on stderr; a binary column: one line, exit code 1.
    const corpus = path.join(tmp, 'corpus');
    await fsp.mkdir(corpus);
    writeRawParquet(path.join(corpus, 'mt.parquet'), { text: dirty });
    writeRawParquet(path.join(corpus, 'xx.parquet'), { text: [Uint8Array.from({ length: 2048 }, (_, i) => (i * 131) & 255)] });
    setWarningSink((m) => process.stderr.write(`warning: ${m}\n`));
    const model = fixturePath('stories260k');
    const ok = await runCli('profile', model, '--corpus', corpus, '--langs', 'mt', '--max-len', '32', '--threads', '1', '--out', path.join(tmp, 'stats-mt'));
    expect(ok.code).toBe(0);
    expect(ok.stderr).toContain(`warning: ${path.join(corpus, 'mt.parquet')}: column "text": 4 byte(s) of invalid UTF-8 replaced by U+FFFD`);
    const refused = await runCli('profile', model, '--corpus', corpus, '--langs', 'xx', '--max-len', '32', '--threads', '1', '--out', path.join(tmp, 'stats-xx'));
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/xx\.parquet: column "text": not UTF-8 text/);
  });
});
