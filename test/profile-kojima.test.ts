// Kojima et al.'s sentence responses (kojima-takeshi188/lang_neuron, built on Apple's selfcond): each sentence is
// tokenized with the tokenizer's special tokens (Llama: <s> first, selfcond/data.py), padding is cut off
// (selfcond/responses.py) and the unit's response is np.mean over every remaining position, BOS included
// (selfcond/models.py, pooling "mean"); sentences of more than seq_len tokens are dropped (data.py
// _remove_too_long_data). `--count-bos --drop-long` profile those means; checked here against the site values the
// engine captures for each sentence.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openCorpus } from '../src/corpus/sources.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { profileCorpus, statsFileFor } from '../src/profile/profile.js';
import { readStats, type Site, type TokenScope } from '../src/profile/stats.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

let model: LanguageModel;
let dir: string;
const lines = ['Once upon a time', 'The cat sat on the mat and looked at the big red ball for a long time', 'Lily was happy'];

beforeAll(async () => {
  model = await loadModel(fixturePath('stories260k'), { threads: 2 });
  dir = await makeTempDir('ln-profile-kojima-');
  await fsp.mkdir(path.join(dir, 'corpus'));
  await fsp.writeFile(path.join(dir, 'corpus', 'en.txt'), lines.join('\n') + '\n');
});
afterAll(async () => { await removeDir(dir); });

/** Per sentence, the mean of `site` at `layer` over its positions from `from` on (0: BOS included, 1: without). */
async function capturedMeans(ids: number[][], site: Site, layer: number, from: number): Promise<number[][]> {
  const out: number[][] = [];
  for (const seq of ids) {
    const c = (await model.forward([seq], { logits: 'none', capture: { site, layer } })).capture!;
    const width = c.length / seq.length, mean = new Array<number>(width).fill(0);
    for (let t = from; t < seq.length; t++) for (let j = 0; j < width; j++) mean[j]! += c[t * width + j]! / (seq.length - from);
    out.push(mean);
  }
  return out;
}

describe("Kojima's sentence means: BOS counted, long sentences dropped", () => {
  it('--count-bos means over BOS + the sentence; --drop-long leaves out a sentence over --max-len; the default means without BOS', async () => {
    const tok = model.requireTokenizer();
    const own = lines.map((l) => tok.encode(l, { addSpecialTokens: false }));
    const maxLen = 32;
    expect(own.map((t) => t.length > maxLen)).toEqual([false, true, false]); // the second line is over the length
    const corpus = await openCorpus(path.join(dir, 'corpus'));
    const sites: Site[] = ['gate', 'q'];
    const base: TokenScope = { mode: 'sentences', maxLen, bos: true, countPadding: false, tokenBudget: 0 };
    const kojima: TokenScope = { ...base, countBos: true, longSentences: 'drop' };
    await profileCorpus(model, corpus, { languages: ['en'], outDir: path.join(dir, 'kojima'), scope: kojima, sites, seqMeans: true, batchTokens: 64 });
    await profileCorpus(model, corpus, { languages: ['en'], outDir: path.join(dir, 'default'), scope: base, sites, seqMeans: true, batchTokens: 64 });
    const k = await readStats(statsFileFor(path.join(dir, 'kojima'), 'en'));
    const d = await readStats(statsFileFor(path.join(dir, 'default'), 'en'));
    expect(k.meta.scope).toEqual(kojima); // recorded, and read back
    expect(d.meta.scope).toEqual(base);   // the default scope records neither field
    const bos = tok.bosTokenId!;
    // Kojima: sentences 1 and 3, BOS counted
    const kept = [own[0]!, own[2]!].map((t) => [bos, ...t]);
    expect(k.sequences).toBe(2);
    expect(k.tokens).toBe(kept[0]!.length + kept[1]!.length);
    // default: all three, the long one cut to maxLen, BOS not counted
    const all = own.map((t) => [bos, ...t.slice(0, maxLen)]);
    expect(d.sequences).toBe(3);
    expect(d.tokens).toBe(all.reduce((n, s) => n + s.length - 1, 0));
    const layers = k.meta.layers.length;
    for (const site of sites) {
      for (const [stats, seqs, from] of [[k, kept, 0], [d, all, 1]] as const) {
        const sm = stats.sites.get(site)!.seqMeans!;
        const width = stats.sites.get(site)!.width;
        for (let layer = 0; layer < layers; layer++) {
          const want = await capturedMeans(seqs, site, layer, from);
          want.forEach((row, s) => row.forEach((x, j) => expect(sm[(s * layers + layer) * width + j]!).toBeCloseTo(x, 5)));
        }
      }
    }
    // and the two differ: the BOS position moves the means
    const a = k.sites.get('gate')!.seqMeans!, b = d.sites.get('gate')!.seqMeans!;
    const w = k.sites.get('gate')!.width * layers;
    expect(Array.from(a.subarray(0, w))).not.toEqual(Array.from(b.subarray(0, w)));
  }, 60_000);

  it('the profile command takes --count-bos and --drop-long for --scope sentences only', async () => {
    const out = path.join(dir, 'cli');
    const ok = await runCli('profile', fixturePath('stories260k'), '--corpus', path.join(dir, 'corpus'), '--langs', 'en', '--scope', 'sentences', '--max-len', '32',
      '--count-bos', '--drop-long', '--sites', 'q', '--seq-means', '--out', out, '--json');
    expect(ok.code, ok.stderr).toBe(0);
    const s = await readStats(statsFileFor(out, 'en'));
    expect(s.meta.scope).toMatchObject({ mode: 'sentences', bos: true, countBos: true, longSentences: 'drop' });
    expect(s.sequences).toBe(2);
    for (const flag of ['--count-bos', '--drop-long']) {
      const bad = await runCli('profile', fixturePath('stories260k'), '--corpus', path.join(dir, 'corpus'), '--langs', 'en', flag, '--out', path.join(dir, 'bad'));
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain(`${flag} applies to --scope sentences`);
    }
    const shown = await runCli('stats', 'show', statsFileFor(out, 'en'));
    expect(shown.stdout).toMatch(/sentences, max 32, BOS fed and counted, longer sentences dropped/);
    // and --drop-partial (Tang's whole windows) for --scope windows only: recorded, shown, the count a multiple of 16
    const whole = path.join(dir, 'cli-whole');
    const w = await runCli('profile', fixturePath('stories260k'), '--corpus', path.join(dir, 'corpus'), '--langs', 'en', '--max-len', '16', '--drop-partial', '--out', whole, '--json');
    expect(w.code, w.stderr).toBe(0);
    const ws = await readStats(statsFileFor(whole, 'en'));
    expect(ws.meta.scope).toMatchObject({ mode: 'windows', partialWindow: 'drop' });
    expect(ws.tokens % 16).toBe(0);
    expect(ws.tokens).toBeGreaterThan(0);
    expect((await runCli('stats', 'show', statsFileFor(whole, 'en'))).stdout).toMatch(/windows, max 16, whole windows only/);
    const bad = await runCli('profile', fixturePath('stories260k'), '--corpus', path.join(dir, 'corpus'), '--langs', 'en', '--scope', 'sentences', '--drop-partial', '--out', path.join(dir, 'bad'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--drop-partial applies to --scope windows');
  }, 60_000);
});
