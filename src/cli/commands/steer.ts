// `langneurons steer ppl-matrix | lss | forcing | fallback`: the measures of steering (METHODS.md §4).
import type { Command } from 'commander';

import { LangneuronsError } from '../../errors.js';
import { canonicalLang } from '../../eval/prompts.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { sha256Hex } from '../../io/files.js';
import type { NeuronMask } from '../../identify/index.js';
import { modelIdentity } from '../../profile/identity.js';
import type { LanguageModel } from '../../engine/model.js';
import {
  amplification, checkFallbackLanguages, checkMaskSetForModel, checkPromptLengths, compose, computeFallback, computeForcing, computeLss, computePplMatrix, deactivation, DEFAULT_SETTINGS, engineGenerator,
  engineLogLikelihood, engineMatrixScorer, FALLBACK_FORMAT, FORCING_FORMAT, interventionResolver, loadEvalTexts, loadIdentifier, LSS_FORMAT, onMaskSet,
  openEvalCorpus, PPL_MATRIX_FORMAT, readMaskSet, parseIdentifier, parseSetting, parseSettings, readFacts, readPrompts, requireMaskLanguages, sameLanguage, writeForcing, writePplMatrix,
  type FallbackStep, type IdentifierChoice, type LanguageIdentifier, type MaskSet, type SteerRequest,
} from '../../steer/index.js';
import { fitsFloat32, FLOAT32_MAX, warnOnce } from '../../intervene/index.js';
import { addModelOptions, decodeBatchFor, openModel, type ModelCliOptions } from '../common.js';
import { finishUnitLog, parseFloatOption, parseIntOption, printResult, Progress } from '../output.js';
import { ensureParentDir } from '../../io/outdir.js';
import { openMeasureLog, requestFiles, withMeasureOutput } from './steer-run.js';

const MASKS_HELP = 'neuron mask (.json or .safetensors) made for this model (an FFN mask is edited at act, a projection\'s at its site), or a set ' +
  'separated by commas, each edited at its own site (e.g. the masks/ap.<site>.json of identify --method ap --sites q,k,v,o,gate,up,down)';

const list = (s: string | undefined): string[] | undefined => s?.split(',').map((x) => x.trim()).filter(Boolean);

/** Refuses a language named twice in a list option: it would count twice in the measure's means (LSS's mean decides
 *  the best setting), as ppl-matrix refuses a repeated row and fallback a repeated --deactivate. */
function refuseRepeats(measure: string, option: string, langs: readonly string[] | undefined): void {
  const repeated = langs?.find((l, i) => langs.indexOf(l) !== i);
  if (repeated !== undefined) throw new LangneuronsError('E_OPTIONS', `${measure}: ${option} names ${repeated} twice`, { field: option });
}

/** --deactivate-value: a number the engine's float32 edits hold (1e40 passed as a double, then failed after the
 *  baseline with a misleading message). */
const deactivateValueOption = parseFloatOption('--deactivate-value', fitsFloat32, `a finite number within float32's range (at most ${FLOAT32_MAX.toExponential(4)} in magnitude)`);

/**
 * A measure's `prepare`: every request it will make resolved with `build` (masks and statistics read and checked
 * against the model) before its first unit of engine work, so that a missing or foreign statistic fails with nothing
 * written, not after the baseline with a <out>.partial.jsonl left behind. (`build` caches: the units resolve nothing again.)
 */
const resolveEvery = (build: (r: SteerRequest) => Promise<unknown>) => async (requests: SteerRequest[]): Promise<void> => {
  for (const r of requests) await build(r);  // one after another: the first bad request in the measure's order is named
};

/** Reads the masks before the model (a bad mask fails fast), then opens the model and checks they belong together.
 *  `mask` is the set's first (every mask of a set names the same languages). */
async function openMaskAndModel(dir: string, spec: string, o: ModelCliOptions): Promise<{ set: MaskSet; mask: NeuronMask; model: LanguageModel }> {
  const set = await readMaskSet(spec);
  const model = await openModel(dir, o);
  checkMaskSetForModel(set, modelIdentity(model.checkpoint));
  return { set, mask: set.masks[0]!, model };
}

