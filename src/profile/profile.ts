// profileCorpus: run a model over each language's corpus and accumulate per-unit activation statistics, one
// statistics file per language. Profiling runs no LM head (and no layer past the last profiled one), writes a
// checkpoint every `checkpointTokens` counted tokens, and resumes from it after a kill without counting anything
// twice (the checkpoint holds the statistics and the corpus position together, in one atomically written file).
// With `thresholdsFrom`, each language also counts value > its own per-unit quantile from an earlier pass
// (src/profile/thresholds.ts; Mondal's act-prob-Xp).
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { scopeBatches, type ScopePosition } from '../corpus/scopes.js';
import { checkLanguageId } from '../corpus/language-id.js';
import type { Corpus, LanguageSource } from '../corpus/sources.js';
import { deviceKind } from '../engine/device.js';
import type { StatsOptions } from '../engine/stats.js';
import type { LanguageModel } from '../engine/model.js';
import { checkOptions, type OptionKeys } from '../engine/options.js';
import { LangneuronsError } from '../errors.js';
import { withOutputLock } from '../io/lock.js';
import { refuseOutputIsInput } from '../io/outdir.js';
import { readSafetensorsHeader, readTensor, type SafetensorsHeader } from '../io/safetensors.js';
import { modelFingerprint } from '../model/fingerprint.js';
import { modelIdentity } from './identity.js';
import { budgetShortfall, CHECKPOINT_KEY, concatSeqMeans, languageStatsFile, mergedMeta, mergeStats, readStatsFile, siteWidths, writeStats, STATS_FORMAT, type ActivationStats, type Site, type StatsMeta, type TokenScope } from './stats.js';
import { checkAboveQuantile, openBinWarning, thresholdsFromEarlierPass, type PassThresholds } from './thresholds.js';

export { TOOL_VERSION } from '../version.js';
import { TOOL_VERSION } from '../version.js';

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
  /** Profile only one shard: the sequences i with i % count = index. `index` is 0-based (0 .. count - 1): the CLI's
   *  `--shard K/N` is { index: K - 1, count: N }. Merge the shards' files with mergeStatsInOrder. */
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

const PROFILE_OPTIONS: OptionKeys<ProfileOptions> = {
  languages: true, outDir: true, scope: true, sites: true, layers: true, batchTokens: true, shard: true, histEdges: true, thresholds: true,
  thresholdSource: true, thresholdsFrom: true, seqMeans: true, checkpointTokens: true, resume: true, onProgress: true, onWarning: true,
};

export interface LanguageProfile { language: string; file: string; tokens: number; sequences: number; seconds: number; resumed: boolean; skipped: boolean }

// CHECKPOINT_KEY (stats.ts): the checkpoint's resume position, beside its statistics
/** The metadata entry of a finished file holding the options it was profiled with (its resume key). */
const OPTIONS_KEY = 'langneurons_options';

interface CheckpointState { position: ScopePosition; optionsKey: string }

export function statsFileFor(outDir: string, lang: string): string {
  return path.join(outDir, `${checkLanguageId(lang, 'profile')}.safetensors`);
}
const checkpointFileFor = (outDir: string, lang: string) => path.join(outDir, `.${checkLanguageId(lang, 'profile')}.checkpoint.safetensors`);

export async function profileCorpus(model: LanguageModel, corpus: Corpus, o: ProfileOptions): Promise<LanguageProfile[]> {
  checkOptions('profileCorpus', o, PROFILE_OPTIONS);
  // `<out>/<lang>.safetensors` in the model's own folder could be its weights (a language named "model").
  await refuseOutputIsInput(o.outDir, [model.checkpoint.dir], 'outDir (--out)');
  // The earlier pass's histograms are read, this pass's files written: one folder for both would destroy the first.
  if (o.thresholdsFrom) await refuseOutputIsInput(o.outDir, [o.thresholdsFrom.from], 'outDir (--out)');
  return withOutputLock(o.outDir, 'profile', () => profileCorpusLocked(model, corpus, o));
}

