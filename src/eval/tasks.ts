// Task definitions: where each dataset's files are, how items become prompts / (context, continuation) pairs,
// and how outputs are scored. Each `prepare*` returns a TaskPlan the runner executes in batches.
import path from 'node:path';
import { existsSync } from 'node:fs';

import { LangneuronsError } from '../errors.js';
import { listConfigs, locate, readRows, requireColumns, requireDir, str, type Row } from './data.js';
import {
  belebeleLmEvalPrompt, belebelePrompt, extractLetter, includeLmEvalParts, mmluLmEvalParts, xnliLmEvalChoices, xquadLmEvalPrompt, extractXnliLabel, FLORES_PROMPTS, floresName, floresPrompt, LANG_ALIASES, datasetCodes, LETTERS,
  mcqPrompt, TEMPLATES, xnliGenerativePrompt, xquadPrompt, xcopaChoice, xcopaContext, type FloresPrompt,
} from './prompts.js';
import { BLEU_TOKENIZERS, type BleuOptions, type BleuTokenizer } from './metrics/bleu.js';
import { loadSpmTokenizer } from './metrics/spm.js';
import { pyStrip } from './pystr.js';
import { xnliTsv, xnliTsvRows, xwinogradTsv, xwinogradTsvLanguages, xwinogradTsvRows } from './releases.js';
import type { GenOptions, Pair } from './scorer.js';
import type { SquadOptions } from './metrics/squad.js';
import {
  ARITHMETICS_GEN, ARITHMETICS_NAMES, ARITHMETICS_TEMPLATES, belebeleArithmeticsPrompt, extractLetterArithmetics, extractXnliArithmetics, floresArithmeticsPrompt,
  SQUAD_ARITHMETICS, xnliArithmeticsPrompt, xquadArithmeticsPrompt,
} from './prompts-arithmetics.js';

export const TASKS = ['ppl', 'flores', 'belebele', 'xnli', 'xquad', 'xcopa', 'xwinograd', 'include', 'mmlu'] as const;
export type TaskName = typeof TASKS[number];

/** Prompt formats per task; the first is the default. */
export const PROMPT_FORMATS: Record<TaskName, readonly string[]> = {
  ppl: ['text'],
  flores: [...FLORES_PROMPTS, 'arithmetics'],
  belebele: ['generate', 'loglik', 'lm-eval', 'arithmetics'],
  xnli: ['lm-eval', 'generate', 'head', 'arithmetics'],
  xquad: ['generate', 'lm-eval', 'arithmetics'],
  xcopa: ['lm-eval'],
  xwinograd: ['partial'],
  include: ['loglik', 'generate', 'lm-eval'],
  mmlu: ['loglik', 'generate', 'lm-eval'],
};

export type PlanItem =
  | { kind: 'mc'; id: string; pairs: Pair[]; choices: string[]; gold: number }
  | { kind: 'gen'; id: string; prompt: string; refs: string[]; gold?: number }
  | { kind: 'text'; id: string; text: string }
  /** Scored by a trained classification head (Scorer.classify): the item's text fields and gold class. */
  | { kind: 'cls'; id: string; texts: string[]; gold: number };

export interface TaskPlan {
  task: TaskName;
  lang: string;
  prompt: string;
  files: string[];
  items: PlanItem[];
  gen?: GenOptions;
  /** The split read and the --limit applied (recorded in the result; set by prepareTask). */
  split?: string;
  limit?: number;
  /** The prompt format's template, as the result records it (set by prepareTask from TEMPLATES). */
  template?: string;
  /** flores: the BLEU tokenizer (sacreBLEU's 13a by default; spBLEU with a SentencePiece tokenizer). */
  bleuTokenize?: BleuOptions['tokenize'];
  /** For generated answers: the choice index read from the output (null = none found). */
  parseChoice?: (output: string) => number | null;
  /** xquad: the SQuAD metric's variant (lm-eval's empty-answer rule, Language Arithmetics' normalisation and F1). */
  squad?: SquadOptions;
}

