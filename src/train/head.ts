// The linear classification head (Mondal et al.'s XNLI setting; transformers' LlamaForSequenceClassification):
// class logits = score.weight · h (+ score.bias), h = the final-normed hidden state of the item's last token. The bias
// is optional: transformers' score layer has none, Mondal et al.'s head (a torch.nn.Linear) has one.
//
// Items come from JSONL in the Hugging Face layout (XNLI: premise, hypothesis, label). Several text fields are
// tokenised as transformers tokenises a pair for Llama tokenizers, `tokenizer(premise, hypothesis)`:
// [BOS] premise [BOS] hypothesis, i.e. each field encoded with the model's special tokens and concatenated. Items
// longer than the limit are cut as truncation='longest_first' does: tokens come off the end of the longest field.
//
// A head folder holds head.safetensors (score.weight [numLabels, hidden] and, with a bias, score.bias [numLabels],
// F32) and head.json.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureOutputDir } from '../io/outdir.js';
import { readTextFile } from '../io/text.js';
import { readAllTensors, writeSafetensors } from '../io/safetensors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { modelIdentity } from '../profile/identity.js';
import type { NativeTrainer } from './native.js';
import type { LanguageModel } from '../engine/model.js';
import type { Intervention } from '../intervene/index.js';
import { sha256 } from './delta.js';

export const HEAD_FORMAT = 'langneurons-head/1';

/**
 * How an item's text fields become one token sequence: 'pair' (default) as transformers' tokenizer(premise,
 * hypothesis) for Llama tokenizers, each field with its BOS; 'eos-joined' as Mondal et al.'s public code, one text
 * `premise + " " + eos_token + " " + hypothesis` encoded once (with BOS), cut from the end.
 */
export type PairFormat = 'pair' | 'eos-joined';
export const PAIR_FORMATS: readonly PairFormat[] = ['pair', 'eos-joined'];

export interface HeadSettings {
  numLabels: number;
  /** JSONL text fields, tokenised as a pair / tuple (default premise, hypothesis). */
  textFields: string[];
  labelField: string;
  /** Absent in heads written before it existed: 'pair'. */
  pairFormat?: PairFormat;
  /** The head has a bias score.bias (absent: none). */
  bias?: boolean;
}

export interface HeadInfo extends HeadSettings {
  format: typeof HEAD_FORMAT;
  model: { name: string; fingerprint: string };
  hidden: number;
  /** Longest item in tokens (training's --chunk): longer items are cut the same way when scoring. */
  maxLen: number;
  method: string;
  step: number;
}

export interface ClsItem { ids: Int32Array; label: number }

function inputErr(file: string, msg: string): never {
  throw new LangneuronsError('E_INPUT', `${file}: ${msg}`, { file });
}

/**
 * Token ids of one item: the fields encoded one by one (with special tokens) and concatenated, cut to maxLen; with
 * `join` (the 'eos-joined' format: " <eos text> "), the fields joined by it and encoded as one text, cut at the end.
 */
export function encodeItem(texts: string[], encode: (s: string) => number[], maxLen: number, join?: string): Int32Array {
  if (join !== undefined) return Int32Array.from(encode(texts.join(join)).slice(0, maxLen));
  const parts = texts.map(encode);
  let excess = parts.reduce((s, p) => s + p.length, 0) - maxLen;
  while (excess > 0) { // longest_first: one token off the end of the longest part at a time
    let k = 0;
    for (let i = 1; i < parts.length; i++) if (parts[i]!.length > parts[k]!.length) k = i;
    parts[k]!.pop();
    excess--;
  }
  return Int32Array.from(parts.flat());
}

/** The separator of the 'eos-joined' format for this tokenizer (" </s> "), or undefined for 'pair'. */
export function pairJoin(format: PairFormat | undefined, tok: { eosTokenIds: number[]; decode(ids: number[]): string }): string | undefined {
  if ((format ?? 'pair') === 'pair') return undefined;
  const eos = tok.eosTokenIds[0];
  if (eos === undefined) throw new LangneuronsError('E_TOKENIZER', "--pair-format eos-joined needs the tokenizer's EOS token; this tokenizer has none");
  return ` ${tok.decode([eos])} `;
}

