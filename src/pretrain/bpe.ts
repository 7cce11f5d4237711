// A byte-level BPE trainer that writes Hugging Face `tokenizer.json` files (the layout of Llama 3 / GPT-2):
//   pre-tokenizer  Split(SPLIT_PATTERN, Isolated) then ByteLevel (bytes -> printable characters, no prefix space);
//   model          BPE over the 256 byte characters plus the learned merges (no unk token: every byte is in the vocab);
//   post-processor TemplateProcessing that puts BOS first; decoder ByteLevel.
// Ids: the special tokens first (0, 1, ...), then the 256 bytes in byte order, then one id per merge in merge order.
//
// Training: the text is pre-tokenized into words (counted once per distinct word), each word starts as its bytes,
// and the most frequent adjacent pair is merged until the vocabulary is full or no pair occurs `minFrequency` times.
// Ties are broken by the smaller (left id, right id), so the result is a function of the text alone. Pair counts are
// updated incrementally: a merge only revisits the words that contain the merged pair (an index from pair to words),
// and a max-heap with lazy deletion finds the next pair.
import { LangneuronsError } from '../errors.js';

/** Llama 3's split pattern, with `(?i:'s|…)` spelled as explicit case classes (the same regex in JavaScript and Oniguruma). */
export const SPLIT_PATTERN =
  "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

export const DEFAULT_SPECIAL_TOKENS: readonly string[] = Object.freeze(['<|bos|>', '<|eos|>']);

export interface BpeTrainOptions {
  /** Total ids: special tokens + 256 bytes + merges. */
  vocabSize: number;
  /** Special tokens, ids 0.. in this order; the first is BOS, the second EOS (default <|bos|>, <|eos|>). */
  specialTokens?: readonly string[];
  /** Stop when the best pair occurs fewer times (default 2). */
  minFrequency?: number;
}

export interface TrainedBpe {
  specialTokens: string[];
  /** Token string (byte-level characters) -> id. */
  vocab: Map<string, number>;
  /** Merges in rank order, as [left, right] token strings. */
  merges: [string, string][];
}

/** GPT-2's bytes_to_unicode: each byte -> one printable character (printable Latin-1 bytes map to themselves). */
export function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const table: string[] = new Array<string>(256);
  for (const b of keep) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  return table;
}

/** The pre-tokenizer's words of a text (before the byte-level mapping). */
export function splitWords(text: string): string[] {
  return text.match(new RegExp(SPLIT_PATTERN, 'gu')) ?? [];
}