export interface PrepareOptions {
  /** Dataset folder (already resolved to the task's own folder). */
  dir: string;
  lang: string;
  prompt?: string;
  split?: string;
  /** The first `limit` items only (an integer >= 1; eval --limit). */
  limit?: number;
  langNames?: Record<string, string>;
  /** flores: 13a (default), none, zh, intl, char, or spm:<.model or tokenizer.json> (spBLEU). */
  bleuTokenize?: string;
  /**
   * Generative prompts: at most this many new tokens (lm-eval's `--gen_kwargs max_gen_toks=N`) instead of the
   * prompt format's own limit; part of the generation settings, so of the result's key. Ignored by prompts that
   * score log-likelihoods (as lm-eval ignores gen_kwargs there): see `generates`.
   */
  maxGenToks?: number;
  /**
   * `eval --chat-template`: renders a log-likelihood request's context through the model's chat template (the
   * task's description a system turn, the question the user turn; lmEvalChatContext), and the answers then follow
   * with no delimiter, as lm-evaluation-harness builds them. Generative prompts are rendered by the scorer.
   */
  chatContext?: (description: string, question: string) => string;
}

function badPrompt(task: TaskName, p: string): never {
  throw new LangneuronsError('E_OPTIONS', `unknown prompt format '${p}' for ${task} (formats: ${PROMPT_FORMATS[task].join(', ')})`, { field: 'prompt' });
}

export function promptFor(task: TaskName, p?: string): string {
  const fmt = p ?? PROMPT_FORMATS[task][0]!;
  if (!PROMPT_FORMATS[task].includes(fmt)) badPrompt(task, fmt);
  return fmt;
}

/** lm-eval scores XNLI on its validation split (xnli_common_yaml has no test_split). */
export function defaultSplit(task: TaskName, prompt?: string): string {
  return task === 'xnli' && (prompt ?? PROMPT_FORMATS.xnli[0]) === 'lm-eval' ? 'validation' : DEFAULT_SPLIT[task];
}

const DEFAULT_SPLIT: Record<TaskName, string> = {
  ppl: 'test', flores: 'devtest', belebele: 'test', xnli: 'test', xquad: 'validation', xcopa: 'test', xwinograd: 'test', include: 'test', mmlu: 'test',
};
const PREFIXES: Partial<Record<TaskName, string[]>> = { xquad: ['xquad.'], xnli: ['xnli.'], xcopa: ['xcopa.'] };

/** Candidate file/config names of a language in a dataset. */
function namesFor(task: TaskName, lang: string): string[] {
  const a = LANG_ALIASES[lang];
  const out = [lang, ...datasetCodes(lang)];
  if (a?.flores && (task === 'belebele' || task === 'flores' || task === 'ppl')) out.push(a.flores);
  if (a?.include && task === 'include') out.push(a.include);
  // openai/MMMLU names its files test/mmlu_<LANG>-<REGION>.csv (mmlu_DE-DE): --langs de_de, DE-DE or de-de
  if (task === 'mmlu' && /^[A-Za-z]{2}[-_][A-Za-z]{2}$/.test(lang)) {
    const [l, r] = [lang.slice(0, 2).toUpperCase(), lang.slice(3).toUpperCase()];
    out.push(`mmlu_${l}-${r}`, `mmlu_${l}_${r}`);
  }
  // google-deepmind/xquad: xquad.<lang>.json (SQuAD format) beside the hub's xquad.<lang>/ folders
  if (task === 'xquad') out.push(`xquad.${lang}`);
  return out;
}

/** The files of one language, or an error naming the folder, what was tried and the languages present. */
export function locateLanguage(task: TaskName, dir: string, lang: string, split?: string): string[] {
  requireDir(dir, `${task} dataset`);
  const sp = split ?? defaultSplit(task);
  const found = locate(dir, namesFor(task, lang), sp, { prefixes: PREFIXES[task] ?? [], textExt: task === 'flores' || task === 'ppl' });
  if (!found.files.length) {
    const have = listConfigs(dir, sp, PREFIXES[task] ?? []);
    throw new LangneuronsError('E_DATA', `${dir}: no ${task} data for language '${lang}' (split ${sp}); languages present: ${have.join(', ') || 'none'}`, { file: dir, field: 'langs' });
  }
  return found.files;
}

/** The one split of the single-file releases: google-deepmind/xquad's xquad.<lang>.json (the hub's validation)
 *  and the XWinograd dataset.tsv (test). */
const XQUAD_RELEASE_SPLIT = 'validation', XWINOGRAD_RELEASE_SPLIT = 'test';

function refuseReleaseSplit(file: string, dataset: string, has: string, split: string | undefined): void {
  if (split !== undefined && split !== has)
    throw new LangneuronsError('E_OPTIONS', `${file}: the ${dataset} release file has one split, ${has}; --split ${split} is not in it`, { file, field: 'split' });
}

