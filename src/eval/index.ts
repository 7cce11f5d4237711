// Evaluation suite: datasets in their Hugging Face layouts, the papers' prompt formats, sacreBLEU-compatible
// BLEU/chrF, SQuAD EM/F1, batched scoring with item-level checkpoints, and result tables.
export { corpusBleu, sentenceBleu, tokenize13a, tokenizeZh, tokenizeIntl, tokenizeChar, BLEU_TOKENIZERS, type BleuOptions, type BleuScore, type CustomBleuTokenizer } from './metrics/bleu.js';
export { loadSpmTokenizer } from './metrics/spm.js';
export { pySplit, pyStrip } from './pystr.js';
export { corpusChrf, sentenceChrf, type ChrfOptions } from './metrics/chrf.js';
export { normalizeAnswer, squadScores, squadCorpus, tokenIdScores } from './metrics/squad.js';
export { readRows, fingerprint, type DataFile } from './data.js';
export { TASKS, PROMPT_FORMATS, prepareTask, datasetDir, languagesIn, type TaskName, type TaskPlan, type PlanItem } from './tasks.js';
export { ModelScorer, type Scorer, type Pair, type PairScore, type GenOptions } from './scorer.js';
export { runPlan, aggregate, resultBase, resultKey, TOOL_VERSION, type EvalResult, type ResultKey, type Variant, type ItemResult } from './run.js';
export { canonicalLang } from './prompts.js';
export { readResults, buildTable, tableText, tableCsv, parseBy, type Table } from './results.js';
