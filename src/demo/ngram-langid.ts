// A character n-gram language identifier trained on the model's own training text (the UDHR articles of its
// languages). CLD2 and ELD know none of the output of a small model trained from scratch, and ELD lacks several
// of its languages; a naive-Bayes model of character 1- to 3-grams of exactly the text the model learned from
// recognises that text (and scripts it has never seen are "none"). Its accuracy on held-out articles is
// measured and recorded with the demo's results.
//
//   features(text) = every character n-gram (n = 1..maxOrder) of " " + lowercase(text) + " ", whitespace runs
//                    collapsed; digits and punctuation dropped (they carry no language);
//   score(lang)    = Σ_features log((count_lang(g) + α) / (total_lang,n + α·V_n)), V_n = distinct n-grams of
//                    order n over all languages (add-α smoothing, α = 0.5);
//   label          = argmax; "none" when the text has fewer than `minLetters` letters, or when fewer than half of
//                    its letters occur in any language's training text (a script none of them is written in).
// The posterior of the top label (softmax of the scores divided by the number of features) is reported as a
// confidence.

export interface NgramIdentification {
  /** The top language, or null for text without enough letters. */
  language: string | null;
  /** Softmax over languages of the per-feature mean log-likelihood. */
  confidence: number;
}

export interface NgramIdentifierOptions {
  maxOrder?: number;
  alpha?: number;
  minLetters?: number;
}

/** Normalised text the features are read from: lower case, letters and marks only, single spaces. */
export function normaliseForNgrams(text: string): string {
  return ` ${text.toLowerCase().replace(/[^\p{L}\p{M}]+/gu, ' ').trim()} `;
}

function* ngrams(text: string, maxOrder: number): Generator<[number, string]> {
  const chars = [...text];
  for (let n = 1; n <= maxOrder; n++)
    for (let i = 0; i + n <= chars.length; i++) {
      const g = chars.slice(i, i + n).join('');
      if (g !== ' ') yield [n, g];
    }
}

export class NgramIdentifier {
  readonly languages: string[];
  private readonly maxOrder: number;
  private readonly alpha: number;
  private readonly minLetters: number;
  /** Per language, per order: counts and total. */
  private readonly counts = new Map<string, { grams: Map<string, number>; totals: number[] }>();
  private readonly vocabulary: number[];
  /** Every letter of the training text. */
  private readonly letters = new Set<string>();

  constructor(training: Map<string, string[]>, options: NgramIdentifierOptions = {}) {
    this.maxOrder = options.maxOrder ?? 3;
    this.alpha = options.alpha ?? 0.5;
    this.minLetters = options.minLetters ?? 4;
    this.languages = [...training.keys()];
    const distinct = Array.from({ length: this.maxOrder + 1 }, () => new Set<string>());
    for (const [lang, texts] of training) {
      const grams = new Map<string, number>(), totals = new Array<number>(this.maxOrder + 1).fill(0);
      for (const t of texts)
        for (const [n, g] of ngrams(normaliseForNgrams(t), this.maxOrder)) {
          grams.set(g, (grams.get(g) ?? 0) + 1);
          totals[n]!++;
          distinct[n]!.add(g);
          if (n === 1) this.letters.add(g);
        }
      this.counts.set(lang, { grams, totals });
    }
    this.vocabulary = distinct.map((s) => s.size);
  }

  /** Mean log-likelihood per feature of each language. */
  scores(text: string): Map<string, number> {
    const feats = [...ngrams(normaliseForNgrams(text), this.maxOrder)];
    const out = new Map<string, number>();
    for (const [lang, { grams, totals }] of this.counts) {
      let s = 0;
      for (const [n, g] of feats) s += Math.log(((grams.get(g) ?? 0) + this.alpha) / (totals[n]! + this.alpha * this.vocabulary[n]!));
      out.set(lang, feats.length ? s / feats.length : 0);
    }
    return out;
  }

  identify(text: string): NgramIdentification {
    const letters = [...normaliseForNgrams(text).replaceAll(' ', '')];
    if (letters.length < this.minLetters) return { language: null, confidence: 0 };
    if (letters.filter((c) => this.letters.has(c)).length * 2 < letters.length) return { language: null, confidence: 0 };
    const scores = this.scores(text);
    let best: string | null = null, bestScore = -Infinity;
    for (const [lang, s] of scores) if (s > bestScore) { best = lang; bestScore = s; }
    if (best === null) return { language: null, confidence: 0 };
    // Per-feature mean log-likelihoods × the feature count would make the posterior ~1 for any long text; the
    // mean keeps it readable as a margin.
    let z = 0;
    for (const s of scores.values()) z += Math.exp(s - bestScore);
    return { language: best, confidence: 1 / z };
  }
}

/** Cuts texts into pieces of about `chars` characters at spaces (for measuring the identifier's accuracy). */
export function pieces(text: string, chars: number): string[] {
  const out: string[] = [];
  let cur = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    cur = cur ? `${cur} ${word}` : word;
    if ([...cur].length >= chars) { out.push(cur); cur = ''; }
  }
  if (cur && [...cur].length >= chars / 2) out.push(cur);
  // Scripts without spaces (Han): a whole article is one "word"; cut it by characters.
  return out.flatMap((p) => {
    const cs = [...p];
    if (cs.length <= chars * 2) return [p];
    const parts: string[] = [];
    for (let i = 0; i < cs.length; i += chars) parts.push(cs.slice(i, i + chars).join(''));
    return parts;
  });
}

export interface IdentifierAccuracy {
  /** Pieces of held-out text per language and their length in characters. */
  pieceChars: number;
  pieces: number;
  accuracy: number;
  perLanguage: Record<string, { pieces: number; correct: number }>;
}

/** Accuracy on held-out texts cut into pieces of about `pieceChars` characters. */
export function identifierAccuracy(id: NgramIdentifier, heldout: Map<string, string[]>, pieceChars: number): IdentifierAccuracy {
  const perLanguage: Record<string, { pieces: number; correct: number }> = {};
  let total = 0, correct = 0;
  for (const [lang, texts] of heldout) {
    const r = { pieces: 0, correct: 0 };
    for (const t of texts)
      for (const p of pieces(t, pieceChars)) {
        r.pieces++;
        if (id.identify(p).language === lang) r.correct++;
      }
    Object.defineProperty(perLanguage, lang, { value: r, enumerable: true, writable: true, configurable: true });
    total += r.pieces;
    correct += r.correct;
  }
  return { pieceChars, pieces: total, accuracy: total ? correct / total : 0, perLanguage };
}