/** The languages of a dataset folder (`--langs all`): its configs, else those of a release file that holds every
 *  language (XNLI-1.0's xnli.<split>.tsv, XWinograd's dataset.tsv); none is an error naming the folder. */
export async function languagesIn(task: TaskName, dir: string, split?: string, prompt?: string): Promise<string[]> {
  requireDir(dir, `${task} dataset`);
  const sp = split ?? defaultSplit(task, prompt);
  let langs = listConfigs(dir, sp, PREFIXES[task] ?? []);
  if (!langs.length && task === 'xnli') {
    const tsv = xnliTsv(dir, sp);
    if (tsv) langs = [...new Set((await readRows(tsv)).map((r) => String(r.language)))].sort();
  }
  if (!langs.length && task === 'xwinograd' && sp === XWINOGRAD_RELEASE_SPLIT) {
    const tsv = xwinogradTsv(dir);
    if (tsv) langs = await xwinogradTsvLanguages(tsv);
  }
  if (!langs.length)
    throw new LangneuronsError('E_DATA', `${dir}: no ${task} data of any language (split ${sp}) for --langs all; see docs/EVAL.md for the layouts read`, { file: dir, field: 'langs' });
  return langs;
}

async function rowsOf(files: string[]): Promise<{ file: string; row: Row; i: number; g: number }[]> {
  const out: { file: string; row: Row; i: number; g: number }[] = [];
  for (const f of files) (await readRows(f)).forEach((row, i) => out.push({ file: f, row, i, g: out.length }));
  return out;
}

async function checkedRows(files: string[], columns: string[], dataset: string, limit?: number) {
  const out: { file: string; row: Row; i: number; g: number }[] = [];
  for (const f of files) {
    const rows = await readRows(f);
    requireColumns(f, rows, columns, dataset);
    rows.forEach((row, i) => out.push({ file: f, row, i, g: out.length }));
  }
  return limit !== undefined ? out.slice(0, limit) : out;
}

/** lm-eval multiple choice: (description + question, " " + choice) (target_delimiter " "), normalised by the
 *  choice's length; through a chat template (o.chatContext), (rendered context, choice). */
function mc(o: PrepareOptions, id: string, description: string, question: string, choices: string[], gold: number): PlanItem {
  const [context, delimiter] = o.chatContext ? [o.chatContext(description, question), ''] : [description + question, ' '];
  return { kind: 'mc', id, pairs: choices.map((c) => ({ context, continuation: delimiter + c })), choices, gold };
}

/**
 * The 0-based choice a row's answer column names. `first` is the number the column gives the first choice: 0 for
 * XNLI/XCOPA `label` and MMLU `answer` (0..n-1), 1 for Belebele's `correct_answer_num` and XWinograd's `answer`
 * ("1".."n", as facebook/belebele and the XWinograd files write them). A letter (A, B, ...) names its choice in both.
 */
function answerIndex(file: string, i: number, v: unknown, n: number, col: string, first: 0 | 1 = 0): number {
  let k: number | null = null;
  if (typeof v === 'number' && Number.isInteger(v)) k = v - first;
  else if (typeof v === 'string' && /^[A-Z]$/.test(v.trim())) k = v.trim().charCodeAt(0) - 65;
  else if (typeof v === 'string' && /^\d+$/.test(v.trim())) k = Number(v.trim()) - first;
  if (k === null || k < 0 || k >= n) {
    const want = `${first}..${n - 1 + first} or a letter A..${String.fromCharCode(64 + n)}`;
    throw new LangneuronsError('E_DATA', `${file}: row ${i}: column "${col}" is ${JSON.stringify(v)}, expected ${want}`, { file, field: col });
  }
  return k;
}

/**
 * Item ids key the item checkpoint and the per-item results, so two rows of one id would be merged into one item
 * (the second's scores counted twice, and a resume skipping both). The ids taken from the data (XQuAD `id`, XCOPA
 * `idx`) are checked as rows become items: a repeated one is refused, naming both rows.
 */
function uniqueIds(dataset: string): (file: string, i: number, id: string) => string {
  const seen = new Map<string, { file: string; i: number }>();
  return (file, i, id) => {
    const first = seen.get(id);
    if (first) {
      throw new LangneuronsError('E_DATA', `${file}: row ${i}: ${dataset} id ${JSON.stringify(id)} is also the id of row ${first.i}${first.file === file ? '' : ` of ${first.file}`}; item ids must be unique (they key the results and the resume checkpoint)`, { file, field: 'id' });
    }
    seen.set(id, { file, i });
    return id;
  };
}

