// Per-language loss of a model on UDHR articles: each article is one document (BOS + its tokens), scored in
// windows of at most `window` tokens (the training context); the mean NLL per predicted token over a language's
// articles, in nats.
import { loadModel, type LanguageModel } from '../engine/model.js';
import { scoreTokens } from '../engine/score.js';

export interface LanguageLoss { lang: string; meanNll: number; tokens: number; bytes: number; bitsPerByte: number }

export async function languageLosses(model: LanguageModel, texts: Map<string, string[]>, window: number): Promise<LanguageLoss[]> {
  const tok = model.requireTokenizer();
  const w = Math.min(window, model.contextLength);
  const out: LanguageLoss[] = [];
  for (const [lang, docs] of texts) {
    let nll = 0, tokens = 0, bytes = 0;
    for (const doc of docs) {
      const ids = tok.encode(doc);
      if (ids.length < 2) continue;
      const r = await scoreTokens(model, ids, { window: w, stride: Math.max(1, Math.floor(w / 2)) });
      nll += r.totalNll;
      tokens += r.tokens;
      bytes += Buffer.byteLength(doc);
    }
    out.push({ lang, meanNll: nll / tokens, tokens, bytes, bitsPerByte: nll / Math.LN2 / bytes });
  }
  return out;
}

/** Loads the model folder and scores each language's texts. */
export async function evaluateFolder(dir: string, texts: Map<string, string[]>, window: number, threads = 2): Promise<LanguageLoss[]> {
  const model = await loadModel(dir, { threads });
  return languageLosses(model, texts, window);
}
