// Evaluation suite: datasets in their Hugging Face layouts, the papers' prompt formats, sacreBLEU-compatible
// BLEU/chrF, SQuAD EM/F1, batched scoring with item-level checkpoints, and result tables.
export {
  corpusBleu, sentenceBleu, tokenize13a, tokenizeZh, tokenizeIntl, tokenizeChar, BLEU_TOKENIZERS,
  type BleuOptions, type BleuScore, type BleuTokenizer, type BleuSmoothing, type CustomBleuTokenizer,
} from './metrics/bleu.js';
export { loadSpmTokenizer } from './metrics/spm.js';
export { pySplit, pyStrip } from './pystr.js';
export { corpusChrf, sentenceChrf, type ChrfOptions } from './metrics/chrf.js';
export { normalizeAnswer, squadScores, squadCorpus, tokenIdScores, type SquadOptions } from './metrics/squad.js';
export { readRows, fingerprint, type DataFile, type Row } from './data.js';
export { TASKS, PROMPT_FORMATS, prepareTask, datasetDir, languagesIn, type TaskName, type TaskPlan, type PlanItem, type PrepareOptions } from './tasks.js';
export { ModelScorer, type Scorer, type ModelScorerOptions, type ScorerInfo, type Pair, type PairScore, type GenOptions, type GenOutput } from './scorer.js';
export { runPlan, aggregate, resultBase, resultKey, TOOL_VERSION, type EvalResult, type ResultKey, type Variant, type ItemResult, type RunOptions } from './run.js';
export { canonicalLang } from './prompts.js';
// What runPlan keys a result by: the model's config, tokenizer and weights, not its path.
export { modelFingerprint, type FingerprintOptions } from '../model/fingerprint.js';
// eval --chat-template from a script: the checkpoint's template, as ModelScorerOptions.chat (generative prompts) and
// PrepareOptions.chatContext (the contexts of log-likelihood requests, lmEvalChatContext) take it.
export { loadChatTemplate, type ChatTemplate, type ChatMessage } from '../model/chat-template.js';
export { lmEvalChatContext, type ChatPrompting } from '../generate/chat.js';
// What a variant reads besides the model (masks, statistics, intervention files, heads), by content.
export { inputHashes } from './inputs.js';
export { readResults, buildTable, defaultBy, tableText, tableCsv, parseBy, TABLE_KEYS, type Table, type TableKey } from './results.js';
