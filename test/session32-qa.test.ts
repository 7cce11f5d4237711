// QA of the day's additions (session 32), each test failing before its fix:
// - ap / raw-activated read the per-sequence means from the statistics files after readStats (seqMeans: false), and
//   SeqMeansReader refused a file replaced in between only when the means' tensor had moved: a file written again
//   with its means where they lay (another profile of as many sentences: another model, corpus or run) was read
//   without a word, its means ranked under the sources (fingerprints, corpus) of the file that was read;
// - sweep status judged another node's step lock by the step's Slurm task even when the lock was written outside
//   Slurm (no job in it: a local `sweep run` on that node of a step an earlier Slurm run had submitted): a step
//   running there showed as pending once its old task had left the queue.
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';

import { LangneuronsError } from '../src/errors.js';
import { identifyAveragePrecision } from '../src/identify/average-precision.js';
import type { LanguageStats } from '../src/identify/common.js';
import { identifyRawActivated } from '../src/identify/raw-activated.js';
import { readSafetensorsHeader } from '../src/io/safetensors.js';
import { readStats, writeStats, type ActivationStats } from '../src/profile/stats.js';
import { appendJournal } from '../src/sweep/journal.js';
import { loadSweep } from '../src/sweep/load.js';
import { planSweep, stepDir } from '../src/sweep/plan.js';
import { sweepStatus } from '../src/sweep/status.js';

