// `masks import` / `masks export --format tang` and `stats import` / `stats export --format tang`: Tang et al.'s
// PyTorch files (src/identify/tang.ts) in and out, tied to a model folder for the neuron-index shapes.
import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';

import { LangneuronsError } from '../../errors.js';
import { readMask, summarizeMask, writeMask } from '../../identify/index.js';
import { isMaskFile } from '../../identify/masks.js';
import { maskFromTang, maskToTang, statsFromTang, statsToTang } from '../../identify/tang.js';
import { checkOutput, ensureParentDir } from '../../io/outdir.js';
import { readTorchFile, writeTorchFile } from '../../io/torch-file.js';
import { openCheckpoint } from '../../model/checkpoint.js';
import { modelIdentity } from '../../profile/identity.js';
import { isStatsFile, readStats, writeStats } from '../../profile/stats.js';
import { parseIntOption, printResult } from '../output.js';

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

async function identityOf(dir: string) {
  const ck = await openCheckpoint(dir);
  return { identity: modelIdentity(ck), maxPositions: ck.config.maxPositions };
}

async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await fsp.readFile(file)).digest('hex');
}


/**
 * Whether `file` is a Tang-format file of that kind: a torch.save zip holding a list over languages of per-layer lists
 * (a mask) or a dict with 'over_zero' (counts). Such files are small; anything else (not a zip) is not read whole.
 */
async function isTangFile(file: string, kind: 'mask' | 'counts'): Promise<boolean> {
  const magic = Buffer.alloc(4);
  const h = await fsp.open(file, 'r');
  try { await h.read(magic, 0, 4, 0); } finally { await h.close(); }
  if (magic.toString('latin1') !== 'PK\x03\x04') return false;
  const v = await readTorchFile(file);
  return kind === 'mask' ? Array.isArray(v) && v.every((l) => Array.isArray(l)) : v instanceof Map && v.has('over_zero');
}

function checkFormat(format: string): void {
  if (format !== 'tang') throw new LangneuronsError('E_OPTIONS', `--format must be "tang" (PyTorch, as Tang et al.'s code saves it), got "${format}"`, { field: 'format' });
}

export function addTangMaskCommands(masks: Command): void {
  masks
    .command('import <file>')
    .description("a Tang-format mask (torch.save of a list over languages of per-layer index tensors, e.g. activation_mask/<model>) as a langneurons mask")
    .requiredOption('--langs <langs>', "the file's languages, in its order (comma-separated): the file holds no names")
    .requiredOption('--model <dir>', 'the model the mask is for (layers, intermediate size, fingerprint)')
    .requiredOption('--out <file>', 'mask file: .json or .safetensors')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { langs: string; model: string; out: string; json?: boolean }) => {
      await checkOutput(o.out, [file, o.model], 'a langneurons mask', isMaskFile);
      const { identity } = await identityOf(o.model);
      const mask = maskFromTang(await readTorchFile(file), list(o.langs), identity, file, { sha256: await sha256File(file) });
      await ensureParentDir(o.out);
      await writeMask(o.out, mask);
      const s = summarizeMask(mask);
      printResult(o, { out: o.out, method: mask.method, total: s.total, union: s.union },
        () => `imported ${s.languages.map((l) => `${l} ${s.total[l]}`).join(', ')} neurons (${s.union} distinct) -> ${o.out}`);
    });
  masks
    .command('export <mask>')
    .description("a mask of FFN neurons (site act, gate, h or up) as a Tang-format PyTorch file (list over languages of per-layer int64 index tensors), readable by torch.load")
    .option('--format <format>', "the file format: tang (Tang et al.'s torch.save layout, the only one)", 'tang')
    .requiredOption('--out <file>', 'the PyTorch file to write')
    .option('--langs <langs>', "languages and their order in the file, each of the mask's at most once (default: the mask's, in its order)")
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { format: string; out: string; langs?: string; json?: boolean }) => {
      checkFormat(o.format);
      await checkOutput(o.out, [file], 'a Tang-format mask', (f) => isTangFile(f, 'mask'));
      const mask = await readMask(file);
      const langs = o.langs !== undefined ? list(o.langs) : Object.keys(mask.languages);
      // --langs in the CLI's words (the library speaks of its option): the file holds no names, so a language twice or
      // one the mask lacks would put every later language's neurons under the wrong name in Python.
      if (o.langs !== undefined) {
        if (!langs.length) throw new LangneuronsError('E_OPTIONS', `--langs names no language, got '${o.langs}' (leave it out for the mask's languages, in its order)`, { field: '--langs' });
        const twice = langs.find((l, i) => langs.indexOf(l) !== i);
        if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `--langs: ${twice} is given twice`, { field: '--langs' });
        const missing = langs.find((l) => !Object.prototype.hasOwnProperty.call(mask.languages, l));
        if (missing !== undefined)
          throw new LangneuronsError('E_OPTIONS', `--langs: ${file} has no language "${missing}" (it has ${Object.keys(mask.languages).join(', ')})`, { field: '--langs' });
      }
      await writeTorchFile(o.out, maskToTang(mask, langs, file));
      printResult(o, { out: o.out, format: 'tang', languages: langs }, () => `${langs.join(', ')} (in this order) -> ${o.out}`);
    });
}

