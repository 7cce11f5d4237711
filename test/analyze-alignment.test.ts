// Alignment across layers: the scores on hand-made vectors with worked answers, and on a fixture model: identical
// sentences in two "languages" give similarity 1 and retrieval 100% at every layer; real translations less; a
// fine-tuned variant (a hand-made delta) drawn in the same figure; parallel files that do not align refused.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { alignModel, alignmentScores, readParallel } from '../src/analyze/alignment.js';
import { loadModel } from '../src/engine/model.js';
import { runCli } from './helpers/cli.js';
import { makeDelta } from './helpers/delta.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';
import { decodePng, inkOf } from './helpers/png.js';

const EN = ['All human beings are born free and equal in dignity and rights.', 'Everyone has the right to life, liberty and security of person.',
  'No one shall be held in slavery or servitude.', 'Everyone has the right to recognition everywhere as a person before the law.',
  'All are equal before the law.', 'Everyone has the right to freedom of movement.'];
const DE = ['Alle Menschen sind frei und gleich an Würde und Rechten geboren.', 'Jeder hat das Recht auf Leben, Freiheit und Sicherheit der Person.',
  'Niemand darf in Sklaverei oder Leibeigenschaft gehalten werden.', 'Jeder hat das Recht, überall als rechtsfähig anerkannt zu werden.',
  'Alle Menschen sind vor dem Gesetz gleich.', 'Jeder hat das Recht auf Freizügigkeit.'];

let tmp: string, flores: string;
beforeAll(async () => {
  tmp = await makeTempDir('ln-align-');
  flores = path.join(tmp, 'flores');
  await fsp.mkdir(path.join(flores, 'devtest'), { recursive: true });
  const put = (code: string, lines: string[]) => fsp.writeFile(path.join(flores, 'devtest', `${code}.devtest`), lines.join('\n') + '\n');
  await put('eng_Latn', EN);
  await put('xxx_Latn', EN);  // the same sentences under another code
  await put('deu_Latn', DE);
  await put('short_Latn', DE.slice(0, 4));
});
afterAll(async () => { await removeDir(tmp); });

describe('alignment scores', () => {
  it('identical vectors: similarity 1, retrieval 100%; a swap halves both by hand', () => {
    const anchor = [Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1])];
    expect(alignmentScores(anchor, anchor, 3, 3)).toEqual({ similarity: [1], retrieval: [1] });
    // sentence 0 scaled (cosine unchanged), 1 and 2 swapped: cosines 1, 0, 0; only sentence 0 retrieves its own.
    const other = [Float32Array.from([5, 0, 0, 0, 0, 1, 0, 1, 0])];
    const s = alignmentScores(anchor, other, 3, 3);
    expect(s.similarity[0]).toBeCloseTo(1 / 3, 12);
    expect(s.retrieval[0]).toBeCloseTo(1 / 3, 12);
    // (1, 1, 0) against e1: cosine 1/√2, and e1 and e2 tie: a tie is not a hit unless the own sentence comes first.
    const tie = alignmentScores([Float32Array.from([1, 0, 0, 1])], [Float32Array.from([1, 1, 1, 1])], 2, 2);
    expect(tie.similarity[0]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(tie.retrieval[0]).toBe(0.5);
  });

  it('centering removes a language\u2019s offset: a shifted copy aligns perfectly only when centred', () => {
    // Anchor rows (1, 0), (0, 1), (-1, -1) (mean 0); the other language is the same plus an offset (10, 10).
    const anchor = [Float32Array.from([1, 0, 0, 1, -1, -1])];
    const shifted = [Float32Array.from([11, 10, 10, 11, 9, 9])];
    const raw = alignmentScores(anchor, shifted, 3, 2);
    expect(raw.retrieval[0]).toBeLessThan(1);
    const centred = alignmentScores(anchor, shifted, 3, 2, true);
    expect(centred.similarity[0]).toBeCloseTo(1, 12);
    expect(centred.retrieval[0]).toBe(1);
  });
});

