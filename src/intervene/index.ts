// Interventions on language neurons and projection outputs (METHODS.md section 3): parse specs (spec.ts), resolve
// them against a model (resolve.ts) into an Intervention, and pass it as `intervene` to LanguageModel.forward,
// generate and score.
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';

import { LangneuronsError } from '../errors.js';
import type { LanguageModel } from '../engine/model.js';
import type { NativeIntervention } from '../native/addon.js';
import { loadAddon } from '../native/addon.js';
import { modelIdentity } from '../profile/identity.js';
import { siteWidths } from '../profile/stats.js';
import { resolveSpecs } from './resolve.js';
import { parseInterventionFile, parseInterventionSpec, type InterventionSite, type InterventionSpec } from './spec.js';

export * from './spec.js';
export { neuronStatistic, resolveSpecs, GENERATED_CLASS, PROMPT_CLASS, type InterventionArrays, type ResolvedIntervention } from './resolve.js';

/** A resolved intervention for one model, ready for forward / generate / score. Immutable; reusable. */
export class Intervention {
  constructor(
    readonly native: NativeIntervention,
    /** The model it was resolved for (forwards of another model refuse it). */
    readonly owner: object,
    readonly specs: readonly InterventionSpec[],
    /** Some spec is limited to prompt or generated positions. */
    readonly needsClasses: boolean,
    /** Edits per spec. */
    readonly counts: readonly number[],
  ) {}
  get edits(): number { return this.counts.reduce((a, b) => a + b, 0); }
}

export interface ResolveOptions {
  /** Statistics for specs that need them and give no `stats`: a folder of <language>.safetensors, or one file. */
  stats?: string;
  /** Told what resolves but departs from a method's definition (e.g. p_max of window means); default: nothing. */
  onWarning?: (message: string) => void;
}

const warned = new Set<string>();
/** The CLI's warning sink: each message once per process, on stderr. */
export function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  process.stderr.write(`warning: ${message}\n`);
}

/** Units per layer of `model` at each intervention site (what neurons=all covers and masks must match). */
export function interventionSiteWidths(model: LanguageModel): Record<InterventionSite, number> {
  const { resid: _, ...widths } = siteWidths(model.checkpoint.config);
  return widths;
}

/** Resolves specs (CLI strings or canonical objects, applied in order) against `model`. */
export async function resolveIntervention(model: LanguageModel, specs: string | InterventionSpec | (string | InterventionSpec)[], opts: ResolveOptions = {}): Promise<Intervention> {
  const list = (Array.isArray(specs) ? specs : [specs]).map((s) => (typeof s === 'string' ? parseInterventionSpec(s, opts.stats) : s));
  const r = await resolveSpecs(list, { identity: modelIdentity(model.checkpoint), siteWidths: interventionSiteWidths(model),
    ...(opts.stats !== undefined ? { stats: opts.stats } : {}), ...(opts.onWarning ? { onWarning: opts.onWarning } : {}) });
  let native: NativeIntervention;
  try {
    native = new (loadAddon().NativeIntervention)(model.native, r.arrays);
  } catch (e) {
    throw new LangneuronsError('E_INTERVENE', `intervention: ${(e as Error).message}`, { cause: e, field: 'intervene' });
  }
  return new Intervention(native, model, list, r.needsClasses, r.counts);
}

export interface InterventionCliOptions {
  /** --intervene, repeatable: spec strings. */
  intervene?: string[];
  /** --intervene-file: a JSON array of spec strings or canonical specs (applied after the --intervene ones). */
  interveneFile?: string;
  /** --stats: default statistics folder (or file). */
  stats?: string;
}

/** The placeholder of a spec (string or file) for the intervention language: `eval` fills it per evaluated language. */
export const LANG_PLACEHOLDER = '{lang}';

/** `text` with every {lang} replaced by `lang`. */
export function withLanguage(text: string, lang: string): string {
  return text.split(LANG_PLACEHOLDER).join(lang);
}

/** True when an --intervene spec or the --intervene-file names {lang}. */
export async function interventionUsesLanguage(o: InterventionCliOptions): Promise<boolean> {
  if ((o.intervene ?? []).some((s) => s.includes(LANG_PLACEHOLDER))) return true;
  return o.interveneFile ? (await readInterventionFile(o.interveneFile)).includes(LANG_PLACEHOLDER) : false;
}

async function readInterventionFile(file: string): Promise<string> {
  return readFile(file, 'utf8').catch((e: Error) => {
    throw new LangneuronsError('E_IO', `${file}: cannot read the intervention file: ${e.message}`, { file });
  });
}

/**
 * The intervention the CLI options ask for, or undefined when there is none. `lang` fills the {lang} placeholder of
 * the specs (and of the file's text); a spec with {lang} and no `lang` is refused.
 */
export async function interventionFromCli(model: LanguageModel, o: InterventionCliOptions, lang?: string): Promise<Intervention | undefined> {
  const fill = (text: string, where: string): string => {
    if (!text.includes(LANG_PLACEHOLDER)) return text;
    if (lang === undefined)
      throw new LangneuronsError('E_OPTIONS', `${where}: ${LANG_PLACEHOLDER} is filled only by \`eval\` (the evaluated language, or each of --intervene-langs)`, { field: 'intervene' });
    return withLanguage(text, lang);
  };
  const specs: InterventionSpec[] = (o.intervene ?? []).map((s) => parseInterventionSpec(fill(s, `--intervene "${s}"`), o.stats));
  if (o.interveneFile) {
    const text = fill(await readInterventionFile(o.interveneFile), o.interveneFile);
    specs.push(...parseInterventionFile(text, o.interveneFile, o.stats));
  }
  return specs.length ? resolveIntervention(model, specs, { ...(o.stats !== undefined ? { stats: o.stats } : {}), onWarning: warnOnce }) : undefined;
}

/** Adds --intervene, --intervene-file and --stats to a command. */
export function addInterventionOptions(cmd: Command): Command {
  const collect = (v: string, acc: string[]) => [...acc, v];
  return cmd
    .option('--intervene <spec>', 'intervention on FFN neurons or projection outputs (site=act|gate|h|up|q|k|v|o|down), e.g. "deactivate:masks/lape.json:en" (repeatable, applied in order; syntax in docs/PIPELINE.md §3; ' +
      'eval fills {lang} with each evaluated language, or each of --intervene-langs)', collect, [])
    .option('--intervene-file <file>', 'interventions as a JSON array of spec strings or spec objects')
    .option('--stats <path>', 'statistics for interventions that need them: a folder of <language>.safetensors, one file, or a comma-separated list of such files and folders');
}
