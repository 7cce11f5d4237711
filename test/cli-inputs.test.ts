// Text inputs of the commands: a UTF-8 byte order mark is dropped by every reader (not scored or prompted as three
// bytes of text, not a JSON syntax error), and `generate --prompt-file` reads CRLF files, skips blank and
// whitespace-only lines while recording each prompt's line, refuses a file without prompts and refuses --prompt-ids
// beside text prompts.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openCorpus } from '../src/corpus/sources.js';
import { loadModel } from '../src/engine/model.js';
import { readRows } from '../src/eval/data.js';
import { readTextFile } from '../src/io/text.js';
import { loadSftExamples } from '../src/train/sft.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

const BOM = '\ufeff';
const MODEL = fixturePath('stories260k');

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('langneurons-cli-inputs-'); });
afterAll(async () => { await removeDir(tmp); });

async function write(name: string, text: string): Promise<string> {
  const file = path.join(tmp, name);
  await fsp.writeFile(file, text);
  return file;
}

interface GenLine { index?: number; line?: number; promptTokens: number; tokens: number[] }

/** `generate … --json`'s generations (exit code 0 expected). */
async function generate(...args: string[]): Promise<GenLine[]> {
  const r = await runCli('generate', MODEL, '--max-new-tokens', '2', '--json', ...args);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { generations: GenLine[] }).generations;
}

describe('a leading byte order mark is dropped by every text reader', () => {
  it('readTextFile (training text, eval data)', async () => {
    expect(await readTextFile(await write('bom.txt', `${BOM}hello\n`), 'test')).toBe('hello\n');
    expect(await readTextFile(await write('inner.txt', `a${BOM}b`), 'test')).toBe(`a${BOM}b`); // only a leading one
  });

  it('eval data: a JSONL file and a text file (eval --task ppl) starting with one', async () => {
    expect(await readRows(await write('rows.jsonl', `${BOM}{"text":"a"}\r\n{"text":"b"}\n`))).toEqual([{ text: 'a' }, { text: 'b' }]);
    expect((await readRows(await write('ppl.txt', `${BOM}Once upon a time\n`)))[0]).toEqual({ text: 'Once upon a time' });
  });

  it('score --text-file scores the same tokens with and without one', async () => {
    const text = 'Once upon a time there was a cat.';
    const score = async (file: string) => {
      const r = await runCli('score', MODEL, '--text-file', file, '--json');
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { tokens: number; totalNll: number };
    };
    const plain = await score(await write('plain.txt', text));
    expect(await score(await write('with-bom.txt', BOM + text))).toMatchObject({ tokens: plain.tokens, totalNll: plain.totalNll });
    // a file's final line break ends its line (it was scored as a token): the same as eval --task ppl on that line
    for (const eol of ['\n', '\r\n']) expect(await score(await write(`eol-${eol.length}.txt`, text + eol))).toMatchObject({ tokens: plain.tokens, totalNll: plain.totalNll });
    await fsp.mkdir(path.join(tmp, 'ppl'), { recursive: true });
    const dir = path.dirname(await write('ppl/en.txt', text + '\n'));
    const e = await runCli('eval', MODEL, '--task', 'ppl', '--text', dir, '--langs', 'en', '--out', path.join(path.dirname(dir), 'ppl-res'), '--json');
    expect(e.code, e.stderr).toBe(0);
    const res = JSON.parse(e.stdout).results[0];
    expect(res.metrics.mean_nll).toBeCloseTo(plain.totalNll / plain.tokens, 6);
  });

  it('generate --prompt-file prompts the same tokens with and without one', async () => {
    const [plain] = await generate('--prompt', 'Once upon a time');
    const [fromFile] = await generate('--prompt-file', await write('prompt-bom.txt', `${BOM}Once upon a time\n`));
    expect(fromFile!.promptTokens).toBe(plain!.promptTokens);
    expect(fromFile!.tokens).toEqual(plain!.tokens);
  });
});