// ---- tasks --------------------------------------------------------------------------------------------

async function preparePpl(o: PrepareOptions): Promise<TaskPlan> {
  const files = locateLanguage('ppl', o.dir, o.lang, o.split);
  const rows = await rowsOf(files);
  const items: PlanItem[] = [];
  for (const { file, row, i } of rows) {
    if (!('text' in row)) requireColumns(file, [row], ['text'], 'held-out text');
    const t = row.text;
    if (t === null || (typeof t === 'string' && !t.trim())) continue;
    items.push({ kind: 'text', id: `${path.basename(file)}:${i}`, text: str(file, row, i, 'text') });
  }
  if (!items.length) throw new LangneuronsError('E_DATA', `${files.join(', ')}: no non-empty text`, { file: files[0]! });
  return { task: 'ppl', lang: o.lang, prompt: 'text', files, items: o.limit !== undefined ? items.slice(0, o.limit) : items };
}

async function floresSide(dir: string, code: string, split: string): Promise<{ files: string[]; lines: string[] }> {
  const files = locateLanguage('flores', dir, code, split);
  const lines: string[] = [];
  for (const f of files) {
    const rows = await readRows(f);
    const col = ['text', 'sentence'].find((c) => c in rows[0]!);
    if (!col) requireColumns(f, rows, ['text'], 'FLORES (text files, or parquet with a "text" (flores_plus) or "sentence" column)');
    rows.forEach((r, i) => lines.push(str(f, r, i, col!)));
  }
  return { files, lines };
}

/** A language's English name in Language Arithmetics' prompts: --lang-name, their table, then ours (FLORES codes or
 *  the short codes XNLI and XQuAD use). */
export function arithmeticsLanguageName(lang: string, langNames?: Record<string, string>): string {
  const code = LANG_ALIASES[lang]?.flores ?? lang;
  return langNames?.[lang] ?? langNames?.[code] ?? ARITHMETICS_NAMES[code] ?? floresName(code, langNames);
}

async function prepareFlores(o: PrepareOptions): Promise<TaskPlan> {
  const prompt = promptFor('flores', o.prompt);
  const [srcCode, tgtCode, extra] = o.lang.split('-');
  if (!srcCode || !tgtCode || extra !== undefined) throw new LangneuronsError('E_OPTIONS', `flores: a pair is <src>-<tgt> (e.g. eng_Latn-mlt_Latn), got '${o.lang}'`, { field: 'pairs' });
  const split = o.split ?? 'devtest';
  const src = await floresSide(o.dir, srcCode, split), tgt = await floresSide(o.dir, tgtCode, split);
  if (src.lines.length !== tgt.lines.length)
    throw new LangneuronsError('E_DATA', `${src.files[0]} has ${src.lines.length} sentences but ${tgt.files[0]} has ${tgt.lines.length}: FLORES files must be parallel`, { file: tgt.files[0]! });
  const la = prompt === 'arithmetics';
  const srcName = la ? arithmeticsLanguageName(srcCode, o.langNames) : floresName(srcCode, o.langNames), tgtName = la ? arithmeticsLanguageName(tgtCode, o.langNames) : floresName(tgtCode, o.langNames);
  const text = (s: string) => (la ? floresArithmeticsPrompt(s, srcName, tgtName) : floresPrompt(prompt as FloresPrompt, s, srcName, tgtName));
  let items: PlanItem[] = src.lines.map((s, i) => ({ kind: 'gen', id: String(i), prompt: text(s), refs: [tgt.lines[i]!] }));
  if (o.limit !== undefined) items = items.slice(0, o.limit);
  return { task: 'flores', lang: o.lang, prompt, files: [...src.files, ...tgt.files], items,
    gen: la ? ARITHMETICS_GEN.flores : { maxNewTokens: 128, stop: ['\n'], repetitionPenalty: 1.1 }, bleuTokenize: await bleuTokenizer(o.bleuTokenize) };
}

