// `analyze logit-lens`: the k most likely next tokens of every layer's lens at each prompt's last position against the
// float64 forward (test/helpers/ref-forward.ts: the final norm and LM head on its residual stream), their languages'
// masses against a hand computation with an identifier of known answers, and the command's figure.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { logitLens, topKSoftmax } from '../src/analyze/logit-lens.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import type { ForcingPrompt, LanguageIdentifier } from '../src/steer/index.js';
import { writeFiles } from './helpers/corpus-fixtures.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';
import { loadRefModel, refForward, refLensLogits, type RefModel } from './helpers/ref-forward.js';

/** Labels a token by its text's length: even "en", odd "de" (known answers for the masses). */
const parity = (text: string): 'en' | 'de' => ([...text].length % 2 === 0 ? 'en' : 'de');
const byLength: LanguageIdentifier = {
  name: 'eld', languages: new Set(['en', 'de']),
  async identify(text) { return { code: null, language: parity(text), reliable: true }; },
};

describe('topKSoftmax', () => {
  it('takes the k largest (ties to the lower index) with their softmax probabilities', () => {
    const row = [1, 3, 3, -1, 2];
    const z = row.reduce((a, x) => a + Math.exp(x), 0);
    const top = topKSoftmax(row, 3);
    expect(top.map((t) => t.id)).toEqual([1, 2, 4]);
    top.forEach((t) => expect(t.probability).toBeCloseTo(Math.exp(row[t.id]!) / z, 12));
    expect(topKSoftmax(row, 5).map((t) => t.id)).toEqual([1, 2, 4, 0, 3]);
  });
});

describe('the logit lens on a model whose embedding has rows past its tokenizer (Qwen2.5-7B: 152064 for 151665 tokens)', () => {
  it('a padded id among the top tokens is listed with no text, not a failed run', async () => {
    const tok = (await loadModel(fixturePath('tiny-llama3'), { threads: 1 })).requireTokenizer();
    const V = tok.vocabSize + 3, padded = V - 1, real = 42;
    const standIn = {
      config: { numLayers: 2, vocabSize: V }, requireTokenizer: () => tok,
      async forward(batch: number[][]) {
        const logits = new Float32Array(batch.length * V);
        batch.forEach((_, s) => { logits[s * V + padded] = 5; logits[s * V + real] = 4; });
        return { logits };
      },
    } as unknown as LanguageModel;
    const a = await logitLens(standIn, [{ text: 'The cat', language: 'en', file: 'en.txt', line: 1 }], byLength, { topK: 2 });
    for (const layer of a.prompts[0]!.layers) {
      expect(layer.map((t) => t.id)).toEqual([padded, real]);
      expect(layer.map((t) => t.token)).toEqual(['', tok.decode([real])]);
    }
  });
});

