// The engine check the demo ran before the bundled model existed (`langneurons demo --engine-check`): greedy
// generation from BOS on the stories260k fixture (a real 260K-parameter Llama trained on TinyStories) against the
// reference recorded with llama2.c, and the score of the reference input.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { LanguageModel } from '../engine/model.js';
import { scoreTokens } from '../engine/score.js';
import { LangneuronsError } from '../errors.js';
import { generateTokens } from '../generate/generate.js';

export interface EngineCheck {
  greedyFromBos: { tokens: number[]; reference: number[]; matching: number | null; seconds: number; tokensPerSecond: number };
  referenceInput: { meanNll: number; perplexity: number; tokens: number; seconds: number };
  ok: boolean;
}

/** The reference of a fixture folder (reference.json), or a LangneuronsError naming the file. */
export function readEngineReference(dir: string): { input_ids: number[]; greedy_from_bos?: number[] } {
  const file = path.join(dir, 'reference.json');
  if (!existsSync(file)) throw new LangneuronsError('E_IO', `${file}: the engine check needs a model folder with reference.json (e.g. the stories260k fixture)`, { file });
  return JSON.parse(readFileSync(file, 'utf8')) as { input_ids: number[]; greedy_from_bos?: number[] };
}

export async function runEngineCheck(model: LanguageModel, ref: { input_ids: number[]; greedy_from_bos?: number[] }): Promise<EngineCheck> {
  const bos = model.config.bosTokenId ?? 1;
  const want = ref.greedy_from_bos ?? [];
  let t0 = performance.now();
  const [gen] = await generateTokens(model, [[bos]], { maxNewTokens: want.length || 64, stopAtEos: false });
  const genSeconds = (performance.now() - t0) / 1000;
  const matching = want.length ? gen!.tokens.filter((t, i) => t === want[i]).length : null;
  t0 = performance.now();
  const score = await scoreTokens(model, ref.input_ids);
  return {
    greedyFromBos: { tokens: gen!.tokens, reference: want, matching, seconds: genSeconds, tokensPerSecond: gen!.tokens.length / genSeconds },
    referenceInput: { meanNll: score.meanNll, perplexity: score.perplexity, tokens: score.tokens, seconds: (performance.now() - t0) / 1000 },
    ok: matching === null || matching === want.length,
  };
}
