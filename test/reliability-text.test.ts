// Reliability of text inputs (issue 19, item 10): invalid UTF-8 in corpus, training and eval files is counted and
// reported once per file; a file that is mostly binary is refused. The byte counts are checked against a
// hand-worked count and against Node's own decoder (one U+FFFD per maximal invalid subpart).
import { mkdtempSync, promises as fsp, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { readLines } from '../src/corpus/lines.js';
import { readTextFile, setWarningSink, Utf8Check } from '../src/io/text.js';

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
