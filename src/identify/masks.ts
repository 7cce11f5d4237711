// NeuronMask: the result of an identification method (per language, per model layer, sorted unit indices), with
// everything needed to know where it came from. Stored as JSON (human-readable) or safetensors (one U8 [layers][width]
// membership matrix per language, tensor `lang.<language>`, directly usable as a multiplicative mask; the rest of the
// mask is JSON in `__metadata__.langneurons_mask`). Both are written atomically and validated when read.
import { promises as fsp } from 'node:fs';
import { LangneuronsError, describeError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readAllTensors, readSafetensorsHeader, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { NEURON_SITES, SITES, type ModelIdentity, type Site } from '../profile/stats.js';
import type { IdentifyContext } from './common.js';

export const MASK_FORMAT = 'langneurons-mask/1';

export interface MaskSource {
  file: string;
  language: string;
  /** Model fingerprint recorded in the statistics file. */
  fingerprint: string;
  corpus: string;
  tokens: number;
  sequences: number;
}

export interface NeuronMask {
  format: typeof MASK_FORMAT;
  /** e.g. 'lape', 'act-prob-90p', 'average-precision', 'raw-activated', 'random', 'union'. */
  method: string;
  /** The options the method ran with (inputs: rates, variants...). */
  parameters: Record<string, unknown>;
  /** Values the method computed on the way (thresholds, counts), for the record. */
  derived?: Record<string, unknown>;
  site: Site;
  /** The model the statistics were taken on: a mask belongs to one model. */
  model: ModelIdentity;
  sources: MaskSource[];
  /** Number of model layers; every per-language array has this length (unprofiled layers are empty). */
  layers: number;
  /** Units per layer at `site`. */
  width: number;
  /** languages[lang][layer] = ascending unit indices. A language with no unit has only empty layers. */
  languages: Record<string, number[][]>;
}

function maskError(file: string | undefined, message: string, field?: string): LangneuronsError {
  return new LangneuronsError('E_MASK', file ? `${file}: ${message}` : message, { ...(file === undefined ? {} : { file }), ...(field === undefined ? {} : { field }) });
}

/** Builds a mask from flat [slot][width] indices per language (slot i = profiled layer ctx.layers[i]). */
export function maskFromFlat(ctx: IdentifyContext, method: string, parameters: Record<string, unknown>,
  perLanguage: Map<string, Iterable<number>>, derived?: Record<string, unknown>): NeuronMask {
  const layerCount = ctx.model.layers;
  const languages: Record<string, number[][]> = {};
  for (const lang of ctx.languages) {
    const perLayer: number[][] = Array.from({ length: layerCount }, () => []);
    for (const flat of perLanguage.get(lang) ?? []) {
      const layer = ctx.layers[Math.floor(flat / ctx.width)]!;
      perLayer[layer]!.push(flat % ctx.width);
    }
    for (const units of perLayer) units.sort((a, b) => a - b);
    Object.defineProperty(languages, lang, { value: perLayer, enumerable: true, writable: true, configurable: true });
  }
  const sources = ctx.inputs.map(({ file, stats }) => ({
    file, language: stats.meta.language, fingerprint: stats.meta.model.fingerprint, corpus: stats.meta.corpus.fingerprint,
    tokens: stats.tokens, sequences: stats.sequences,
  }));
  return {
    format: MASK_FORMAT, method, parameters, ...(derived ? { derived } : {}), site: ctx.site, model: { ...ctx.model }, sources,
    layers: layerCount, width: ctx.width, languages,
  };
}

/** Units of one language, refusing a language the mask does not have. */
export function maskLanguage(mask: NeuronMask, language: string, file?: string): number[][] {
  if (!Object.prototype.hasOwnProperty.call(mask.languages, language))
    throw maskError(file, `unknown language "${language}" (the mask has: ${Object.keys(mask.languages).join(', ') || 'none'})`, 'languages');
  return mask.languages[language]!;
}

/** Refuses a mask made on another model (fingerprint), or whose shape does not fit the model. */
export function checkMaskForModel(mask: NeuronMask, model: ModelIdentity, file?: string): void {
  if (mask.model.fingerprint !== model.fingerprint)
    throw maskError(file, `mask was made for ${mask.model.name} (${mask.model.fingerprint.slice(0, 12)}), not for ${model.name} (${model.fingerprint.slice(0, 12)})`, 'model');
  if (mask.layers !== model.layers) throw maskError(file, `mask has ${mask.layers} layers, the model has ${model.layers}`, 'layers');
  if (NEURON_SITES.includes(mask.site) && mask.width !== model.intermediate)
    throw maskError(file, `mask has ${mask.width} neurons per layer at site ${mask.site}, the model's intermediate size is ${model.intermediate}`, 'width');
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** Validates an untrusted parsed mask (JSON file, or safetensors metadata plus languages); throws naming the field. */
export function validateMask(raw: unknown, file?: string): NeuronMask {
  const bad = (field: string, msg: string): never => { throw maskError(file, msg, field); };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('format', 'not a langneurons mask (not a JSON object)');
  const m = raw as Record<string, unknown>;
  if (m['format'] !== MASK_FORMAT) bad('format', `not a langneurons mask (format ${JSON.stringify(m['format'])}, expected "${MASK_FORMAT}")`);
  if (typeof m['method'] !== 'string' || !m['method']) bad('method', 'field "method" must be a non-empty string');
  if (typeof m['parameters'] !== 'object' || m['parameters'] === null) bad('parameters', 'field "parameters" must be an object');
  if (!SITES.includes(m['site'] as Site)) bad('site', `unknown site ${JSON.stringify(m['site'])} (known: ${SITES.join(', ')})`);
  const model = m['model'] as Record<string, unknown> | null;
  if (typeof model !== 'object' || model === null || typeof model['fingerprint'] !== 'string' || typeof model['name'] !== 'string' ||
      !isCount(model['layers']) || !isCount(model['intermediate']))
    bad('model', 'field "model" must be a model identity (name, fingerprint, layers, intermediate, ...)');
  if (!Array.isArray(m['sources'])) bad('sources', 'field "sources" must be an array');
  const layers = m['layers'], width = m['width'];
  if (!isCount(layers) || layers < 1) bad('layers', `field "layers" must be a positive integer, got ${JSON.stringify(layers)}`);
  if (!isCount(width) || width < 1) bad('width', `field "width" must be a positive integer, got ${JSON.stringify(width)}`);
  if (layers !== model!['layers']) bad('layers', `mask has ${String(layers)} layers but its model has ${String(model!['layers'])}`);
  const langs = m['languages'];
  if (typeof langs !== 'object' || langs === null || Array.isArray(langs)) bad('languages', 'field "languages" must be an object');
  for (const [lang, perLayer] of Object.entries(langs as Record<string, unknown>)) {
    const where = `languages.${lang}`;
    if (!Array.isArray(perLayer) || perLayer.length !== layers) bad(where, `language "${lang}" must have one array per layer (${String(layers)})`);
    (perLayer as unknown[]).forEach((units, l) => {
      if (!Array.isArray(units)) bad(where, `language "${lang}", layer ${l}: not an array`);
      let prev = -1;
      for (const u of units as unknown[]) {
        if (!isCount(u) || u >= (width as number)) bad(where, `language "${lang}", layer ${l}: unit ${JSON.stringify(u)} is out of range [0, ${String(width)})`);
        if ((u as number) <= prev) bad(where, `language "${lang}", layer ${l}: units must be ascending without repeats (${prev} then ${String(u)})`);
        prev = u as number;
      }
    });
  }
  return m as unknown as NeuronMask;
}

export async function writeMaskJson(file: string, mask: NeuronMask): Promise<void> {
  validateMask(mask, file);
  // One line per layer list keeps large masks readable and diffable.
  const langs = Object.entries(mask.languages).map(([lang, perLayer]) =>
    `    ${JSON.stringify(lang)}: [\n${perLayer.map((u) => `      ${JSON.stringify(u)}`).join(',\n')}\n    ]`).join(',\n');
  const { languages: _omit, ...head } = mask;
  const headText = JSON.stringify(head, null, 2);
  const text = `${headText.slice(0, -2)},\n  "languages": {\n${langs}\n  }\n}\n`;
  await writeFileAtomic(file, text);
}

export async function readMaskJson(file: string): Promise<NeuronMask> {
  let text: string;
  try { text = await fsp.readFile(file, 'utf8'); } catch (e) { throw maskError(file, `cannot read the mask: ${describeError(e)}`); }
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) { throw maskError(file, `not a langneurons mask (invalid JSON: ${describeError(e)})`); }
  return validateMask(raw, file);
}

export async function writeMaskSafetensors(file: string, mask: NeuronMask): Promise<void> {
  validateMask(mask, file);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [lang, perLayer] of Object.entries(mask.languages)) {
    const member = new Uint8Array(mask.layers * mask.width);
    perLayer.forEach((units, l) => { for (const u of units) member[l * mask.width + u] = 1; });
    tensors[`lang.${lang}`] = { dtype: 'U8', shape: [mask.layers, mask.width], data: member };
  }
  const { languages, ...head } = mask;
  await writeSafetensors(file, tensors, { langneurons_mask: JSON.stringify({ ...head, languageOrder: Object.keys(languages) }) });
}