describe('a leading byte order mark in the JSON inputs', () => {
  it('prompt/completion records are read as records, not trained on as plain text; a corpus manifest and a train config parse', async () => {
    const model = await loadModel(MODEL, { threads: 1, device: 'cpu' });
    const records = `{"prompt": "Once upon", "completion": " a time"}\n{"prompt": "The cat", "completion": " sat"}\n`;
    const tok = model.requireTokenizer();
    const plain = await loadSftExamples(await write('records.jsonl', records), tok, MODEL, 64, 'training');
    const bom = await loadSftExamples(await write('records-bom.jsonl', BOM + records), tok, MODEL, 64, 'training');
    expect(plain?.format).toBe('prompt-completion');
    expect(bom?.examples).toEqual(plain?.examples);
    await model.dispose();
    await write('corpus-en.txt', 'Once upon a time there was a cat.\n');
    const manifest = await write('corpus.json', `${BOM}{"languages": {"en": {"files": ["corpus-en.txt"]}}}`);
    expect((await openCorpus(manifest)).languages).toEqual(['en']);
    const config = await write('train-config.json', `${BOM}{"steps": 1}`);
    const r = await runCli('train', '--config', config, '--out', path.join(tmp, 'never'), '--steps', 'x');
    expect(r.stderr).toMatch(/--steps must be a number, got 'x'/);  // the config read, the options checked next
  }, 60_000);
});

describe('generate --prompt-file', () => {
  it('reads CRLF lines without their \\r', async () => {
    const direct = await generate('--prompt', 'Once', '--prompt', 'The dog');
    const crlf = await generate('--prompt-file', await write('crlf.txt', 'Once\r\nThe dog\r\n'));
    expect(crlf.map((g) => [g.promptTokens, g.tokens])).toEqual(direct.map((g) => [g.promptTokens, g.tokens]));
  });

  it('skips blank and whitespace-only lines and records each prompt\'s line (also in generations.jsonl)', async () => {
    const file = await write('gaps.txt', '\nOnce\n   \n\t\nThe dog\n\n');
    expect((await generate('--prompt-file', file)).map((g) => g.line)).toEqual([2, 5]);
    const out = path.join(tmp, 'gens');
    const r = await runCli('generate', MODEL, '--max-new-tokens', '2', '--prompt', 'A', '--prompt-file', file, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    const lines = (await fsp.readFile(path.join(out, 'generations.jsonl'), 'utf8')).trim().split('\n').slice(1).map((l) => JSON.parse(l) as GenLine);
    expect(lines.map((g) => [g.index, g.line])).toEqual([[0, undefined], [1, 2], [2, 5]]); // --prompt A has no line
  });

  it('refuses a file with no prompts (empty, or only blank lines) instead of generating from BOS', async () => {
    for (const [name, text] of [['empty.txt', ''], ['blank.txt', '\n  \r\n\t\n'], ['bom-only.txt', BOM]]) {
      const file = await write(name, text);
      const r = await runCli('generate', MODEL, '--prompt-file', file);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`langneurons: error: ${file}: the prompt file has no prompts (every line is empty)`);
      expect(r.stdout).toBe('');
    }
  });

  it('refuses --prompt-ids beside --prompt or --prompt-file (it silently dropped them)', async () => {
    let r = await runCli('generate', MODEL, '--prompt', 'Once', '--prompt-ids', '1,2');
    expect([r.code, r.stderr.trim()]).toEqual([1, 'langneurons: error: --prompt-ids is a prompt of its own: give it alone, not with --prompt']);
    r = await runCli('generate', MODEL, '--prompt-file', await write('one.txt', 'Once\n'), '--prompt-ids', '1,2');
    expect([r.code, r.stderr.trim()]).toEqual([1, 'langneurons: error: --prompt-ids is a prompt of its own: give it alone, not with --prompt-file']);
    expect((await generate('--prompt-ids', '1,403'))).toHaveLength(1);
  });
});
