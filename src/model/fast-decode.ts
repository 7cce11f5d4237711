/**
 * Tokenizer.decode of `@huggingface/tokenizers` (0.2) with its two linear scans replaced by set lookups.
 *
 * Why: the library tests every token against the list of special tokens (skip_special_tokens) and, in the
 * ByteLevel decoder, against the list of added tokens, so decoding n ids costs n x (number of added tokens)
 * string compares. Llama 3 has 256 added tokens: 256 ids took ~250 us, most of it in those scans, and greedy
 * generation with stop strings decodes every sequence's output at every step.
 *
 * What: the same steps as the library's `Tokenizer.decode` and `ByteLevel.decode_chain`, in the same order, with
 * the library's own per-token work (the decoder, `convert_tokens_to_string`) called as it is; only membership
 * tests change. test/tokenizer-decode.test.ts checks it against the library's decode on random id sequences of
 * every tokenizer the tests have. Where the library's internals are not as expected (another version),
 * `fastDecoder` returns null and the caller uses the library's decode.
 */
import * as tokenizers from '@huggingface/tokenizers';
import type { Tokenizer } from '@huggingface/tokenizers';

// Exported by the library, though its type declarations do not resolve it here.
const ByteLevelDecoder = (tokenizers as unknown as { ByteLevelDecoder?: abstract new (...args: never[]) => unknown }).ByteLevelDecoder;

export type FastDecode = (ids: readonly number[], skipSpecialTokens: boolean, cleanUpSpaces: boolean) => string;

/** The fields of the library's Tokenizer and Decoder that its decode reads (not in its type declarations). */
interface DecoderInternals {
  (tokens: string[]): string;
  added_tokens?: { content: string }[];
  end_of_word_suffix?: string | null;
  convert_tokens_to_string?: (tokens: string[]) => string;
}
interface TokenizerInternals {
  model?: { vocab?: unknown; unk_token?: unknown };
  special_tokens?: unknown;
  decoder?: DecoderInternals | null;
}

/** transformers' clean_up_tokenization, as the library applies it after the decoder. */
export function cleanUpTokenization(text: string): string {
  return text.replace(/ \./g, '.').replace(/ \?/g, '?').replace(/ !/g, '!').replace(/ ,/g, ',').replace(/ ' /g, "'")
    .replace(/ n't/g, "n't").replace(/ 'm/g, "'m").replace(/ 's/g, "'s").replace(/ 've/g, "'ve").replace(/ 're/g, "'re");
}

export function fastDecoder(tokenizer: Tokenizer): FastDecode | null {
  const t = tokenizer as unknown as TokenizerInternals;
  const vocab = t.model?.vocab;
  const unk = t.model?.unk_token;
  const decoder = t.decoder;
  if (!Array.isArray(vocab) || !Array.isArray(t.special_tokens) || (decoder !== null && typeof decoder !== 'function')) return null;
  const special = new Set(t.special_tokens as string[]);
  const tokenOf = (id: number): string => (vocab[id] as string | undefined) ?? (unk as string);

  // ByteLevel's decode_chain: runs of ordinary tokens become bytes -> UTF-8; an added token stands as it is.
  let chain: ((tokens: string[]) => string) | null = null;
  if (decoder && ByteLevelDecoder && decoder instanceof ByteLevelDecoder) {
    const convert = decoder.convert_tokens_to_string;
    const addedTokens = decoder.added_tokens;
    if (!Array.isArray(addedTokens) || typeof convert !== 'function') return null;
    const added = new Set(addedTokens.map((a) => a.content));
    chain = (tokens) => {
      let text = '';
      let run: string[] = [];
      for (const token of tokens) {
        if (added.has(token)) {
          if (run.length) { text += convert.call(decoder, run); run = []; }
          text += token;
        } else run.push(token);
      }
      return run.length ? text + convert.call(decoder, run) : text;
    };
  }

  return (ids, skipSpecialTokens, cleanUpSpaces) => {
    const tokens: string[] = [];
    for (const id of ids) {
      const token = tokenOf(id);
      if (!(skipSpecialTokens && special.has(token))) tokens.push(token);
    }
    let decoded = chain ? chain(tokens) : decoder ? decoder(tokens) : tokens.join(' ');
    const suffix = decoder?.end_of_word_suffix;
    if (decoder && suffix) {
      decoded = decoded.replaceAll(suffix, ' ');
      if (skipSpecialTokens) decoded = decoded.trim();
    }
    return cleanUpSpaces ? cleanUpTokenization(decoded) : decoded;
  };
}
