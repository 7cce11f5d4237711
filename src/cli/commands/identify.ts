import { Option, type Command } from 'commander';
import path from 'node:path';

import { LangneuronsError } from '../../errors.js';
import { ensureParentDir, refuseOutputIsInput } from '../../io/outdir.js';
import {
  ACT_PROB_VARIANTS, identifyActProb, identifyAveragePrecisionJoint, identifyLape, identifyRawActivated, LAPE_PRESETS, writeMask,
  summarizeMask, type ActProbVariant, type LanguageStats, type LapeOptions, type NeuronMask, type PercentileSource,
} from '../../identify/index.js';
import { refuseNonMaskOutput } from '../../identify/masks.js';
import { readStats, SITES, statsFilesIn, type Site, type StatsParts } from '../../profile/stats.js';
import { parseFloatOption, parseIntOption, printResult } from '../output.js';

const METHODS = ['lape', ...ACT_PROB_VARIANTS, 'ap', 'raw-activated'] as const;

/**
 * The options that only some methods read (option attribute, flag, methods): one given to another method would be
 * dropped without a word, and the mask would not be what was asked for. --site, --langs, --out apply to all.
 */
const METHOD_OPTIONS: readonly [string, string, readonly string[]][] = [
  ['preset', '--preset', ['lape']],
  ['topRate', '--top-rate', ['lape', ...ACT_PROB_VARIANTS]],
  ['filterRate', '--filter-rate', ['lape']],
  ['activationBarRatio', '--activation-bar-ratio', ['lape']],
  ['quantile', '--quantile', ['lape']],
  ['keepTies', '--keep-ties', ['lape']],
  ['percentileOf', '--percentile-of', ACT_PROB_VARIANTS.filter((v) => /\d+p$/.test(v))],
  ['n', '--n', ['ap']],
  ['part', '--part', ['ap']],
  ['seqMeansBudget', '--seq-means-budget', ['ap', 'raw-activated']],
];

/** --langs as a list: empty or a language given twice is refused (the same statistics would be ranked against themselves). */
function parseLangs(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const langs = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (!langs.length) throw new LangneuronsError('E_OPTIONS', `--langs names no language, got '${v}' (leave it out for every statistics file given)`, { field: '--langs' });
  const twice = langs.find((l, i) => langs.indexOf(l) !== i);
  if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `--langs: ${twice} is given twice`, { field: '--langs' });
  return langs;
}

/**
 * Statistics files given as folders (every <lang>.safetensors, checkpoints excluded) and/or files; `parts` leaves out
 * what the method does not read. identify leaves out the per-sequence means (gigabytes a language at 8B) for every
 * method: ap and raw-activated read them from the files a block of units at a time.
 */
export async function readStatsInputs(paths: string[], langs?: string[], parts: StatsParts = {}): Promise<LanguageStats[]> {
  const files: string[] = [];
  for (const p of paths) {
    const found = await statsFilesIn([p]);
    if (!found.length) throw new LangneuronsError('E_IO', `${p}: the folder holds no <lang>.safetensors statistics files`, { file: p });
    files.push(...found);
  }
  const inputs: LanguageStats[] = [];
  for (const file of files) inputs.push({ file, stats: await readStats(file, parts) });
  if (!langs) return inputs;
  const have = new Map(inputs.map((i) => [i.stats.meta.language, i]));
  return langs.map((l) => have.get(l) ?? (() => { throw new LangneuronsError('E_INPUT', `no statistics for language '${l}' (have: ${[...have.keys()].join(', ')})`); })());
}

/**
 * act-prob-Xp with --percentile-of above-counts (the default) needs every file's counts above per-neuron thresholds;
 * refused here in terms of the command's options (the library's message speaks of its own option names).
 */
function requireAboveCounts(inputs: readonly LanguageStats[], site: Site, method: string): void {
  const percent = /(\d+)p$/.exec(method)?.[1];
  for (const { file, stats } of inputs) {
    const st = stats.sites.get(site);
    if (st && !st.above)
      throw new LangneuronsError('E_IDENTIFY', `${file}: no counts above per-neuron thresholds at site "${site}", which ${method} with --percentile-of above-counts ` +
        `(the default) needs: profile again with --above-quantile ${Number(percent) / 100} --thresholds-from <an earlier --histogram pass>, or use --percentile-of pooled-histogram ` +
        '(or layer-histogram) on statistics profiled with --histogram', { file, field: '--percentile-of' });
  }
}

interface IdentifyCli {
  method: string; out: string; site: Site; topRate?: number; filterRate?: number; activationBarRatio?: number; quantile?: 'kthvalue' | 'interpolated';
  keepTies?: boolean; preset?: 'tang' | 'mondal' | 'gurgurov'; n: number; part: 'both' | 'top' | 'bottom'; percentileOf: PercentileSource; langs?: string; json?: boolean;
  sites?: string; seqMeansBudget?: number;
}

/** `masks/ap.json` and site q: `masks/ap.q.json` (one mask per site of a joint --sites ranking). */
const siteMaskFile = (out: string, site: Site) => { const ext = path.extname(out); return `${out.slice(0, out.length - ext.length)}.${site}${ext}`; };