describe('the logit lens on tiny-llama3', () => {
  let model: LanguageModel, rm: RefModel;
  beforeAll(async () => {
    model = await loadModel(fixturePath('tiny-llama3'), { threads: 2 });
    rm = await loadRefModel(fixturePath('tiny-llama3'));
  });

  it('each layer\'s top tokens and their masses are those of the float64 lens', async () => {
    const tok = model.requireTokenizer();
    const prompts: ForcingPrompt[] = [
      { text: 'The cat sat on the', language: 'en', file: 'en.txt', line: 1 },
      { text: 'Der Hund lief in den', language: 'de', file: 'de.txt', line: 1 },
      { text: 'Once upon a', language: 'en', file: 'en.txt', line: 2 },
    ];
    const V = model.config.vocabSize, L = model.config.numLayers, k = 4;
    const a = await logitLens(model, prompts, byLength, { topK: k, batch: 2 });
    expect(a.layers).toEqual(Array.from({ length: L }, (_, l) => l));
    const expected: Record<string, { own: number[]; english: number[] }> = {};
    for (const [i, p] of prompts.entries()) {
      const ids = tok.encode(p.text);
      const { resid } = refForward(rm, ids);
      for (let l = 0; l < L; l++) {
        const row = refLensLogits(rm, resid[l]!).subarray((ids.length - 1) * V, ids.length * V);
        const want = topKSoftmax(row, k);
        const got = a.prompts[i]!.layers[l]!;
        expect(got.map((t) => t.id), `prompt ${i} layer ${l}`).toEqual(want.map((t) => t.id));
        got.forEach((t, j) => expect(t.probability).toBeCloseTo(want[j]!.probability, 4));
        got.forEach((t) => { expect(t.token).toBe(tok.decode([t.id])); expect(t.language).toBe(parity(t.token)); });
      }
    }
    // masses: per prompt language and layer, the mean over its prompts of the top-k probability of each parity
    for (const lang of ['en', 'de']) {
      const mine = a.prompts.filter((p) => p.language === lang);
      const mass = (want: 'en' | 'de', l: number) => mine.reduce((s, p) => s + p.layers[l]!.filter((t) => parity(t.token) === want).reduce((b, t) => b + t.probability, 0), 0) / mine.length;
      expected[lang] = { own: a.layers.map((l) => mass(lang as 'en' | 'de', l)), english: a.layers.map((l) => mass('en', l)) };
      expect(a.byLanguage[lang]!.prompts).toBe(mine.length);
      a.byLanguage[lang]!.own.forEach((v, j) => expect(v).toBeCloseTo(expected[lang]!.own[j]!, 12));
      a.byLanguage[lang]!.english.forEach((v, j) => expect(v).toBeCloseTo(expected[lang]!.english[j]!, 12));
    }
  });

  it('reads only the layers asked for, and refuses layers and k outside the model', async () => {
    const prompts: ForcingPrompt[] = [{ text: 'Hello there', language: 'en', file: 'en.txt', line: 1 }];
    const id = byLength;
    const a = await logitLens(model, prompts, id, { layers: [1], topK: 2 });
    expect(a.layers).toEqual([1]);
    expect(a.prompts[0]!.layers).toHaveLength(1);
    await expect(logitLens(model, prompts, id, { layers: [model.config.numLayers] })).rejects.toThrow(/--layers: layer \d+ is outside 0\.\.\d+/);
    await expect(logitLens(model, prompts, id, { topK: 0 })).rejects.toThrow(/--top-k must be an integer in \[1, \d+\]/);
  });
});

describe('analyze logit-lens (command line)', () => {
  const bin = path.join(repoRoot, 'bin', 'langneurons.js');
  const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });
  let dir: string;
  beforeAll(async () => { dir = await makeTempDir('ln-lens-'); });
  afterAll(async () => { await removeDir(dir); });

  it('writes the figure (SVG, PNG, CSV, JSON, caption); an intervention changes the lens and is recorded', async () => {
    const prompts = await writeFiles(path.join(dir, 'prompts'), { 'en.txt': 'All human beings are born free and\n', 'de.txt': 'Alle Menschen sind frei und\n' });
    const udhr20 = path.join(repoRoot, 'models', 'udhr20');
    const out = path.join(dir, 'fig');
    const r = cli('analyze', 'logit-lens', udhr20, '--prompts', prompts, '--layers', '0-1,3', '--out', out, '--threads', '2', '--json');
    expect(r.status, r.stderr).toBe(0);
    for (const ext of ['svg', 'png', 'csv', 'json', 'caption.txt']) expect(existsSync(path.join(out, `logit-lens.${ext}`)), ext).toBe(true);
    const a = JSON.parse(readFileSync(path.join(out, 'logit-lens.json'), 'utf8')).data;
    expect(a).toMatchObject({ identifier: 'fasttext', topK: 5, layers: [0, 1, 3], intervention: null });
    expect(Object.keys(a.byLanguage).sort()).toEqual(['de', 'en']);
    const out2 = path.join(dir, 'fig2');
    const r2 = cli('analyze', 'logit-lens', udhr20, '--prompts', prompts, '--layers', '0-1,3', '--intervene', 'zero:neurons=all:layers=0', '--out', out2, '--threads', '2', '--json');
    expect(r2.status, r2.stderr).toBe(0);
    const b = JSON.parse(readFileSync(path.join(out2, 'logit-lens.json'), 'utf8')).data;
    expect(b.intervention).toEqual(['zero:neurons=all:layers=0']);
    expect(b.prompts[0].layers[0]).not.toEqual(a.prompts[0].layers[0]);
    const bad = cli('analyze', 'logit-lens', udhr20, '--prompts', prompts, '--layers', '3-1', '--out', path.join(dir, 'x'));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--layers "3-1": expected all, a layer, a range a-b/);
  });
});
