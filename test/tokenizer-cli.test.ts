// `tokenizer train` through the CLI: what its --out may hold, every option checked before anything is written, and
// --text read as the other text readers read (invalid UTF-8 warned about, binary data refused). Tiny texts.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadTokenizer } from '../src/model/tokenizer.js';
import { runCli } from './helpers/cli.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

describe('tokenizer train', () => {
  let tmp: string;
  let text: string;
  beforeAll(async () => {
    tmp = await makeTempDir('langneurons-tokenizer-cli-');
    text = path.join(tmp, 'text.txt');
    await fsp.writeFile(text, 'hello world\nthe world is wide\nhello there\n');
  });
  afterAll(async () => removeDir(tmp));

  const tokenizerTrain = (out: string, ...args: string[]) => runCli('tokenizer', 'train', '--vocab', '270', '--out', out, ...args);

  /** Every file of a folder with its bytes, to see it untouched. */
  const snapshot = async (dir: string) => Object.fromEntries(await Promise.all((await fsp.readdir(dir)).sort().map(async (n) => [n, await fsp.readFile(path.join(dir, n), 'utf8')])));

  it('writes a new folder, and rewrites its own folder on a rerun', async () => {
    const out = path.join(tmp, 'own');
    expect((await tokenizerTrain(out, '--text', text)).code).toBe(0);
    expect((await tokenizerTrain(out, '--text', text, '--max-length', '64')).code).toBe(0);
    expect((await fsp.readdir(out)).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    expect(JSON.parse(await fsp.readFile(path.join(out, 'tokenizer_config.json'), 'utf8')).model_max_length).toBe(64);
    const tok = await loadTokenizer(out);
    expect(tok.decode(tok.encode('hello world'), { skipSpecialTokens: true })).toBe('hello world');
  });

  it.each([
    ['a model folder', { 'config.json': '{}\n', 'tokenizer.json': '{"model": {}}\n', 'tokenizer_config.json': '{"model_max_length": 8}\n' }, /holds files `tokenizer train` did not write \(config\.json\)/],
    ['tokenizer files it did not write', { 'tokenizer.json': '{"model": {}}\n', 'tokenizer_config.json': '{"model_max_length": 8}\n' }, /holds a tokenizer that `langneurons tokenizer train` did not write/],
    ['a tokenizer.json alone', { 'tokenizer.json': '{"model": {}}\n' }, /holds a tokenizer that `langneurons tokenizer train` did not write/],
    ['other files', { 'notes.txt': 'mine\n' }, /holds files `tokenizer train` did not write \(notes\.txt\)/],
  ])('refuses an --out holding %s and leaves it alone', async (what, files: Record<string, string>, message) => {
    const out = path.join(tmp, what.replaceAll(' ', '-'));
    await fsp.mkdir(out);
    for (const [n, body] of Object.entries(files)) await fsp.writeFile(path.join(out, n), body);
    const r = await tokenizerTrain(out, '--text', text);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(await snapshot(out)).toEqual(files);
  });

  it.each([['--max-length', 'abc'], ['--max-length', '0'], ['--min-frequency', 'x'], ['--vocab', '27o']])('refuses %s %s before writing anything', async (flag, value) => {
    const out = path.join(tmp, `bad${flag}-${value}`);
    const r = await tokenizerTrain(out, '--text', text, flag, value);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${flag} must be an integer`);
    expect(existsSync(out)).toBe(false);
  });

  it('warns about invalid UTF-8 in --text naming the file, and refuses binary data', async () => {
    const invalid = path.join(tmp, 'invalid.txt');
    await fsp.writeFile(invalid, Buffer.concat([Buffer.from('hello '), Buffer.from([0xff, 0xfe]), Buffer.from(' world\nhello there\n')]));
    const r = await tokenizerTrain(path.join(tmp, 'from-invalid'), '--text', invalid);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`warning: ${invalid}: 2 byte(s) of invalid UTF-8 replaced by U+FFFD`);

    const binary = path.join(tmp, 'data.bin');
    await fsp.writeFile(binary, Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7919) % 256)));
    const out = path.join(tmp, 'from-binary');
    const b = await tokenizerTrain(out, '--text', binary);
    expect(b.code).toBe(1);
    expect(b.stderr.trim()).toMatch(/^langneurons: error: .*data\.bin: is not UTF-8 text .*binary/);
    expect(existsSync(out)).toBe(false);
  });
});