const ROOT = path.resolve(__dirname, '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-session32-qa-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const LAYERS = 2, WIDTH = 3, UNITS = LAYERS * WIDTH;

/** A statistics file of `means` (one row of LAYERS × WIDTH values per sentence) at `act`, of corpus `corpus`. */
async function writeSeqMeansStats(file: string, language: string, corpus: string, means: number[][]): Promise<void> {
  const sequences = means.length;
  const stats: ActivationStats = {
    meta: {
      format: 'langneurons-stats/1', language, layers: [0, 1],
      model: { name: 'synthetic', modelType: 'llama', layers: LAYERS, hidden: 8, intermediate: WIDTH, fingerprint: 'e'.repeat(64) },
      scope: { mode: 'sentences', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0 },
      corpus: { files: [`${language}.txt`], fingerprint: corpus }, toolVersion: 'test', shards: 1, compute: 'f32',
    } as ActivationStats['meta'],
    tokens: sequences * 4, sequences,
    sites: new Map([['act', {
      site: 'act', width: WIDTH, overZero: new Float64Array(UNITS), sum: new Float64Array(UNITS), sumSq: new Float64Array(UNITS),
      seqMeans: Float32Array.from(means.flat()),
    }]]),
  };
  await writeStats(file, stats);
}

/** sklearn.metrics.average_precision_score written out: over the distinct scores t, from the highest,
 *  (positives scoring t / P) × (positives scoring ≥ t / all scoring ≥ t). */
function bruteAp(scores: number[], positive: boolean[]): number {
  const P = positive.filter(Boolean).length;
  let ap = 0;
  for (const t of [...new Set(scores)].sort((a, b) => b - a)) {
    const at = scores.filter((s, i) => s === t && positive[i]).length;
    const tp = scores.filter((s, i) => s >= t && positive[i]).length;
    const all = scores.filter((s) => s >= t).length;
    ap += (at / P) * (tp / all);
  }
  return ap;
}

/** Kojima's selection by hand: per language the n/2 highest and n/2 lowest APs (ties by the lower unit). */
function bruteMask(byLang: Record<string, number[][]>, n: number): Record<string, number[][]> {
  const langs = Object.keys(byLang);
  const out: Record<string, number[][]> = {};
  for (const lang of langs) {
    const scores: number[][] = [], positive: boolean[] = [];
    for (const l of langs) for (const row of byLang[l]!) { scores.push(row); positive.push(l === lang); }
    const ap = Array.from({ length: UNITS }, (_, u) => bruteAp(scores.map((r) => Math.fround(r[u]!)), positive));
    const order = (sign: number) => ap.map((_, u) => u).sort((a, b) => sign * (ap[a]! - ap[b]!) || a - b).slice(0, n / 2);
    const kept = new Set([...order(-1), ...order(1)]);
    out[lang] = Array.from({ length: LAYERS }, (_, l) => [...kept].filter((u) => Math.floor(u / WIDTH) === l).map((u) => u % WIDTH).sort((a, b) => a - b));
  }
  return out;
}

describe('per-sequence means read from a statistics file replaced since readStats', () => {
  const en = [[0.5, -1, 2, 0, 3, 0.25], [1.5, -1, 2, 1, 3, 0.5], [0.5, 2, -2, 1, 3, 0.75]];
  const de = [[0.5, 0, 2, -1, 1, 0.5], [-0.5, 1, 2, -1, 3, 2]];

  it('ap and raw-activated refuse a file written again with its means where they lay (they ranked the new means)', async () => {
    const dir = path.join(tmp, 'replaced');
    mkdirSync(dir);
    const [enFile, deFile] = ['en', 'de'].map((l) => path.join(dir, `${l}.safetensors`)) as [string, string];
    await writeSeqMeansStats(enFile, 'en', 'corpus-en-1', en);
    await writeSeqMeansStats(deFile, 'de', 'corpus-de-1', de);
    const inputs: LanguageStats[] = [];
    for (const file of [enFile, deFile]) inputs.push({ file, stats: await readStats(file, { seqMeans: false }) });
    // The files as read: the mask is the one computed by hand, block by block (one unit at a time) or whole.
    const want = bruteMask({ en, de }, 4);
    for (const seqMeansBudget of [1, 2 ** 20]) expect(identifyAveragePrecision(inputs, { n: 4, seqMeansBudget }).languages).toEqual(want);
    expect(identifyRawActivated(inputs, { seqMeansBudget: 1 }).languages).toEqual({ en: [[0], [1, 2]], de: [[2], [1, 2]] });

    // en.safetensors written again (another corpus of as many sentences), its means at the same byte as before.
    const other = en.map((row) => row.map((v) => -v));
    const next = path.join(dir, 'en.next.safetensors');
    await writeSeqMeansStats(next, 'en', 'corpus-en-2', other);
    const at = async (f: string) => (await readSafetensorsHeader(f)).tensors.find((t) => t.name === 'act.seq_means')!;
    expect(await at(next)).toMatchObject({ byteOffset: (await at(enFile)).byteOffset, shape: [3, LAYERS, WIDTH] });
    expect(bruteMask({ en: other, de }, 4)).not.toEqual(want);  // the old code returned this mask, under corpus-en-1
    renameSync(next, enFile);
    for (const run of [() => identifyAveragePrecision(inputs, { n: 4 }), () => identifyRawActivated(inputs)]) {
      let error: unknown;
      try { run(); } catch (e) { error = e; }
      expect(error).toBeInstanceOf(LangneuronsError);
      expect(error).toMatchObject({ code: 'E_STATS', file: enFile });
      expect((error as Error).message).toBe(`${enFile}: changed since its statistics were read (its metadata differs: the file was written again): run again on the file as it is now`);
    }
    // Read again, the new file is ranked (and its mask is the one by hand).
    inputs[0] = { file: enFile, stats: await readStats(enFile, { seqMeans: false }) };
    expect(identifyAveragePrecision(inputs, { n: 4, seqMeansBudget: 1 }).languages).toEqual(bruteMask({ en: other, de }, 4));
  });
});

describe('sweep status', () => {
  it("another node's step lock written outside Slurm stands whatever squeue says of the step's old task", async () => {
    const corpus = path.join(tmp, 'corpus');
    mkdirSync(corpus);
    writeFileSync(path.join(corpus, 'mt.txt'), 'Il-bnedmin kollha jitwieldu ħielsa u ugwali.\n');
    writeFileSync(path.join(corpus, 'sw.txt'), 'Kila mtu amezaliwa huru na sawa.\n');
    const file = path.join(tmp, 'sweep.yaml');
    writeFileSync(file, stringify({
      name: 'qa32', out: path.join(tmp, 'sweep-out'), models: path.join(ROOT, 'models', 'udhr20'), languages: ['mt', 'sw'],
      profile: { corpus, tokens: 20, maxLen: 8 }, identify: [{ method: 'lape', topRate: 0.1 }], retries: 0,
    }));
    const plan = await planSweep(loadSweep(file));
    const step = plan.steps[0]!;
    // An earlier Slurm run submitted the step (its task has left the queue); a local run on another node holds it now.
    appendJournal(plan.out, { event: 'run', executor: 'slurm', run: 'r1', pid: 1, host: os.hostname() });
    appendJournal(plan.out, { event: 'submit', run: 'r1', round: 1, kind: step.kind, job: '4242', script: 'x', steps: [step.id], hashes: [step.hash] });
    appendJournal(plan.out, { event: 'run', executor: 'local', run: 'r2', pid: 1234, host: 'other-node' });
    mkdirSync(path.dirname(stepDir(plan, step)), { recursive: true });
    const bin = path.join(tmp, 'bin');
    mkdirSync(bin);
    writeFileSync(path.join(bin, 'squeue'), '#!/bin/sh\nexit 0\n');  // squeue answers: none of our jobs is in the queue
    chmodSync(path.join(bin, 'squeue'), 0o755);
    const stateWith = (lock: Record<string, unknown>) => {
      writeFileSync(`${stepDir(plan, step)}.lock`, JSON.stringify(lock));
      const saved = process.env['PATH'];
      process.env['PATH'] = `${bin}:${saved}`;
      try {
        return sweepStatus(plan, { slurm: true }).byId.get(step.id);
      } finally {
        process.env['PATH'] = saved;
      }
    };
    expect(stateWith({ pid: 1234, host: 'other-node' })).toMatchObject({ state: 'running', detail: 'pid 1234 on other-node' });
    // A Slurm task's lock (its job in it) whose task is gone from the queue is still a dead node's.
    expect(stateWith({ pid: 1234, host: 'other-node', job: '4243' })).toMatchObject({ state: 'pending' });
  }, 60_000);
});
