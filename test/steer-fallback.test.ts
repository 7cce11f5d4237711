// Language fallback (Language Arithmetics' fallbacks.py): the growing unions of deactivated languages, the output
// language distribution and its most common language with a fake generator; from the command line on the bundled
// model, each step's generations equal `generate` under the same intervention.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MASK_FORMAT, writeMaskJson, type NeuronMask } from '../src/identify/masks.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { computeFallback, fallbackSets, type ForcingPrompt, type LanguageIdentifier } from '../src/steer/index.js';
import { writeFiles } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

/** Labels a text by its first word (a fake identifier: "de ..." is German). */
const byFirstWord: LanguageIdentifier = {
  name: 'cld', languages: new Set(['en', 'de', 'fr']),
  async identify(text) {
    const w = text.trim().split(/\s+/)[0] ?? '';
    return w ? { code: w, language: w, reliable: true } : { code: null, language: null, reliable: false };
  },
};
const prompts: ForcingPrompt[] = ['a', 'b', 'c'].map((t, i) => ({ text: t, language: null, file: 'p.txt', line: i + 1 }));

describe('the fallback measure', () => {
  it('deactivates the growing unions (or each language alone) and counts the output languages per step', async () => {
    expect(fallbackSets(['en', 'fr', 'es'], 'cumulative')).toEqual([['en'], ['en', 'fr'], ['en', 'fr', 'es']]);
    expect(fallbackSets(['en', 'fr', 'es'], 'each')).toEqual([['en'], ['fr'], ['es']]);
    const seen: (string[] | null)[] = [];
    // no intervention: English; without en: half German, half French, German first; without en+fr: German
    const outputs = (langs: string[] | null): string[] => (langs === null ? ['en x', 'en y', 'en z'] : langs.length === 1 ? ['de', 'fr', ''] : ['de', 'de', 'fr']);
    const r = await computeFallback<string[]>({
      prompts, languages: ['en', 'fr'], identifier: byFirstWord, intervention: (langs) => langs,
      generate: async (p, langs) => { seen.push(langs); expect(p).toEqual(['a', 'b', 'c']); return outputs(langs); },
    });
    expect(seen).toEqual([null, ['en'], ['en', 'fr']]);
    expect(r.order).toBe('cumulative');
    expect(r.baseline).toMatchObject({ deactivated: [], distribution: { en: 3 }, mostCommon: 'en' });
    // a tie goes to the language seen first (Python's max over a dict); an empty output is "none"
    expect(r.steps[0]).toMatchObject({ deactivated: ['en'], distribution: { de: 1, fr: 1, none: 1 }, mostCommon: 'de' });
    expect(Object.keys(r.steps[0]!.distribution)).toEqual(['de', 'fr', 'none']);
    expect(r.steps[1]).toMatchObject({ deactivated: ['en', 'fr'], distribution: { de: 2, fr: 1 }, mostCommon: 'de' });
    expect(r.steps[1]!.generations!.map((g) => g.text)).toEqual(['de', 'de', 'fr']);
    const each = await computeFallback<string[]>({ prompts, languages: ['en', 'fr'], order: 'each', baseline: false, keepGenerations: false, identifier: byFirstWord,
      intervention: (l) => l, generate: async (_p, l) => outputs(l) });
    expect(each.baseline).toBeUndefined();
    expect(each.steps.map((s) => s.deactivated)).toEqual([['en'], ['fr']]);
    expect(each.steps[0]!.generations).toBeUndefined();
  });

  it('refuses no prompts, no language, a language twice and a generator returning the wrong count', async () => {
    const base = { prompts, languages: ['en'], identifier: byFirstWord, intervention: (l: string[]) => l, generate: async (p: string[]) => p };
    await expect(computeFallback({ ...base, prompts: [] })).rejects.toThrow(/fallback: no prompts/);
    await expect(computeFallback({ ...base, languages: [] })).rejects.toThrow(/no language to deactivate/);
    await expect(computeFallback({ ...base, languages: ['en', 'fr', 'en'] })).rejects.toThrow(/--deactivate names en twice/);
    await expect(computeFallback({ ...base, generate: async () => ['x'] })).rejects.toThrow(/returned 1 texts for 3 prompts/);
  });
});

