// spBLEU: BLEU on SentencePiece pieces (sacreBLEU's TokenizerSPM: " ".join(sp.EncodeAsPieces(line))), with the
// SentencePiece model the user names (`--bleu-tokenize spm:<file>`). The model is read in its Hugging Face
// tokenizers conversion (tokenizer.json: Unigram model, Metaspace pre-tokenizer), which @huggingface/tokenizers
// runs, or a raw SentencePiece `.model` (protobuf) of a Unigram model, converted as transformers' SpmConverter
// does (spm-model.ts).
// Known differences from sentencepiece: a character outside the vocabulary is the unknown token's string
// ("<unk>") here, while EncodeAsPieces returns the character itself; and @huggingface/tokenizers 0.2 does not
// apply a `Precompiled` normalizer's charsmap but approximates it (NFKC, control characters dropped, Unicode
// spaces to " "), which is what sentencepiece's default nmt_nfkc rule does for almost all text.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

import { LangneuronsError, describeError } from '../../errors.js';
import type { CustomBleuTokenizer } from './bleu.js';
import { readSpmModel, spmTokenizerJson } from './spm-model.js';

function fail(file: string, message: string): never {
  throw new LangneuronsError('E_OPTIONS', `${file}: ${message}`, { file, field: 'bleu-tokenize' });
}

/** The spBLEU tokenizer of a tokenizer.json; its name (in the BLEU signature) is spm-<file name>-<sha256[:12]>. */
export async function loadSpmTokenizer(file: string): Promise<CustomBleuTokenizer> {
  let bytes: Buffer;
  try { bytes = await fsp.readFile(file); } catch (e) { fail(file, `cannot read the SentencePiece tokenizer: ${describeError(e)}`); }
  let json: { model?: { type?: unknown } };
  if (file.endsWith('.model')) {
    try { json = spmTokenizerJson(readSpmModel(bytes)); } catch (e) { fail(file, `not a usable SentencePiece model: ${describeError(e)}`); }
  } else {
    try { json = JSON.parse(bytes.toString('utf8')); } catch (e) { fail(file, `not a tokenizer.json (${describeError(e)})`); }
  }
  if (typeof json.model !== 'object' || json.model === null) fail(file, 'not a tokenizer.json: no "model" section');
  let tok: Tokenizer;
  try { tok = new Tokenizer(json, {}); } catch (e) { fail(file, `cannot build the tokenizer: ${describeError(e)}`); }
  const name = `spm-${path.basename(file)}-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}`;
  return { name, tokenize: (line: string) => tok.tokenize(line, { add_special_tokens: false }).join(' ') };
}