/** `--bleu-tokenize`: one of sacreBLEU's names, or spm:<.model or tokenizer.json> (spBLEU). */
export async function bleuTokenizer(spec?: string): Promise<BleuOptions['tokenize']> {
  if (spec === undefined) return '13a';
  if (spec.startsWith('spm:')) return loadSpmTokenizer(spec.slice(4));
  if ((BLEU_TOKENIZERS as readonly string[]).includes(spec)) return spec as BleuTokenizer;
  throw new LangneuronsError('E_OPTIONS', `--bleu-tokenize: unknown tokenizer '${spec}' (${BLEU_TOKENIZERS.join(', ')}, or spm:<.model or tokenizer.json>)`, { field: 'bleu-tokenize' });
}

const LETTER_GEN: GenOptions = { maxNewTokens: 8, stop: ['\n'], repetitionPenalty: 1.0 };

async function prepareBelebele(o: PrepareOptions): Promise<TaskPlan> {
  const prompt = promptFor('belebele', o.prompt);
  const files = locateLanguage('belebele', o.dir, o.lang, o.split ?? defaultSplit('belebele', prompt));
  const cols = ['flores_passage', 'question', 'mc_answer1', 'mc_answer2', 'mc_answer3', 'mc_answer4', 'correct_answer_num'];
  const rows = await checkedRows(files, cols, 'Belebele', o.limit);
  const name = prompt === 'arithmetics' ? arithmeticsLanguageName(o.lang, o.langNames) : undefined;
  const items = rows.map(({ file, row, i, g }) => {
    const answers = [1, 2, 3, 4].map((k) => str(file, row, i, `mc_answer${k}`));
    const gold = answerIndex(file, i, row.correct_answer_num, 4, 'correct_answer_num', 1);
    const passage = str(file, row, i, 'flores_passage'), question = str(file, row, i, 'question');
    const id = `${g}:${String(row.link ?? '')}#${String(row.question_number ?? i)}`;
    if (prompt === 'lm-eval') return mc(o, id, '', belebeleLmEvalPrompt(passage, question, answers), [...LETTERS], gold);
    const p = prompt === 'arithmetics' ? belebeleArithmeticsPrompt(name!, passage, question, answers) : belebelePrompt(passage, question, answers);
    return prompt === 'loglik' ? mc(o, id, '', p, [...LETTERS], gold) : { kind: 'gen' as const, id, prompt: p, refs: [LETTERS[gold]!], gold };
  });
  const generated = prompt === 'generate' ? { gen: LETTER_GEN, parseChoice: (t: string) => extractLetter(t) }
    : prompt === 'arithmetics' ? { gen: ARITHMETICS_GEN.belebele, parseChoice: extractLetterArithmetics } : {};
  return { task: 'belebele', lang: o.lang, prompt, files, items, ...generated };
}

async function prepareXnli(o: PrepareOptions): Promise<TaskPlan> {
  const prompt = promptFor('xnli', o.prompt);
  const split = o.split ?? defaultSplit('xnli', prompt);
  // the hub layout first; the release's TSV when the language has no hub files here
  let files: string[], tsv: string | null = null;
  try { files = locateLanguage('xnli', o.dir, o.lang, split); } catch (e) {
    tsv = xnliTsv(o.dir, split);
    if (!tsv) throw e;
    files = [tsv];
  }
  const rows = tsv ? await xnliTsvRows(tsv, o.lang, o.limit) : await checkedRows(files, ['premise', 'hypothesis', 'label'], 'XNLI', o.limit);
  if (prompt === 'lm-eval') xnliLmEvalChoices('', '', o.lang); // refuses a language lm-eval has no words for
  const name = prompt === 'arithmetics' ? arithmeticsLanguageName(o.lang, o.langNames) : undefined;
  const items = rows.map(({ file, row, i, g }) => {
    const premise = str(file, row, i, 'premise'), hyp = str(file, row, i, 'hypothesis');
    const gold = answerIndex(file, i, row.label, 3, 'label');
    const id = String(g);
    if (prompt === 'head') return { kind: 'cls' as const, id, texts: [premise, hyp], gold };
    // lm-eval: doc_to_text '' and the whole sentence in the choice (acc_norm divides by the whole choice's length)
    if (prompt === 'lm-eval') return mc(o, id, '', '', xnliLmEvalChoices(premise, hyp, o.lang), gold);
    const p = prompt === 'arithmetics' ? xnliArithmeticsPrompt(name!, premise, hyp) : xnliGenerativePrompt(premise, hyp);
    return { kind: 'gen' as const, id, prompt: p, refs: [String(gold + 1)], gold };
  });
  const generated = prompt === 'generate' ? { gen: LETTER_GEN, parseChoice: extractXnliLabel }
    : prompt === 'arithmetics' ? { gen: ARITHMETICS_GEN.xnli, parseChoice: extractXnliArithmetics } : {};
  return { task: 'xnli', lang: o.lang, prompt, files, items, ...generated };
}