describe('on a fixture model', () => {
  it('identical sentences: similarity 1 and retrieval 100% at every layer; translations lower', async () => {
    const set = await readParallel(`flores:${flores}`, ['eng_Latn', 'xxx_Latn', 'deu_Latn']);
    expect(set.ids).toHaveLength(6);
    const model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    const run = await alignModel(model, set, 'eng_Latn', 'base', { maxTokens: 64, batch: 4 });
    const L = model.config.numLayers;
    expect(run.similarity['xxx_Latn']).toHaveLength(L);
    for (let l = 0; l < L; l++) {
      expect(run.similarity['xxx_Latn']![l]).toBeCloseTo(1, 5);
      expect(run.retrieval['xxx_Latn']![l]).toBe(1);
      expect(run.similarity['deu_Latn']![l]).toBeLessThan(0.9999);
    }
  });

  it('refuses parallel files of different lengths and unknown specs, naming them', async () => {
    await expect(readParallel(`flores:${flores}`, ['eng_Latn', 'short_Latn'])).rejects.toThrow(/'eng_Latn' has 6 sentences but 'short_Latn' has 4/);
    await expect(readParallel('udhr:dev', ['en', 'de'])).rejects.toThrow(/--parallel: udhr\[:train\|heldout\|all\]/);
    await expect(readParallel(path.join(tmp, 'nope'), ['en'])).rejects.toThrow(/no such folder/);
  });

  it('UDHR articles: the same article numbers in every language', async () => {
    const set = await readParallel('udhr:heldout', ['en', 'de', 'mt']);
    expect(set.ids).toEqual(['25', '26', '27', '28', '29', '30']);
    expect(set.sentences['de']![0]).toMatch(/Lebensstandard|Recht/);
  });

  it('analyze alignment --delta draws base and fine-tuned in one figure (the delta moves the curves)', async () => {
    const model = fixturePath('stories260k');
    const run = path.join(tmp, 'runs', 'de-neurons');
    await makeDelta(model, run, [{ name: 'model.layers.1.mlp.down_proj.weight', mode: 'cols', indices: Array.from({ length: 40 }, (_, i) => 3 * i), add: (v, i) => v + ((i % 7) - 3) * 0.5 }]);
    const out = path.join(tmp, 'fig');
    const r = await runCli('analyze', 'alignment', model, '--parallel', `flores:${flores}`, '--langs', 'deu_Latn,xxx_Latn', '--anchor', 'eng_Latn',
      '--delta', run, '--max-tokens', '48', '--threads', '2', '--out', out, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const a = JSON.parse(r.stdout).figures['alignment-similarity'].data;
    expect(a.runs.map((x: { variant: string }) => x.variant)).toEqual(['base', 'delta-de-neurons']);
    const [base, tuned] = a.runs as { similarity: Record<string, number[]> }[];
    expect(tuned!.similarity['xxx_Latn']![3]).toBeCloseTo(1, 5);  // identical text stays identical
    expect(tuned!.similarity['deu_Latn']![0]).toBeCloseTo(base!.similarity['deu_Latn']![0]!, 6);  // layer 0 is before the change
    // Mean-pooled states of this tiny model are all close (cosines ~0.999): the delta moves the later layers by ~1e-3.
    const moved = Math.max(...base!.similarity['deu_Latn']!.map((v, l) => Math.abs(tuned!.similarity['deu_Latn']![l]! - v)));
    expect(moved).toBeGreaterThan(3e-4);
    const svg = await fsp.readFile(path.join(out, 'alignment-similarity.svg'), 'utf8');
    expect(svg.match(/stroke-dasharray/g)!.length).toBeGreaterThanOrEqual(2);  // the fine-tuned series are dashed
    expect(inkOf(decodePng(await fsp.readFile(path.join(out, 'alignment-retrieval.png')))).inkShare).toBeGreaterThan(0.02);
    expect(await fsp.readFile(path.join(out, 'alignment-retrieval.caption.txt'), 'utf8')).toMatch(/chance 16\.7%/);
    // --delta-dtype as eval's; the same run given twice is told apart (two series were both named delta-de-neurons)
    const twice = await runCli('analyze', 'alignment', model, '--parallel', `flores:${flores}`, '--langs', 'deu_Latn', '--anchor', 'eng_Latn',
      '--delta', run, '--delta', path.join(run, 'delta.safetensors'), '--delta-dtype', 'f32', '--max-tokens', '16', '--threads', '2', '--out', path.join(tmp, 'fig2'), '--json');
    expect(twice.code, twice.stderr).toBe(0);
    const runs = JSON.parse(twice.stdout).figures['alignment-similarity'].data.runs as { variant: string; model: string }[];
    expect(runs.map((x) => x.variant)).toEqual(['base', 'delta-de-neurons-f32', 'delta-de-neurons-f32-2']);
    expect(runs[1]!.model).toMatch(/de-neurons \(f32\)$/);
    const alone = await runCli('analyze', 'alignment', model, '--parallel', `flores:${flores}`, '--langs', 'deu_Latn', '--anchor', 'eng_Latn', '--delta-dtype', 'f32', '--out', path.join(tmp, 'fig3'));
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/--delta-dtype needs --delta/);
  });
});