export async function readMaskSafetensors(file: string): Promise<NeuronMask> {
  let header, tensors;
  try {
    header = await readSafetensorsHeader(file);
    tensors = await readAllTensors(file);
  } catch (e) {
    if (e instanceof LangneuronsError) throw maskError(file, `not a langneurons mask: ${e.message}`);
    throw maskError(file, `cannot read the mask: ${describeError(e)}`);
  }
  const metaText = header.metadata?.['langneurons_mask'];
  if (!metaText) throw maskError(file, 'not a langneurons mask (no "langneurons_mask" metadata)', 'format');
  let head: Record<string, unknown>;
  try { head = JSON.parse(metaText); } catch { throw maskError(file, 'the "langneurons_mask" metadata is not valid JSON', 'format'); }
  if (typeof head !== 'object' || head === null) throw maskError(file, 'the "langneurons_mask" metadata is not an object', 'format');
  const order = head['languageOrder'];
  if (!Array.isArray(order) || !order.every((x) => typeof x === 'string')) throw maskError(file, 'metadata has no "languageOrder" list', 'languages');
  delete head['languageOrder'];
  const layers = head['layers'], width = head['width'];
  if (!isCount(layers) || !isCount(width)) validateMask({ ...head, languages: {} }, file); // reports the bad field
  const L = layers as number, W = width as number;
  const languages: Record<string, number[][]> = {};
  for (const lang of order as string[]) {
    const t = tensors.get(`lang.${lang}`);
    if (!t) throw maskError(file, `missing tensor "lang.${lang}"`, `languages.${lang}`);
    if (t.info.dtype !== 'U8' || t.info.shape.join(',') !== `${L},${W}`)
      throw maskError(file, `tensor "lang.${lang}" is ${t.info.dtype} [${t.info.shape.join(', ')}], expected U8 [${L}, ${W}]`, `languages.${lang}`);
    const member = t.data as Uint8Array;
    const perLayer: number[][] = [];
    for (let l = 0; l < L; l++) {
      const units: number[] = [];
      for (let u = 0; u < W; u++) {
        const v = member[l * W + u]!;
        if (v > 1) throw maskError(file, `tensor "lang.${lang}" holds ${v} at [${l}, ${u}]; membership must be 0 or 1`, `languages.${lang}`);
        if (v) units.push(u);
      }
      perLayer.push(units);
    }
    Object.defineProperty(languages, lang, { value: perLayer, enumerable: true, writable: true, configurable: true });
  }
  for (const name of tensors.keys())
    if (!name.startsWith('lang.') || !order.includes(name.slice(5))) throw maskError(file, `unexpected tensor "${name}"`, 'languages');
  return validateMask({ ...head, languages }, file);
}

