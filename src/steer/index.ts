// Measures of steering (METHODS.md §4): Tang's perplexity matrix, Rahmanisa's Language Steering Shift and
// Language Arithmetics' language forcing, each testable with injected callbacks; src/steer/engine.ts holds the
// engine-backed callbacks and the interventions they need.
export * from './settings.js';
export * from './ppl-matrix.js';
export * from './svg.js';
export * from './lss.js';
export * from './langid.js';
export * from './forcing.js';
export * from './engine.js';
export * from './mask-set.js';
export * from './langid-fasttext.js';
export * from './fallback.js';