/** Max-heap of (count, left, right): highest count first, then the smaller left id, then the smaller right id. */
class PairHeap {
  private readonly items: [number, number, number][] = [];
  get size(): number { return this.items.length; }
  private before(a: [number, number, number], b: [number, number, number]): boolean {
    return a[0] !== b[0] ? a[0] > b[0] : a[1] !== b[1] ? a[1] < b[1] : a[2] < b[2];
  }
  push(item: [number, number, number]): void {
    const h = this.items;
    h.push(item);
    for (let i = h.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): [number, number, number] | undefined {
    const h = this.items;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.before(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

const PAIR = 1 << 16; // ids stay below 65536 (checked)
const pairKey = (a: number, b: number) => a * PAIR + b;

/** Trains a byte-level BPE on `texts` (each text pre-tokenized on its own). */
export function trainBpe(texts: Iterable<string>, options: BpeTrainOptions): TrainedBpe {
  const specialTokens = [...(options.specialTokens ?? DEFAULT_SPECIAL_TOKENS)];
  const minFrequency = options.minFrequency ?? 2;
  const base = specialTokens.length + 256;
  if (!Number.isInteger(options.vocabSize) || options.vocabSize < base)
    throw new LangneuronsError('E_OPTIONS', `tokenizer vocabulary size must be an integer >= ${base} (256 bytes + ${specialTokens.length} special tokens), got ${options.vocabSize}`, { field: 'tokenizer-vocab' });
  if (options.vocabSize > PAIR) throw new LangneuronsError('E_OPTIONS', `tokenizer vocabulary size must be <= ${PAIR}, got ${options.vocabSize}`, { field: 'tokenizer-vocab' });
  if (new Set(specialTokens).size !== specialTokens.length) throw new LangneuronsError('E_OPTIONS', 'special tokens must be distinct', { field: 'special-tokens' });

  // Distinct words and their counts; symbols are ids (bytes at specialTokens.length + byte).
  const counts = new Map<string, number>();
  for (const text of texts) for (const w of splitWords(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const encoder = new TextEncoder();
  const words: number[][] = [], freq: number[] = [];
  for (const [w, c] of counts) {
    words.push(Array.from(encoder.encode(w), (b) => specialTokens.length + b));
    freq.push(c);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (wi: number, sign: 1 | -1, touched: Set<number>) => {
    const s = words[wi]!, f = freq[wi]! * sign;
    for (let i = 0; i + 1 < s.length; i++) {
      const k = pairKey(s[i]!, s[i + 1]!);
      pairCount.set(k, (pairCount.get(k) ?? 0) + f);
      touched.add(k);
      if (sign > 0) {
        let set = pairWords.get(k);
        if (!set) pairWords.set(k, (set = new Set()));
        set.add(wi);
      }
    }
  };
  const heap = new PairHeap();
  const pushPairs = (keys: Iterable<number>) => {
    for (const k of keys) {
      const c = pairCount.get(k) ?? 0;
      if (c > 0) heap.push([c, Math.floor(k / PAIR), k % PAIR]);
      else { pairCount.delete(k); pairWords.delete(k); }
    }
  };
  const initial = new Set<number>();
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1, initial);
  pushPairs(initial);

  const tokens: string[] = [...specialTokens];
  const bytes = byteToUnicode();
  for (let b = 0; b < 256; b++) tokens.push(bytes[b]!);
  const merges: [string, string][] = [];
  while (tokens.length < options.vocabSize && heap.size > 0) {
    const [c, a, b] = heap.pop()!;
    const k = pairKey(a, b);
    if (pairCount.get(k) !== c) continue; // stale entry
    if (c < minFrequency) break;
    const id = tokens.length;
    tokens.push(tokens[a]! + tokens[b]!);
    merges.push([tokens[a]!, tokens[b]!]);
    const touched = new Set<number>();
    for (const wi of pairWords.get(k) ?? []) {
      const s = words[wi]!;
      let has = false;
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) { has = true; break; }
      if (!has) continue;
      addPairs(wi, -1, touched);
      const out: number[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(id); i++; } else out.push(s[i]!);
      }
      words[wi] = out;
      addPairs(wi, 1, touched);
    }
    pairWords.delete(k);
    pushPairs(touched);
  }
  return { specialTokens, vocab: new Map(tokens.map((t, i) => [t, i])), merges };
}

/** The tokenizer.json document of a trained BPE (Hugging Face `tokenizers` format 1.0). */
export function tokenizerJson(bpe: TrainedBpe): Record<string, unknown> {
  const bos = bpe.specialTokens[0];
  const added = bpe.specialTokens.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const template = bos === undefined ? null : {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [bos]: { id: bos, ids: [bpe.vocab.get(bos)!], tokens: [bos] } },
  };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: SPLIT_PATTERN }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: template,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: Object.fromEntries(bpe.vocab),
      merges: bpe.merges.map(([l, r]) => `${l} ${r}`),
    },
  };
}

/** tokenizer_config.json for a trained BPE: BOS added by the post-processor, EOS named for generation. */
export function tokenizerConfigJson(bpe: TrainedBpe, maxLength: number): Record<string, unknown> {
  const [bos, eos] = bpe.specialTokens;
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: bos ?? null,
    eos_token: eos ?? null,
    add_bos_token: bos !== undefined,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: maxLength,
  };
}
