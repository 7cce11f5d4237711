// The demo pipeline (profile → identify → deactivation matrix → steering → fine-tuning → report) as a library.
export { runDemo, DEMO_FORMAT, type DemoSummary } from './run-demo.js';
export { resolveDemoOptions, defaultMethods, TOP_RATE_LADDER, DEMO_LEARNING_RATES, DEMO_STEER_SETTINGS, type DemoOptions, type ResolvedDemoOptions } from './options.js';
export { demoRecipe, readRecipe, FALLBACK_LANGUAGES, type DemoRecipe } from './recipe.js';
export { NgramIdentifier, identifierAccuracy, normaliseForNgrams, type NgramIdentification } from './ngram-langid.js';
export { StepRunner, type StepEvent } from './steps.js';
export type { Check } from './checks.js';
