import type { Command } from 'commander';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError, describeError } from '../../errors.js';
import { withFileOutputLock } from '../../io/lock.js';
import { checkOutput, ensureParentDir } from '../../io/outdir.js';
import { readSafetensorsHeader } from '../../io/safetensors.js';
import { budgetShortfall, isStatsFile, mergeStatsInOrder, readStats, shardsOfOneRun, writeStats, type ActivationStats } from '../../profile/stats.js';
import { printResult } from '../output.js';
import { addTangStatsCommands } from './tang.js';

/** readStats for `stats show`: a folder, or a file that is no statistics file at all, is said to be so, with its path. */
async function readStatsToShow(file: string): Promise<ActivationStats> {
  const st = await fsp.stat(file).catch((e: unknown) => { throw new LangneuronsError('E_IO', `${file}: ${describeError(e)}`, { file }); });
  if (st.isDirectory()) throw new LangneuronsError('E_INPUT', `${file}: is a folder; stats show takes one statistics file, e.g. ${path.join(file, '<lang>.safetensors')}`, { file });
  const header = await readSafetensorsHeader(file).catch((e: unknown) => {
    throw new LangneuronsError('E_INPUT', `${file}: not a langneurons statistics file (not a safetensors file: ${describeError(e)})`, { file, cause: e });
  });
  // identify writes .safetensors masks, often beside the statistics: such a file is named as what it is.
  if (header.metadata?.['langneurons'] === undefined && header.metadata?.['langneurons_mask'] !== undefined)
    throw new LangneuronsError('E_INPUT', `${file}: a langneurons mask, not a statistics file: show it with \`langneurons masks show ${file}\``, { file });
  if (header.metadata?.['langneurons'] === undefined)
    throw new LangneuronsError('E_INPUT', `${file}: not a langneurons statistics file (a safetensors file without langneurons metadata, e.g. a model's weights)`, { file });
  return readStats(file);  // a statistics file: its defects, if any, are named by readStats
}

// A part as the file records it (profile/stats.ts's StatsPart).
type StatsPart = NonNullable<ActivationStats['meta']['parts']>[number];

/** What one run of a corpus (one corpus, budget and shard count) contributes to a file, for `stats show`. */
interface Coverage {
  corpus: string;
  budget: number;
  /** n of `--shard k/n`; null: the whole corpus in one run. */
  shardCount: number | null;
  /** The shards k (1-based) the file holds, ascending. */
  shards: number[];
  /** The shards of 1..n it does not hold: a merge of these too counts the whole corpus. */
  missing: number[];
}

/** The file's parts grouped by run (null: not recorded): a shard alone, or a merge of some shards, looks otherwise
 *  like a whole corpus, and stats merge judges files by these parts. */
function coverageOf(parts: readonly StatsPart[] | undefined): Coverage[] | null {
  if (!parts || parts.length === 0) return null;
  const groups = new Map<string, Coverage>();
  for (const p of parts) {
    const n = p.shard ? p.shard[1] : null;
    const key = JSON.stringify([p.corpus, p.budget, n]);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { corpus: p.corpus, budget: p.budget, shardCount: n, shards: [], missing: [] }));
    if (p.shard) g.shards.push(p.shard[0]);
  }
  for (const g of groups.values()) {
    g.shards.sort((a, b) => a - b);
    if (g.shardCount !== null) for (let k = 1; k <= g.shardCount; k++) if (!g.shards.includes(k)) g.missing.push(k);
  }
  return [...groups.values()];
}

/** 1,2,3,5,6 → "1-3, 5, 6". */
const ranges = (ks: readonly number[]): string => {
  const out: string[] = [];
  for (let i = 0; i < ks.length; i++) {
    let j = i;
    while (j + 1 < ks.length && ks[j + 1] === ks[j]! + 1) j++;
    if (j - i >= 2) {
      out.push(`${ks[i]}-${ks[j]}`);
      i = j;
    } else out.push(`${ks[i]}`);
  }
  return out.join(', ');
};

function describeCoverage(coverage: Coverage[] | null, shards: number): string {
  if (coverage === null) return `not recorded (a file written before parts were recorded)${shards > 1 ? `; ${shards} shards merged` : ''}`;
  const corpora = new Set(coverage.map((g) => g.corpus)).size;
  return coverage.map((g) => {
    const of = corpora > 1 ? ` of corpus ${g.corpus.slice(0, 12)}` : '';
    if (g.shardCount === null) return `the whole corpus${of}`;
    const missing = `${g.missing.length === 1 ? 'shard' : 'shards'} ${ranges(g.missing)} of the run`;
    const them = g.missing.length === 1 ? 'it' : 'them';
    if (g.shards.length === 1 && g.missing.length > 0)
      return `shard ${g.shards[0]}/${g.shardCount}${of} only (${missing} not in this file: stats merge ${them} with it for the whole corpus)`;
    const merged = `shards ${ranges(g.shards)} of ${g.shardCount}${of} merged`;
    return g.missing.length === 0 ? `${merged}: every shard of the run` : `${merged}; missing ${missing} (stats merge ${them} with this file for the whole corpus)`;
  }).join('; ');
}