async function writeJson(out: string, doc: unknown): Promise<void> {
  await ensureParentDir(out);
  await writeFileAtomic(out, JSON.stringify(doc, null, 2) + '\n');
}

interface PplCli extends ModelCliOptions { masks: string; evalText: string; out: string; langs?: string; textLangs?: string; maxTokens: number; window?: number; deactivateValue: number }
interface LssCli extends ModelCliOptions { masks: string; facts: string; settings: string; out: string; base?: string; targets?: string; details?: boolean; stats?: string }
interface ForcingCli extends ModelCliOptions, GenerationCli {
  masks: string; prompts: string; target: string; out: string; amplify: string; deactivateValue: number; deactivateSource: boolean; stats?: string;
}
interface FallbackCli extends ModelCliOptions, GenerationCli { masks: string; prompts: string; deactivate: string; each?: boolean; deactivateValue: number; out: string }

/** The options of the measures that generate (forcing, fallback): the identifier and the generation settings. */
interface GenerationCli { langid: string; maxNewTokens: number; stop: string[]; repetitionPenalty: number; baseline: boolean }

function addGenerationOptions(cmd: Command): Command {
  return cmd
    .option('--langid <name>', 'language identifier: cld (CLD2, default), eld (pure JS, 60 languages, no Swahili), fasttext (lid.176.ftz, 176 ' +
      'languages) or fasttext:<model.bin|.ftz> (lid.176.bin, GlotLID, lid218e ...)', 'cld')
    .option('--max-new-tokens <n>', 'tokens generated per prompt', parseIntOption('--max-new-tokens', 1), 32)
    .option('--stop <text>', 'stop string (repeatable; "\\n" is a newline); default: one newline', (v: string, prev: string[]) => [...prev, v], [])
    .option('--repetition-penalty <r>', 'Hugging Face repetition penalty (1 = off)', parseFloatOption('--repetition-penalty', (x) => x > 0, 'a number > 0'), 1)
    .option('--no-baseline', 'skip the generations without intervention');
}

/** Greedy generation and the identifier as the options say (checked before any work). */
function generationOptions(o: GenerationCli): { settings: { maxNewTokens: number; stop: string[]; repetitionPenalty: number }; langid: IdentifierChoice } {
  const langid = parseIdentifier(o.langid);
  const stop = o.stop.length ? o.stop.map((s) => s.replace(/\\n/g, '\n')) : ['\n'];
  if (stop.some((s) => s === '')) throw new LangneuronsError('E_OPTIONS', '--stop: a stop string must not be empty', { field: '--stop' });
  return { settings: { maxNewTokens: o.maxNewTokens, stop, repetitionPenalty: o.repetitionPenalty }, langid };
}

/** The --langid identifier, and what the result records of it; a missing CLD2 (the default) falls back to ELD loudly. */
async function openIdentifier(langid: IdentifierChoice): Promise<{ identifier: LanguageIdentifier; record: { identifierModel?: string; identifierNote?: string } }> {
  try {
    const identifier = await loadIdentifier(langid);
    return { identifier, record: identifier.model === undefined ? {} : { identifierModel: identifier.model } };
  } catch (e) {
    if (langid.name !== 'cld' || !(e instanceof LangneuronsError)) throw e;
    // The default identifier is missing (no C++ toolchain at install time): say so loudly and use ELD.
    const note = `CLD2 UNAVAILABLE, FELL BACK TO ELD (60 languages, no Swahili): ${e.message}`;
    process.stderr.write(`langneurons: WARNING: ${note}\n`);
    return { identifier: await loadIdentifier('eld'), record: { identifierNote: note } };
  }
}

