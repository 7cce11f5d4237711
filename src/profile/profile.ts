// profileCorpus: run a model over each language's corpus and accumulate per-unit activation statistics, one
// statistics file per language. Profiling runs no LM head (and no layer past the last profiled one), writes a
// checkpoint every `checkpointTokens` counted tokens, and resumes from it after a kill without counting anything
// twice (the checkpoint holds the statistics and the corpus position together, in one atomically written file).
// With `thresholdsFrom`, each language also counts value > its own per-unit quantile from an earlier pass
// (src/profile/thresholds.ts; Mondal's act-prob-Xp).
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { scopeBatches, type ScopePosition } from '../corpus/scopes.js';
import { checkLanguageId } from '../corpus/language-id.js';
import type { Corpus } from '../corpus/sources.js';
import type { StatsOptions } from '../engine/stats.js';
import type { LanguageModel } from '../engine/model.js';
import { LangneuronsError } from '../errors.js';
import { withOutputLock } from '../io/lock.js';
import { refuseOutputIsInput } from '../io/outdir.js';
import { modelFingerprint } from '../model/fingerprint.js';
import { modelIdentity } from './identity.js';
import { languageStatsFile, mergeStats, readStatsFile, writeStats, STATS_FORMAT, type ActivationStats, type Site, type StatsMeta, type TokenScope } from './stats.js';
import { checkAboveQuantile, thresholdsFromEarlierPass, type PassThresholds } from './thresholds.js';

export const TOOL_VERSION = '0.1.0';

export interface ProfileOptions {
  languages: string[];
  outDir: string;
  scope: TokenScope;
  /** Sites to profile (default ['act']). */
  sites?: Site[];
  /** Profile layers 0 .. layers-1 (default all); later layers are not run. */
  layers?: number;
  /** Tokens per forward batch (default 4096). */
  batchTokens?: number;
  shard?: { index: number; count: number };
  histEdges?: number[];
  /** The same thresholds for every language (see also thresholdsFrom). */
  thresholds?: Partial<Record<Site, Float32Array>>;
  thresholdSource?: string;
  /**
   * Per language, count value > that language's per-unit `quantile` read from the histograms of an earlier pass
   * (`from`: its output folder, or one file when profiling one language); recorded as source "p<100·quantile>".
   */
  thresholdsFrom?: { from: string; quantile: number };
  seqMeans?: boolean;
  /** Write a resumable checkpoint every this many counted tokens (default 1M). */
  checkpointTokens?: number;
  /** Resume from existing checkpoints (default true); false starts over. */
  resume?: boolean;
  onProgress?: (p: { language: string; tokens: number; budget: number; sequences: number }) => void;
  /** Non-fatal news, e.g. a shard that got no tokens. */
  onWarning?: (message: string) => void;
}

export interface LanguageProfile { language: string; file: string; tokens: number; sequences: number; seconds: number; resumed: boolean; skipped: boolean }

const CHECKPOINT_KEY = 'langneurons_checkpoint';

interface CheckpointState { position: ScopePosition; optionsKey: string }

export function statsFileFor(outDir: string, lang: string): string {
  return path.join(outDir, `${checkLanguageId(lang, 'profile')}.safetensors`);
}
const checkpointFileFor = (outDir: string, lang: string) => path.join(outDir, `.${checkLanguageId(lang, 'profile')}.checkpoint.safetensors`);

export async function profileCorpus(model: LanguageModel, corpus: Corpus, o: ProfileOptions): Promise<LanguageProfile[]> {
  // The earlier pass's histograms are read, this pass's files written: one folder for both would destroy the first.
  if (o.thresholdsFrom) await refuseOutputIsInput(o.outDir, [o.thresholdsFrom.from], 'outDir (--out)');
  return withOutputLock(o.outDir, 'profile', () => profileCorpusLocked(model, corpus, o));
}

