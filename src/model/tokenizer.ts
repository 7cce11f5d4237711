/**
 * Tokenizer of a checkpoint directory: tokenizer.json (+ tokenizer_config.json) run by the pure-JS
 * `@huggingface/tokenizers`, plus the special-token facts generation needs (BOS, every EOS id).
 *
 * BOS policy (encode with addSpecialTokens, the default):
 *   - tokenizer_config.json `add_bos_token: true|false` decides (as transformers' Llama tokenizers do,
 *     which rebuild their post-processor from it): BOS is prepended when tokenizer.json's
 *     post-processor does not add it, or removed when it does but add_bos_token is false.
 *   - Without `add_bos_token`: if the post-processor adds BOS, keep it; otherwise prepend BOS when
 *     tokenizer_config.json names a `bos_token` (Llama 3 files whose post-processor is bare ByteLevel
 *     still expect <|begin_of_text|>). Qwen sets `bos_token: null`, so nothing is added.
 *   - Without tokenizer_config.json: whatever tokenizer.json's post-processor does.
 * `addsBos` reports the outcome: whether encode(text) starts with BOS.
 * add_eos_token is not emulated (no supported model family sets it).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { LangneuronsError, describeError } from '../errors.js';
import type { ModelConfig } from './config.js';
import { fastDecoder, type FastDecode } from './fast-decode.js';

export interface EncodeOptions {
  /** Add BOS (and whatever else the post-processor adds). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
  /** transformers' clean_up_tokenization_spaces (" ." -> "."); default from tokenizer_config.json. */
  cleanUpTokenizationSpaces?: boolean;
  /** Ids past the tokenizer's vocabulary decode to nothing, as transformers' decode skips ids it has no token for: a
   *  model's embedding may have more rows than its tokenizer has tokens (Qwen2.5-7B: 152064 for 151665), and
   *  sampling or steering can pick one. Default false: such an id is refused. */
  skipUnknownIds?: boolean;
}

/** Incremental detokenizer: feed ids one at a time, get only the newly completed text. */
export interface DecodeStream {
  /** Adds one id; returns text that became final (possibly ''), never half a UTF-8 character. */
  step(id: number): string;
  /** Returns whatever is still held back (e.g. an incomplete byte sequence at the end, as U+FFFD). */
  flush(): string;
  /** What flush would return now, without ending the hold: the text so far is everything returned + held(). */
  held(): string;
}

type Json = Record<string, unknown>;

/** Decoders whose output for a token depends on nothing but it, its neighbours and the start of the text. */
const LOCAL_DECODERS = new Set(['ByteLevel', 'Metaspace', 'Replace', 'ByteFallback', 'Fuse', 'Strip']);

function fail(file: string, message: string, cause?: unknown): never {
  throw new LangneuronsError('E_TOKENIZER', `${path.basename(file)}: ${message}`, { file, ...(cause === undefined ? {} : { cause }) });
}

async function readJson(file: string, required: boolean): Promise<Json | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    fail(file, `cannot read ${file}: ${describeError(err)}`, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail(file, `invalid JSON in ${file}: ${describeError(err)}`, err);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(file, 'expected a JSON object');
  return json as Json;
}

/** tokenizer_config.json writes special tokens as "text" or { content: "text", ... }. */
function specialTokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json)['content'] === 'string') return (v as Json)['content'] as string;
  return null;
}

function idList(v: unknown): number[] {
  const list = Array.isArray(v) ? v : [v];
  return list.filter((x): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0);
}

export class LoadedTokenizer {
  /** Number of ids (max id + 1 over the vocabulary and added tokens). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  /** All ids that end generation (generation_config.json, config.json, tokenizer_config.json). */
  readonly eosTokenIds: number[];
  /** Whether encode(text) (with special tokens) starts with BOS. */
  readonly addsBos: boolean;
  /** Whether tokenizer.json's own post-processor adds BOS (informational). */
  readonly postProcessorAddsBos: boolean;
  private readonly cleanUpSpaces: boolean;
  /** The library's decode without its per-token list scans (fast-decode.ts); null: the library's own. */
  private readonly fastDecode: FastDecode | null;

