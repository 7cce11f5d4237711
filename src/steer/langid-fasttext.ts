// fastText language identification (`--langid fasttext[:<model.bin|.ftz>]`), the identifier of Language Arithmetics'
// forcing (Gurgurov et al. 2025 label each output with fastText's lid.176) and of most corpus work (GlotLID and
// NLLB's lid218e are fastText models too). fastText itself, compiled to WebAssembly (the `fasttext.wasm.js`
// package, built from facebookresearch/fastText), runs the model: no code of ours between the text and its label.
// The package carries lid.176.ftz, the compressed form of lid.176.bin; `fasttext:<file>` loads any supervised
// fastText model (lid.176.bin as the paper used, GlotLID's model.bin, lid218e.bin) of up to 2 GiB (the package reads
// the file whole with fs.readFile, whose limit that is).
import { promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { LangneuronsError, describeError } from '../errors.js';
import type { Identification, LanguageIdentifier } from './langid.js';
import { normaliseLanguageCode } from './langid.js';

/** The first int32 of every fastText model file (.bin and .ftz), then the format version (12 since 2017). */
const FASTTEXT_MAGIC = 793712314;
const FASTTEXT_MAX_VERSION = 12;

/**
 * Labels that are Wikipedia codes rather than ISO 639 codes (lid.176 was trained on Wikipedia): `als` is the
 * Alemannic Wikipedia there (ISO 639-3 gsw), where ISO 639-3 `als` is Tosk Albanian. A label with a script
 * (GlotLID's `als_Latn`) is ISO 639-3 and keeps its meaning.
 */
const WIKIPEDIA_CODES: Record<string, string> = { als: 'gsw' };

/** A model label (`__label__en`, `__label__eng_Latn`) as a language code: the prefix dropped, Wikipedia codes mapped. */
export function fastTextLabelCode(label: string): string {
  const code = label.startsWith('__label__') ? label.slice('__label__'.length) : label;
  return WIKIPEDIA_CODES[code] ?? code;
}

/** The model carried by the fasttext.wasm.js package. */
export function bundledLid176(): string {
  const main = createRequire(import.meta.url).resolve('fasttext.wasm.js'); // <pkg>/dist/main/node.cjs
  return path.join(path.dirname(main), '..', 'models', 'language-identification', 'assets', 'lid.176.ftz');
}

interface WasmVector<T> { size(): number; get(i: number): T; delete(): void }
interface WasmModel {
  predict(text: string, k: number, threshold: number): WasmVector<[number, string]>;
  getLabels(): [WasmVector<string>, WasmVector<number>];
}

/** fs.readFile's limit, which the package's loader reads the model with. */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

async function checkModelFile(file: string): Promise<void> {
  let head: Buffer;
  let bytes = 0;
  try {
    const fh = await fsp.open(file, 'r');
    try {
      bytes = (await fh.stat()).size;
      head = Buffer.alloc(8);
      const { bytesRead } = await fh.read(head, 0, 8, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw new LangneuronsError('E_LANGID', `${file}: cannot read the fastText model (${describeError(e).split('\n')[0]})`, { file, field: '--langid' });
  }
  if (head.length < 8 || head.readInt32LE(0) !== FASTTEXT_MAGIC)
    throw new LangneuronsError('E_LANGID', `${file}: not a fastText model (expected a .bin or .ftz file starting with fastText's magic number ${FASTTEXT_MAGIC})`, { file, field: '--langid' });
  const version = head.readInt32LE(4);
  if (version < 1 || version > FASTTEXT_MAX_VERSION)
    throw new LangneuronsError('E_LANGID', `${file}: fastText model format version ${version}, expected 1 to ${FASTTEXT_MAX_VERSION}`, { file, field: '--langid' });
  if (bytes > MAX_MODEL_BYTES)
    throw new LangneuronsError('E_LANGID', `${file}: ${(bytes / 2 ** 30).toFixed(1)} GiB; fastText models of up to 2 GiB load here (quantize it: fasttext quantize)`, { file, field: '--langid' });
}

/** The labels of a model and their top-k prediction, as fastText's `predict-prob` prints them. */
export interface FastTextPredictor {
  readonly file: string;
  readonly labels: readonly string[];
  /** Top-k labels and probabilities of one line of text (newlines are spaces: fastText reads one line). */
  predict(text: string, k: number): { label: string; probability: number }[];
}

/** Loads a fastText model (default: the bundled lid.176.ftz) into its own WebAssembly instance. */
export async function loadFastText(file: string = bundledLid176()): Promise<FastTextPredictor> {
  await checkModelFile(file);
  let model: WasmModel;
  try {
    const ft = await import('fasttext.wasm.js');
    const FastText = await ft.getFastTextClass({ getFastTextModule: ft.getFastTextModule });
    model = (await new FastText().loadModel(pathToFileURL(path.resolve(file)).href)) as unknown as WasmModel;
  } catch (e) {
    throw new LangneuronsError('E_LANGID', `${file}: fastText could not load the model (${describeError(e).split('\n')[0]})`, { file, field: '--langid' });
  }
  const [labelVec, countVec] = model.getLabels();
  const labels = Array.from({ length: labelVec.size() }, (_, i) => labelVec.get(i));
  labelVec.delete();
  countVec.delete();
  return {
    file, labels,
    predict(text, k) {
      const v = model.predict(text.replace(/[\r\n]+/g, ' '), k, 0);
      try {
        return Array.from({ length: v.size() }, (_, i) => { const [probability, label] = v.get(i); return { label, probability }; });
      } finally {
        v.delete(); // the vector lives in the WebAssembly heap
      }
    },
  };
}

/**
 * fastText as a LanguageIdentifier: the top label of the text with its newlines as spaces (Language Arithmetics'
 * `detect_language`), null for empty text (their "unknown"). fastText has no reliability flag: `reliable` is a top
 * probability of at least 0.5, and `probability` is given.
 */
export async function fastTextIdentifier(file?: string): Promise<LanguageIdentifier> {
  const ft = await loadFastText(file);
  return {
    name: 'fasttext', model: ft.file,
    languages: new Set(ft.labels.map((l) => normaliseLanguageCode(fastTextLabelCode(l)))),
    async identify(text): Promise<Identification> {
      if (!text.trim()) return { code: null, language: null, reliable: false };
      const top = ft.predict(text.trim(), 1)[0];
      if (!top) return { code: null, language: null, reliable: false };
      const code = fastTextLabelCode(top.label);
      return { code, language: normaliseLanguageCode(code), reliable: top.probability >= 0.5, probability: top.probability };
    },
  };
}