/** The units a profile keeps statistics of: every profiled layer's units at every site. */
function profiledUnits(model: LanguageModel, sites: Site[], layers: number): number {
  const widths = siteWidths(model.checkpoint.config);
  return layers * sites.reduce((n, site) => n + widths[site], 0);
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/**
 * --seq-means keeps one mean vector per sequence (every profiled layer and unit of every site), in memory until the
 * language's file is written: on an 8B model 1.8 MB per sequence at `act` alone, so a token budget meant for counts
 * (100M tokens, ~200k windows) asks for hundreds of GB. Said before the run when a language's budget implies more
 * than a quarter of this machine's memory (the corpus may hold fewer tokens; sentences may be shorter than --max-len,
 * and then there are more of them).
 */
function seqMeansWarning(model: LanguageModel, o: ProfileOptions, sites: Site[], layers: number): string | null {
  const budget = o.scope.tokenBudget;
  if (!budget) return null;
  const perSequence = 4 * profiledUnits(model, sites, layers);
  const sequences = Math.ceil(budget / o.scope.maxLen / (o.shard?.count ?? 1));
  const bytes = sequences * perSequence;
  if (bytes <= os.totalmem() / 4) return null;
  return `--seq-means keeps every sequence's mean vector (${(perSequence / 2 ** 20).toFixed(1)} MiB each: ${layers} layers of ${sites.join(', ')}): ` +
    `a budget of ${budget} tokens in ${o.scope.mode} of up to ${o.scope.maxLen} tokens${o.shard ? ` (shard ${o.shard.index + 1}/${o.shard.count})` : ''} is ` +
    `${o.scope.mode === 'sentences' ? 'at least ' : 'about '}${sequences} sequences, ${gib(bytes)} per language, in memory and in each <lang>.safetensors ` +
    `(this machine has ${gib(os.totalmem())}): profile the sequence means over fewer tokens (--tokens) or layers (--layers), in a run of their own`;
}

/**
 * Why histograms of `bins` bins over the sites and layers do not fit this machine's memory, or null. Each unit keeps a
 * 64-bit count per bin, held twice while a language's statistics are read out of the engine (the engine's and the
 * file's copy); past half the memory the allocation would swap or be killed (the kernel overcommits: no error comes
 * back) instead of failing with a message. `act` of an 8B model is 3.7 MB a bin: 65,536 bins would be 240 GB.
 */
function histogramMemoryProblem(model: LanguageModel, bins: number, sites: Site[], layers: number): string | null {
  const units = profiledUnits(model, sites, layers);
  const bytes = 2 * 8 * units * bins;
  if (bytes <= os.totalmem() / 2) return null;
  const fits = Math.floor(os.totalmem() / 2 / (2 * 8 * units));
  return `--histogram: ${bins} bins for each of ${units} units (${layers} layers of ${sites.join(', ')}) take ${gib(bytes)} while a ` +
    `language's statistics are read out, over half this machine's ${gib(os.totalmem())}: give at most ${fits} bins, or fewer sites or layers (--sites, --layers)`;
}

/** What one language's profile counts, and the key of everything that changes it (resume only under the same key). */
interface LanguageRun {
  source: LanguageSource;
  fingerprint: string;
  pass: PassThresholds | null;
  /** JSON of the options: a checkpoint is continued, a finished file kept, only when they are the same. */
  optionsKey: string;
}

/** What to do with one language, decided for every language before anything is written. */
type LanguagePlan =
  | { language: string; todo: 'profile'; run?: LanguageRun; checkpoint?: { stats: ActivationStats; position: ScopePosition } }
  | { language: string; todo: 'skip'; tokens: number; sequences: number; staleCheckpoint: boolean };

async function profileCorpusLocked(model: LanguageModel, corpus: Corpus, o: ProfileOptions): Promise<LanguageProfile[]> {
  const tok = model.requireTokenizer();
  const layers = o.layers ?? model.config.numLayers;
  if (!Number.isInteger(layers) || layers < 1 || layers > model.config.numLayers)
    throw new LangneuronsError('E_OPTIONS', `layers must be an integer in [1, ${model.config.numLayers}], got ${layers}`, { field: 'layers' });
  const batchTokens = o.batchTokens ?? 4096;
  const needed = o.scope.maxLen + (o.scope.bos ? 1 : 0);
  if (needed > model.contextLength)
    throw new LangneuronsError('E_OPTIONS', `${o.scope.mode === 'sentences' ? 'sentences' : 'windows'} of ${o.scope.maxLen} tokens${o.scope.bos ? ' plus BOS' : ''} exceed the model's context of ${model.contextLength}: give a maxLen (--max-len) of at most ${model.contextLength - (o.scope.bos ? 1 : 0)}`, { field: 'maxLen' });
  for (const lang of o.languages) { checkLanguageId(lang, 'languages'); corpus.source(lang); } // bad or unknown languages fail before any work
  const twice = o.languages.find((l, i) => o.languages.indexOf(l) !== i);
  if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `languages: '${twice}' is listed twice`, { field: 'languages' });
  // Two names of one corpus language (UDHR's en, eng and EN) would profile the same text into files of two names,
  // which identify then ranks as two languages.
  const named = new Map<string, string>();
  for (const lang of o.languages) {
    const files = corpus.source(lang).files.join('\n');
    const other = named.get(files);
    if (other !== undefined)
      throw new LangneuronsError('E_OPTIONS', `languages: '${other}' and '${lang}' name the same corpus (${corpus.source(lang).files.join(', ')}); give one of them`, { field: 'languages' });
    named.set(files, lang);
  }
  const identity = modelIdentity(model.checkpoint);
  // The weights' content, not only the layout: a checkpoint of other weights under the same path is not resumed.
  const weights = await modelFingerprint(model.checkpoint.dir);
  const sites = o.sites ?? ['act'];
  const histogramProblem = o.histEdges ? histogramMemoryProblem(model, o.histEdges.length - 1, sites, layers) : null;
  if (histogramProblem) throw new LangneuronsError('E_OPTIONS', histogramProblem, { field: 'histEdges' });
  if (o.thresholdsFrom) {
    if (o.thresholds) throw new LangneuronsError('E_OPTIONS', 'give either thresholds or thresholdsFrom, not both', { field: 'thresholdsFrom' });
    checkAboveQuantile(o.thresholdsFrom.quantile, 'thresholdsFrom.quantile');
    for (const lang of o.languages) { // a missing earlier pass fails before any work
      const f = languageStatsFile(o.thresholdsFrom.from, lang);
      if (!existsSync(f))
        throw new LangneuronsError('E_STATS', `${f}: no statistics of language '${lang}' from the earlier pass (thresholds from ${o.thresholdsFrom.from})`, { file: f });
    }
  }

  const runOf = async (lang: string): Promise<LanguageRun> => {
    const source = corpus.source(lang);
    const fingerprint = await source.fingerprint();
    const pass = o.thresholdsFrom
      ? await thresholdsFromEarlierPass(o.thresholdsFrom.from, { language: lang, model: identity, sites, layers, quantile: o.thresholdsFrom.quantile })
      : null;
    const thresholdSource = pass ? pass.source : o.thresholdSource ?? 'given';
    // Everything that changes what is counted; the compute mode too (bf16 products move values near 0 across it),
    // and the device and engine kind (a CPU kernel family's products differ from another's in the last bits), so that a
    // resumed run adds up what an uninterrupted one does (a finished file ignores both).
    const optionsKey = JSON.stringify({ model: identity.fingerprint, weights, fingerprint, scope: o.scope, sites, layers, shard: o.shard ?? null,
      histEdges: o.histEdges ?? null, thresholdSource: pass || o.thresholds ? thresholdSource : null, seqMeans: !!o.seqMeans, batchTokens,
      compute: model.compute, device: deviceKind(model.device), engine: model.engineKind(), ...(pass ? { thresholdsDigest: pass.digest } : {}) });
    return { source, fingerprint, pass, optionsKey };
  };

  // Every language's earlier files are judged before anything is written, so that a refusal (a file profile did not
  // write, or one made with other options) leaves the folder exactly as it was.
  const plans: LanguagePlan[] = [];
  for (const lang of o.languages) plans.push(await planLanguage(lang, o, runOf));
  const heavy = o.seqMeans ? seqMeansWarning(model, o, sites, layers) : null;
  if (heavy && plans.some((p) => p.todo === 'profile')) o.onWarning?.(heavy);

  const results: LanguageProfile[] = [];
  for (const plan of plans) {
    const lang = plan.language;
    const outFile = statsFileFor(o.outDir, lang);
    const ckFile = checkpointFileFor(o.outDir, lang);
    if (plan.todo === 'skip') {
      // A kill between writing the finished file and removing the checkpoint leaves that checkpoint behind.
      if (plan.staleCheckpoint) await fsp.rm(ckFile, { force: true });
      results.push({ language: lang, file: outFile, tokens: plan.tokens, sequences: plan.sequences, seconds: 0, resumed: false, skipped: true });
      continue;
    }
    const started = performance.now();
    const { source, fingerprint, pass, optionsKey } = plan.run ?? await runOf(lang);
    const meta: StatsMeta = {
      format: STATS_FORMAT, model: identity, language: lang, scope: o.scope,
      layers: Array.from({ length: layers }, (_, i) => i), corpus: { files: source.files, fingerprint },
      toolVersion: TOOL_VERSION, shards: 1,
      parts: [{ corpus: fingerprint, shard: o.shard ? [o.shard.index + 1, o.shard.count] : null, budget: o.scope.tokenBudget, id: randomUUID() }],
      compute: model.compute,
    };
    const open = pass ? openBinWarning(lang, pass, o.thresholdsFrom!.quantile) : null;
    if (open) o.onWarning?.(open);
    const thresholds = pass ? pass.thresholds : o.thresholds;
    const thresholdSource = pass ? pass.source : o.thresholdSource ?? 'given';
    const base = plan.checkpoint?.stats ?? null;
    const resumeFrom = plan.checkpoint?.position;

    const stats = model.createStats({
      sites, layers, seqMeans: !!o.seqMeans,
      ...(o.histEdges ? { histEdges: o.histEdges } : {}),
      ...(thresholds ? { thresholds, thresholdSource } : {}),
    } satisfies StatsOptions);
    // A checkpoint's totals are where the accumulator starts, so that the forwards add to them in the order of an
    // uninterrupted run (the same bits, which adding two runs' totals afterwards is not). Only its sequence means
    // stay here; a checkpoint without Σ|value| (written before it was recorded) is added afterwards instead.
    const restored = !!base && [...base.sites.values()].every((st) => st.absSum);
    if (restored) stats.restore(base);
    const total = () => {
      if (!base) return stats.toActivationStats(meta);
      if (!restored) return mergeStats(base, stats.toActivationStats(meta), [ckFile, 'this run'], { continuation: true });
      // the checkpoint's record (parts, shards), with this run's corpus paths added, as the merge records it
      const now = stats.toActivationStats(mergedMeta(base.meta, meta, { continuation: true }));
      for (const [site, st] of now.sites) {
        const before = base.sites.get(site)!.seqMeans;
        if (before && st.seqMeans) st.seqMeans = concatSeqMeans(before, st.seqMeans);
      }
      return now;
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
    // A budget the corpus cannot fill: every token was counted, and the file says how many; said so the figure is not
    // taken for the budget. A shard holds part of the run's budget: `stats merge` of the shards says it instead.
    const short = o.shard ? null : budgetShortfall(o.scope, final.tokens);
    if (short) o.onWarning?.(`${lang}: ${short.kind === 'rule' ? short.text : `${source.files.join(', ')} holds ${final.tokens} tokens, fewer than the budget of ${budget}: all of them were counted`}`);
    await writeStats(outFile, final, { [OPTIONS_KEY]: optionsKey });
    await fsp.rm(ckFile, { force: true });
    results.push({ language: lang, file: outFile, tokens: final.tokens, sequences: final.sequences, seconds: (performance.now() - started) / 1000, resumed: !!resumeFrom, skipped: false });
  }
  return results;
}

/**
 * The earlier files of one language in --out, judged before anything is written: a finished file of the same
 * options is kept (the language is skipped), a checkpoint of the same options is continued, and anything else is
 * refused in one line naming the file: a file profile did not write (even with --no-resume, which replaces only
 * profile's own files), or one made with other options (unless --no-resume).
 */
async function planLanguage(lang: string, o: ProfileOptions, runOf: (lang: string) => Promise<LanguageRun>): Promise<LanguagePlan> {
  const outFile = statsFileFor(o.outDir, lang), ckFile = checkpointFileFor(o.outDir, lang);
  const finished = existsSync(outFile) ? await profileOutputHeader(outFile, 'statistics') : null;
  const checkpoint = existsSync(ckFile) ? await profileOutputHeader(ckFile, 'checkpoint') : null;
  if ((!finished && !checkpoint) || o.resume === false) return { language: lang, todo: 'profile' };
  const run = await runOf(lang);
  const state = checkpoint ? parseCheckpointState(checkpoint.metadata?.[CHECKPOINT_KEY]) : null;
  if (finished) {
    // A finished file of another device or engine is kept: its counts are this one's (sums to rounding), see mergeConflict.
    const differs = optionsDiffer(finished.metadata?.[OPTIONS_KEY], run.optionsKey, ['device', 'engine']);
    if (!differs) {
      const count = async (name: string) => {
        const info = finished.tensors.find((t) => t.name === name);
        return info ? Number((await readTensor(outFile, info) as BigInt64Array)[0]) : 0;
      };
      return { language: lang, todo: 'skip', tokens: await count('tokens'), sequences: await count('sequences'), staleCheckpoint: state?.optionsKey === run.optionsKey };
    }
    // Beside a checkpoint of this run's options it is what a killed --no-resume run was replacing: that run continues.
    if (!checkpoint)
      throw new LangneuronsError('E_RESUME', `${outFile}: finished statistics made with other options, model or corpus (${differs}); rerun with the same ones, ` +
        'choose another --out, or pass --no-resume to profile again and replace it', { file: outFile });
  }
  const differs = optionsDiffer(state?.optionsKey, run.optionsKey, []);
  if (differs)
    throw new LangneuronsError('E_RESUME', `${ckFile}: this checkpoint was made with other options, model or corpus (${differs}); ` +
      'rerun with the same ones, or remove it (or pass --no-resume) to start over', { file: ckFile });
  return { language: lang, todo: 'profile', run, checkpoint: { stats: (await readStatsFile(ckFile)).stats, position: state!.position } };
}

/** The header of a file at a name profile writes, refused in one line unless it is a langneurons statistics file. */
async function profileOutputHeader(file: string, kind: 'statistics' | 'checkpoint'): Promise<SafetensorsHeader> {
  const header = await readSafetensorsHeader(file).catch(() => null);
  let meta: { format?: unknown } | null = null;
  try { meta = JSON.parse(header?.metadata?.['langneurons'] ?? 'null'); } catch { /* not ours: refused below */ }
  if (!header || meta?.format !== STATS_FORMAT)
    throw new LangneuronsError('E_EXISTS', `${file}: exists and is not a langneurons ${kind} file; profile does not overwrite it: ` +
      'move it away or choose another --out', { file });
  return header;
}

function parseCheckpointState(raw: string | undefined): CheckpointState | null {
  try { return JSON.parse(raw ?? 'null') as CheckpointState | null; } catch { return null; }
}

/** Labels of the resume key's fields in messages. */
const OPTION_NAMES: Record<string, string> = {
  model: 'model', weights: 'model weights', fingerprint: 'corpus', thresholdsDigest: 'thresholds', thresholdSource: 'threshold source',
};

/** Fields added to the key after files were written without them: compared only where the stored key records them
 *  (a checkpoint from before the engine kind was recorded continues; it recorded the device). */
const COMPARED_WHERE_RECORDED = ['engine'];

/**
 * null when the options key `stored` (a file's) equals `wanted` on every field but `ignore` (and those of
 * COMPARED_WHERE_RECORDED it lacks); else the fields that differ, with both values where they are short:
 * `scope; compute: "bf16", now "f32"`.
 */
function optionsDiffer(stored: string | undefined, wanted: string, ignore: string[]): string | null {
  if (!stored) return 'none recorded: not written by profile';
  let was: Record<string, unknown> = {};
  try {
    const v: unknown = JSON.parse(stored);
    if (v && typeof v === 'object' && !Array.isArray(v)) was = v as Record<string, unknown>;
  } catch { /* compared as {}: every field differs */ }
  const now = JSON.parse(wanted) as Record<string, unknown>;
  const fields = [...new Set([...Object.keys(was), ...Object.keys(now)])]
    .filter((k) => !ignore.includes(k) && (k in was || !COMPARED_WHERE_RECORDED.includes(k)));
  const show = (v: unknown) => (v === undefined ? 'not recorded' : JSON.stringify(v));
  const diffs = fields.filter((k) => JSON.stringify(was[k]) !== JSON.stringify(now[k])).map((k) => {
    const [a, b] = [show(was[k]), show(now[k])];
    return a.length + b.length <= 48 ? `${OPTION_NAMES[k] ?? k}: ${a}, now ${b}` : OPTION_NAMES[k] ?? k;
  });
  return diffs.length ? diffs.join('; ') : null;
}