  /** @internal Made by loadTokenizer (the library's type stays out of the published declarations). */
  constructor(
    readonly file: string,
    private readonly inner: Tokenizer,
    tokenizerConfig: Json | null,
    modelFacts: { bosTokenId: number | null; eosTokenIds: number[] },
  ) {
    let maxId = -1;
    for (const id of inner.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    const bosText = specialTokenText(tokenizerConfig?.['bos_token']);
    const bosFromTokenizer = bosText === null ? undefined : inner.token_to_id(bosText);
    this.bosTokenId = bosFromTokenizer ?? modelFacts.bosTokenId;

    const eosText = specialTokenText(tokenizerConfig?.['eos_token']);
    const eosFromTokenizer = eosText === null ? undefined : inner.token_to_id(eosText);
    this.eosTokenIds = [...new Set([...modelFacts.eosTokenIds, ...(eosFromTokenizer === undefined ? [] : [eosFromTokenizer])])];

    const probeWith = inner.encode('a', { add_special_tokens: true }).ids;
    const probeWithout = inner.encode('a', { add_special_tokens: false }).ids;
    this.postProcessorAddsBos = this.bosTokenId !== null && probeWith[0] === this.bosTokenId && probeWithout[0] !== this.bosTokenId;

    const addBosSetting = tokenizerConfig?.['add_bos_token'];
    if (typeof addBosSetting === 'boolean') this.addsBos = addBosSetting && this.bosTokenId !== null;
    else if (this.postProcessorAddsBos) this.addsBos = true;
    else this.addsBos = bosFromTokenizer !== undefined;

    this.cleanUpSpaces = tokenizerConfig?.['clean_up_tokenization_spaces'] === true;
    this.fastDecode = fastDecoder(inner);
  }

  /**
   * Whether a character of decode's text depends only on its own ids, those shortly before and the start of the
   * text, so that the decode stream's text is decode's and an edit near the end leaves the rest as it was
   * (generate/stops.ts relies on it). True for the decoders of the supported families (ByteLevel; Metaspace;
   * sequences of Replace, ByteFallback, Fuse, Strip); false for others, such as BPE's end-of-word suffix,
   * whose decode trims the whole text.
   */
  get decodesLocally(): boolean {
    const decoder = (this.inner as unknown as { decoder?: { config?: Json; end_of_word_suffix?: unknown } | null }).decoder;
    if (!decoder) return true;
    if (decoder.end_of_word_suffix) return false;
    const local = (c: unknown): boolean => {
      const type = (c as Json | undefined)?.['type'];
      if (type === 'Sequence') return Array.isArray((c as Json)['decoders']) && ((c as Json)['decoders'] as unknown[]).every(local);
      return typeof type === 'string' && LOCAL_DECODERS.has(type);
    };
    return local(decoder.config);
  }

  /** Whether decode runs fast-decode.ts's set lookups rather than the library's list scans (for the tests). */
  get decodesFast(): boolean {
    return this.fastDecode !== null;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new LangneuronsError('E_INPUT', `encode: the text must be a string, got ${text === null ? 'null' : typeof text}`);
    const addSpecial = options.addSpecialTokens ?? true;
    const ids = this.inner.encode(text, { add_special_tokens: addSpecial }).ids;
    if (!addSpecial || this.bosTokenId === null) return ids;
    if (this.addsBos && !this.postProcessorAddsBos) return [this.bosTokenId, ...ids];
    if (!this.addsBos && this.postProcessorAddsBos && ids[0] === this.bosTokenId) return ids.slice(1);
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skipUnknown = options.skipUnknownIds ?? false;
    let unknown = false;
    for (const id of ids) {
      if (!Number.isSafeInteger(id) || id < 0 || (id >= this.vocabSize && !skipUnknown)) {
        fail(this.file, `cannot decode token id ${id}: ids run from 0 to ${this.vocabSize - 1}`);
      }
      if (id >= this.vocabSize) unknown = true;
    }
    if (unknown) ids = ids.filter((id) => id < this.vocabSize);
    if (ids.length === 0) return ''; // tokenizers.js refuses an empty list
    const skip = options.skipSpecialTokens ?? false;
    const cleanUp = options.cleanUpTokenizationSpaces ?? this.cleanUpSpaces;
    if (this.fastDecode) return this.fastDecode(ids, skip, cleanUp);
    return this.inner.decode([...ids], { skip_special_tokens: skip, clean_up_tokenization_spaces: cleanUp });
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  /**
   * Streaming detokenizer (the scheme of Hugging Face's DecodeStream / TGI): decode a short window
   * of recent ids with and without the new id and emit the difference, unless the text ends in
   * U+FFFD, i.e. a multi-byte character is still incomplete (byte-fallback and byte-level
   * tokenizers spread one character over several ids). Decoding a window rather than single ids
   * keeps decoder context such as the leading-space rules of sentencepiece. Space clean-up is off
   * so that chunks concatenate to exactly decode(all ids).
   */
  createDecodeStream(options: Pick<DecodeOptions, 'skipSpecialTokens' | 'skipUnknownIds'> = {}): DecodeStream {
    const opts: DecodeOptions = { skipSpecialTokens: options.skipSpecialTokens ?? false, cleanUpTokenizationSpaces: false,
      skipUnknownIds: options.skipUnknownIds ?? false };
    let ids: number[] = [];
    let readOffset = 0; // ids[0, readOffset) decode to the text already emitted from the window
    let prefixText = ''; // their text: unchanged until the next emission, so decoded once
    let held = ''; // text of the ids after readOffset, not emitted yet
    const emit = (force: boolean): string => {
      const newText = this.decode(ids, opts);
      held = newText.length > prefixText.length ? newText.slice(prefixText.length) : '';
      if (held && (force || !newText.endsWith('\uFFFD'))) {
        const out = held;
        // Drop ids before the new window so memory stays bounded during long generations.
        ids = ids.slice(readOffset);
        readOffset = ids.length;
        prefixText = this.decode(ids, opts);
        held = '';
        return out;
      }
      return '';
    };
    return {
      step: (id: number) => {
        ids.push(id);
        return emit(false);
      },
      held: () => held,
      flush: () => emit(true),
    };
  }
}

/**
 * Loads `<dir>/tokenizer.json` (+ tokenizer_config.json, generation_config.json if present). BOS/EOS
 * ids fall back to / are merged with the model config (given, or read loosely from config.json).
 */
export async function loadTokenizer(dir: string, config?: Pick<ModelConfig, 'bosTokenId' | 'eosTokenIds'>): Promise<LoadedTokenizer> {
  const file = path.join(dir, 'tokenizer.json');
  const tokenizerJson = (await readJson(file, true))!;
  if (typeof tokenizerJson['model'] !== 'object' || tokenizerJson['model'] === null) fail(file, 'missing the "model" section (is this a Hugging Face tokenizers file?)');
  const tokenizerConfig = await readJson(path.join(dir, 'tokenizer_config.json'), false);
  const generationConfig = await readJson(path.join(dir, 'generation_config.json'), false);

  let bosTokenId: number | null = config?.bosTokenId ?? null;
  const eos: number[] = [];
  if (generationConfig) eos.push(...idList(generationConfig['eos_token_id']));
  if (config) eos.push(...config.eosTokenIds);
  else {
    const raw = await readJson(path.join(dir, 'config.json'), false).catch(() => null);
    if (raw) {
      eos.push(...idList(raw['eos_token_id']));
      bosTokenId = idList(raw['bos_token_id'])[0] ?? null;
    }
  }
  if (bosTokenId === null && generationConfig) bosTokenId = idList(generationConfig['bos_token_id'])[0] ?? null;

  let inner: Tokenizer;
  try {
    inner = new Tokenizer(tokenizerJson, tokenizerConfig ?? {});
  } catch (err) {
    fail(file, `cannot build tokenizer: ${describeError(err)}`, err);
  }
  try {
    return new LoadedTokenizer(file, inner, tokenizerConfig, { bosTokenId, eosTokenIds: eos });
  } catch (err) {
    if (err instanceof LangneuronsError) throw err;
    fail(file, `tokenizer does not work: ${describeError(err)}`, err);
  }
}
