// Per-unit thresholds from an earlier profiling pass, for Mondal's act-prob-75p / 90p / 95p (src/identify/act-prob.ts):
// pass 1 profiles each language with histograms; pass 2 profiles it again counting value > that language's own
// per-unit q-quantile, read off the pass-1 histogram of the same language, site and model (histogramQuantile: values
// spread uniformly inside a bin). The counts are labelled "p<100·q>" (e.g. "p90"), the label act-prob.ts checks.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';

import { LangneuronsError } from '../errors.js';
import { histogramQuantile } from '../identify/act-prob.js';
import { languageStatsFile, readStats, type ActivationStats, type ModelIdentity, type Site } from './stats.js';

export interface PassThresholds {
  /** Per site, [layers][width] thresholds (float32, as the engine compares them). */
  thresholds: Partial<Record<Site, Float32Array>>;
  /** "p90" for q = 0.9. */
  source: string;
  /** The earlier pass's file they were read from. */
  file: string;
  /** sha256 of the thresholds (what a checkpoint made with them is tied to). */
  digest: string;
  /**
   * Per site, the units whose quantile lies in the histogram's first or last bin: those bins also hold every value
   * below the lowest or above the highest edge, so such a threshold is only a bound (a last-bin one too low, its
   * "above" count too high). Said by profile; a wider --histogram in the earlier pass avoids them.
   */
  openBins: { site: Site; low: number; high: number; width: number; lo: number; hi: number }[];
}

/** "p90" for 0.9, "p97.5" for 0.975. */
export function quantileLabel(q: number): string {
  return `p${Number((q * 100).toFixed(6))}`;
}

/** Checks q in (0, 1); throws an E_OPTIONS error naming `field`. */
export function checkAboveQuantile(q: number, field = 'aboveQuantile'): number {
  if (!(Number.isFinite(q) && q > 0 && q < 1))
    throw new LangneuronsError('E_OPTIONS', `${field} must be a quantile in (0, 1) such as 0.9, got ${q}`, { field });
  return q;
}


/**
 * Thresholds for profiling `language` at `sites`, layers 0..layers-1 of the model `model`: per unit, the q-quantile of
 * the earlier pass's histogram. Throws (E_STATS, naming the file) when the earlier pass is missing, of another model,
 * language or layer set, lacks a site or has no histogram there.
 */
export async function thresholdsFromEarlierPass(from: string, o: {
  language: string; model: ModelIdentity; sites: readonly Site[]; layers: number; quantile: number;
}): Promise<PassThresholds> {
  const q = checkAboveQuantile(o.quantile);
  const file = languageStatsFile(from, o.language);
  const fail = (msg: string): never => { throw new LangneuronsError('E_STATS', `${file}: ${msg}`, { file }); };
  if (!existsSync(file)) fail(`no statistics of language '${o.language}' from the earlier pass (--thresholds-from ${from})`);
  const prev: ActivationStats = await readStats(file);
  if (prev.meta.model.fingerprint !== o.model.fingerprint)
    fail(`the earlier pass profiled another model (${prev.meta.model.name} ${prev.meta.model.fingerprint.slice(0, 12)}, ` +
      `this is ${o.model.name} ${o.model.fingerprint.slice(0, 12)})`);
  if (prev.meta.language !== o.language) fail(`the earlier pass is of language '${prev.meta.language}', not '${o.language}'`);
  if (prev.tokens <= 0) fail('the earlier pass counted no token');
  const slots: number[] = [];
  for (let l = 0; l < o.layers; l++) {
    const k = prev.meta.layers.indexOf(l);
    if (k < 0) fail(`the earlier pass did not profile layer ${l} (it has layers ${prev.meta.layers.join(',')}); profile the same layers`);
    slots.push(k);
  }
  const thresholds: Partial<Record<Site, Float32Array>> = {};
  const openBins: PassThresholds['openBins'] = [];
  const hash = createHash('sha256');
  for (const site of o.sites) {
    const st = prev.sites.get(site);
    if (!st) fail(`the earlier pass did not profile site "${site}" (it has: ${[...prev.sites.keys()].join(', ')})`);
    const h = st!.histogram;
    if (!h) fail(`the earlier pass has no histogram at site "${site}": profile it with --histogram lo:hi:bins to read quantiles`);
    const { edges, counts } = h!;
    const B = edges.length - 1, W = st!.width;
    const out = new Float32Array(o.layers * W);
    let low = 0, high = 0;
    for (let l = 0; l < o.layers; l++)
      for (let j = 0; j < W; j++) {
        const u = slots[l]! * W + j;
        const w = counts.subarray(u * B, (u + 1) * B);
        out[l * W + j] = histogramQuantile(w, edges, q);
        const bin = quantileBin(w, q);
        if (bin === 0) low++;
        else if (bin === B - 1) high++;
      }
    if (low + high > 0) openBins.push({ site, low, high, width: o.layers * W, lo: edges[0]!, hi: edges[B]! });
    thresholds[site] = out;
    hash.update(site).update(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
  }
  return { thresholds, source: quantileLabel(q), file, digest: hash.digest('hex'), openBins };
}

/** The bin histogramQuantile reads the q-quantile from (-1 for an empty histogram). */
function quantileBin(w: Float64Array, q: number): number {
  let total = 0;
  for (const x of w) total += x;
  let cum = 0;
  for (let b = 0; b < w.length; b++) {
    cum += w[b]!;
    if (w[b]! > 0 && cum >= q * total) return b;
  }
  return -1;
}

/** The warning for a pass's open-bin thresholds, or null when there are none. */
export function openBinWarning(language: string, pass: PassThresholds, q: number): string | null {
  if (!pass.openBins.length) return null;
  const parts = pass.openBins.map((b) => `site ${b.site}: ${[b.high ? `${b.high} of ${b.width} units in the last bin (it also holds every value above ${b.hi}: their thresholds are too low, their counts too high)` : '',
    b.low ? `${b.low} in the first (it also holds every value below ${b.lo})` : ''].filter(Boolean).join(', ')}`);
  return `${language}: the ${q} quantile read from ${pass.file} lies in an open end of its histogram for ${parts.join('; ')}; ` +
    'profile the earlier pass again with a --histogram range past those values';
}
