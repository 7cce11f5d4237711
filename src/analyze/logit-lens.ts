// The logit lens across layers (Language Arithmetics' logit_lens.py; nostalgebraist 2020; Wendler et al. 2024 "Do
// Llamas work in English?"): for each prompt, the residual stream after every layer is read through the model's own
// final norm and LM head (the engine's forward with `lastLayer`), at the prompt's last position. The k most likely
// next tokens are decoded and each is given a language by the identifier; a language's mass at a layer is the
// probability of those of the k tokens that are in it. Per prompt language: the mean mass of the prompt's own
// language, of English, and of every language seen, per layer. (Their code reads HF hidden_states, whose last entry
// has the final norm applied already and gets it twice there; here the last layer's lens is the model's output.)
import type { LanguageModel } from '../engine/model.js';
import { LangneuronsError } from '../errors.js';
import type { Intervention } from '../intervene/index.js';
import { computeEveryUnit, type UnitOf } from '../io/unit-log.js';
import type { ForcingPrompt } from '../steer/forcing.js';
import { normaliseLanguageCode, type LanguageIdentifier } from '../steer/langid.js';

export interface LensToken { token: string; id: number; probability: number; language: string | null }

export interface LogitLensPrompt {
  prompt: string;
  /** The prompt's language (its file's stem), normalised; null when unknown. */
  language: string | null;
  /** Per layer, the k most likely next tokens of the lens. */
  layers: LensToken[][];
}

export interface LogitLensAnalysis {
  model: string;
  identifier: string;
  topK: number;
  layers: number[];
  /** What intervened, when something did (the specs as given). */
  intervention: string[] | null;
  prompts: LogitLensPrompt[];
  /** Per prompt language: per layer, the mean mass of its own language, of English, and of every language seen. */
  byLanguage: Record<string, { prompts: number; own: number[]; english: number[]; mass: Record<string, number[]> }>;
}

export interface LogitLensOptions {
  topK?: number;
  /** The layers to read (default every layer). */
  layers?: number[];
  intervene?: Intervention;
  /** Prompts per forward (default 16). */
  batch?: number;
  /** Resumable work (the CLI's unit log): each layer's lens over a batch of prompts is one unit, addressed by the
   *  layer, k and the prompts' tokens. */
  unit?: UnitOf;
  onProgress?: (done: number, total: number) => void;
}

/** The k largest entries of a row, by value (ties: the lower index), with their softmax probabilities. */
export function topKSoftmax(row: ArrayLike<number>, k: number): { id: number; probability: number }[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const best: number[] = [];
  for (let i = 0; i < row.length; i++) {
    if (best.length === k && row[i]! <= row[best[k - 1]!]!) continue;
    let at = best.length;
    while (at > 0 && row[best[at - 1]!]! < row[i]!) at--;
    best.splice(at, 0, i);
    if (best.length > k) best.pop();
  }
  return best.map((id) => ({ id, probability: Math.exp(row[id]! - max) / sum }));
}

export async function logitLens(model: LanguageModel, prompts: readonly ForcingPrompt[], identifier: LanguageIdentifier, o: LogitLensOptions = {}): Promise<LogitLensAnalysis> {
  const tok = model.requireTokenizer();
  const L = model.config.numLayers, V = model.config.vocabSize;
  const k = o.topK ?? 5;
  if (!Number.isInteger(k) || k < 1 || k > V) throw new LangneuronsError('E_OPTIONS', `--top-k must be an integer in [1, ${V}], got ${k}`, { field: '--top-k' });
  const layers = o.layers ?? Array.from({ length: L }, (_, l) => l);
  const bad = layers.find((l) => !Number.isInteger(l) || l < 0 || l >= L);
  if (bad !== undefined) throw new LangneuronsError('E_OPTIONS', `--layers: layer ${bad} is outside 0..${L - 1}`, { field: '--layers' });
  if (prompts.length === 0) throw new LangneuronsError('E_PROMPTS', 'logit lens: no prompts');
  const ids = prompts.map((p) => tok.encode(p.text));
  const batch = o.batch ?? 16;
  const unit = o.unit ?? computeEveryUnit;
  const out: LogitLensPrompt[] = prompts.map((p) => ({ prompt: p.text, language: p.language === null ? null : normaliseLanguageCode(p.language), layers: [] }));
  const labelOf = new Map<number, string | null>(); // a token's language, identified once
  const total = layers.length * Math.ceil(prompts.length / batch);
  let done = 0;
  for (const l of layers)
    for (let i0 = 0; i0 < prompts.length; i0 += batch) {
      const chunk = ids.slice(i0, i0 + batch);
      const tops = await unit({ layer: l, topK: k, prompts: chunk }, async () => {
        const res = await model.forward(chunk, { logits: 'last', lastLayer: l, ...(o.intervene ? { intervene: o.intervene } : {}) });
        return chunk.map((_, s) => topKSoftmax(res.logits!.subarray(s * V, (s + 1) * V), k));
      });
      for (let s = 0; s < chunk.length; s++) {
        const top: LensToken[] = [];
        for (const { id, probability } of tops[s]!) {
          // (an id past the tokenizer, a padded embedding row, has no text: as transformers decodes it)
          const token = tok.decode([id], { skipUnknownIds: true });
          if (!labelOf.has(id)) labelOf.set(id, (await identifier.identify(token)).language);
          top.push({ token, id, probability, language: labelOf.get(id)! });
        }
        out[i0 + s]!.layers.push(top);
      }
      o.onProgress?.(++done, total);
    }
  const byLanguage: LogitLensAnalysis['byLanguage'] = {};
  for (const lang of [...new Set(out.map((p) => p.language ?? 'unknown'))]) {
    const mine = out.filter((p) => (p.language ?? 'unknown') === lang);
    const seen = [...new Set(mine.flatMap((p) => p.layers.flat().map((t) => t.language ?? 'none')))];
    const mass: Record<string, number[]> = Object.fromEntries(seen.map((x) => [x, layers.map((_, j) =>
      mine.reduce((a, p) => a + p.layers[j]!.filter((t) => (t.language ?? 'none') === x).reduce((b, t) => b + t.probability, 0), 0) / mine.length)]));
    const zeros = layers.map(() => 0);
    byLanguage[lang] = { prompts: mine.length, own: mass[lang] ?? zeros, english: mass['en'] ?? zeros, mass };
  }
  return { model: model.dir, identifier: identifier.name, topK: k, layers, intervention: null, prompts: out, byLanguage };
}