export function registerStats(program: Command): void {
  const stats = program.command('stats').description('inspect, merge, import and export activation statistics files');
  stats
    .command('merge <files...>')
    .description('add statistics of shards of one language (same model, layers, sites and scope) into one file')
    .requiredOption('--out <file>', 'the merged statistics file')
    .option('--json', 'print one JSON document on stdout')
    .action(async (files: string[], o: { out: string; json?: boolean }) => {
      if (files.length < 2) throw new LangneuronsError('E_OPTIONS', 'stats merge needs at least two files');
      // One merge per --out (`<out>.lock`), as every long command holds its output: two merges into one file wrote it
      // in turn, the last one's kept without a word; a killed merge's temporary <out>.tmp-<pid>-* stayed for good.
      await withFileOutputLock(o.out, 'stats merge', async () => {
        // Written only over a statistics file (an earlier merge), never over a model's weights or another file.
        await checkOutput(o.out, files, 'a langneurons statistics file', isStatsFile);
        const acc = mergeStatsInOrder(await Promise.all(files.map((f) => readStats(f))), files);
        // Only an earlier merge of the same language and model is replaced: not another language's statistics, nor a
        // profile's own finished file (a mistyped --out lost a finished profile; profile itself never replaces one
        // without --no-resume).
        if (existsSync(o.out)) {
          const old = (await readStats(o.out)).meta;
          if (old.language !== acc.meta.language || old.model.fingerprint !== acc.meta.model.fingerprint)
            throw new LangneuronsError('E_OPTIONS', `--out ${o.out}: holds the statistics of ${old.language} on ${old.model.name}, not ${acc.meta.language} on ${acc.meta.model.name}; choose another --out`, { field: '--out' });
          if (old.shards < 2)
            throw new LangneuronsError('E_OPTIONS', `--out ${o.out}: holds the finished statistics of a profile run, not an earlier merge; stats merge replaces only its own merges: choose another --out`, { field: '--out' });
        }
        // Every shard of one run that together counted less than its budget: the corpus was smaller than the budget.
        const parts = acc.meta.parts ?? [];
        const n = shardsOfOneRun(parts);
        const short = n !== null ? budgetShortfall({ ...acc.meta.scope, tokenBudget: parts[0]!.budget }, acc.tokens) : null;
        if (short) process.stderr.write(`warning: ${acc.meta.language}: ${short.kind === 'rule' ? `the ${n} shards ${short.text}`
          : `the ${n} shards counted ${acc.tokens} tokens, fewer than their run's budget of ${parts[0]!.budget}: the corpus holds no more`}\n`);
        await ensureParentDir(o.out);
        await writeStats(o.out, acc);
        printResult(o, { out: o.out, language: acc.meta.language, tokens: acc.tokens, sequences: acc.sequences, shards: acc.meta.shards },
          () => `${acc.meta.language}: ${acc.tokens} tokens, ${acc.sequences} sequences from ${acc.meta.shards} shard(s) -> ${o.out}`);
      });
    });
  stats
    .command('show <file>')
    .description('what a statistics file holds')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { json?: boolean }) => {
      const s = await readStatsToShow(file);
      const sites = [...s.sites.values()].map((st) => {
        let active = 0;
        for (let i = 0; i < st.overZero.length; i++) active += st.overZero[i]!;
        return { site: st.site, width: st.width, meanActiveFraction: s.tokens ? active / (s.tokens * st.overZero.length) : 0,
          histogramBins: st.histogram ? st.histogram.edges.length - 1 : 0, sequenceMeans: st.seqMeans ? st.seqMeans.length / st.overZero.length : 0,
          sums: !st.sumsAbsent, absSum: !!st.absSum, above: st.above ? st.above.source || 'given' : null };
      });
      // What stats merge compares and what makes a file part of a corpus: shown, so that a shard or an incomplete
      // merge is not taken for the whole corpus, and files that will not merge can be told apart.
      const coverage = coverageOf(s.meta.parts);
      const budget = s.meta.scope.tokenBudget, compute = s.meta.compute ?? null;
      printResult(o, { file, meta: s.meta, tokens: s.tokens, sequences: s.sequences, tokenBudget: budget, compute,
        coverage, complete: coverage === null ? null : coverage.every((g) => g.missing.length === 0), sites }, () => [
        `language   ${s.meta.language}`,
        `model      ${s.meta.model.name} (${s.meta.model.modelType}, ${s.meta.model.layers} layers × ${s.meta.model.intermediate} neurons; ${s.meta.model.fingerprint.slice(0, 12)})`,
        `tokens     ${s.tokens} in ${s.sequences} sequences (${s.meta.scope.mode}, max ${s.meta.scope.maxLen}${s.meta.scope.bos ? (s.meta.scope.countBos ? ', BOS fed and counted' : ', BOS fed') : ''}${s.meta.scope.longSentences === 'drop' ? ', longer sentences dropped' : ''}${s.meta.scope.partialWindow === 'drop' ? ', whole windows only' : ''})`,
        `budget     ${budget > 0 ? `${budget} tokens per language${coverage?.some((g) => g.shardCount !== null) ? ' (the run\'s, shared by its shards)' : ''}` : 'none (the whole corpus)'}`,
        `compute    ${compute ?? 'not recorded (imported, or written before the mode was recorded)'}`,
        `parts      ${describeCoverage(coverage, s.meta.shards)}`,
        `layers     ${s.meta.layers.length === s.meta.model.layers ? 'all' : s.meta.layers.join(',')}`,
        ...sites.map((x) => `site ${x.site.padEnd(5)} width ${x.width}, P(value > 0) averaged ${(100 * x.meanActiveFraction).toFixed(2)}%` +
          (x.histogramBins ? `, histogram ${x.histogramBins} bins` : '') + (x.sequenceMeans ? `, ${x.sequenceMeans} sequence means` : '') +
          (x.above ? `, counts above ${x.above} thresholds` : '') +
          (x.sums ? (x.absSum ? '' : ', no sum of |value|') : ', counts only (no sums: LAPE and act-prob work; means and variances are refused)')),
        `corpus     ${s.meta.corpus.files.join(', ')} (${s.meta.corpus.fingerprint.slice(0, 12)})`,
      ].join('\n'));
    });
  addTangStatsCommands(stats);
}
