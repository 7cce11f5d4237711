// The datasets' original release files, read into the rows of their Hugging Face versions (the hub's column
// names), so a task reads them like the hub layouts: the XNLI-1.0 TSVs and the XWinograd dataset.tsv. (XQuAD's
// SQuAD JSON is flattened by data.ts's readRows; MMMLU's file names are matched by tasks.ts.)
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError, describeError } from '../errors.js';
import { readRows, requireColumns, type Row } from './data.js';
import { datasetCodes } from './prompts.js';

export interface ReleaseRow { file: string; row: Row; i: number; g: number }

/** The XNLI-1.0 release (facebookresearch/XNLI): xnli.{dev,test}.tsv with every language in one file; columns
 *  language, gold_label (entailment / neutral / contradiction), sentence1, sentence2 (+ parses, pairID, ...). */
export function xnliTsv(dir: string, split: string): string | null {
  const name = `xnli.${split === 'validation' ? 'dev' : split}.tsv`;
  return [path.join(dir, name), path.join(dir, 'XNLI-1.0', name)].find((f) => existsSync(f)) ?? null;
}

const XNLI_LABELS = ['entailment', 'neutral', 'contradiction'];

export async function xnliTsvRows(file: string, lang: string, limit?: number): Promise<ReleaseRow[]> {
  const all = await readRows(file);
  requireColumns(file, all, ['language', 'gold_label', 'sentence1', 'sentence2'], 'XNLI-1.0 TSV');
  const out: ReleaseRow[] = [];
  all.forEach((r, i) => {
    if (r.language !== lang) return;
    const label = XNLI_LABELS.indexOf(String(r.gold_label));
    if (label < 0) throw new LangneuronsError('E_DATA', `${file}: line ${i + 2}: gold_label is ${JSON.stringify(r.gold_label)}, expected ${XNLI_LABELS.join(', ')}`, { file, field: 'gold_label' });
    out.push({ file, row: { premise: r.sentence1, hypothesis: r.sentence2, label, pairID: r.pairID }, i, g: out.length });
  });
  if (!out.length) throw new LangneuronsError('E_DATA', `${file}: no rows of language '${lang}'; languages present: ${[...new Set(all.map((r) => String(r.language)))].sort().join(', ')}`, { file, field: 'langs' });
  return limit !== undefined ? out.slice(0, limit) : out;
}

/** The original XWinograd release's dataset.tsv in a folder (every language in one file, test split only). */
export function xwinogradTsv(dir: string): string | null {
  const file = path.join(dir, 'dataset.tsv');
  return existsSync(file) ? file : null;
}

/** The languages of an XWinograd dataset.tsv (its first column: en, fr, jp, pt, ru, zh). */
export async function xwinogradTsvLanguages(file: string): Promise<string[]> {
  let text: string;
  try { text = await fsp.readFile(file, 'utf8'); } catch (e) { throw new LangneuronsError('E_DATA', `${file}: cannot read: ${describeError(e)}`, { file }); }
  return [...new Set(text.split(/\r?\n/).filter((l) => l.includes('\t')).map((l) => l.slice(0, l.indexOf('\t'))))].sort();
}

/**
 * The original XWinograd release (yandex-research/crosslingual_winograd dataset.tsv, no header): lang, source,
 * ?, sentence, tokens (JSON), pronoun [text, [first, end) token span, tokens], candidates [[text, span, tokens,
 * correct], ×2]. Rows become the hub's (Muennighoff/xwinograd) fields: the pronoun's characters in the sentence
 * replaced by "_", option1/option2 the candidates, answer "1"/"2" the correct one.
 */
export async function xwinogradTsvRows(file: string, lang: string, limit?: number): Promise<ReleaseRow[]> {
  let text: string;
  try { text = await fsp.readFile(file, 'utf8'); } catch (e) { throw new LangneuronsError('E_DATA', `${file}: cannot read: ${describeError(e)}`, { file }); }
  const out: ReleaseRow[] = [];
  const langs = new Set<string>();
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line) return;
    const bad = (what: string): never => { throw new LangneuronsError('E_DATA', `${file}: line ${i + 1}: ${what} (expected the XWinograd dataset.tsv columns lang, source, ?, sentence, tokens, pronoun, candidates)`, { file }); };
    const cells = line.split('\t');
    if (cells.length !== 7) bad(`${cells.length} tab-separated fields, not 7`);
    langs.add(cells[0]!);
    if (cells[0] !== lang && !datasetCodes(lang).includes(cells[0]!)) return;
    let tokens: string[], pronoun: [string, [number, number]], cands: [string, unknown, unknown, boolean][];
    try { tokens = JSON.parse(cells[4]!); pronoun = JSON.parse(cells[5]!); cands = JSON.parse(cells[6]!); } catch { return bad('a JSON column does not parse'); }
    const sentence = cells[3]!;
    // character offsets of the tokens: each is the next occurrence of its text in the sentence
    const starts: number[] = [];
    let pos = 0;
    for (const t of tokens) {
      const at = sentence.indexOf(t, pos);
      if (at < 0) bad(`token ${JSON.stringify(t)} is not in the sentence`);
      starts.push(at); pos = at + t.length;
    }
    const [first, end] = pronoun[1];
    if (!(first >= 0 && end > first && end <= tokens.length) || cands.length !== 2) bad('the pronoun span or the two candidates are malformed');
    const from = starts[first]!, to = starts[end - 1]! + tokens[end - 1]!.length;
    const correct = cands.findIndex((c) => c[3] === true);
    if (correct < 0) bad('no candidate is marked correct');
    out.push({ file, row: { sentence: sentence.slice(0, from) + '_' + sentence.slice(to), option1: cands[0]![0], option2: cands[1]![0], answer: String(correct + 1) }, i, g: out.length });
  });
  if (!out.length) throw new LangneuronsError('E_DATA', `${file}: no rows of language '${lang}'; languages present: ${[...langs].sort().join(', ')}`, { file, field: 'langs' });
  return limit !== undefined ? out.slice(0, limit) : out;
}
