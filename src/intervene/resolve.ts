// Resolution of intervention specs against one model: masks read and checked against the model, languages
// united, random control sets drawn, statistics read and turned into per-neuron values, and everything laid out
// as the native engine's arrays (one edit per (spec, layer, neuron), in spec order: later specs apply after
// earlier ones on the same neuron).

import { existsSync } from 'node:fs';

import { LangneuronsError } from '../errors.js';
import { histogramQuantile } from '../identify/act-prob.js';
import type { NativeInterventionArrays } from '../native/addon.js';
import { randomMaskLike, unionMask } from '../identify/mask-ops.js';
import { checkMaskForModel, maskLanguage, readMask, type NeuronMask } from '../identify/masks.js';
import { languageStatsFile, NEURON_SITES, readStats, type ActivationStats, type ModelIdentity, type Site, type SiteStats } from '../profile/stats.js';
import { INTERVENTION_SITES, validateSpec, type InterventionSite, type InterventionSpec, type ValueSpec } from './spec.js';

/** The native arrays of an intervention (see native/src/binding/js_intervention.cpp). */
export type InterventionArrays = NativeInterventionArrays;

/** The native Site enum (native/src/model/sites.h); resid (9) takes no intervention. */
export const SITE_CODE: Record<InterventionSite, number> = { act: 0, gate: 1, h: 2, up: 3, q: 4, k: 5, v: 6, o: 7, down: 8 };
export const OP_CODE = { set: 0, add: 1, scale: 2 } as const;
const ROW_STAT_CODE: Record<string, number> = { mean: 0, std: 1, median: 2, max: 3, iqr: 4, mad: 5 };
const PERCENTILE_CODE = 6;
/** Position classes of tokens (the forward's interveneMask) and the `when` bits of each positions setting. */
export const PROMPT_CLASS = 1, GENERATED_CLASS = 2;
const WHEN = { all: 0xff, 'non-padding': 0xff, prompt: PROMPT_CLASS, generated: GENERATED_CLASS } as const;

export interface ResolveContext {
  identity: ModelIdentity;
  /** Default statistics location for specs without `stats` (a folder of <language>.safetensors, or one file). */
  stats?: string;
  /** Told what resolves but departs from a method's definition (p_max of window means). */
  onWarning?: (message: string) => void;
  /** Units per layer at each site (q: heads × head_dim, k and v: KV heads × head_dim, o and down: hidden, the FFN
   *  sites: intermediate). Without an entry: the identity's intermediate (FFN sites) or hidden (o, down). */
  siteWidths?: Partial<Record<Site, number>>;
}

export interface ResolvedIntervention {
  arrays: InterventionArrays;
  /** Whether some spec is limited to prompt or generated positions (forwards must then pass token classes). */
  needsClasses: boolean;
  /** Edits per spec, in order. */
  counts: number[];
}

function fail(spec: InterventionSpec, message: string, file?: string): never {
  throw new LangneuronsError('E_INTERVENE', `intervention "${spec.source ?? JSON.stringify(spec.operation)}": ${message}`,
    { field: 'intervene', ...(file ? { file } : {}) });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b), m = (s.length - 1) / 2;
  return (s[Math.floor(m)]! + s[Math.ceil(m)]!) / 2;
};

/** Per-neuron statistic `name` of one site's statistics at layer slot `slot`, unit j. */
export function neuronStatistic(st: ActivationStats, s: SiteStats, name: string, slot: number, j: number): number {
  const L = st.meta.layers.length, W = s.width, u = slot * W + j;
  if (name === 'mean') return s.sum[u]! / st.tokens;
  if (name === 'p_max' || name === 'p_median') {
    const S = s.seqMeans!.length / (L * W), xs: number[] = [];
    for (let q = 0; q < S; q++) xs.push(s.seqMeans![(q * L + slot) * W + j]!);
    return name === 'p_max' ? xs.reduce((m, x) => Math.max(m, x), -Infinity) : median(xs); // (no spread: S may be large)
  }
  const q = name === 'median' ? 0.5 : Number(name.slice(1)) / 100;
  const h = s.histogram!, B = h.edges.length - 1;
  return histogramQuantile(h.counts.subarray(u * B, (u + 1) * B), h.edges, q);
}

/** Reads masks and statistics once per file. */
class Files {
  private masks = new Map<string, Promise<NeuronMask>>();
  private stats = new Map<string, Promise<ActivationStats>>();
  mask(file: string) {
    if (!this.masks.has(file)) this.masks.set(file, readMask(file));
    return this.masks.get(file)!;
  }
  statsFile(file: string) {
    if (!this.stats.has(file)) this.stats.set(file, readStats(file));
    return this.stats.get(file)!;
  }
}

/** Units per layer at `site` of the model: undefined when the context does not know it (q, k, v without siteWidths). */
function widthOf(site: InterventionSite, ctx: ResolveContext): number | undefined {
  return ctx.siteWidths?.[site] ?? (NEURON_SITES.includes(site) ? ctx.identity.intermediate : site === 'o' || site === 'down' ? ctx.identity.hidden : undefined);
}

