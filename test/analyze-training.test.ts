// `analyze training`: the training dynamics of fine-tuning runs read from their run.json + train.jsonl, checked on
// hand-written logs with hand-worked answers (moving average, best validation, medians without the first step,
// one CSV row per step), and end to end on two short real runs; bad folders and logs refused naming the file.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { analyzeTraining, movingAverage, readTrainingRun } from '../src/analyze/training.js';
import { trainingFigures } from '../src/report/training-figures.js';
import { FINETUNE_RUN_FORMAT } from '../src/train/run-dir.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-training-'); });
afterAll(async () => { await removeDir(tmp); });

async function runFolder(name: string, log: string, options: object = { method: 'neurons', lr: 1e-4 }): Promise<string> {
  const dir = path.join(tmp, name);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'run.json'), JSON.stringify({ format: FINETUNE_RUN_FORMAT, model: { dir: 'm', name: 'm', fingerprint: 'f' }, options }));
  await fsp.writeFile(path.join(dir, 'train.jsonl'), log);
  return dir;
}
const step = (s: number, loss: number, extra: object = {}) => JSON.stringify({ step: s, loss, lr: 1e-4, gradNorm: s / 2, tokens: 100, tokensPerSecond: 1000 * s, seconds: 0.1 * s, ...extra });

describe('analyze training', () => {
  it('a moving average by hand', () => {
    expect(movingAverage([[1, 4], [2, 2], [3, 6], [4, 0]], 2)).toEqual([[1, 4], [2, 3], [3, 4], [4, 3]]);
    expect(movingAverage([[1, 4], [2, 2], [3, 6]], 1)).toEqual([[1, 4], [2, 2], [3, 6]]);
  });

  it('reads the steps, evaluations and summary of a log (a torn last line skipped)', async () => {
    const dir = await runFolder('a', [step(1, 5), step(2, 4), JSON.stringify({ step: 2, validLoss: 4.5, best: true }), step(3, 3.5), step(4, 3),
      JSON.stringify({ step: 4, validLoss: 4.6, best: false }), '{"step":5,"lo'].join('\n'));
    const r = await readTrainingRun(dir);
    expect(r.loss).toEqual([[1, 5], [2, 4], [3, 3.5], [4, 3]]);
    expect(r.valid).toEqual([[2, 4.5], [4, 4.6]]);
    expect(r.gradNorm).toEqual([[1, 0.5], [2, 1], [3, 1.5], [4, 2]]);
    // medians leave the first step out: seconds 0.2, 0.3, 0.4 -> 0.3; tokens/s 2000, 3000, 4000 -> 3000
    expect(r.summary).toEqual({ steps: 4, tokens: 400, firstLoss: 5, lastLoss: 3, bestValid: 4.5, bestStep: 2, medianStepSeconds: expect.closeTo(0.3, 12), medianTokensPerSecond: 3000 });
    const a = await analyzeTraining([dir, dir], 3);
    expect(a.runs.map((x) => x.name)).toEqual(['a', 'a-2']); // one folder twice: told apart
    expect(a.runs[0]!.smoothed).toEqual([[1, 5], [2, 4.5], [3, 12.5 / 3], [4, 3.5]]);
    const [loss, valid, grad] = trainingFigures(a);
    expect([loss!.name, valid!.name, grad!.name]).toEqual(['training-loss', 'training-valid', 'training-gradnorm']);
    expect(loss!.table.rows.filter((row) => row[0] === 'a')).toEqual([
      ['a', 'neurons', 1, 5, 5, null, null, 0.5, 1e-4], ['a', 'neurons', 2, 4, 4.5, 4.5, null, 1, 1e-4],
      ['a', 'neurons', 3, 3.5, 4.16667, null, null, 1.5, 1e-4], ['a', 'neurons', 4, 3, 3.5, 4.6, null, 2, 1e-4]]);
    expect(loss!.caption).toMatch(/a: 4 steps, 400 tokens, loss 5\.0000 -> 3\.0000, best validation 4\.5000 at step 2, median step 0\.300 s/);
    expect(loss!.svg.match(/class="point"/g)!.length).toBe(2 * (4 + 4)); // per run: raw (smoothed > 1) and smoothed
  });

  it('refuses a folder that is not a run, a log with a damaged line inside, a bad --smooth', async () => {
    const notRun = path.join(tmp, 'plain');
    await fsp.mkdir(notRun);
    await expect(readTrainingRun(notRun)).rejects.toThrow(/plain: not a fine-tuning run folder \(no run\.json\)/);
    const gen = await runFolder('gen', step(1, 2));
    await fsp.writeFile(path.join(gen, 'run.json'), JSON.stringify({ schema: 'langneurons-generations/1' }));
    await expect(readTrainingRun(gen)).rejects.toThrow(/gen\/run\.json: not a fine-tuning run's \(format null, expected langneurons-finetune\/1\)/);
    const bad = await runFolder('bad', [step(1, 5), 'oops', step(2, 4)].join('\n'));
    await expect(readTrainingRun(bad)).rejects.toThrow(/bad\/train\.jsonl: line 2 is not JSON/);
    await expect(analyzeTraining([bad], 0)).rejects.toThrow(/--smooth must be an integer >= 1, got 0/);
  });

  it('end to end: two short runs of the fixture, figures and --json', async () => {
    const train = path.join(tmp, 'train.txt');
    await fsp.writeFile(train, 'Once upon a time there was a little girl named Lily. She loved to play outside in the park.\n'.repeat(12));
    const runs = ['full', 'mlp'].map((m) => path.join(tmp, 'runs', m));
    for (const [i, m] of ['full', 'mlp'].entries()) {
      const r = await runCli('finetune', fixturePath('stories260k'), '--method', m, '--train', train, '--valid', train, '--steps', '6', '--eval-every', '3',
        '--chunk', '32', '--lr', '3e-3', '--device', 'cpu', '--out', runs[i]!, '--json');
      expect(r.code, r.stderr).toBe(0);
    }
    const out = path.join(tmp, 'fig');
    const r = await runCli('analyze', 'training', ...runs, '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const figs = JSON.parse(r.stdout).figures;
    expect(Object.keys(figs)).toEqual(['training-loss', 'training-valid', 'training-gradnorm']);
    const data = figs['training-loss'].data as { smooth: number; runs: { name: string; method: string; loss: [number, number][]; valid: [number, number][] }[] };
    expect(data.smooth).toBe(1); // 6 steps: a fiftieth rounds to 0, at least 1
    expect(data.runs.map((x) => [x.name, x.method, x.loss.length, x.valid.map((v) => v[0])])).toEqual([['full', 'full', 6, [3, 6]], ['mlp', 'mlp', 6, [3, 6]]]);
    // the log's numbers, as written by finetune
    const log = (await fsp.readFile(path.join(runs[0]!, 'train.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss?: number });
    expect(data.runs[0]!.loss).toEqual(log.filter((e) => typeof e.loss === 'number').map((e) => [e.step, e.loss]));
    const csv = (await fsp.readFile(path.join(out, 'training-loss.csv'), 'utf8')).trim().split('\n');
    expect(csv).toHaveLength(1 + 12);
    const wrong = await runCli('analyze', 'training', path.join(tmp, 'runs'), '--out', path.join(tmp, 'fig2'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/runs: not a fine-tuning run folder \(no run\.json\)/);
  }, 120_000);
});