export function addTangStatsCommands(stats: Command): void {
  stats
    .command('import <file>')
    .description("Tang-format counts (torch.save({'n', 'over_zero', 'sum1', 'sum2', ...}), e.g. activation.<lang>.train.<model>) as a statistics file")
    .requiredOption('--lang <code>', 'the language the counts are of')
    .requiredOption('--model <dir>', 'the model they were taken on (layers, intermediate size, fingerprint)')
    .requiredOption('--out <file>', 'the statistics file (.safetensors)')
    .option('--max-len <n>', "tokens per window of the run (Tang: the model's max length; default and at most the model's context)", parseIntOption('--max-len', 1))
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { lang: string; model: string; out: string; maxLen?: number; json?: boolean }) => {
      await checkOutput(o.out, [file, o.model], 'a langneurons statistics file', isStatsFile);
      if (!o.out.endsWith('.safetensors')) throw new LangneuronsError('E_OPTIONS', `--out ${o.out}: a statistics file is .safetensors (profile, identify and stats merge read <lang>.safetensors)`, { field: '--out' });
      const { identity, maxPositions } = await identityOf(o.model);
      // As profile refuses windows the model cannot take: counts of such windows cannot have come from this model.
      if (o.maxLen !== undefined && o.maxLen > maxPositions)
        throw new LangneuronsError('E_OPTIONS', `--max-len ${o.maxLen}: windows of ${o.maxLen} tokens exceed the model's context of ${maxPositions}: give a --max-len of at most ${maxPositions}`, { field: '--max-len' });
      const s = statsFromTang(await readTorchFile(file), { language: o.lang, model: identity, maxLen: o.maxLen ?? maxPositions, sha256: await sha256File(file) }, file);
      await ensureParentDir(o.out);
      await writeStats(o.out, s);
      printResult(o, { out: o.out, language: o.lang, tokens: s.tokens, layers: identity.layers, width: identity.intermediate },
        () => `${o.lang}: ${s.tokens} tokens, ${identity.layers} layers × ${identity.intermediate} neurons (site act) -> ${o.out}`);
    });
  stats
    .command('export <file>')
    .description("a statistics file's act counts as Tang-format PyTorch counts ({'n', 'over_zero', 'sum1', 'sum2'}), readable by torch.load")
    .option('--format <format>', "the file format: tang (Tang et al.'s torch.save layout, the only one)", 'tang')
    .requiredOption('--out <file>', 'the PyTorch file to write')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { format: string; out: string; json?: boolean }) => {
      checkFormat(o.format);
      await checkOutput(o.out, [file], 'Tang-format counts', (f) => isTangFile(f, 'counts'));
      const s = await readStats(file);
      await writeTorchFile(o.out, statsToTang(s, file));
      printResult(o, { out: o.out, format: 'tang', language: s.meta.language, tokens: s.tokens }, () => `${s.meta.language}: ${s.tokens} tokens -> ${o.out}`);
    });
}