async function prepareXquad(o: PrepareOptions): Promise<TaskPlan> {
  const prompt = promptFor('xquad', o.prompt);
  const files = locateLanguage('xquad', o.dir, o.lang, o.split);
  // google-deepmind/xquad's xquad.<lang>.json beside (not inside) a split folder: its one split
  const f = files[0]!;
  if (path.basename(f) === `xquad.${o.lang}.json` && [o.dir, path.join(o.dir, 'data')].some((d) => path.resolve(d) === path.resolve(path.dirname(f))))
    refuseReleaseSplit(f, 'XQuAD (google-deepmind/xquad)', XQUAD_RELEASE_SPLIT, o.split);
  const rows = await checkedRows(files, ['context', 'question', 'answers'], 'XQuAD', o.limit);
  const idOf = uniqueIds('XQuAD');
  const name = prompt === 'arithmetics' ? arithmeticsLanguageName(o.lang, o.langNames) : undefined;
  const items = rows.map(({ file, row, i, g }) => {
    const a = row.answers as { text?: unknown } | null;
    if (!a || typeof a !== 'object' || !Array.isArray(a.text) || !a.text.every((t) => typeof t === 'string'))
      throw new LangneuronsError('E_DATA', `${file}: row ${i}: column "answers" must be {text: [...], answer_start: [...]}`, { file, field: 'answers' });
    // (lm-eval reads answers["text"][0]; EM / F1 against no answer at all mean nothing)
    if (!a.text.length) throw new LangneuronsError('E_DATA', `${file}: row ${i}: column "answers" holds no answer text`, { file, field: 'answers' });
    const id = idOf(file, i, typeof row.id === 'string' ? row.id : String(g));
    const context = str(file, row, i, 'context'), question = str(file, row, i, 'question');
    // lm-eval scores against answers["text"][0] only (doc_to_target; utils.process_results_qa)
    if (prompt === 'lm-eval') return { kind: 'gen' as const, id, prompt: xquadLmEvalPrompt(context, question, o.lang), refs: (a.text as string[]).slice(0, 1) };
    const p = prompt === 'arithmetics' ? xquadArithmeticsPrompt(name!, context, question) : xquadPrompt(context, question);
    return { kind: 'gen' as const, id, prompt: p, refs: a.text as string[] };
  });
  // lm-eval generate_until: until "\n", max_gen_toks 256 (the HFLM default), greedy; its EM/F1 are transformers' squad_metrics
  const scoring = prompt === 'lm-eval' ? { gen: { maxNewTokens: 256, stop: ['\n'], repetitionPenalty: 1.0 }, squad: { emptyMatch: true } }
    : prompt === 'arithmetics' ? { gen: ARITHMETICS_GEN.xquad, squad: SQUAD_ARITHMETICS } : { gen: { maxNewTokens: 32, stop: ['\n'], repetitionPenalty: 1.0 } };
  return { task: 'xquad', lang: o.lang, prompt, files, items, ...scoring };
}

async function prepareXcopa(o: PrepareOptions): Promise<TaskPlan> {
  const prompt = promptFor('xcopa', o.prompt);
  const files = locateLanguage('xcopa', o.dir, o.lang, o.split);
  const rows = await checkedRows(files, ['premise', 'choice1', 'choice2', 'question', 'label'], 'XCOPA', o.limit);
  const idOf = uniqueIds('XCOPA');
  const items = rows.map(({ file, row, i, g }) => {
    const question = str(file, row, i, 'question');
    if (question !== 'cause' && question !== 'effect')
      throw new LangneuronsError('E_DATA', `${file}: row ${i}: column "question" is ${JSON.stringify(question)}, expected "cause" or "effect"`, { file, field: 'question' });
    const ctx = xcopaContext(str(file, row, i, 'premise'), question, o.lang);
    const choices = [xcopaChoice(str(file, row, i, 'choice1')), xcopaChoice(str(file, row, i, 'choice2'))];
    return mc(o, idOf(file, i, String(row.idx ?? g)), '', ctx, choices, answerIndex(file, i, row.label, 2, 'label'));
  });
  return { task: 'xcopa', lang: o.lang, prompt, files, items };
}