export function registerSteer(program: Command): void {
  const steer = program.command('steer').description('measures of steering: perplexity matrix, Language Steering Shift, language forcing, language fallback');

  addModelOptions(steer
    .command('ppl-matrix <model-dir>')
    .description("Tang's matrix: mean token NLL / perplexity of each language's held-out text with each language's neurons deactivated")
    .requiredOption('--masks <files>', MASKS_HELP)
    .option('--eval-text <spec>', 'held-out text: udhr:heldout, a folder of <lang>.txt/.jsonl/.parquet, a manifest .json, or files <lang>.txt,... / <lang>=<file>,...', 'udhr:heldout')
    .requiredOption('--out <file>', 'matrix JSON; <stem>.csv and <stem>.svg (heatmap) are written next to it')
    .option('--langs <list>', 'languages to deactivate (default: every language of the mask)')
    .option('--text-langs <list>', 'held-out texts to score (default: UDHR: the deactivated languages; a folder: all its languages)')
    .option('--max-tokens <n>', 'tokens scored per language at most', parseIntOption('--max-tokens', 2), 50_000)
    .option('--window <n>', "tokens per scoring window (default: the model's context)", parseIntOption('--window', 2))
    .option('--deactivate-value <v>', 'value the deactivated neurons are set to (Tang: 0; Language Arithmetics also -1, -1.5)', deactivateValueOption, 0))
    .action(async (dir: string, o: PplCli) => withMeasureOutput(o.out, 'ppl-matrix', PPL_MATRIX_FORMAT, true, [dir, o.masks, o.evalText], async () => {
      const { set, mask, model } = await openMaskAndModel(dir, o.masks, o);
      const rows = list(o.langs) ?? Object.keys(mask.languages);
      requireMaskLanguages(mask, set.files[0]!, rows);
      const corpus = await openEvalCorpus(o.evalText, list(o.textLangs) ?? (o.evalText.startsWith('udhr') ? rows : undefined));
      const columns = list(o.textLangs) ?? corpus.languages;
      const texts = await loadEvalTexts(model, corpus, columns, o.maxTokens);
      const build = interventionResolver(model, { onWarning: warnOnce });
      const log = await openMeasureLog('ppl-matrix', dir, model, o.out, { window: o.window ?? null });
      const progress = new Progress('ppl-matrix', o);
      const score = engineMatrixScorer(model, texts, o.window ? { window: o.window } : {});
      // A unit is addressed by its column's tokens: hashed once per column, not serialised again for every cell.
      const tokenHashes = new Map<string, string>();
      const tokensOf = (col: string) => tokenHashes.get(col) ?? tokenHashes.set(col, sha256Hex(JSON.stringify(texts.documents.get(col)))).get(col)!;
      const started = performance.now();
      const matrix = await computePplMatrix<SteerRequest>({
        rows, columns, intervention: (lang) => onMaskSet(set, (f, site) => deactivation(f, lang, o.deactivateValue, site)), prepare: resolveEvery(build),
        score: async (col, req) => log.unit([col, tokensOf(col), req], requestFiles(req), async () => score(col, req === null ? null : await build(req))),
        onCell: (d, t, r, c) => progress.update(d, t, `${r ?? 'none'} → ${c}`),
      });
      progress.done();
      await ensureParentDir(o.out);
      const files = await writePplMatrix(o.out, matrix, {
        model: dir, mask: o.masks, maskMethod: mask.method, evalText: { spec: o.evalText, origin: texts.origin, fingerprint: texts.fingerprint, maxTokens: o.maxTokens },
        deactivateValue: o.deactivateValue, seconds: (performance.now() - started) / 1000,
      });
      await finishUnitLog(log, o);
      printResult(o, { ...files, diagonal: matrix.diagonal, baseline: matrix.baseline, deltaNll: matrix.deltaNll }, () => {
        const w = Math.max(8, ...columns.map((c) => c.length + 1));
        const head = `${'ΔNLL'.padEnd(12)}${columns.map((c) => c.padStart(w)).join('')}`;
        const base = `${'(none) NLL'.padEnd(12)}${matrix.baseline.nll.map((v) => v.toFixed(3).padStart(w)).join('')}`;
        const lines = matrix.rows.map((r, i) => `${('-' + r).padEnd(12)}${matrix.deltaNll[i]!.map((v) => ((v >= 0 ? '+' : '') + v.toFixed(3)).padStart(w)).join('')}`);
        const d = matrix.diagonal;
        return [head, base, ...lines, '',
          `diagonal dominance: ${d.hits.length}/${d.languages.length} texts hurt most by their own language's deactivation` +
            (d.misses.length ? ` (misses: ${d.misses.map((m) => `${m.language}←${m.strongest}`).join(', ')})` : ''),
          `-> ${files.json}, ${files.csv}, ${files.svg}`].join('\n');
      });
    }));

  addModelOptions(steer
    .command('lss <model-dir>')
    .description('Language Steering Shift (Rahmanisa): share of facts whose target-language object gains on the base one when the target language is amplified')
    .requiredOption('--masks <files>', MASKS_HELP)
    .requiredOption('--facts <path>', 'MLAMA-dod facts: a folder of .jsonl / .parquet files (template, sub_<lang>, obj_<lang>) or one file')
    .option('--settings <list>', 'amplification settings to compare: p_max, p_median, mean, add-mean[:<α>], diffmean[:<α>], scale:<α>, set:<v|stat>, add:<v|stat>, mul:<v|stat>', DEFAULT_SETTINGS)
    .requiredOption('--out <file>', 'result JSON')
    .option('--base <list>', 'base languages (default: every language of both the facts and the mask)')
    .option('--targets <list>', 'target languages (default: the same set); pairs are every base × target with base ≠ target')
    .option('--stats <path>', 'profiling statistics (folder of <lang>.safetensors with sequence means) for p_max / p_median / mean')
    .option('--details', 'keep D0 and D1 of every fact in the output'))
    .action(async (dir: string, o: LssCli) => withMeasureOutput(o.out, 'lss', LSS_FORMAT, false, [dir, o.masks, o.facts, o.stats], async () => {
      refuseRepeats('lss', '--base', list(o.base));
      refuseRepeats('lss', '--targets', list(o.targets));
      const settings = parseSettings(o.settings);
      for (const st of settings) amplification(o.masks, 'x', st, o.stats); // a neuron-stat setting without --stats fails now
      const facts = await readFacts(o.facts);
      const { set, mask, model } = await openMaskAndModel(dir, o.masks, o);
      const common = facts.languages.filter((l) => Object.hasOwn(mask.languages, l));
      const bases = list(o.base) ?? common, targets = list(o.targets) ?? common;
      requireMaskLanguages(mask, set.files[0]!, targets);
      const pairs = bases.flatMap((b) => targets.filter((t) => t !== b).map((t) => ({ base: b, target: t })));
      if (pairs.length === 0) throw new LangneuronsError('E_INPUT', `${o.facts}: no (base, target) pair: fact languages ${facts.languages.join(', ') || 'none'}, mask languages ${Object.keys(mask.languages).join(', ')}`, { file: o.facts });
      const build = interventionResolver(model, { onWarning: warnOnce });
      const ll = engineLogLikelihood(model);
      const log = await openMeasureLog('lss', dir, model, o.out, null);
      const progress = new Progress('lss', o);
      const started = performance.now();
      const result = await computeLss({
        facts, pairs, settings, details: !!o.details,
        amplify: (t, s) => onMaskSet(set, (f, site) => amplification(f, t, s, o.stats, site)), prepare: resolveEvery(build),
        logLikelihood: async (p, req) => log.unit([p, req], requestFiles(req), async () => ll(p, req === null ? null : await build(req))),
        onProgress: (d, t, what) => progress.update(d, t, what),
      });
      progress.done();
      await writeJson(o.out, { ...result, model: dir, mask: o.masks, facts: { path: o.facts, files: facts.files, rows: facts.facts.length }, seconds: (performance.now() - started) / 1000 });
      await finishUnitLog(log, o);
      printResult(o, { out: o.out, best: result.best, settings: result.settings.map((s) => ({ setting: s.setting, meanLss: s.meanLss })) }, () =>
        [...result.settings.map((s) => `${s.setting.padEnd(14)} mean LSS ${s.meanLss.toFixed(3)}  (${s.pairs.map((p) => `${p.base}→${p.target} ${p.lss.toFixed(2)}`).join(', ')})`),
          `best: ${result.best.setting} (${result.best.meanLss.toFixed(3)}) -> ${o.out}`].join('\n'));
    }));

  addModelOptions(addGenerationOptions(steer
    .command('forcing <model-dir>')
    .description("language forcing: generate from prompts with the prompt's language deactivated and the target amplified, identify the output language")
    .requiredOption('--masks <files>', MASKS_HELP)
    .requiredOption('--prompts <path>', 'a folder of <lang>.txt (one prompt per line; the stem is the prompt language) or .jsonl files, or one file')
    .requiredOption('--target <list>', 'target language(s) to force, comma-separated')
    .requiredOption('--out <file>', 'result JSON; <stem>.csv and <stem>.svg (rates per prompt language and target) are written next to it')
    .option('--amplify <setting>', 'how the target neurons are activated (an LSS setting: mean, p_max, p_median, add-mean[:<α>], diffmean[:<α>], scale:<α>, add:<v|stat> ...)', 'mean')
    .option('--deactivate-value <v>', "value the prompt language's neurons are set to", deactivateValueOption, 0)
    .option('--no-deactivate-source', "do not deactivate the prompt language's neurons (amplify the target only)")
    .option('--stats <path>', 'profiling statistics (folder of <lang>.safetensors) for p_max / p_median / mean')))
    .action(async (dir: string, o: ForcingCli) => withMeasureOutput(o.out, 'forcing', FORCING_FORMAT, true, [dir, o.masks, o.prompts, o.stats], async () => {
      const targets = list(o.target) ?? [];
      refuseRepeats('forcing', '--target', targets);
      const amplify = parseSetting(o.amplify);
      amplification(o.masks, 'x', amplify, o.stats); // a neuron-stat setting without --stats fails now
      const { settings, langid } = generationOptions(o);
      const prompts = await readPrompts(o.prompts);
      const { identifier, record } = await openIdentifier(langid);
      const { set, mask, model } = await openMaskAndModel(dir, o.masks, o);
      // Prompt files and targets may name a language as FLORES does (eng_Latn, swh_Latn) and the mask as udhr does
      // (en, sw): as for eval's {lang}, the short code is taken when the mask has no language of the given name, else
      // the mask's one language that the identifiers' codes make the same (zho_Hant, cmn_Hans → zh).
      const inMask = (l: string) => Object.hasOwn(mask.languages, l);
      const maskName = (l: string): string => {
        if (inMask(l)) return l;
        if (inMask(canonicalLang(l))) return canonicalLang(l);
        const same = Object.keys(mask.languages).filter((m) => sameLanguage(m, l));
        return same.length === 1 ? same[0]! : l;
      };
      requireMaskLanguages(mask, set.files[0]!, targets.map(maskName));
      // Two names of one mask language (sw, swh_Latn) are one target given twice: the same neurons, the same label.
      targets.forEach((t, i) => {
        const same = targets.findIndex((u) => maskName(u) === maskName(t));
        if (same !== i) throw new LangneuronsError('E_OPTIONS', `forcing: --target names ${targets[same]} and ${t}, both the language ${maskName(t)} of ${set.files[0]}`, { field: '--target' });
      });
      checkPromptLengths(model, prompts);
      const build = interventionResolver(model, { onWarning: warnOnce });
      const decodeBatch = decodeBatchFor(model);
      const gen = engineGenerator(model, settings, decodeBatch);
      const log = await openMeasureLog('forcing', dir, model, o.out, { settings, decodeBatch });
      const progress = new Progress('forcing', o);
      const started = performance.now();
      const result = await computeForcing<SteerRequest>({
        prompts, targets, identifier, baseline: o.baseline, prepare: resolveEvery(build),
        intervention: (t, src) => {
          const amp = onMaskSet(set, (f, site) => amplification(f, maskName(t), amplify, o.stats, site));
          return o.deactivateSource && src !== null && inMask(maskName(src))
            ? compose(onMaskSet(set, (f, site) => deactivation(f, maskName(src), o.deactivateValue, site)), amp) : amp;
        },
        generate: async (p, req) => log.unit([p, req], requestFiles(req), async () => gen(p, req === null ? null : await build(req))),
        onProgress: (d, t, what) => progress.update(d, t, what),
      });
      progress.done();
      const notInMask = [...new Set(prompts.map((p) => p.language).filter((l): l is string => l !== null && !inMask(maskName(l))))];
      if (o.deactivateSource && notInMask.length && !o.json)
        process.stderr.write(`langneurons: note: prompt languages without neurons in ${o.masks} are not deactivated: ${notInMask.join(', ')}\n`);
      await ensureParentDir(o.out);
      await writeForcing(o.out, result, { model: dir, mask: o.masks, prompts: o.prompts, amplify: amplify.name, deactivateSource: o.deactivateSource, sourcesNotInMask: notInMask,
        deactivateValue: o.deactivateValue, ...settings, ...record, seconds: (performance.now() - started) / 1000 });
      await finishUnitLog(log, o);
      printResult(o, { out: o.out, identifier: result.identifier, targets: result.targets.map((t) => ({ target: t.target, rate: t.forced.rate, baselineRate: t.baseline?.rate ?? null, identifiable: t.identifiable })) }, () =>
        [...result.targets.map((t) => `${t.target.padEnd(8)} forced ${t.forced.successes}/${t.forced.prompts} (${(100 * t.forced.rate).toFixed(1)}%)` +
          (t.baseline ? `, without intervention ${(100 * t.baseline.rate).toFixed(1)}%` : '') + (t.identifiable ? '' : `  [${result.identifier} cannot identify ${t.target}]`)),
          `identifier ${result.identifier} -> ${o.out}`].join('\n'));
    }));

  addModelOptions(addGenerationOptions(steer
    .command('fallback <model-dir>')
    .description("language fallback (Language Arithmetics): deactivate the neurons of a growing set of languages (en; en+fr; ...), identify the language of the answers to neutral prompts")
    .requiredOption('--masks <files>', MASKS_HELP)
    .requiredOption('--prompts <path>', 'a .txt (one prompt per line) or .jsonl ({"prompt": ...} per line) file, or a folder of them')
    .requiredOption('--deactivate <langs>', 'mask languages, comma-separated, in order: step k deactivates the union of the first k (their order: en,fr,es,it,pt,ru,de,ar,zh,ko,ja)')
    .requiredOption('--out <file>', 'result JSON')
    .option('--each', 'deactivate each language alone instead of the growing union')
    .option('--deactivate-value <v>', 'value the neurons are set to (their runs: -1.5)', deactivateValueOption, 0)))
    .action(async (dir: string, o: FallbackCli) => withMeasureOutput(o.out, 'fallback', FALLBACK_FORMAT, false, [dir, o.masks, o.prompts], async () => {
      const { settings, langid } = generationOptions(o);
      const languages = list(o.deactivate) ?? [];
      checkFallbackLanguages(languages);
      const prompts = await readPrompts(o.prompts);
      const { identifier, record } = await openIdentifier(langid);
      const { set, mask, model } = await openMaskAndModel(dir, o.masks, o);
      requireMaskLanguages(mask, set.files[0]!, languages);
      checkPromptLengths(model, prompts);
      const build = interventionResolver(model, { onWarning: warnOnce });
      const decodeBatch = decodeBatchFor(model);
      const gen = engineGenerator(model, settings, decodeBatch);
      const log = await openMeasureLog('fallback', dir, model, o.out, { settings, decodeBatch });
      const progress = new Progress('fallback', o);
      const started = performance.now();
      const result = await computeFallback<SteerRequest>({
        prompts, languages, identifier, baseline: o.baseline, order: o.each ? 'each' : 'cumulative', prepare: resolveEvery(build),
        intervention: (langs) => onMaskSet(set, (f, site) => deactivation(f, langs, o.deactivateValue, site)),
        generate: async (p, req) => log.unit([p, req], requestFiles(req), async () => gen(p, req === null ? null : await build(req))),
        onProgress: (d, t, what) => progress.update(d, t, what),
      });
      progress.done();
      await writeJson(o.out, { ...result, model: dir, mask: o.masks, prompts: o.prompts, deactivateValue: o.deactivateValue, ...settings, ...record,
        seconds: (performance.now() - started) / 1000 });
      await finishUnitLog(log, o);
      const line = (st: FallbackStep) => `${(st.deactivated.join('+') || 'none').padEnd(24)} most common ${st.mostCommon ?? '-'}  ` +
        Object.entries(st.distribution).map(([k, n]) => `${k} ${n}`).join(', ');
      printResult(o, { out: o.out, identifier: result.identifier, steps: [...(result.baseline ? [result.baseline] : []), ...result.steps]
        .map((st) => ({ deactivated: st.deactivated, mostCommon: st.mostCommon, distribution: st.distribution })) }, () =>
        ['deactivated              output languages', ...(result.baseline ? [line(result.baseline)] : []), ...result.steps.map(line),
          `identifier ${result.identifier} -> ${o.out}`].join('\n'));
    }));
}