async function profileCorpusLocked(model: LanguageModel, corpus: Corpus, o: ProfileOptions): Promise<LanguageProfile[]> {
  const tok = model.requireTokenizer();
  const layers = o.layers ?? model.config.numLayers;
  if (!Number.isInteger(layers) || layers < 1 || layers > model.config.numLayers)
    throw new LangneuronsError('E_OPTIONS', `layers must be an integer in [1, ${model.config.numLayers}], got ${layers}`, { field: 'layers' });
  const batchTokens = o.batchTokens ?? 4096;
  const needed = o.scope.maxLen + (o.scope.bos ? 1 : 0);
  if (needed > model.contextLength)
    throw new LangneuronsError('E_OPTIONS', `windows of ${o.scope.maxLen} tokens${o.scope.bos ? ' plus BOS' : ''} exceed the model's context of ${model.contextLength}`, { field: 'maxLen' });
  for (const lang of o.languages) { checkLanguageId(lang, 'languages'); corpus.source(lang); } // bad or unknown languages fail before any work
  const identity = modelIdentity(model.checkpoint);
  // The weights' content, not only the layout: a checkpoint of other weights under the same path is not resumed.
  const weights = await modelFingerprint(model.checkpoint.dir);
  const sites = o.sites ?? ['act'];
  if (o.thresholdsFrom) {
    if (o.thresholds) throw new LangneuronsError('E_OPTIONS', 'give either thresholds or thresholdsFrom, not both', { field: 'thresholdsFrom' });
    checkAboveQuantile(o.thresholdsFrom.quantile, 'thresholdsFrom.quantile');
    for (const lang of o.languages) { // a missing earlier pass fails before any work
      const f = languageStatsFile(o.thresholdsFrom.from, lang);
      if (!existsSync(f))
        throw new LangneuronsError('E_STATS', `${f}: no statistics of language '${lang}' from the earlier pass (thresholds from ${o.thresholdsFrom.from})`, { file: f });
    }
  }
  const results: LanguageProfile[] = [];

  for (const lang of o.languages) {
    const started = performance.now();
    const source = corpus.source(lang);
    const fingerprint = await source.fingerprint();
    const meta: StatsMeta = {
      format: STATS_FORMAT, model: identity, language: lang, scope: o.scope,
      layers: Array.from({ length: layers }, (_, i) => i), corpus: { files: source.files, fingerprint },
      toolVersion: TOOL_VERSION, shards: 1,
      parts: [{ corpus: fingerprint, shard: o.shard ? [o.shard.index + 1, o.shard.count] : null, budget: o.scope.tokenBudget, id: randomUUID() }],
    };
    let pass: PassThresholds | null = null;
    if (o.thresholdsFrom)
      pass = await thresholdsFromEarlierPass(o.thresholdsFrom.from, { language: lang, model: identity, sites, layers, quantile: o.thresholdsFrom.quantile });
    const thresholds = pass ? pass.thresholds : o.thresholds;
    const thresholdSource = pass ? pass.source : o.thresholdSource ?? 'given';
    // Everything that changes what is counted: a checkpoint made with other options is not resumed.
    const optionsKey = JSON.stringify({ model: identity.fingerprint, weights, fingerprint, scope: o.scope, sites, layers, shard: o.shard ?? null,
      histEdges: o.histEdges ?? null, thresholdSource: thresholds ? thresholdSource : null, seqMeans: !!o.seqMeans, batchTokens,
      ...(pass ? { thresholdsDigest: pass.digest } : {}) });
    const outFile = statsFileFor(o.outDir, lang);
    const ckFile = checkpointFileFor(o.outDir, lang);

    let base: ActivationStats | null = null;
    let resumeFrom: ScopePosition | undefined;
    if (o.resume !== false && existsSync(outFile) && !existsSync(ckFile)) {
      const done = await readStatsFile(outFile).catch(() => null);
      if (done && done.metadata['langneurons_options'] === optionsKey) {
        results.push({ language: lang, file: outFile, tokens: done.stats.tokens, sequences: done.stats.sequences, seconds: 0, resumed: false, skipped: true });
        continue;
      }
    }
    if (o.resume !== false && existsSync(ckFile)) {
      const ck = await readStatsFile(ckFile);
      const state = JSON.parse(ck.metadata[CHECKPOINT_KEY] ?? 'null') as CheckpointState | null;
      if (!state || state.optionsKey !== optionsKey)
        throw new LangneuronsError('E_RESUME', `${ckFile}: this checkpoint was made with other options, model or corpus; ` +
          'rerun with the same ones, or remove it (or pass --no-resume) to start over', { file: ckFile });
      base = ck.stats;
      resumeFrom = state.position;
    }

    const stats = model.createStats({
      sites, layers, seqMeans: !!o.seqMeans,
      ...(o.histEdges ? { histEdges: o.histEdges } : {}),
      ...(thresholds ? { thresholds, thresholdSource } : {}),
    } satisfies StatsOptions);
    const total = () => {
      const now = stats.toActivationStats(meta);
      return base ? mergeStats(base, now, [ckFile, 'this run'], { continuation: true }) : now;
    };
    let sinceCheckpoint = 0;
    let position: ScopePosition | undefined = resumeFrom;
    const budget = o.scope.tokenBudget;
    // The next batch is read and tokenized while the runtime computes this one (forwards run off the JS thread), so
    // that a GPU does not wait for the tokenizer between batches. Only a finished forward moves `position`, so a
    // checkpoint never counts the batch being cut, and the batches, their order and the sums are those of a loop
    // without the overlap.
    const batches = scopeBatches(source, tok, { scope: o.scope, batchTokens, ...(o.shard ? { shard: o.shard } : {}), ...(resumeFrom ? { resumeFrom } : {}) });
    try {
      let pending = batches.next();
      for (let item = await pending; !item.done; item = await pending) {
        const batch = item.value;
        const forward = batch.sequences.length
          ? model.forward(batch.sequences, { logits: 'none', stats, countMask: batch.countMask, lastLayer: layers - 1 })
          : null;
        pending = batches.next();
        pending.catch(() => undefined); // awaited at the next turn; a failing forward must not leave it unobserved
        await forward;
        position = batch.position;
        sinceCheckpoint += batch.tokens;
        o.onProgress?.({ language: lang, tokens: position.tokensCounted, budget, sequences: position.sequencesEmitted });
        if (sinceCheckpoint >= (o.checkpointTokens ?? 1_000_000)) {
          await writeStats(ckFile, total(), { [CHECKPOINT_KEY]: JSON.stringify({ position, optionsKey } satisfies CheckpointState) });
          sinceCheckpoint = 0;
        }
      }
    } finally {
      await batches.return(undefined);
    }
    const final = total();
    // A shard of a small corpus may get no sequence: its (empty) file still merges, so a grid of shards completes.
    if (final.tokens === 0 && !o.shard)
      throw new LangneuronsError('E_INPUT', `${source.files.join(', ')}: no tokens to profile for language ${lang}`, { file: source.files[0] });
    if (final.tokens === 0) o.onWarning?.(`${lang}: shard ${o.shard!.index + 1}/${o.shard!.count} of ${source.files.join(', ')} holds no tokens; wrote an empty statistics file (it merges as zero)`);
    await writeStats(outFile, final, { langneurons_options: optionsKey });
    await fsp.rm(ckFile, { force: true });
    results.push({ language: lang, file: outFile, tokens: final.tokens, sequences: final.sequences, seconds: (performance.now() - started) / 1000, resumed: !!resumeFrom, skipped: false });
  }
  return results;
}