/** Units per layer the spec targets (its layer filter applied). */
async function neuronsOf(spec: InterventionSpec, ctx: ResolveContext, files: Files): Promise<number[][]> {
  const L = ctx.identity.layers, site = spec.site ?? 'act';
  const width = widthOf(site, ctx);
  let perLayer: number[][];
  if (spec.neurons === 'all') {
    if (width === undefined) fail(spec, `neurons=all at site ${site} needs the model's width there (resolve against the model: resolveIntervention)`);
    perLayer = Array.from({ length: L }, () => Array.from({ length: width }, (_, j) => j));
  } else {
    const { mask: file, randomSeed } = spec.neurons;
    const mask = await files.mask(file);
    checkMaskForModel(mask, ctx.identity, file);
    // FFN masks name neurons, valid at every FFN site; a projection's units are that projection's outputs only.
    if (mask.site === 'resid') fail(spec, `${file}: the mask's units are residual-stream (resid) units, which interventions do not support (sites: ${INTERVENTION_SITES.join(', ')})`, file);
    const ffnMask = NEURON_SITES.includes(mask.site);
    if (ffnMask ? !NEURON_SITES.includes(site) : mask.site !== site)
      fail(spec, `${file}: the mask was made at site ${mask.site}, its units are not those of site ${site}: give site=${mask.site}${ffnMask ? ` (or another FFN site: ${NEURON_SITES.join(', ')})` : ''}`, file);
    if (width !== undefined && mask.width !== width)
      fail(spec, `${file}: the mask has ${mask.width} units per layer at site ${mask.site}, the model has ${width} there`, file);
    const languages = spec.neurons.languages.join() === '*' ? Object.keys(mask.languages) : spec.neurons.languages;
    for (const lang of languages) maskLanguage(mask, lang, file);
    let united = unionMask(mask, languages, 'set');
    if (randomSeed !== undefined) united = randomMaskLike(united, { seed: randomSeed });
    perLayer = united.languages['set']!;
  }
  const ranges = spec.layers ?? 'all';
  if (ranges !== 'all')
    for (const [, to] of ranges) if (to >= L) fail(spec, `layer ${to} is outside the model's layers 0-${L - 1}`);
  return perLayer.map((units, l) => (ranges === 'all' || ranges.some(([a, b]) => l >= a && l <= b) ? units : []));
}

/** The statistics of `language` at the spec's site, with the checks that make a value meaningful. */
async function languageStats(spec: InterventionSpec, language: string, ctx: ResolveContext, files: Files): Promise<{ st: ActivationStats; site: SiteStats; file: string }> {
  const where = spec.stats ?? ctx.stats;
  if (where === undefined) fail(spec, `statistics of "${language}" are needed: give stats=<dir> in the spec or --stats <dir>`);
  const file = languageStatsFile(where, language);
  // Said here with the spec and the statistics it was given (the reader's own message names only the file).
  if (!existsSync(file)) fail(spec, `no statistics of "${language}": ${file} does not exist${file === where ? '' : ` (statistics: ${where})`}`, file);
  const st = await files.statsFile(file);
  if (st.meta.language !== language) fail(spec, `${file} holds statistics of "${st.meta.language}", not "${language}"`, file);
  if (st.meta.model.fingerprint !== ctx.identity.fingerprint) fail(spec, `${file} was profiled on ${st.meta.model.name}, not on ${ctx.identity.name}`, file);
  const site = st.sites.get(spec.site ?? 'act');
  if (!site) fail(spec, `${file} has no statistics at site ${spec.site} (it has: ${[...st.sites.keys()].join(', ')}; profile with --sites ${spec.site})`, file);
  const width = widthOf(spec.site ?? 'act', ctx);
  if (width !== undefined && site.width !== width) fail(spec, `${file} has ${site.width} units per layer at site ${site.site}, the model has ${width} there`, file);
  if (st.tokens === 0) fail(spec, `${file} counted no tokens`, file);
  return { st, site, file };
}

/** One value per (layer, unit) of `units`: a constant, or a language's per-neuron statistic. */
async function valuesOf(spec: InterventionSpec, v: ValueSpec, units: number[][], ctx: ResolveContext, files: Files): Promise<number[][]> {
  if (typeof v === 'number') return units.map((u) => u.map(() => v));
  const { st, site, file } = await languageStats(spec, v.language, ctx, files);
  const name = v.statistic;
  if ((name === 'p_max' || name === 'p_median') && !site.seqMeans?.length)
    fail(spec, `statistic ${name} needs sequence means in ${file} (profile with sequence means)`, file);
  // Rahmanisa's p_max / p_median are over sentences: the means of fixed windows are another statistic.
  if ((name === 'p_max' || name === 'p_median') && st.meta.scope.mode !== 'sentences')
    ctx.onWarning?.(`${file}: ${name} is defined over sentences (Rahmanisa et al.), but these sequence means are of ${st.meta.scope.mode} of ${st.meta.scope.maxLen} tokens; profile with --scope sentences --seq-means for the paper's values`);
  if ((name === 'median' || name.startsWith('p')) && name !== 'p_max' && name !== 'p_median' && !site.histogram)
    fail(spec, `statistic ${name} needs a histogram in ${file} (profile with histogram edges)`, file);
  return units.map((u, l) => {
    if (!u.length) return [];
    const slot = st.meta.layers.indexOf(l);
    if (slot < 0) fail(spec, `layer ${l} was not profiled in ${file} (layers ${st.meta.layers.join(', ')})`, file);
    return u.map((j) => neuronStatistic(st, site, name, slot, j));
  });
}