/** Reads a JSONL file of labelled items (one JSON object per non-empty line); `join`: see encodeItem. */
export async function loadClsItems(file: string, encode: (s: string) => number[], s: HeadSettings, maxLen: number,
  what: string, join?: string): Promise<{ items: ClsItem[]; sha: string }> {
  const text = await readTextFile(file, what);
  const items: ClsItem[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch (e) {
      inputErr(file, `line ${i + 1} is not JSON (${(e as Error).message}); the ${what} file must be JSONL with fields ${[...s.textFields, s.labelField].join(', ')}`);
    }
    if (typeof o !== 'object' || o === null) inputErr(file, `line ${i + 1} is not a JSON object`);
    const texts = s.textFields.map((f) => {
      if (typeof o[f] !== 'string') inputErr(file, `line ${i + 1}: field "${f}" is missing or not a string (--text-field)`);
      return o[f] as string;
    });
    const label = o[s.labelField];
    if (typeof label !== 'number' || !Number.isInteger(label) || label < 0 || label >= s.numLabels)
      inputErr(file, `line ${i + 1}: label field "${s.labelField}" must be an integer in [0, ${s.numLabels}), got ${JSON.stringify(label)}`);
    items.push({ ids: encodeItem(texts, encode, maxLen, join), label });
  });
  if (items.length === 0) throw new LangneuronsError('E_INPUT', `${file}: the ${what} file has no items`, { file });
  return { items, sha: sha256(text) };
}

/** One native batch of items: tokens back to back, a length and a label per item. */
export function packItems(items: { ids: Int32Array; label?: number }[]): { tokens: Int32Array; lens: Int32Array; labels: Int32Array } {
  const tokens = new Int32Array(items.reduce((s, it) => s + it.ids.length, 0));
  const lens = new Int32Array(items.length), labels = new Int32Array(items.length);
  let o = 0;
  items.forEach((it, i) => {
    tokens.set(it.ids, o);
    o += it.ids.length;
    lens[i] = it.ids.length;
    labels[i] = it.label ?? -1;
  });
  return { tokens, lens, labels };
}

export async function writeHead(dir: string, tr: NativeTrainer, ckpt: Checkpoint, s: HeadSettings, maxLen: number, method: string,
  step: number): Promise<void> {
  const p = tr.params().find((x) => x.role === 'score' && x.layer < 0);
  if (!p) throw new LangneuronsError('E_OPTIONS', 'the trainer has no classification head');
  const b = tr.params().find((x) => x.role === 'score_bias' && x.layer < 0);
  if (!!b !== !!s.bias) throw new LangneuronsError('E_OPTIONS', `the trainer's head ${b ? 'has' : 'has no'} bias, the settings say ${s.bias ? 'it has' : 'none'}`);
  const id = modelIdentity(ckpt);
  const info: HeadInfo = {
    format: HEAD_FORMAT, model: { name: id.name, fingerprint: id.fingerprint }, numLabels: s.numLabels,
    textFields: s.textFields, labelField: s.labelField, ...(s.pairFormat ? { pairFormat: s.pairFormat } : {}), ...(s.bias ? { bias: true } : {}),
    hidden: ckpt.config.hiddenSize, maxLen, method, step,
  };
  await ensureOutputDir(dir);
  await writeSafetensors(path.join(dir, 'head.safetensors'), {
    'score.weight': { dtype: 'F32', shape: [p.rows, p.cols], data: tr.read('master', p.id) },
    ...(b ? { 'score.bias': { dtype: 'F32', shape: [b.rows], data: tr.read('master', b.id) } } : {}),
  }, { format: 'pt' });
  await writeFileAtomic(path.join(dir, 'head.json'), JSON.stringify(info, null, 2) + '\n');
}

