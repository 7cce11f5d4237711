import { Option, type Command } from 'commander';

import { openCorpusSpec } from '../../corpus/index.js';
import { LangneuronsError } from '../../errors.js';
import { profileCorpus } from '../../profile/profile.js';
import { SITES, type Site, type TokenScope } from '../../profile/stats.js';
import { addModelOptions, openModel, type ModelCliOptions } from '../common.js';
import { parseIntOption, printResult, Progress } from '../output.js';

/**
 * "2M", "1.5M", "100k", "500000" -> a token count. The count must be whole: "0.4" or "2.5" is no number of tokens
 * (rounding made 0.4 a budget of 0, the whole corpus), nor is "1.0001k". Computed on the decimal digits, so 1.1k is
 * 1100, not 1100.0000000000002.
 */
export function parseTokenCount(name: string) {
  return (v: string): number => {
    const m = /^(\d+)(?:\.(\d+))?([kKmMgG]?)$/.exec(v.trim());
    let n = NaN;
    if (m) {
      const frac = m[2] ?? '';
      const exp = { '': 0, k: 3, m: 6, g: 9 }[m[3]!.toLowerCase() as '' | 'k' | 'm' | 'g'] - frac.length;
      const digits = BigInt(m[1]! + frac);
      const scale = 10n ** BigInt(Math.abs(exp));
      const count = exp >= 0 ? digits * scale : digits % scale === 0n ? digits / scale : null;
      if (count !== null && count <= BigInt(Number.MAX_SAFE_INTEGER)) n = Number(count);
    }
    if (!Number.isSafeInteger(n))
      throw new LangneuronsError('E_OPTIONS', `${name} must be a token count, a whole number such as 500000, 100k, 1.5M or 2M, got '${v}'`, { field: name });
    return n;
  };
}

export function parseShard(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const i = m ? Number(m[1]) : NaN, n = m ? Number(m[2]) : NaN;
  if (!m || n < 1 || i < 1 || i > n) throw new LangneuronsError('E_OPTIONS', `--shard must be K/N with 1 <= K <= N (e.g. 3/8), got '${v}'`, { field: '--shard' });
  return { index: i - 1, count: n };
}

/**
 * "lo:hi:bins" -> bins + 1 evenly spaced edges. The bounds must be finite and the edges strictly ascending (the
 * engine's requirement): 1e999 is Infinity and -1e308:1e308 overflows hi − lo, edges the engine refused in its own
 * words; bounds too close for the bins give equal edges.
 */
export function parseHistogram(v: string): number[] {
  const m = /^(-?[\d.]+(?:e-?\d+)?):(-?[\d.]+(?:e-?\d+)?):(\d+)$/.exec(v.trim());
  const lo = m ? Number(m[1]) : NaN, hi = m ? Number(m[2]) : NaN, bins = m ? Number(m[3]) : NaN;
  const edges = Number.isFinite(lo) && Number.isFinite(hi) && bins >= 1 && bins <= 65536
    ? Array.from({ length: bins + 1 }, (_, i) => lo + ((hi - lo) * i) / bins) : [];
  if (!m || !(hi > lo) || !edges.length || !edges.every((e, i) => Number.isFinite(e) && (i === 0 || e > edges[i - 1]!)))
    throw new LangneuronsError('E_OPTIONS', `--histogram must be lo:hi:bins with finite lo < hi, 1..65536 bins and distinct edges (e.g. -0.5:4:256), got '${v}'`, { field: '--histogram' });
  return edges;
}

interface ProfileCli extends ModelCliOptions {
  corpus: string; langs: string; out: string; tokens: number; shard?: { index: number; count: number }; scope: 'windows' | 'sentences';
  maxLen: number; bos?: boolean; countBos?: boolean; dropLong?: boolean; dropPartial?: boolean; sites: string; layers?: number; batchTokens: number; histogram?: number[]; seqMeans?: boolean;
  checkpointTokens: number; resume: boolean; field?: string; aboveQuantile?: number; thresholdsFrom?: string;
}