async function prepareXwinograd(o: PrepareOptions): Promise<TaskPlan> {
  const prompt = promptFor('xwinograd', o.prompt);
  const release = xwinogradTsv(o.dir);
  let files: string[], fromRelease = false;
  try { files = locateLanguage('xwinograd', o.dir, o.lang, o.split); } catch (e) {
    if (!release) throw e;
    refuseReleaseSplit(release, 'XWinograd', XWINOGRAD_RELEASE_SPLIT, o.split);
    files = [release]; fromRelease = true;
  }
  const rows = fromRelease ? await xwinogradTsvRows(release!, o.lang, o.limit) : await checkedRows(files, ['sentence', 'option1', 'option2', 'answer'], 'XWinograd', o.limit);
  const items: PlanItem[] = rows.map(({ file, row, i, g }) => {
    const s = str(file, row, i, 'sentence');
    const idx = s.indexOf('_');
    if (idx < 0) throw new LangneuronsError('E_DATA', `${file}: row ${i}: the sentence has no "_" blank`, { file, field: 'sentence' });
    // lm-eval xwinograd (partial scoring): contexts = sentence[:idx] + option; target = sentence[idx+1:].strip()
    const target = pyStrip(s.slice(idx + 1));
    const opts = [str(file, row, i, 'option1'), str(file, row, i, 'option2')];
    const gold = answerIndex(file, i, row.answer, 2, 'answer', 1);
    // lm-eval's multiple-input mode: doc_to_choice is the two contexts, so acc_norm divides by their lengths
    const contexts = opts.map((op) => s.slice(0, idx) + op);
    // through a chat template each context is its own user turn (lm-eval's multiple_input_context), no delimiter
    const pairs = contexts.map((c) => (o.chatContext ? { context: o.chatContext('', c), continuation: target } : { context: c, continuation: ` ${target}` }));
    return { kind: 'mc', id: String(g), pairs, choices: contexts, gold };
  });
  return { task: 'xwinograd', lang: o.lang, prompt, files, items };
}

async function prepareMcq(task: 'include' | 'mmlu', o: PrepareOptions): Promise<TaskPlan> {
  const prompt = promptFor(task, o.prompt);
  const files = locateLanguage(task, o.dir, o.lang, o.split);
  const rows0 = await rowsOf(files.slice(0, 1));
  const hasChoices = 'choices' in rows0[0]!.row;
  const mmmlu = !hasChoices && 'Question' in rows0[0]!.row;  // openai/MMMLU's CSV columns
  const cols = hasChoices ? ['question', 'choices', 'answer']
    : mmmlu ? ['Question', 'A', 'B', 'C', 'D', 'Answer'] : ['question', 'option_a', 'option_b', 'option_c', 'option_d', 'answer']
  if (task === 'include' && prompt === 'lm-eval') cols.push('domain'); // lm-eval's per-domain description
  const rows = await checkedRows(files, cols, task === 'include' ? 'INCLUDE (question, option_a..option_d, answer) / MMLU-style'
    : 'MMLU (question, choices, answer) / Global-MMLU-style (option_a..option_d) / MMMLU-style (Question, A..D, Answer)', o.limit);
  const items = rows.map(({ file, row, i, g }) => {
    let choices: string[];
    if (mmmlu) choices = [...LETTERS].map((k) => str(file, row, i, k));
    else if (hasChoices) {
      const c = row.choices;
      if (!Array.isArray(c) || c.length !== 4 || !c.every((x) => typeof x === 'string'))
        throw new LangneuronsError('E_DATA', `${file}: row ${i}: column "choices" must be a list of 4 strings`, { file, field: 'choices' });
      choices = c as string[];
    } else choices = ['a', 'b', 'c', 'd'].map((k) => str(file, row, i, `option_${k}`));
    const gold = mmmlu ? answerIndex(file, i, row.Answer, 4, 'Answer') : answerIndex(file, i, row.answer, 4, 'answer');
    const question = str(file, row, i, mmmlu ? 'Question' : 'question');
    if (prompt === 'lm-eval') {
      const [description, text] = task === 'include' ? includeLmEvalParts(str(file, row, i, 'domain'), question, choices, o.lang)
        : mmluLmEvalParts(mmluSubject(file, row, i), question, choices);
      return mc(o, String(g), description, text, [...LETTERS], gold);
    }
    const p = mcqPrompt(pyStrip(question), choices);
    return prompt === 'loglik' ? mc(o, String(g), '', p, [...LETTERS], gold) : { kind: 'gen' as const, id: String(g), prompt: p, refs: [LETTERS[gold]!], gold };
  });
  return { task, lang: o.lang, prompt, files, items, ...(prompt === 'generate' ? { gen: LETTER_GEN, parseChoice: (t: string) => extractLetter(t) } : {}) };
}