export function registerIdentify(program: Command): void {
  program
    .command('identify <stats...>')
    .description('select language-specific neurons from statistics files (a folder of <lang>.safetensors, or files)')
    .addOption(new Option('--method <m>', 'identification method (METHODS.md §2)').choices([...METHODS]).default('lape'))
    .requiredOption('--out <file>', 'mask file: .json (readable) or .safetensors')
    .addOption(new Option('--site <site>', 'activation site the statistics were taken at').choices([...SITES]).default('act'))
    .addOption(new Option('--preset <name>', 'LAPE settings of a paper: tang (kthvalue), mondal (interpolated quantile, ties kept), gurgurov (tang with top-rate 0.05); ' +
      'the options given explicitly win over it').choices(['tang', 'mondal', 'gurgurov']))
    .option('--top-rate <r>', 'fraction of all (layer, neuron) kept (LAPE default 0.01; act-prob default 0.00125 per language)', parseFloatOption('--top-rate', (x) => x > 0 && x <= 1, 'in (0, 1]'))
    .option('--filter-rate <r>', 'LAPE: quantile of pooled activation probabilities a neuron must exceed for some language (default 0.95)', parseFloatOption('--filter-rate', (x) => x >= 0 && x <= 1, 'in [0, 1]'))
    .option('--activation-bar-ratio <r>', 'LAPE: quantile a language must exceed to own a kept neuron (default: --filter-rate)', parseFloatOption('--activation-bar-ratio', (x) => x >= 0 && x <= 1, 'in [0, 1]'))
    .addOption(new Option('--quantile <v>', 'LAPE quantile: kthvalue (Tang, the default) or interpolated (Mondal)').choices(['kthvalue', 'interpolated']))
    .option('--keep-ties', 'LAPE: keep every neuron tied with the cutoff (Mondal)')
    .option('--no-keep-ties', 'LAPE: break ties at the cutoff by (layer, neuron) order (the default; Tang)')
    .option('--n <n>', 'ap: units kept per language (int(N/2) top + int(N/2) bottom: at least 2)', parseIntOption('--n', 2), 2000)
    .addOption(new Option('--part <p>', 'ap: which end to keep').choices(['both', 'top', 'bottom']).default('both'))
    .option('--sites <list>', 'ap: rank the units of these sites together, as Kojima et al. rank every linear layer\'s outputs (e.g. q,k,v,o,gate,up,down); ' +
      'writes one mask per site, <out>.<site>.json')
    .addOption(new Option('--percentile-of <s>', 'act-prob-Xp thresholds: above-counts (from a profile with thresholds), pooled-histogram, layer-histogram').choices(['above-counts', 'pooled-histogram', 'layer-histogram']).default('above-counts'))
    .option('--seq-means-budget <MiB>', 'ap, raw-activated: MiB of per-sequence means held in memory at a time, read from the statistics files ' +
      'a block of units at a time (default 256; the masks do not depend on it)', parseFloatOption('--seq-means-budget', (x) => x > 0, 'a number of MiB > 0'))
    .option('--langs <list>', 'only these languages, each once (default: every statistics file given)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (paths: string[], o: IdentifyCli, cmd: Command) => {
      // Options before any file is read: one the method does not read is refused, not dropped.
      const given = (attr: string) => cmd.getOptionValueSource(attr) === 'cli';
      if (o.sites !== undefined && o.method !== 'ap')
        throw new LangneuronsError('E_OPTIONS', '--sites (a joint ranking over several sites) applies to --method ap; give one --site', { field: '--sites' });
      if (o.sites !== undefined && given('site'))
        throw new LangneuronsError('E_OPTIONS', '--site and --sites: give one site (--site) or several ranked together (--sites), not both', { field: '--site' });
      for (const [attr, flag, methods] of METHOD_OPTIONS)
        if (given(attr) && !methods.includes(o.method))
          throw new LangneuronsError('E_OPTIONS', `${flag === '--keep-ties' && o.keepTies === false ? '--no-keep-ties' : flag} is not used by --method ${o.method}: ` +
            `it applies to ${methods.join(', ')}`, { field: flag });
      const langs = parseLangs(o.langs);
      // The act-prob variants may read histograms. ap and raw-activated rank the per-sequence means, which are not read
      // here: the methods read them from the files a block of units at a time (at the papers' scale, 55 GB of them do
      // not fit in memory), holding at most --seq-means-budget of them.
      const inputs = await readStatsInputs(paths, langs, { seqMeans: false, histogram: (ACT_PROB_VARIANTS as readonly string[]).includes(o.method) });
      const stream = o.seqMeansBudget === undefined ? {} : { seqMeansBudget: o.seqMeansBudget * 2 ** 20 };
      // Before any work: an output that is an input, or a file that is not a mask, is refused.
      const refuseOutputs = async (files: string[]) => {
        for (const f of files) { await refuseOutputIsInput(f, [...paths, ...inputs.map((i) => i.file)]); await refuseNonMaskOutput(f); }
      };
      if (o.sites !== undefined) {
        const sites = o.sites.split(',').map((s) => s.trim()).filter(Boolean);
        const bad = sites.find((s) => !(SITES as readonly string[]).includes(s));
        if (bad !== undefined || sites.length === 0)
          throw new LangneuronsError('E_OPTIONS', `--sites: ${bad === undefined ? 'no site given' : `unknown site '${bad}'`} (sites: ${SITES.join(', ')})`, { field: '--sites' });
        const twice = sites.find((x, i) => sites.indexOf(x) !== i);
        if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `--sites: '${twice}' is listed twice`, { field: '--sites' });
        const files = sites.map((s) => siteMaskFile(o.out, s as Site));
        await refuseOutputs(files);
        const masks = identifyAveragePrecisionJoint(inputs, sites as Site[], { n: o.n, part: o.part, ...stream });
        await ensureParentDir(o.out);
        for (const [k, site] of sites.entries()) await writeMask(files[k]!, masks.get(site as Site)!);
        const totals = sites.map((s) => summarizeMask(masks.get(s as Site)!).total);
        printResult(o, { out: Object.fromEntries(sites.map((s, k) => [s, files[k]])), method: 'average-precision', parameters: masks.get(sites[0] as Site)!.parameters,
          total: Object.fromEntries(sites.map((s, k) => [s, totals[k]])) },
          () => sites.map((s, k) => `average-precision ${s.padEnd(5)}: ${Object.entries(totals[k]!).map(([l, t]) => `${l} ${t}`).join(', ')} units -> ${files[k]}`).join('\n'));
        return;
      }
      await refuseOutputs([o.out]);
      let mask: NeuronMask;
      if (o.method === 'lape') {
        const preset = o.preset === 'gurgurov' ? { ...LAPE_PRESETS.tang, topRate: 0.05 } : o.preset ? LAPE_PRESETS[o.preset] : {};
        // The preset, then every option given explicitly over it; identifyLape fills in the defaults of the rest.
        const given: LapeOptions = { topRate: o.topRate, filterRate: o.filterRate, activationBarRatio: o.activationBarRatio, quantile: o.quantile, keepTies: o.keepTies };
        const explicit = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as LapeOptions;
        mask = identifyLape(inputs, { site: o.site, ...preset, ...explicit });
      } else if ((ACT_PROB_VARIANTS as readonly string[]).includes(o.method)) {
        if (o.percentileOf === 'above-counts' && /\d+p$/.test(o.method)) requireAboveCounts(inputs, o.site, o.method);
        if (o.percentileOf === 'pooled-histogram' && /\d+p$/.test(o.method) && inputs.length < 2)
          throw new LangneuronsError('E_IDENTIFY', `${o.method} with --percentile-of pooled-histogram needs at least two languages (the percentile is pooled over them; ` +
            `of ${inputs[0]?.stats.meta.language ?? 'one language'} alone it ranks nothing): use --percentile-of layer-histogram`, { field: '--percentile-of' });
        mask = identifyActProb(inputs, o.method as ActProbVariant, { site: o.site, percentileOf: o.percentileOf, ...(o.topRate !== undefined ? { topRate: o.topRate } : {}) });
      } else if (o.method === 'ap') {
        mask = identifyAveragePrecisionJoint(inputs, [o.site], { n: o.n, part: o.part, ...stream }).get(o.site)!;
      } else {
        mask = identifyRawActivated(inputs, { site: o.site, ...stream });
      }
      await ensureParentDir(o.out);
      await writeMask(o.out, mask);
      const s = summarizeMask(mask);
      // An empty language is a legitimate result, but one that every later step (steering, fine-tuning) trips over.
      const empty = s.languages.filter((l) => s.total[l] === 0);
      if (empty.length) {
        const d = mask.derived ?? {};
        const why = mask.method === 'lape' && d['candidates'] === 0
          ? `: no neuron's activation probability is above the --filter-rate quantile (${String(d['threshold'])}); with so many probabilities at exactly 0 or 1, lower --filter-rate`
          : '';
        process.stderr.write(`warning: ${mask.method} selected no neuron for ${empty.join(', ')}${why}\n`);
      }
      // Every neuron for some language: nothing language-specific is left (AP's --n beyond a small model's size).
      const units = mask.layers * mask.width;
      const whole = s.languages.filter((l) => s.total[l]! >= units);
      if (whole.length)
        process.stderr.write(`warning: ${mask.method} selected every one of the model's ${units} neurons for ${whole.join(', ')}: nothing language-specific is left` +
          `${mask.method === 'average-precision' ? ` (--n ${o.n} is not below the model's size; give a smaller --n)` : ''}\n`);
      printResult(o, { out: o.out, method: mask.method, parameters: mask.parameters, total: s.total, union: s.union },
        () => `${mask.method}: ${s.languages.map((l) => `${l} ${s.total[l]}`).join(', ')} neurons (${s.union} distinct) -> ${o.out}`);
    });
}
