// Public API of langneurons.
export { LangneuronsError, ERROR_CODES, type LangneuronsErrorCode, type LangneuronsErrorOptions } from './errors.js';
export { loadModel, LanguageModel, KvCache, type LoadModelOptions, type ForwardOptions, type ForwardOutput, type Compute, type LogitsMode } from './engine/model.js';
export { StatsAccumulator, type StatsOptions, type StatsSnapshot } from './engine/stats.js';
export { scoreText, scoreTokens, logLikelihood, logLikelihoodTokens, type LogLikelihoodOptions, type ScoreOptions, type ScoreResult, type ContinuationScore } from './engine/score.js';
export { generate, generateTokens, type GenerateOptions, type Generation, type FinishReason } from './generate/generate.js';
export { type SamplingOptions } from './generate/sampling.js';
export {
  Intervention, resolveIntervention, interventionFromCli, parseInterventionSpec, parseInterventionFile, validateSpec, parseLayers,
  withLanguage, LANG_PLACEHOLDER,
  type InterventionSpec, type Operation, type NeuronSet, type ValueSpec, type InterventionSite, type Positions, type ResolveOptions,
  type InterventionCliOptions,
} from './intervene/index.js';
export { type DeviceRequest, type ResolvedDevice } from './engine/device.js';
export { openCheckpoint, estimateMemory, type Checkpoint, type MemoryEstimate } from './model/checkpoint.js';
export { type LoadedTokenizer, type EncodeOptions, type DecodeOptions } from './model/tokenizer.js';
export { openCorpusSpec, openCorpus, type Corpus, type CorpusManifest, type OpenCorpusOptions, type LanguageSource } from './corpus/index.js';
export { profileCorpus, type ProfileOptions, type LanguageProfile } from './profile/profile.js';
export {
  readStats, writeStats, mergeStats, mergeStatsInOrder, activationProbability, SITES, NEURON_SITES,
  type Site, type ActivationStats, type SiteStats, type StatsMeta, type ModelIdentity, type ComputeMode, type Histogram, type TokenScope,
  type StatsParts, type SeqMeansLocation,
} from './profile/stats.js';
export { modelIdentity } from './profile/identity.js';
export {
  identifyLape, lapeScores, LAPE_PRESETS, identifyActProb, ACT_PROB_VARIANTS, identifyAveragePrecision, identifyAveragePrecisionJoint, identifyRawActivated,
  readMask, writeMask, validateMask, maskLanguage, checkMaskForModel, summarizeMask, compareMasks, unionMask, randomMaskLike,
  type LanguageStats, type LapeOptions, type LapeScores, type ActProbVariant, type ActProbOptions, type AveragePrecisionOptions,
  type RawActivatedOptions, type NeuronMask, type MaskSummary, type MaskComparison, type LanguageComparison, type RandomMaskOptions,
  type MaskSource, type QuantileVariant, type PercentileSource, type SequenceMeansOptions, type SequenceMeansBlock,
} from './identify/index.js';
export { loadModelConfig, parseModelConfig, type ModelConfig, type ModelType } from './model/config.js';
export {
  readSafetensorsHeader, readTensor, writeSafetensors,
  type Dtype, type SafetensorsHeader, type TensorInfo, type TensorData, type TensorToWrite, type TensorToProduce,
} from './io/safetensors.js';
export { readTorchFile, writeTorchFile, type TorchTensor, type TorchValue, type TorchDtype } from './io/torch-file.js';
export { maskFromTang, maskToTang, statsFromTang, statsToTang, type TangStatsOptions } from './identify/tang.js';
export { HeadClassifier, readHead, type HeadInfo } from './train/head.js';
export { loadSftExamples, type SftExample, type SftTokenizer, type SftFormat } from './train/sft.js';
export { squadRecords, type PromptCompletion } from './train/records.js';
export {
  finetune, resume, learningRate, type FinetuneOptions, type FinetuneResult, type RunControl, type TrainerReport, type Schedule,
} from './train/finetune.js';
export { type PlacementRequest } from './train/placement.js';
export { applyDelta, writeDelta } from './train/delta.js';
export { type MergeReport, type MergeDtype } from './train/merge-precision.js';
export { selectTrainable, METHODS, METHOD_DEFAULTS, type FinetuneMethod, type MethodSelection } from './train/methods.js';
export {
  createNativeTrainer, denseTrainable, tensorName,
  type NativeTrainer, type NativeTrainerOptions, type NativeTrainerMemory, type TrainableTensor, type TrainMode,
} from './train/native.js';
