// `langneurons/steer`: the measures of steering (METHODS.md §4) for scripts, as the `steer` commands compute them.
// Each measure takes callbacks (what to intervene with, how to score or generate), so it runs on the engine through
// the engine-backed callbacks below or on anything else a script supplies; docs/API.md shows both. What the CLI
// adds around them (resumable unit logs, output locks, progress) stays the CLI's. The module's own index
// (src/steer/index.ts) holds the helpers the commands share as well; this list is the package's promise.
export { parseSetting, parseSettings, DEFAULT_SETTINGS, ROW_STATS, NEURON_STATS, type AmplifySetting, type RowStatName, type NeuronStatName } from './settings.js';
export {
  computePplMatrix, diagonalDominance, pplMatrixCsv, pplMatrixSvg, writePplMatrix, PPL_MATRIX_FORMAT,
  type NllSum, type MatrixScorer, type PplMatrixOptions, type DiagonalCheck, type PplMatrix,
} from './ppl-matrix.js';
export {
  computeLss, readFacts, lssItems, lssPrompt, LSS_FORMAT,
  type Fact, type FactSet, type LssItem, type ContinuationPair, type LogLikelihoodFn, type LssOptions, type LssPairResult, type LssSettingResult, type LssResult,
} from './lss.js';
export {
  computeForcing, readPrompts, forcingMatrix, forcingCsv, forcingSvg, writeForcing, FORCING_FORMAT,
  type ForcingPrompt, type GenerateFn, type ForcingOptions, type ForcingGeneration, type ForcingRun, type ForcingTargetResult, type ForcingResult,
} from './forcing.js';
export {
  computeFallback, fallbackSets, FALLBACK_FORMAT,
  type FallbackGeneration, type FallbackStep, type FallbackResult, type FallbackOptions,
} from './fallback.js';
export {
  loadIdentifier, parseIdentifier, identifyAll, sameLanguage, normaliseLanguageCode, IDENTIFIERS,
  type IdentifierName, type Identification, type LanguageIdentifier, type IdentifierChoice,
} from './langid.js';
export {
  deactivation, amplification, compose, interventionResolver, openEvalCorpus, loadEvalTexts, engineMatrixScorer, engineLogLikelihood, engineGenerator,
  checkPromptLengths,
  type SteerRequest, type EvalTexts, type MatrixScoreOptions,
} from './engine.js';
export { readMaskSet, checkMaskSetForModel, onMaskSet, type MaskSet } from './mask-set.js';
export { heatmapSvg, type HeatmapSpec } from './svg.js';
