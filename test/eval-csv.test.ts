// CSV datasets (RFC 4180, as openai/MMMLU ships MMLU in 14 languages): the parser on hand-worked records, and
// the mmlu task on a small test/mmlu_<LANG>.csv in MMMLU's column layout.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { parseCsv, parseCsvRecords } from '../src/eval/csv.js';
import { readRows } from '../src/eval/data.js';
import { languagesIn, prepareTask } from '../src/eval/tasks.js';
import { makeTempDir } from './helpers/fixtures.js';

describe('CSV parser', () => {
  it('quoted fields hold commas, doubled quotes and line breaks; CRLF, a BOM and blank lines', () => {
    const text = '\ufeffa,b,c\r\n1,"x, y","say ""hi"""\r\n\r\n2,"two\nlines",\n"",3,"z"';
    expect(parseCsvRecords(text)).toEqual([
      ['a', 'b', 'c'],
      ['1', 'x, y', 'say "hi"'],
      ['2', 'two\nlines', ''],
      ['', '3', 'z'],
    ]);
  });

  it('rows keyed by the header; an empty header cell (pandas index) is named by its position', () => {
    expect(parseCsv(',Question,Answer\n0,What?,B\n1,"Why, then?",C\n')).toEqual([
      { _0: '0', Question: 'What?', Answer: 'B' },
      { _0: '1', Question: 'Why, then?', Answer: 'C' },
    ]);
  });

  it('malformed CSV: clear errors', () => {
    expect(() => parseCsvRecords('a,"b\n1,2')).toThrow(/line 2: a quoted field is not closed/);
    expect(() => parseCsvRecords('a,"b"x\n')).toThrow(/line 1: text after a closing quote/);
    expect(() => parseCsvRecords('a,b"c\n')).toThrow(/line 1: a quote inside an unquoted field/);
    expect(() => parseCsv('a,b\n1,2,3\n')).toThrow(/record 2 has 3 fields, the header has 2/);
    expect(() => parseCsv('a,a\n1,2\n')).toThrow(/names column "a" twice/);
  });
});

describe('mmlu on openai/MMMLU CSV files', () => {
  it('test/mmlu_DE_DE.csv: Question, A..D, Answer letters; --langs de_de', async () => {
    const dir = await makeTempDir('langneurons-mmmlu-');
    await fsp.mkdir(path.join(dir, 'test'));
    await fsp.writeFile(path.join(dir, 'test', 'mmlu_DE_DE.csv'),
      ',Question,A,B,C,D,Answer,Subject\n' +
      '0,Was ist 2 + 3?,4,5,6,7,B,elementary_mathematics\n' +
      '1,"Welche Farbe hat der Himmel, meistens?",Grün,Blau,"Rot, dunkel",Gelb,B,misc\n');
    expect(await languagesIn('mmlu', dir)).toContain('mmlu_DE_DE');
    const plan = await prepareTask('mmlu', { dir, lang: 'de_de' });
    expect(plan.files).toEqual([path.join(dir, 'test', 'mmlu_DE_DE.csv')]);
    expect(plan.items).toHaveLength(2);
    const second = plan.items[1]!;
    expect(second.kind).toBe('mc');
    if (second.kind !== 'mc') return;
    expect(second.gold).toBe(1);
    expect(second.pairs[0]).toEqual({
      context: 'Welche Farbe hat der Himmel, meistens?\nA) Grün\nB) Blau\nC) Rot, dunkel\nD) Gelb\nAnswer:',
      continuation: ' A',
    });
  });

  it('a CSV with neither layout names the expected columns; an empty CSV is refused', async () => {
    const dir = await makeTempDir('langneurons-mmmlu-bad-');
    await fsp.mkdir(path.join(dir, 'test'));
    await fsp.writeFile(path.join(dir, 'test', 'mmlu_SW_KE.csv'), 'Question,A,B,C,Answer\nq,1,2,3,A\n');
    await expect(prepareTask('mmlu', { dir, lang: 'sw_ke' }))
      .rejects.toThrow(/mmlu_SW_KE\.csv: not a MMLU .*missing column\(s\) D; expected Question, A, B, C, D, Answer/);
    const empty = path.join(dir, 'empty.csv');
    await fsp.writeFile(empty, 'Question,A\n');
    await expect(readRows(empty)).rejects.toThrow(/empty\.csv: the file has no rows/);
  });
});
