// StatsAccumulator: per-unit activation statistics accumulated by a model's forwards (the native NativeStats),
// read out as the SiteStats arrays of src/profile/stats.ts. Pass it as `stats` to LanguageModel.forward, with a
// `countMask` per sequence for the tokens that are fed but not counted (BOS, padding).
import { LangneuronsError } from '../errors.js';
import type { NativeStats, NativeStatsRead } from '../native/addon.js';
import { SITES, type ActivationStats, type Site, type SiteStats, type StatsMeta } from '../profile/stats.js';

export interface StatsOptions {
  /** Sites to profile (default ['act']). */
  sites?: Site[];
  /** Profile layers 0 .. layers-1 (default: every layer). A forward with `lastLayer` must reach layers-1. */
  layers?: number;
  /** B + 1 ascending histogram edges shared by every unit (≥ 2). */
  histEdges?: ArrayLike<number>;
  /** Per site, [layers × width] thresholds: counts of value > threshold (e.g. Mondal's per-neuron p90). */
  thresholds?: Partial<Record<Site, Float32Array>>;
  /** Where the thresholds come from (recorded in SiteStats.above.source). */
  thresholdSource?: string;
  /** Keep the mean over each sequence's counted tokens ([sequences][layers][width] per site). */
  seqMeans?: boolean;
}

export interface StatsSnapshot {
  tokens: number;
  sequences: number;
  /** Layers profiled: 0 .. layers-1. */
  layers: number;
  sites: Map<Site, SiteStats>;
}

export class StatsAccumulator {
  /** Set by LanguageModel.createStats; forwards refuse an accumulator of another model. */
  constructor(
    readonly native: NativeStats,
    readonly owner: object,
    readonly sites: readonly Site[],
    readonly layers: number,
    private readonly thresholds: Partial<Record<Site, Float32Array>>,
    private readonly thresholdSource: string,
  ) {}

  /** The totals so far (copies). Await the forwards that use this accumulator first. */
  read(): StatsSnapshot {
    return this.convert(this.native.read());
  }

  /** The totals as an ActivationStats (meta.layers must list 0 .. layers-1), ready for writeStats / mergeStats. */
  toActivationStats(meta: StatsMeta): ActivationStats {
    const want = Array.from({ length: this.layers }, (_, i) => i).join(',');
    if (meta.layers.join(',') !== want)
      throw new LangneuronsError('E_STATS', `meta.layers [${meta.layers.join(', ')}] does not match the profiled layers 0..${this.layers - 1}`);
    const s = this.read();
    return { meta, tokens: s.tokens, sequences: s.sequences, sites: s.sites };
  }

  /** The sequence means of every site since the last call (and clears them: long runs drain them as they go). */
  takeSeqMeans(): Map<Site, Float32Array> {
    const raw = this.native.readSeqMeans();
    return new Map(Object.entries(raw).map(([k, v]) => [k as Site, v]));
  }

  reset(): void {
    this.native.reset();
  }

  /**
   * Continues from earlier totals of the same sites and layers (a profile checkpoint): the counts and sums become
   * theirs, and later forwards add to them in the order an uninterrupted run would, so a resumed run's float64 sums
   * are the same bits as the uninterrupted run's (merging two runs' totals afterwards would differ in the last bits).
   * Sequence means are not restored: read() lists those of the forwards since. Refused (E_STATS) when `from` lacks
   * a site, a sum, Σ|value|, the histogram or the threshold counts these statistics keep.
   */
  restore(from: Pick<ActivationStats, 'tokens' | 'sequences' | 'sites'>): void {
    const sites: Parameters<NativeStats['restore']>[0]['sites'] = {};
    for (const site of this.sites) {
      const x = from.sites.get(site);
      const missing = !x ? `site '${site}'` : x.sumsAbsent || !x.absSum ? `the sums of site '${site}'` : null;
      if (missing) throw new LangneuronsError('E_STATS', `restore: the earlier totals lack ${missing}`);
      sites[site] = { overZero: x!.overZero, sum: x!.sum, sumSq: x!.sumSq, absSum: x!.absSum!,
        ...(x!.histogram ? { histCounts: x!.histogram.counts } : {}), ...(x!.above ? { aboveCounts: x!.above.counts } : {}) };
    }
    try {
      this.native.restore({ tokens: from.tokens, sequences: from.sequences, sites });
    } catch (e) {
      throw new LangneuronsError('E_STATS', (e as Error).message, { cause: e });
    }
  }

  private convert(r: NativeStatsRead): StatsSnapshot {
    const sites = new Map<Site, SiteStats>();
    for (const site of SITES) {
      const x = r.sites[site];
      if (!x) continue;
      const st: SiteStats = { site, width: x.width, overZero: x.overZero, sum: x.sum, sumSq: x.sumSq, absSum: x.absSum };
      if (x.histCounts && r.histEdges) st.histogram = { edges: r.histEdges, counts: x.histCounts };
      if (x.aboveCounts) st.above = { source: this.thresholdSource, thresholds: this.thresholds[site]!, counts: x.aboveCounts };
      if (x.seqMeans) st.seqMeans = x.seqMeans;
      sites.set(site, st);
    }
    return { tokens: r.tokens, sequences: r.sequences, layers: r.layers, sites };
  }
}
