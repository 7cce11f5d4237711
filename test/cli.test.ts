// The command line as a user runs it: exit codes, one-line errors naming the file, parseable --json output.
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { copyFixture, fixturePath, removeDir, repoRoot } from './helpers/fixtures.js';
import { loadReference } from './helpers/reference.js';

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const temps: string[] = [];
afterAll(async () => { for (const d of temps) await removeDir(d); });

describe('langneurons CLI', () => {
  it('info --json reports the architecture and memory of a sharded BF16 checkpoint', () => {
    const r = cli('info', fixturePath('tiny-llama3'), '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.modelType).toBe('llama');
    expect(j.files.length).toBe(2);
    expect(j.dtypes).toEqual({ BF16: 30 });
    // 3 layers × (4 attention + 3 MLP matrices + 2 norms) + embed + head + final norm = 30 tensors
    const c = j.config;
    const perLayer = 2 * c.hiddenSize * c.numHeads * c.headDim + 2 * c.hiddenSize * c.numKvHeads * c.headDim + 3 * c.hiddenSize * c.intermediateSize + 2 * c.hiddenSize;
    expect(j.parameters).toBe(c.numLayers * perLayer + 2 * c.vocabSize * c.hiddenSize + c.hiddenSize);
    expect(j.memory.weightBytes).toBe(2 * j.parameters);
  });

  it('generate --prompt-ids reproduces the stories260k greedy reference', async () => {
    const ref = await loadReference('stories260k');
    const r = cli('generate', fixturePath('stories260k'), '--prompt-ids', '1', '--max-new-tokens', '64', '--ignore-eos', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).generations[0].tokens).toEqual(ref.json.greedy_from_bos);
  });

  it('generate --prompt-file decodes --batch prompts at a time: greedy, the same generations in any batching', async () => {
    const dir = await fsp.mkdtemp(path.join(repoRoot, 'build', 'cli-gen-'));
    temps.push(dir);
    const f = path.join(dir, 'prompts.txt');
    await fsp.writeFile(f, ['Once upon a time', 'The little dog', 'She said', 'One day, a girl', 'Tom and his mom'].join('\n') + '\n');
    const run = (...extra: string[]) => {
      const r = cli('generate', fixturePath('stories260k'), '--prompt-file', f, '--max-new-tokens', '12', '--ignore-eos', ...extra);
      expect(r.code, r.stderr).toBe(0);
      return r;
    };
    const gens = (...extra: string[]) => JSON.parse(run('--json', ...extra).stdout).generations as { tokens: number[]; text: string }[];
    const whole = gens('--batch', '5');
    expect(whole).toHaveLength(5);
    expect(gens('--batch', '2')).toEqual(whole);
    expect(gens('--batch', '1')).toEqual(whole);
    // Sampled: reproducible, and each prompt draws from its own stream.
    const sampling = ['--temperature', '1', '--top-k', '40', '--seed', '3', '--batch', '2'];
    const sampled = gens(...sampling);
    expect(gens(...sampling)).toEqual(sampled);
    expect(new Set(sampled.map((g) => g.tokens.join())).size).toBe(5);
    // Without --json: printed in prompt order as the generations end.
    expect(run('--batch', '2').stdout).toBe(whole.map((g, i) => `[${i}] ${g.text}\n`).join(''));
  });

  it('generate --out writes the generations batch by batch and resumes a run stopped part-way to identical results', async () => {
    const dir = await fsp.mkdtemp(path.join(repoRoot, 'build', 'cli-gen-out-'));
    temps.push(dir);
    const f = path.join(dir, 'prompts.txt');
    await fsp.writeFile(f, ['Once upon a time', 'The little dog', 'She said', 'One day, a girl', 'Tom and his mom'].join('\n') + '\n');
    const out = path.join(dir, 'out');
    const args = ['generate', fixturePath('stories260k'), '--prompt-file', f, '--max-new-tokens', '10', '--repetition-penalty', '1.2', '--batch', '2', '--out', out];
    const first = cli(...args, '--json');
    expect(first.code, first.stderr).toBe(0);
    const whole = JSON.parse(first.stdout);
    const file = path.join(out, 'generations.jsonl');
    const written = await fsp.readFile(file, 'utf8');
    const lines = written.trimEnd().split('\n');
    expect(lines).toHaveLength(6); // the header and one line per prompt
    expect(lines.slice(1).map((l) => JSON.parse(l))).toEqual(whole.generations.map((g: object, index: number) => ({ index, ...g })));
    expect(JSON.parse(await fsp.readFile(path.join(out, 'run.json'), 'utf8'))).toMatchObject({ prompts: 5, resumed: 0 });

    // Stopped after two prompts, in the middle of writing the third line: the rerun resumes from prompt 2.
    await fsp.writeFile(file, lines.slice(0, 3).join('\n') + '\n' + lines[3]!.slice(0, 20));
    const again = cli(...args, '--json');
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ resumed: 2, generations: whole.generations });
    expect(await fsp.readFile(file, 'utf8')).toBe(written);

    // The same run on another CPU kernel family (products that differ in the last bits) makes every generation again
    // rather than mix two engines' outputs in one run, and says so.
    await fsp.writeFile(file, lines.slice(0, 3).join('\n') + '\n');
    const plain = spawnSync(process.execPath, [bin, ...args, '--json'], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, LANGNEURONS_KERNEL: 'plain' } });
    expect(plain.status, plain.stderr).toBe(0);
    expect(JSON.parse(plain.stdout)).toMatchObject({ resumed: 0 });
    const kernel = JSON.parse(lines[0]!).engine as string;
    if (kernel !== 'plain') expect(plain.stderr).toMatch(new RegExp(`generations\\.jsonl: 2 generation\\(s\\) made on ${kernel} are made again on plain`));
    expect(JSON.parse((await fsp.readFile(file, 'utf8')).split('\n')[0]!).engine).toBe('plain');
    await fsp.writeFile(file, written);

    // Another penalty is another run: its generations do not go into this file, which stays as it was.
    const other = cli(...args.slice(0, -2), '--repetition-penalty', '1.3', '--out', out);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/generations\.jsonl: not this generate run's/);
    expect(await fsp.readFile(file, 'utf8')).toBe(written);
  });

  it('score --json gives the mean NLL of a text file', async () => {
    const dir = await fsp.mkdtemp(path.join(repoRoot, 'build', 'cli-test-'));
    temps.push(dir);
    const f = path.join(dir, 'text.txt');
    await fsp.writeFile(f, 'Il-bniedem kollha jitwieldu ħielsa u ugwali fid-dinjità u d-drittijiet.');
    const r = cli('score', fixturePath('tiny-mistral'), '--text-file', f, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.tokens).toBe(Buffer.byteLength(await fsp.readFile(f, 'utf8'))); // byte tokens + BOS, minus the first
    expect(j.perplexity).toBeCloseTo(Math.exp(j.meanNll), 6);
  });

  it('corpus udhr writes one article per line for the held-out split', async () => {
    const dir = await fsp.mkdtemp(path.join(repoRoot, 'build', 'cli-udhr-'));
    temps.push(dir);
    const r = cli('corpus', 'udhr', '--langs', 'mt,el', '--split', 'heldout', '--out', dir, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).files.map((f: string) => path.basename(f))).toEqual(['mt.txt', 'el.txt']);
    const lines = (await fsp.readFile(path.join(dir, 'el.txt'), 'utf8')).trim().split('\n');
    expect(lines.length).toBe(6); // articles 25-30
    expect(lines[0]).toMatch(/[α-ω]/); // Greek script
  });

  it('demo --engine-check runs the engine on the stories260k fixture and checks it against llama2.c', () => {
    const r = cli('demo', '--engine-check', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).ok).toBe(true);
  });

  it.each([
    [['score', fixturePath('tiny-mistral'), '--text-file', '/nonexistent/file.txt'], /\/nonexistent\/file\.txt/],
    [['info', '/nonexistent-model'], /nonexistent-model.*config\.json/],
    [['generate', fixturePath('stories260k'), '--max-new-tokens', 'many'], /--max-new-tokens must be an integer/],
    [['generate', fixturePath('stories260k'), '--temperature', '-1'], /--temperature must be/],
    [['generate', fixturePath('stories260k'), '--prompt-ids', '1,99999'], /outside the vocabulary/],
    [['score', fixturePath('stories260k')], /exactly one of/],
    [['profile', fixturePath('stories260k'), '--corpus', 'udhr:train', '--langs', 'en', '--sites', 'act,h,act', '--out', '/tmp/ln-never-written'], /--sites: 'act' is listed twice/],
    // usage errors found by the option parser read the same way
    [['finetune', '--stpes', '3'], /^langneurons: error: unknown option '--stpes' \(Did you mean --steps\?\)\n$/],
    [['sweep', 'report', 'x.yaml'], /^langneurons: error: required option '--out <dir>' not specified\n$/],
    [['profiel'], /^langneurons: error: unknown command 'profiel' \(Did you mean profile\?\)\n$/],
  ])('bad input %j: one clear line, exit 1', (args, pattern) => {
    const r = cli(...args);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('a truncated or corrupted checkpoint is refused with the file named, never a crash', async () => {
    const dir = await copyFixture('tiny-qwen2');
    temps.push(dir);
    const file = path.join(dir, 'model.safetensors');
    const bytes = await fsp.readFile(file);
    await fsp.writeFile(file, bytes.subarray(0, bytes.length - 1000));
    let r = cli('generate', dir, '--prompt', 'a');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model\.safetensors/);
    const h = Buffer.from(bytes);
    h.writeBigUInt64LE(BigInt(bytes.length * 2), 0); // header length past the end of the file
    await fsp.writeFile(file, h);
    r = cli('score', dir, '--text', 'abc');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model\.safetensors.*header/);
  });
});