/** Resolves specs (in order) into the native arrays. */
export async function resolveSpecs(specs: InterventionSpec[], ctx: ResolveContext): Promise<ResolvedIntervention> {
  const e = { layers: [] as number[], sites: [] as number[], neurons: [] as number[], ops: [] as number[], when: [] as number[], values: [] as number[], rules: [] as number[] };
  const r = { layers: [] as number[], sites: [] as number[], stats: [] as number[], factors: [] as number[], pct: [] as number[] };
  const files = new Files();
  const counts: number[] = [];
  let needsClasses = false;
  for (const raw of specs) {
    const spec = validateSpec(raw);
    const site = spec.site ?? 'act', positions = spec.positions ?? 'all', op = spec.operation;
    needsClasses ||= positions === 'prompt' || positions === 'generated';
    const units = await neuronsOf(spec, ctx, files);
    let code: number = OP_CODE.set;
    let values: number[][];
    let rule: ((l: number) => number) | undefined;
    if (op.op === 'set') values = await valuesOf(spec, op.value, units, ctx, files);
    else if (op.op === 'add') {
      code = OP_CODE.add;
      const alpha = op.alpha ?? 1;
      values = (await valuesOf(spec, op.value, units, ctx, files)).map((vs) => vs.map((x) => alpha * x));
    } else if (op.op === 'scale') {
      code = OP_CODE.scale;
      values = units.map((u) => u.map(() => op.factor));
    } else if (op.op === 'diffmean') {
      code = OP_CODE.add;
      values = await diffmean(spec, op, units, ctx, files);
    } else {
      code = op.combine === '=' ? OP_CODE.set : op.combine === '*' ? OP_CODE.scale : OP_CODE.add;
      values = units.map((u) => u.map(() => 0));
      const pct = op.statistic.startsWith('p') ? Number(op.statistic.slice(1)) : 50;
      const ruleOfLayer = new Map<number, number>();
      rule = (l) => {
        if (!ruleOfLayer.has(l)) {
          ruleOfLayer.set(l, r.layers.length);
          r.layers.push(l); r.sites.push(SITE_CODE[site]); r.factors.push(op.factor ?? 1); r.pct.push(pct);
          r.stats.push(ROW_STAT_CODE[op.statistic] ?? PERCENTILE_CODE);
        }
        return ruleOfLayer.get(l)!;
      };
    }
    let n = 0;
    units.forEach((u, l) => u.forEach((j, k) => {
      const v = values[l]![k]!;
      if (!Number.isFinite(v)) fail(spec, `the value for neuron ${j} of layer ${l} is not finite (${v})`);
      e.layers.push(l); e.sites.push(SITE_CODE[site]); e.neurons.push(j); e.ops.push(code); e.when.push(WHEN[positions]);
      e.values.push(v); e.rules.push(rule ? rule(l) : -1);
      n++;
    }));
    counts.push(n);
  }
  return {
    arrays: {
      layers: Int32Array.from(e.layers), sites: Int32Array.from(e.sites), neurons: Int32Array.from(e.neurons), ops: Uint8Array.from(e.ops),
      when: Uint8Array.from(e.when), values: Float32Array.from(e.values), rules: Int32Array.from(e.rules),
      ruleLayers: Int32Array.from(r.layers), ruleSites: Int32Array.from(r.sites), ruleStats: Int32Array.from(r.stats),
      ruleFactors: Float32Array.from(r.factors), rulePercentiles: Float32Array.from(r.pct),
    },
    needsClasses, counts,
  };
}

/** α (μ_target − mean over the other languages of μ_k), per targeted neuron. */
async function diffmean(spec: InterventionSpec, op: Extract<InterventionSpec['operation'], { op: 'diffmean' }>, units: number[][], ctx: ResolveContext, files: Files): Promise<number[][]> {
  let others = op.others;
  if (!others) {
    if (spec.neurons === 'all') fail(spec, 'diffmean over all neurons needs others=<languages> (there is no mask to take them from)');
    const mask = await files.mask(spec.neurons.mask);
    others = Object.keys(mask.languages).filter((l) => l !== op.language);
  }
  others = others.filter((l) => l !== op.language);
  if (!others.length) fail(spec, `diffmean needs at least one language besides "${op.language}"`);
  const target = await valuesOf(spec, { statistic: 'mean', language: op.language }, units, ctx, files);
  const rest = await Promise.all(others.map((lang) => valuesOf(spec, { statistic: 'mean', language: lang }, units, ctx, files)));
  const alpha = op.alpha ?? 1;
  return target.map((vs, l) => vs.map((mu, k) => alpha * (mu - rest.reduce((s, o) => s + o[l]![k]!, 0) / rest.length)));
}
