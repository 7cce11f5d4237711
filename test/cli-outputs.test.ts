// What mask and statistics commands write, and their messages: `masks import/export` and `stats import/export`
// refuse their own input as --out and an existing file that is not of their kind (a model's weights, a mask where
// counts go); `identify --out` writes a mask only over a mask; explicit LAPE options win over --preset;
// `masks compare` of masks of two sites says so; act-prob-Xp without above-counts names the command's options.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MASK_FORMAT, writeMaskJson, type NeuronMask } from '../src/identify/masks.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const MODEL = fixturePath('stories260k');
const TANG = path.join(repoRoot, 'test/fixtures-tang');

let tmp: string, masksFile: string, statsDir: string;

async function ok(...args: string[]): Promise<void> {
  const r = await runCli(...args);
  expect(r.code, r.stderr).toBe(0);
}

/** Runs a command expected to fail; returns its one error line. */
async function refused(...args: string[]): Promise<string> {
  const r = await runCli(...args);
  expect(r.code, r.stdout).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

const bytes = (f: string) => fsp.readFile(f);

beforeAll(async () => {
  tmp = await makeTempDir('langneurons-cli-outputs-');
  masksFile = path.join(tmp, 'tang.json');
  await ok('masks', 'import', path.join(TANG, 'mask.pt'), '--langs', 'en,sw', '--model', MODEL, '--out', masksFile);
  statsDir = path.join(tmp, 'stats');
  for (const lang of ['en', 'sw']) // the same counts as two languages: enough for LAPE's parameters
    await ok('stats', 'import', path.join(TANG, 'counts.pt'), '--lang', lang, '--model', MODEL, '--max-len', '64', '--out', path.join(statsDir, `${lang}.safetensors`));
});
afterAll(async () => { await removeDir(tmp); });

describe('masks / stats import and export never write over their input or a file of another kind', () => {
  it('refuses --out naming the input', async () => {
    const mask = path.join(tmp, 'mm.json');
    await fsp.copyFile(masksFile, mask);
    const before = await bytes(mask);
    expect(await refused('masks', 'export', mask, '--format', 'tang', '--out', mask)).toMatch(/--out .*mm\.json is also an input/);
    expect(await bytes(mask)).toEqual(before);
    const st = path.join(tmp, 'se.safetensors');
    await fsp.copyFile(path.join(statsDir, 'en.safetensors'), st);
    expect(await refused('stats', 'export', st, '--format', 'tang', '--out', st)).toMatch(/is also an input/);
    expect(await bytes(st)).toEqual(await bytes(path.join(statsDir, 'en.safetensors')));
    const pt = path.join(tmp, 'in.pt');
    await fsp.copyFile(path.join(TANG, 'mask.pt'), pt);
    expect(await refused('masks', 'import', pt, '--langs', 'en,sw', '--model', MODEL, '--out', pt)).toMatch(/is also an input/);
    expect(await bytes(pt)).toEqual(await bytes(path.join(TANG, 'mask.pt')));
  });

  it('refuses an existing file that is not of the kind written (a model, a mask where counts go, a user\'s file)', async () => {
    const victim = path.join(tmp, 'victim');
    await fsp.mkdir(victim);
    const weights = path.join(victim, 'model.safetensors');
    await fsp.copyFile(fixturePath('stories260k', 'model.safetensors'), weights);
    const notes = path.join(victim, 'notes.json');
    await fsp.writeFile(notes, '{"mine": true}\n');
    const weightsBefore = await bytes(weights);
    const counts = path.join(tmp, 'en.pt');
    await ok('stats', 'export', path.join(statsDir, 'en.safetensors'), '--format', 'tang', '--out', counts);
    const tangMask = path.join(tmp, 'mask.pt');
    await ok('masks', 'export', masksFile, '--format', 'tang', '--out', tangMask);
    for (const [args, what] of [
      [['masks', 'export', masksFile, '--format', 'tang', '--out', weights], 'a Tang-format mask'],
      [['masks', 'export', masksFile, '--format', 'tang', '--out', counts], 'a Tang-format mask'],
      [['stats', 'export', path.join(statsDir, 'en.safetensors'), '--format', 'tang', '--out', weights], 'Tang-format counts'],
      [['stats', 'export', path.join(statsDir, 'en.safetensors'), '--format', 'tang', '--out', tangMask], 'Tang-format counts'],
      [['masks', 'import', path.join(TANG, 'mask.pt'), '--langs', 'en,sw', '--model', MODEL, '--out', weights], 'a langneurons mask'],
      [['masks', 'import', path.join(TANG, 'mask.pt'), '--langs', 'en,sw', '--model', MODEL, '--out', notes], 'a langneurons mask'],
      [['stats', 'import', path.join(TANG, 'counts.pt'), '--lang', 'en', '--model', MODEL, '--out', weights], 'a langneurons statistics file'],
      [['stats', 'import', path.join(TANG, 'counts.pt'), '--lang', 'en', '--model', MODEL, '--out', masksFile], 'a langneurons statistics file'],
    ] as [string[], string][]) {
      const out = args[args.length - 1]!;
      expect(await refused(...args)).toBe(`langneurons: error: --out ${out}: exists and is not ${what}; it is written only over one: choose another --out`);
    }
    expect(await bytes(weights)).toEqual(weightsBefore);
    expect(await fsp.readFile(notes, 'utf8')).toBe('{"mine": true}\n');
  });

  it('writes again over its own kind of file', async () => {
    const tangMask = path.join(tmp, 'again.pt');
    await ok('masks', 'export', masksFile, '--format', 'tang', '--out', tangMask);
    // --format defaults to its only value (it was a required option that --help did not say was required)
    await fsp.mkdir(path.join(tmp, 'default-format'), { recursive: true });
    const tangMask2 = path.join(tmp, 'default-format', 'again.pt');  // the archive inside is named after the file
    await ok('masks', 'export', masksFile, '--out', tangMask2);
    expect(await bytes(tangMask2)).toEqual(await bytes(tangMask));
    await ok('masks', 'export', masksFile, '--format', 'tang', '--langs', 'sw,en', '--out', tangMask);
    const counts = path.join(tmp, 'again-counts.pt');
    await ok('stats', 'export', path.join(statsDir, 'en.safetensors'), '--format', 'tang', '--out', counts);
    await ok('stats', 'export', path.join(statsDir, 'sw.safetensors'), '--format', 'tang', '--out', counts);
    const st = path.join(tmp, 'again.safetensors');
    await ok('stats', 'import', path.join(TANG, 'counts.pt'), '--lang', 'en', '--model', MODEL, '--out', st);
    await ok('stats', 'import', path.join(TANG, 'counts.pt'), '--lang', 'en', '--model', MODEL, '--out', st);
    // a statistics file is .safetensors (a .json got safetensors bytes)
    expect(await refused('stats', 'import', path.join(TANG, 'counts.pt'), '--lang', 'en', '--model', MODEL, '--out', path.join(tmp, 'counts.json'))).toMatch(/counts\.json: a statistics file is \.safetensors/);
    await ok('masks', 'import', path.join(TANG, 'mask.pt'), '--langs', 'en,sw', '--model', MODEL, '--out', masksFile);
  });
});

describe('stats merge', () => {
  it('writes only over a statistics file: a model\'s weights and a mask are refused untouched, its own output rewritten', async () => {
    const shard = (k: number) => path.join(tmp, `shard-${k}`);
    for (const k of [1, 2])
      await ok('profile', MODEL, '--corpus', 'udhr:train', '--langs', 'en', '--shard', `${k}/2`, '--tokens', '2k', '--max-len', '32', '--threads', '1', '--out', shard(k));
    const parts = [1, 2].map((k) => path.join(shard(k), 'en.safetensors'));
    const weights = path.join(tmp, 'victim-merge.safetensors');
    await fsp.copyFile(fixturePath('stories260k', 'model.safetensors'), weights);
    const before = await bytes(weights), maskBefore = await bytes(masksFile);
    for (const out of [weights, masksFile])
      expect(await refused('stats', 'merge', ...parts, '--out', out)).toBe(`langneurons: error: --out ${out}: exists and is not a langneurons statistics file; it is written only over one: choose another --out`);
    expect(await bytes(weights)).toEqual(before);
    expect(await bytes(masksFile)).toEqual(maskBefore);
    const merged = path.join(tmp, 'merged-en.safetensors');
    await ok('stats', 'merge', ...parts, '--out', merged);
    await ok('stats', 'merge', ...parts, '--out', merged);
  }, 60_000);
});

describe('identify', () => {
  it('writes a mask only over a mask', async () => {
    const victim = path.join(tmp, 'id-victim');
    await fsp.mkdir(victim);
    const weights = path.join(victim, 'model.safetensors');
    await fsp.copyFile(fixturePath('stories260k', 'model.safetensors'), weights);
    expect(await refused('identify', statsDir, '--out', weights))
      .toBe(`langneurons: error: --out ${weights}: exists and is not a langneurons mask; a mask is written only over a mask: choose another --out`);
    expect(await bytes(weights)).toEqual(await bytes(fixturePath('stories260k', 'model.safetensors')));
    const out = path.join(tmp, 'lape.safetensors');
    await ok('identify', statsDir, '--out', out);
    await ok('identify', statsDir, '--out', out, '--top-rate', '0.02');
  });

  it('a .safetensors mask written into the statistics folder does not stop the next run (it is not read as statistics)', async () => {
    const folder = path.join(tmp, 'stats-with-mask');
    await fsp.cp(statsDir, folder, { recursive: true });
    const mask = path.join(folder, 'mask.safetensors');
    await ok('identify', folder, '--out', mask);
    await ok('identify', folder, '--out', mask);
    await ok('analyze', 'activations', folder, '--neurons', mask, '--out', path.join(tmp, 'act-with-mask'));
  });

  it('explicit --filter-rate, --quantile and --keep-ties win over --preset, as --top-rate does', async () => {
    const parameters = async (...args: string[]) => {
      const r = await runCli('identify', statsDir, '--out', path.join(tmp, 'p.json'), '--json', ...args);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { parameters: Record<string, unknown> }).parameters;
    };
    expect(await parameters('--preset', 'mondal')).toMatchObject({ quantile: 'interpolated', keepTies: true, filterRate: 0.95, topRate: 0.01 });
    expect(await parameters('--preset', 'mondal', '--quantile', 'kthvalue', '--filter-rate', '0.9', '--no-keep-ties', '--top-rate', '0.02'))
      .toMatchObject({ quantile: 'kthvalue', keepTies: false, filterRate: 0.9, activationBarRatio: 0.9, topRate: 0.02 });
    expect(await parameters('--preset', 'tang', '--keep-ties', '--activation-bar-ratio', '0.5')).toMatchObject({ quantile: 'kthvalue', keepTies: true, activationBarRatio: 0.5 });
    expect(await parameters('--preset', 'gurgurov', '--quantile', 'interpolated')).toMatchObject({ quantile: 'interpolated', topRate: 0.05 });
    expect(await parameters()).toMatchObject({ quantile: 'kthvalue', keepTies: false, filterRate: 0.95, topRate: 0.01 }); // the defaults
  });

  it('act-prob-Xp without counts above thresholds names --percentile-of, not the library\'s option', async () => {
    const line = await refused('identify', statsDir, '--method', 'act-prob-90p', '--out', path.join(tmp, 'ap.json'));
    expect(line).toContain('--percentile-of pooled-histogram');
    expect(line).toContain('--above-quantile 0.9 --thresholds-from');
    expect(line).not.toContain('percentileOf');
  });
});

describe('masks compare', () => {
  it('of masks at two sites says the sites differ (not "different shapes" with equal shapes)', async () => {
    const identity = modelIdentity(await openCheckpoint(MODEL));
    const mask = (site: 'act' | 'gate'): NeuronMask => ({
      format: MASK_FORMAT, method: 'hand', parameters: {}, site, model: identity, sources: [], layers: identity.layers, width: identity.intermediate,
      languages: { en: Array.from({ length: identity.layers }, () => [1]) },
    });
    const a = path.join(tmp, 'act.json'), g = path.join(tmp, 'gate.json');
    await writeMaskJson(a, mask('act'));
    await writeMaskJson(g, mask('gate'));
    expect(await refused('masks', 'compare', a, g)).toBe('langneurons: error: cannot compare masks of different sites: A selects neurons at site act, B at site gate');
  });
});