/** --above-quantile: a quantile in (0, 1). */
export function parseQuantile(name: string) {
  return (v: string): number => {
    const x = Number(v.trim());
    if (!/^\s*[\d.]+(?:e-?\d+)?\s*$/i.test(v) || !(x > 0 && x < 1))
      throw new LangneuronsError('E_OPTIONS', `${name} must be a quantile in (0, 1) such as 0.9, got '${v}'`, { field: name });
    return x;
  };
}

export function registerProfile(program: Command): void {
  addModelOptions(program
    .command('profile <model-dir>')
    .description('accumulate per-neuron activation statistics per language (one statistics file per language)')
    .requiredOption('--corpus <path>', 'folder of <lang>.txt|.jsonl|.parquet files, a manifest JSON, or udhr / udhr:train / udhr:heldout')
    .requiredOption('--langs <list>', 'comma-separated languages, e.g. en,de,sw,mt')
    .requiredOption('--out <dir>', 'output folder for <lang>.safetensors')
    .option('--tokens <n>', 'token budget per language, a whole number of tokens, e.g. 500000, 1.5M, 2M (0 = the whole corpus)', parseTokenCount('--tokens'), 0)
    .option('--shard <k/n>', 'profile only shard k of n (whole sequences round-robin; merge the shards with `stats merge`)', parseShard)
    .addOption(new Option('--scope <mode>', 'windows: one token stream cut into --max-len windows (Tang); sentences: each line alone (Rahmanisa)').choices(['windows', 'sentences']).default('windows'))
    .option('--max-len <n>', 'tokens per window or sentence', parseIntOption('--max-len', 1), 512)
    .option('--bos', 'feed a BOS token before each window/sentence (not counted); default: on for sentences, off for windows')
    .option('--count-bos', 'sentences: count the BOS as one of the sentence\'s tokens, in the sums and the sequence means (Kojima et al.\'s code means every token, BOS included)')
    .option('--drop-long', 'sentences: leave out a sentence of more than --max-len tokens instead of cutting it (Kojima et al.\'s code drops them)')
    .option('--drop-partial', 'windows: leave out the last window when it is shorter than --max-len (where the corpus or the --tokens budget ends), as Tang et al.\'s activation.py keeps whole windows only')
    .option('--sites <list>', `sites to profile (${SITES.join(', ')})`, 'act')
    .option('--layers <n>', 'profile layers 0..n-1 only (later layers are not run)', parseIntOption('--layers', 1))
    .option('--batch-tokens <n>', 'tokens per forward', parseIntOption('--batch-tokens', 1), 4096)
    .option('--histogram <lo:hi:bins>', 'also keep per-neuron histograms over shared bins, e.g. -0.5:4:256', parseHistogram)
    .option('--seq-means', 'also keep each sequence\'s mean activation vector (for average precision, p_max, p_median): 4 bytes per layer and unit ' +
      'per sequence, in memory until the file is written (1.8 MB a sequence at act on an 8B model): a budget of its own, e.g. --tokens 2M')
    .option('--above-quantile <q>', 'also count, per neuron, the tokens whose value exceeds the language\'s own q-quantile from --thresholds-from (act-prob-75p/90p/95p: 0.75/0.9/0.95)', parseQuantile('--above-quantile'))
    .option('--thresholds-from <dir>', 'an earlier pass\'s output folder, profiled with --histogram, whose histograms give the per-neuron quantiles of --above-quantile')
    .option('--checkpoint-tokens <n>', 'write a resumable checkpoint every n counted tokens', parseTokenCount('--checkpoint-tokens'), 1_000_000)
    .option('--no-resume', 'ignore existing checkpoints and finished files: start over')
    .option('--field <name>', 'JSONL field / Parquet column holding the text (default: text)'))
    .action(async (dir: string, o: ProfileCli) => {
      const sites = o.sites.split(',').map((s) => s.trim()).filter(Boolean);
      // `--sites ""` (or ",") would reach the engine with no site, which fails there in its own words.
      if (sites.length === 0) throw new LangneuronsError('E_OPTIONS', `--sites: no site given (sites: ${SITES.join(', ')})`, { field: '--sites' });
      for (const s of sites) if (!SITES.includes(s as Site)) throw new LangneuronsError('E_OPTIONS', `--sites: unknown site '${s}' (sites: ${SITES.join(', ')})`, { field: '--sites' });
      const twice = sites.find((s, i) => sites.indexOf(s) !== i);
      if (twice) throw new LangneuronsError('E_OPTIONS', `--sites: '${twice}' is listed twice`, { field: '--sites' });
      const langs = o.langs.split(',').map((s) => s.trim()).filter(Boolean);
      if ((o.aboveQuantile === undefined) !== (o.thresholdsFrom === undefined))
        throw new LangneuronsError('E_OPTIONS', '--above-quantile and --thresholds-from go together: the quantile is read from the earlier pass\'s histograms',
          { field: o.aboveQuantile === undefined ? '--above-quantile' : '--thresholds-from' });
      if (!langs.length) throw new LangneuronsError('E_OPTIONS', '--langs names no language', { field: '--langs' });
      // A language twice would be profiled twice into one file, the second run skipping or redoing the first.
      const twiceLang = langs.find((l, i) => langs.indexOf(l) !== i);
      if (twiceLang) throw new LangneuronsError('E_OPTIONS', `--langs: '${twiceLang}' is listed twice`, { field: '--langs' });
      const corpus = await openCorpusSpec(o.corpus, { languages: langs, ...(o.field ? { field: o.field } : {}) });
      const model = await openModel(dir, o);
      if (o.dropPartial && o.scope !== 'windows')
        throw new LangneuronsError('E_OPTIONS', '--drop-partial applies to --scope windows (sentences are never cut into windows)', { field: '--drop-partial' });
      if ((o.countBos || o.dropLong) && o.scope !== 'sentences')
        throw new LangneuronsError('E_OPTIONS', `${o.countBos ? '--count-bos' : '--drop-long'} applies to --scope sentences`, { field: o.countBos ? '--count-bos' : '--drop-long' });
      // The Kojima options are recorded only when given, so that other files' scopes (and merges with them) are unchanged.
      const scope: TokenScope = { mode: o.scope, maxLen: o.maxLen, bos: o.bos ?? o.scope === 'sentences', countPadding: false, tokenBudget: o.tokens,
        ...(o.countBos ? { countBos: true } : {}), ...(o.dropLong ? { longSentences: 'drop' as const } : {}), ...(o.dropPartial ? { partialWindow: 'drop' as const } : {}) };
      const progress = new Progress('profiling', o);
      let current = '';
      const results = await profileCorpus(model, corpus, {
        languages: langs, outDir: o.out, scope, sites: sites as Site[], batchTokens: o.batchTokens, checkpointTokens: o.checkpointTokens,
        resume: o.resume, seqMeans: !!o.seqMeans,
        ...(o.layers ? { layers: o.layers } : {}), ...(o.shard ? { shard: o.shard } : {}), ...(o.histogram ? { histEdges: o.histogram } : {}),
        ...(o.thresholdsFrom !== undefined ? { thresholdsFrom: { from: o.thresholdsFrom, quantile: o.aboveQuantile! } } : {}),
        onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
        onProgress: (p) => {
          if (p.language !== current) { if (current) progress.done(); current = p.language; }
          progress.update(p.tokens, p.budget || p.tokens, `${p.language} tokens`);
        },
      });
      progress.done();
      printResult(o, { model: dir, scope, sites, results }, () => results.map((r) =>
        `${r.language.padEnd(8)} ${String(r.tokens).padStart(10)} tokens ${String(r.sequences).padStart(7)} sequences  ` +
        (r.skipped ? 'already done' : `${(r.tokens / Math.max(r.seconds, 1e-9)).toFixed(0)} tokens/s${r.resumed ? ' (resumed)' : ''}`) + `  -> ${r.file}`).join('\n'));
    });
}