/** MMLU's subject (cais/mmlu `subject`, openai/MMMLU `Subject`) for lm-eval's description header. */
function mmluSubject(file: string, row: Row, i: number): string {
  if (typeof row.subject === 'string') return row.subject;
  if (typeof row.Subject === 'string') return row.Subject;
  throw new LangneuronsError('E_DATA', `${file}: row ${i}: --prompt lm-eval needs the MMLU subject (a "subject" or "Subject" column) for its description line`, { file, field: 'subject' });
}

export function isTask(t: string): t is TaskName { return (TASKS as readonly string[]).includes(t); }

export async function prepareTask(task: string, o: PrepareOptions): Promise<TaskPlan> {
  if (!isTask(task)) throw new LangneuronsError('E_OPTIONS', `unknown task '${task}' (tasks: ${TASKS.join(', ')})`, { field: 'task' });
  // The first `limit` items are kept with slice(0, limit): a negative limit would silently drop the last items, a
  // fraction round down and 0 leave no item, each recorded as the result's limit (eval --limit takes integers >= 1).
  if (o.limit !== undefined && !(Number.isSafeInteger(o.limit) && o.limit >= 1))
    throw new LangneuronsError('E_OPTIONS', `--limit must be an integer >= 1, got ${String(o.limit)}`, { field: 'limit' });
  const plan = await prepare(task, o);
  // acc_norm divides a choice's log-likelihood by its length, as lm-eval does: an empty choice has none.
  for (const it of plan.items) {
    const empty = it.kind === 'mc' ? it.choices.findIndex((c) => c.length === 0) : -1;
    if (empty >= 0) throw new LangneuronsError('E_DATA', `${plan.files.join(', ')}: item ${it.id}: choice ${empty + 1} is empty`, { file: plan.files[0]! });
  }
  let template = TEMPLATES[`${task}/${plan.prompt}`] ?? ARITHMETICS_TEMPLATES[`${task}/${plan.prompt}`] ?? plan.prompt;
  // Through a chat template the requests are not the plain template's: the record says how they differ.
  if (o.chatContext && task !== 'ppl')
    template += plan.items[0]?.kind === 'mc' ? ' — through the chat template: the description (if any) a system turn, the question the user turn, the answers without their leading space'
      : plan.items[0]?.kind === 'gen' ? ' — through the chat template: the prompt the user turn' : '';
  if (o.maxGenToks !== undefined && !(Number.isSafeInteger(o.maxGenToks) && o.maxGenToks >= 1))
    throw new LangneuronsError('E_OPTIONS', `--max-gen-toks must be an integer >= 1, got ${String(o.maxGenToks)}`, { field: 'max-gen-toks' });
  const gen = plan.gen && o.maxGenToks !== undefined ? { gen: { ...plan.gen, maxNewTokens: o.maxGenToks } } : {};
  return { ...plan, ...gen, split: o.split ?? defaultSplit(task, plan.prompt), ...(o.limit !== undefined ? { limit: o.limit } : {}), template };
}

/** Whether a plan generates text (so that --max-gen-toks applies to it). */
export const generates = (plan: TaskPlan): boolean => plan.gen !== undefined;

function prepare(task: TaskName, o: PrepareOptions): Promise<TaskPlan> {
  switch (task) {
    case 'ppl': return preparePpl(o);
    case 'flores': return prepareFlores(o);
    case 'belebele': return prepareBelebele(o);
    case 'xnli': return prepareXnli(o);
    case 'xquad': return prepareXquad(o);
    case 'xcopa': return prepareXcopa(o);
    case 'xwinograd': return prepareXwinograd(o);
    case 'include': return prepareMcq('include', o);
    case 'mmlu': return prepareMcq('mmlu', o);
  }
}

/** `--data data/` with several tasks: the task's own sub-folder when there is one (data/xcopa), else data/. */
export function datasetDir(data: string, task: TaskName): string {
  const own = path.join(data, task);
  return existsSync(own) ? own : data;
}
