// `--prompt arithmetics`: the evaluation of Language Arithmetics (Gurgurov et al. 2025, "Language Arithmetics:
// Towards Systematic Language Neuron Identification and Manipulation"), as its public code runs it
// (d-gurgurov/Language-Neurons-Manipulation d5c7519: src/flores.py, belebele.py, xnli.py, xquad.py). Zero-shot,
// greedy, repetition penalty 1.1, the EOS token and these stop strings, the output stripped; then their parsers and
// metrics. Reproduced as run, including what looks unintended there, because their numbers came from it:
// - FLORES: a "." after the source sentence, which already ends in punctuation ("…end.. Translation:");
// - XQuAD: the SQuAD normalisation without its article removal (defined, never called) and an F1 over sets of
//   tokens, not multisets (see SQUAD_ARITHMETICS);
// - names: their own table (Norwegian Bokmål is "Norwegian").
// - the output text as vLLM's detokenizer gives it: never with transformers' clean_up_tokenization_spaces, which a
//   tokenizer config may ask for (Llama 3's does: " n't" stays, " ?" keeps its space).
import { LETTERS } from './prompts.js';
import type { GenOptions } from './scorer.js';
import type { SquadOptions } from './metrics/squad.js';

/** Their names where ours differ (their tables name the others as FLORES_NAMES does). */
export const ARITHMETICS_NAMES: Record<string, string> = { nob_Latn: 'Norwegian' };

const gen = (maxNewTokens: number, stop: string[]): GenOptions => ({ maxNewTokens, stop, repetitionPenalty: 1.1, cleanUpSpaces: false });

/** Their SamplingParams per task (max_tokens, stop; temperature 0, repetition_penalty 1.1, EOS). */
export const ARITHMETICS_GEN = {
  flores: gen(128, ['\n\n', 'Translation', 'Translate', 'Source:', 'Target:']),
  belebele: gen(32, ['\n\n', 'Question:', 'Passage:', 'Answer:', 'The answer']),
  xnli: gen(32, ['\n\n', 'Premise:', 'Hypothesis:', 'Answer:', 'The relationship']),
  xquad: gen(64, ['\n\n', 'Question:', 'Context:', 'Answer:', 'Q:', 'A:']),
} as const;

/** xquad.py's compute_exact_match / compute_f1_score. */
export const SQUAD_ARITHMETICS: SquadOptions = { keepArticles: true, setF1: true, emptyMatch: true };

export function floresArithmeticsPrompt(src: string, srcName: string, tgtName: string): string {
  return `Translate this ${srcName} sentence into ${tgtName}: ${src}. Translation:`;
}

export function belebeleArithmeticsPrompt(language: string, passage: string, question: string, answers: string[]): string {
  return `Read the following ${language} passage and answer the question.\n\nPassage: ${passage}\n\nQuestion: ${question}\n\n` +
    answers.map((a, i) => `${LETTERS[i]}) ${a}`).join('\n') + '\n\nAnswer:';
}

export function xnliArithmeticsPrompt(language: string, premise: string, hypothesis: string): string {
  return `Given the following ${language} premise and hypothesis, determine the relationship between them.\n\n` +
    `Premise: ${premise}\n\nHypothesis: ${hypothesis}\n\nOptions:\n1. Entailment\n2. Neutral\n3. Contradiction\n\nAnswer:`;
}

export function xquadArithmeticsPrompt(language: string, context: string, question: string): string {
  return `Answer the question based on the ${language} context provided. Extract the exact answer from the context.\n\n` +
    `Context: ${context}\n\nQuestion: ${question}\n\nAnswer:`;
}

/**
 * belebele.py extract_answer_choice: the output upper-cased, then the first of these that matches: a letter A-D at
 * the start followed by ")", ".", whitespace or nothing, "(X)" at the start, "ANSWER: X" or "THE ANSWER IS X"
 * anywhere; else the first character when it is A-D; else none (counted wrong). The output comes stripped.
 */
