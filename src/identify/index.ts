// Identification of language-specific neurons (METHODS.md §2) and the mask files they produce.
export {
  checkInputs, pyRound, quantile, DEFAULT_SEQ_MEANS_BUDGET, type LanguageStats, type IdentifyContext, type QuantileVariant, type SequenceMeansOptions,
  type SequenceMeansBlock,
} from './common.js';
export { identifyLape, lapeScores, lapeOfRow, LAPE_PRESETS, type LapeOptions, type LapeScores } from './lape.js';
export {
  identifyActProb, actProbScores, ACT_PROB_VARIANTS, histogramQuantile, histogramFractionAbove, histogramMeanAbs,
  type ActProbVariant, type ActProbOptions, type PercentileSource,
} from './act-prob.js';
export { identifyAveragePrecision, identifyAveragePrecisionJoint, averagePrecision, averagePrecisionScores, type AveragePrecisionOptions } from './average-precision.js';
export { identifyRawActivated, type RawActivatedOptions } from './raw-activated.js';
export {
  MASK_FORMAT, maskFromFlat, maskLanguage, checkMaskForModel, validateMask, readMask, writeMask, readMaskJson, writeMaskJson,
  readMaskSafetensors, writeMaskSafetensors, type NeuronMask, type MaskSource,
} from './masks.js';
export { summarizeMask, compareMasks, unionMask, randomMaskLike, seededRandom, type MaskSummary, type MaskComparison, type LanguageComparison, type RandomMaskOptions } from './mask-ops.js';