describe('steer fallback (command line, the bundled model)', () => {
  const bin = path.join(repoRoot, 'bin', 'langneurons.js');
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const modelDir = path.join(repoRoot, 'models', 'udhr20');
  let dir: string, maskFile: string, promptFile: string;
  beforeAll(async () => {
    dir = await makeTempDir('ln-fallback-');
    const id = modelIdentity(await openCheckpoint(modelDir));
    // en and de share neuron 7 of every layer: the union deactivates it once
    const units = (k: number) => Array.from({ length: id.layers }, (_, l) => [k, 7, k + 10 + l, k + 40].sort((a, b) => a - b));
    const mask: NeuronMask = { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: id, sources: [], layers: id.layers, width: id.intermediate,
      languages: { en: units(1), de: units(2), sw: units(3) } };
    maskFile = path.join(dir, 'mask.json');
    await writeMaskJson(maskFile, mask);
    promptFile = path.join(await writeFiles(path.join(dir, 'prompts'), { 'neutral.txt': 'Q: Everyone has the right to life?A: \nQ: All human beings are born free?A: \n' }), 'neutral.txt');
  });
  afterAll(async () => { await removeDir(dir); });

  it('each step generates as `generate` does under the union\'s deactivation, identified by fastText', async () => {
    const out = path.join(dir, 'fallback.json');
    const r = cli('steer', 'fallback', modelDir, '--masks', maskFile, '--prompts', promptFile, '--deactivate', 'en,de', '--deactivate-value', '-1.5',
      '--langid', 'fasttext', '--max-new-tokens', '16', '--stop', '\\nQ:', '--stop', '\\nA:', '--repetition-penalty', '1.1', '--out', out, '--threads', '2', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const res = JSON.parse(readFileSync(out, 'utf8'));
    expect(res).toMatchObject({ format: 'langneurons-fallback/1', identifier: 'fasttext', order: 'cumulative', deactivateValue: -1.5, maxNewTokens: 16,
      stop: ['\nQ:', '\nA:'], repetitionPenalty: 1.1 });
    expect(res.steps.map((s: { deactivated: string[] }) => s.deactivated)).toEqual([['en'], ['en', 'de']]);
    const gen = (...extra: string[]) => {
      const g = cli('generate', modelDir, '--prompt-file', promptFile, '--max-new-tokens', '16', '--stop', '\\nQ:', '--stop', '\\nA:', '--repetition-penalty', '1.1',
        '--threads', '2', '--json', ...extra);
      expect(g.code, g.stderr).toBe(0);
      return (JSON.parse(g.stdout) as { generations: { text: string }[] }).generations.map((x) => x.text);
    };
    const texts = (st: { generations: { text: string }[] }) => st.generations.map((g) => g.text);
    expect(texts(res.baseline)).toEqual(gen());
    expect(texts(res.steps[0])).toEqual(gen('--intervene', `set:-1.5:mask=${maskFile}:lang=en`));
    const union = gen('--intervene', `set:-1.5:mask=${maskFile}:lang=en+de`);
    expect(texts(res.steps[1])).toEqual(union);
    // the union is the two languages' neurons: the same as deactivating each in turn
    expect(gen('--intervene', `set:-1.5:mask=${maskFile}:lang=en`, '--intervene', `set:-1.5:mask=${maskFile}:lang=de`)).toEqual(union);
    expect(union).not.toEqual(gen());
    // the distributions count the steps' labels
    for (const st of [res.baseline, ...res.steps]) {
      const counts: Record<string, number> = {};
      for (const g of st.generations as { detected: string | null }[]) counts[g.detected ?? 'none'] = (counts[g.detected ?? 'none'] ?? 0) + 1;
      expect(st.distribution).toEqual(counts);
    }
  });

  it('refuses a language the mask lacks and a repeated one, naming them', () => {
    const a = cli('steer', 'fallback', modelDir, '--masks', maskFile, '--prompts', promptFile, '--deactivate', 'en,xx', '--out', path.join(dir, 'x.json'));
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/mask\.json.*xx|xx.*mask\.json/);
    const b = cli('steer', 'fallback', modelDir, '--masks', maskFile, '--prompts', promptFile, '--deactivate', 'en,de,en', '--out', path.join(dir, 'x.json'));
    expect(b.code).toBe(1);
    expect(b.stderr.trim()).toMatch(/--deactivate names en twice$/);
  });
});