export function extractLetterArithmetics(output: string): number | null {
  const r = output.toUpperCase();
  const patterns = [/^([ABCD])\)/u, /^([ABCD])\./u, /^([ABCD])\s/u, /^\(([ABCD])\)/u, /^([ABCD])$/u, /ANSWER:\s*([ABCD])/u, /THE ANSWER IS\s*([ABCD])/u];
  for (const p of patterns) {
    const m = p.exec(r);
    if (m) return LETTERS.indexOf(m[1] as typeof LETTERS[number]);
  }
  const first = [...r][0];
  return first !== undefined && 'ABCD'.includes(first) ? LETTERS.indexOf(first as typeof LETTERS[number]) : null;
}

const isDecimal = (cp: number): boolean => cp >= 0 && /^\p{Nd}$/u.test(String.fromCodePoint(cp));

/** Python's int() of one character: its value when it is a Unicode decimal digit (Nd: '3', '٣', '３'), else null.
 *  Unicode gives the Nd digits in contiguous runs of ten, 0 to 9 (adjacent runs are whole runs too). */
function decimalValue(ch: string): number | null {
  const cp = ch.codePointAt(0)!;
  if (!isDecimal(cp)) return null;
  let before = 0;
  while (isDecimal(cp - before - 1)) before++;
  return before % 10;
}

/**
 * xnli.py extract_entailment_label → 0 entailment, 1 neutral, 2 contradiction, or null: the whole (stripped) output a
 * number 1-3, else its first character a digit 1-3; else "entailment", "contradiction", "neutral" anywhere in that
 * order of priority (case-insensitive); else yes/true/correct → entailment, no/false/incorrect → contradiction, as
 * whole words. (Python's isdigit() is also true of digits such as "²" that int() refuses, which stopped their run of a
 * language there; here such an output parses on.)
 */
export function extractXnliArithmetics(output: string): number | null {
  const r = output;
  const chars = [...r];
  if (chars.length > 0 && chars.every((c) => decimalValue(c) !== null)) {
    const n = Number(chars.map((c) => decimalValue(c)).join(''));
    if (n >= 1 && n <= 3) return n - 1;
  }
  const d = chars.length ? decimalValue(chars[0]!) : null;
  if (d !== null && d >= 1 && d <= 3) return d - 1;
  const lower = r.toLowerCase();
  if (lower.includes('entailment')) return 0;
  if (lower.includes('contradiction')) return 2;
  if (lower.includes('neutral')) return 1;
  // Python's re \b is Unicode-aware: a word character is a letter, a number or '_'
  const word = (w: string) => new RegExp(`(?<![\\p{L}\\p{N}_])(?:${w})(?![\\p{L}\\p{N}_])`, 'u');
  if (word('yes|true|correct').test(lower)) return 0;
  if (word('no|false|incorrect').test(lower)) return 2;
  return null;
}

/** The template each arithmetics format records in its results. */
export const ARITHMETICS_TEMPLATES: Record<string, string> = {
  'flores/arithmetics': 'Translate this {Src} sentence into {Tgt}: {src}. Translation: -> until "\\n\\n", "Translation", "Translate", "Source:", "Target:", 128 tokens, repetition penalty 1.1',
  'belebele/arithmetics': 'Read the following {Lang} passage and answer the question.\n\nPassage: {flores_passage}\n\nQuestion: {question}\n\nA) {mc_answer1}\nB) {mc_answer2}\nC) {mc_answer3}\nD) {mc_answer4}\n\nAnswer: -> until "\\n\\n", "Question:", "Passage:", "Answer:", "The answer", 32 tokens, repetition penalty 1.1; their letter extraction',
  'xnli/arithmetics': 'Given the following {Lang} premise and hypothesis, determine the relationship between them.\n\nPremise: {premise}\n\nHypothesis: {hypothesis}\n\nOptions:\n1. Entailment\n2. Neutral\n3. Contradiction\n\nAnswer: -> until "\\n\\n", "Premise:", "Hypothesis:", "Answer:", "The relationship", 32 tokens, repetition penalty 1.1; their label extraction',
  'xquad/arithmetics': 'Answer the question based on the {Lang} context provided. Extract the exact answer from the context.\n\nContext: {context}\n\nQuestion: {question}\n\nAnswer: -> until "\\n\\n", "Question:", "Context:", "Answer:", "Q:", "A:", 64 tokens, repetition penalty 1.1; EM/F1 without article removal, F1 over token sets',
};