/** A head folder, or a run folder holding head/. */
export async function readHead(where: string): Promise<{ info: HeadInfo; weight: Float32Array; bias: Float32Array | null; dir: string }> {
  let dir = where;
  try {
    await fsp.access(path.join(dir, 'head.json'));
  } catch {
    dir = path.join(where, 'head');
  }
  const jf = path.join(dir, 'head.json');
  let info: HeadInfo;
  try {
    info = JSON.parse(await fsp.readFile(jf, 'utf8')) as HeadInfo;
  } catch (e) {
    throw new LangneuronsError('E_HEAD', `${where}: no classification head (head.json or head/head.json): ${(e as Error).message}`, { file: where });
  }
  if (info?.format !== HEAD_FORMAT || !Number.isInteger(info.numLabels) || info.numLabels < 1)
    throw new LangneuronsError('E_HEAD', `${jf}: not a ${HEAD_FORMAT} description`, { file: jf });
  if (info.pairFormat !== undefined && !PAIR_FORMATS.includes(info.pairFormat))
    throw new LangneuronsError('E_HEAD', `${jf}: pairFormat must be one of ${PAIR_FORMATS.join(', ')}, got ${JSON.stringify(info.pairFormat)}`, { file: jf });
  if (info.bias !== undefined && typeof info.bias !== 'boolean')
    throw new LangneuronsError('E_HEAD', `${jf}: bias must be true or false, got ${JSON.stringify(info.bias)}`, { file: jf });
  const sf = path.join(dir, 'head.safetensors');
  const tensors = await readAllTensors(sf);
  const t = tensors.get('score.weight');
  if (!t || t.info.dtype !== 'F32' || t.info.shape.join(',') !== `${info.numLabels},${info.hidden}`)
    throw new LangneuronsError('E_HEAD', `${sf}: score.weight missing or not F32 [${info.numLabels}, ${info.hidden}]`, { file: sf });
  const b = tensors.get('score.bias');
  if (info.bias ? !b || b.info.dtype !== 'F32' || b.info.shape.join(',') !== `${info.numLabels}` : b !== undefined)
    throw new LangneuronsError('E_HEAD', info.bias ? `${sf}: score.bias missing or not F32 [${info.numLabels}] (head.json says the head has a bias)`
      : `${sf}: holds a score.bias, but head.json does not say the head has a bias`, { file: sf });
  return { info, weight: t.data as Float32Array, bias: b ? b.data as Float32Array : null, dir };
}

/**
 * Scores items with a trained head on the inference engine: the final-normed hidden state of each item's last token
 * (LogitsMode 'lastHidden') times score.weight, in float64. Any intervention of the model's forwards applies, as it
 * does to the LM head's logits (Mondal et al.'s test-time intervention on the fine-tuned classifier).
 */
export class HeadClassifier {
  private constructor(private readonly model: LanguageModel, readonly info: HeadInfo, private readonly weight: Float32Array,
    private readonly bias: Float32Array | null) {}

  static async load(model: LanguageModel, where: string): Promise<HeadClassifier> {
    const h = await readHead(where);
    if (h.info.hidden !== model.config.hiddenSize)
      throw new LangneuronsError('E_HEAD', `${h.dir}: the head is for hidden size ${h.info.hidden}, the model's is ${model.config.hiddenSize}`, { file: h.dir });
    return new HeadClassifier(model, h.info, h.weight, h.bias);
  }

  /** Class logits of tokenised items, one array per item. */
  async logits(items: Int32Array[], intervene?: Intervention): Promise<Float32Array[]> {
    if (items.length === 0) return [];
    const H = this.info.hidden, C = this.info.numLabels, W = this.weight, B = this.bias;
    const res = await this.model.forward(items, { logits: 'lastHidden', ...(intervene ? { intervene } : {}) });
    return items.map((_, i) => {
      const x = res.logits.subarray(i * H, (i + 1) * H);
      const z = new Float32Array(C);
      for (let c = 0; c < C; c++) {
        let acc = B ? B[c]! : 0;
        for (let k = 0; k < H; k++) acc += W[c * H + k]! * x[k]!;
        z[c] = acc;
      }
      return z;
    });
  }

  /** Class logits of items given as their text fields (tokenised as in training), one array per item. */
  classify(texts: string[][], encode: (s: string) => number[], intervene?: Intervention): Promise<Float32Array[]> {
    const join = pairJoin(this.info.pairFormat, this.model.requireTokenizer());
    return this.logits(texts.map((t) => encodeItem(t, encode, this.info.maxLen, join)), intervene);
  }
}