/**
 * Reads a mask written by writeMaskJson or writeMaskSafetensors. Safetensors starts with a u64 header length no
 * larger than the file followed by '{'; the first 8 bytes of a text file read as a u64 are far larger than any file.
 */
export async function readMask(file: string): Promise<NeuronMask> {
  let kind: 'safetensors' | 'text';
  try { kind = await sniffMask(file); } catch (e) { throw maskError(file, `cannot read the mask: ${describeError(e)}`); }
  return kind === 'safetensors' ? readMaskSafetensors(file) : readMaskJson(file);
}

/** Safetensors or text, from the first 9 bytes (see readMask). */
async function sniffMask(file: string): Promise<'safetensors' | 'text'> {
  const head = Buffer.alloc(9);
  let size: number;
  const h = await fsp.open(file, 'r');
  try { size = (await h.stat()).size; await h.read(head, 0, 9, 0); } finally { await h.close(); }
  return size >= 9 && head[8] === 0x7b && head.readBigUInt64LE(0) <= BigInt(size - 8) ? 'safetensors' : 'text';
}

/**
 * Whether `file` holds a langneurons mask: a JSON mask, or safetensors with "langneurons_mask" metadata (of which only
 * the header is read: it may be a model's weights). What a mask may be written over.
 */
export async function isMaskFile(file: string): Promise<boolean> {
  try {
    if (!(await fsp.stat(file)).isFile()) return false;
    if ((await sniffMask(file)) === 'safetensors') return (await readSafetensorsHeader(file)).metadata?.['langneurons_mask'] !== undefined;
    await readMaskJson(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses an output path that exists and is not a langneurons mask (a model's weights, a statistics file, a user's
 * file): a mask is written only over a mask.
 */
export async function refuseNonMaskOutput(out: string, option = '--out'): Promise<void> {
  if ((await fsp.lstat(out).catch(() => null)) === null || (await isMaskFile(out))) return;
  throw new LangneuronsError('E_EXISTS', `${option} ${out}: exists and is not a langneurons mask; a mask is written only over a mask: choose another ${option}`,
    { file: out, field: option });
}

/** Writes JSON for *.json, safetensors otherwise. */
export async function writeMask(file: string, mask: NeuronMask): Promise<void> {
  return file.toLowerCase().endsWith('.json') ? writeMaskJson(file, mask) : writeMaskSafetensors(file, mask);
}
