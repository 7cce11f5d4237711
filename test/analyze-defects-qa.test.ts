// Defects a QA pass found in the analyses and around them (one describe per item): a figure set cut short by a kill
// (and one figure's record copied under another's name), concurrent runs on one figure, files at a lock's name that
// are no lock, train writing its plan before every option was checked, analyze alignment's --compare-model checked
// after the base model's pass, report on an incomplete report.json, analyze activations with a mask of another width,
// a mask where statistics go and --min-languages beyond the languages, languages given twice, train's --config help,
// estimateMemory's options. Figures, masks and statistics are small hand-made ones; the few model runs use the
// stories260k fixture with two sentences or a one-layer train run.
import { existsSync, promises as fsp, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { analyzeOverlap } from '../src/analyze/masks.js';
import { buildProgram } from '../src/cli/main.js';
import { LangneuronsError } from '../src/errors.js';
import { MASK_FORMAT, writeMaskJson, type NeuronMask } from '../src/identify/masks.js';
import { acquireFileOutputLock } from '../src/io/lock.js';
import { estimateMemory, openCheckpoint } from '../src/model/checkpoint.js';
import { writeStats, type ActivationStats, type ModelIdentity, type Site, type SiteStats } from '../src/profile/stats.js';
import { overlapFigures } from '../src/report/analysis-figures.js';
import { writeFigure, type Figure } from '../src/report/figures.js';
import { REPORT_FORMAT } from '../src/report/index.js';
import { refusedCli as refused, runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

// A kill at a chosen point of writing: the `after`-th atomic write from now (and every later one) fails as a SIGKILL
// would stop it, before its file is renamed into place; -1 never. Every other write goes through unchanged.
const kill = vi.hoisted(() => ({ after: -1 }));
vi.mock('../src/io/atomic.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/io/atomic.js')>();
  return {
    ...real,
    async writeFileAtomic(target: string, data: Uint8Array | string): Promise<void> {
      if (kill.after === 0) throw new Error(`killed before writing ${path.basename(target)}`);
      if (kill.after > 0) kill.after--;
      return real.writeFileAtomic(target, data);
    },
  };
});

const model: ModelIdentity = { name: 'toy', modelType: 'llama', layers: 2, hidden: 4, intermediate: 8, fingerprint: 'f'.repeat(64) };
const mask = (languages: Record<string, number[][]>, o: { site?: Site; width?: number } = {}): NeuronMask => ({
  format: MASK_FORMAT, method: 'lape', parameters: {}, site: o.site ?? 'act', model, sources: [], layers: 2, width: o.width ?? 8, languages,
});
const STORIES = fixturePath('stories260k');
/** A pid no process has (above Linux's pid_max): the holder of a lock a killed run left. */
const DEAD = 999_999_999;
const holder = (pid: number, command: string) => JSON.stringify({ pid, hostname: os.hostname(), command, started: '' }) + '\n';

let tmp: string;
let k = 0;
const fresh = (name: string) => path.join(tmp, `${k++}-${name}`);
beforeAll(async () => { tmp = await makeTempDir('ln-analyze-qa-'); });
afterAll(async () => { await removeDir(tmp); });

/** Every file of a folder with its bytes (a figure set as written). */
async function contents(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of readdirSync(dir).sort()) out[n] = (await fsp.readFile(path.join(dir, n))).toString('base64');
  return out;
}

const overlapFigure = (): Figure => overlapFigures(analyzeOverlap(mask({ en: [[0, 1], []], fr: [[1], [2]] })), 'm.json')[0]!;

describe('1. a figure set cut short by a kill is the tool\u2019s own: the same command run again writes it', () => {
  it('analyze overlap killed after any of its writes (and its lock left behind) succeeds when run again, with the files of an uninterrupted run', async () => {
    const m = fresh('mask.json');
    await writeMaskJson(m, mask({ en: [[0, 1], [3]], fr: [[1], [2]], de: [[5], [2, 6]] }));
    const whole = fresh('whole');
    expect((await runCli('analyze', 'overlap', m, '--out', whole)).code).toBe(0);
    const expected = await contents(whole);
    const writes = 2 * 6;  // two figures, each its record, four files, its record again
    for (let after = 1; after < writes; after++) {
      const out = fresh(`killed-${after}`);
      kill.after = after;
      try {
        const r = await runCli('analyze', 'overlap', m, '--out', out);
        expect(r.code, `killed after ${after} writes`).toBe(1);
      } finally {
        kill.after = -1;
      }
      // A SIGKILL also leaves the lock of the figure being written; its holder is dead.
      const written = Math.floor(after / 6), name = ['overlap', 'overlap-coefficient'][written]!;
      await fsp.writeFile(path.join(out, `${name}.lock`), holder(DEAD, `figure ${name}`));
      const again = await runCli('analyze', 'overlap', m, '--out', out);
      expect(again.stderr, `killed after ${after} writes`).toBe('');
      expect(again.code).toBe(0);
      expect(await contents(out)).toEqual(expected);
    }
  });

  it('a cut-off record owns only the files it names: anything else at a figure file\u2019s name is still refused and kept', async () => {
    const dir = fresh('stub');
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'overlap.json'), JSON.stringify({ format: 'langneurons-figure/1', name: 'overlap', files: ['overlap.svg'], complete: false }));
    await fsp.writeFile(path.join(dir, 'overlap.svg'), '<svg');  // its own, cut short
    await fsp.writeFile(path.join(dir, 'overlap.png'), 'mine');   // not named by the record
    await expect(writeFigure(dir, overlapFigure())).rejects.toThrow(/overlap\.png: exists and was not written by a langneurons figure/);
    expect(await fsp.readFile(path.join(dir, 'overlap.png'), 'utf8')).toBe('mine');
    // Without the user's file the cut-off set is taken back, and its record then names all four files.
    await fsp.rm(path.join(dir, 'overlap.png'));
    await writeFigure(dir, overlapFigure());
    const record = JSON.parse(await fsp.readFile(path.join(dir, 'overlap.json'), 'utf8'));
    expect(record.files).toEqual(['overlap.svg', 'overlap.png', 'overlap.csv', 'overlap.caption.txt']);
    expect(record.data.counts).toEqual([[2, 1], [1, 2]]);
    // A record of an earlier version (no `files`: it was written last, over a whole set) owns all four files.
    const { files: _files, ...legacy } = record;
    await fsp.writeFile(path.join(dir, 'overlap.json'), JSON.stringify(legacy));
    await writeFigure(dir, overlapFigure());
    // A foreign file and no record: refused as before.
    const foreign = fresh('foreign');
    await fsp.mkdir(foreign);
    await fsp.writeFile(path.join(foreign, 'overlap.svg'), 'mine');
    await expect(writeFigure(foreign, overlapFigure())).rejects.toThrow(/overlap\.svg: exists and was not written by a langneurons figure/);
    expect(readdirSync(foreign)).toEqual(['overlap.svg']);
  });
});

describe('5b. a killed write\u2019s temporaries of a figure\u2019s files are removed when the figure is written again', () => {
  it('only this figure\u2019s, only those of a dead writer: another figure\u2019s, a live writer\u2019s and a user\u2019s look-alike are kept', async () => {
    const dir = fresh('temps');
    await fsp.mkdir(dir);
    const orphan = [`overlap.svg.tmp-${DEAD}-0badcafe`, `overlap.caption.txt.tmp-${DEAD}-00c0ffee`, `overlap.json.tmp-${DEAD}-12345678`];
    const kept = [`layers.svg.tmp-${DEAD}-0badcafe`, `overlap.png.tmp-${process.pid}-0badcafe`, `overlap.svg.tmp-notes`, 'overlap.svg.bak'];
    for (const f of [...orphan, ...kept]) await fsp.writeFile(path.join(dir, f), 'x');
    await writeFigure(dir, overlapFigure());
    const left = readdirSync(dir);
    for (const f of orphan) expect(left, f).not.toContain(f);
    for (const f of kept) expect(left, f).toContain(f);
    expect(left).toContain('overlap.svg');
  });
});

describe('6. a figure\u2019s record is trusted for its own name only', () => {
  it('overlap.json copied to layers.json does not make the layers files ours', async () => {
    const dir = fresh('renamed');
    await writeFigure(dir, overlapFigure());
    await fsp.copyFile(path.join(dir, 'overlap.json'), path.join(dir, 'layers.json'));
    await fsp.writeFile(path.join(dir, 'layers.svg'), 'mine');
    const before = await fsp.readFile(path.join(dir, 'layers.json'), 'utf8');
    const layers = { ...overlapFigure(), name: 'layers' };
    await expect(writeFigure(dir, layers)).rejects.toThrow(/layers\.json: is the record of the figure 'overlap', not of 'layers'/);
    expect(await fsp.readFile(path.join(dir, 'layers.json'), 'utf8')).toBe(before);
    expect(await fsp.readFile(path.join(dir, 'layers.svg'), 'utf8')).toBe('mine');
  });
});

describe('13. concurrent runs on one figure', () => {
  it('the loser is told the figure is in use, not that the winner\u2019s half-written files are foreign', async () => {
    const dir = fresh('busy');
    await fsp.mkdir(dir);
    // The winner (vitest's parent process stands in for it) holds the lock and has written its SVG only.
    await fsp.writeFile(path.join(dir, 'overlap.lock'), holder(process.ppid, 'figure overlap'));
    await fsp.writeFile(path.join(dir, 'overlap.svg'), '<svg xmlns="http://www.w3.org/2000/svg"');
    await expect(writeFigure(dir, overlapFigure())).rejects.toThrow(new RegExp(`overlap: in use by figure overlap \\(pid ${process.ppid} `));
    expect(readdirSync(dir).sort()).toEqual(['overlap.lock', 'overlap.svg']);
  });
});

describe('7. only a lock of ours is ever removed', () => {
  it('a user\u2019s file at a lock\u2019s name is refused and kept, however old; a torn lock of ours is taken over', async () => {
    const dir = fresh('locks');
    await fsp.mkdir(dir);
    const file = path.join(dir, 'layers.lock');
    await fsp.writeFile(file, 'notes about the layers figure\n');
    const old = new Date(Date.now() - 10_000);
    await fsp.utimes(file, old, old);
    const e = await acquireFileOutputLock(path.join(dir, 'layers'), 'figure layers').then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(LangneuronsError);
    expect((e as Error).message).toMatch(/layers\.lock: exists and is not a langneurons lock/);
    expect(await fsp.readFile(file, 'utf8')).toBe('notes about the layers figure\n');
    // Through a figure: the same, and nothing written.
    await expect(writeFigure(dir, { ...overlapFigure(), name: 'layers' })).rejects.toThrow(/layers\.lock: exists and is not a langneurons lock/);
    expect(readdirSync(dir)).toEqual(['layers.lock']);
    // Ours, cut off mid-write by a kill (and old enough): stale, taken over.
    await fsp.writeFile(file, '{"pid":12');
    await fsp.utimes(file, old, old);
    const lock = await acquireFileOutputLock(path.join(dir, 'layers'), 'figure layers');
    expect(JSON.parse(await fsp.readFile(file, 'utf8'))).toMatchObject({ pid: process.pid, command: 'figure layers' });
    await lock.release();
    expect(existsSync(file)).toBe(false);
  });
});

describe('2. train checks every option before it writes anything', () => {
  const SHAPE = ['--langs', 'en', '--tokenizer-vocab', '270', '--layers', '1', '--hidden', '16', '--heads', '2', '--kv-heads', '1', '--ffn', '16',
    '--chunk', '16', '--batch', '1', '--threads', '1', '--steps', '1', '--quiet'];

  it('--heldout naming articles the language lacks is refused naming --heldout, nothing written; the corrected command then runs', async () => {
    const out = fresh('train');
    const line = await refused('train', ...SHAPE, '--heldout', '99', '--out', out);
    expect(line).toMatch(/^langneurons: error: --heldout 99: UDHR en has none of these articles \(its articles are 0\.\.30\)/);
    expect(existsSync(`${out}.work`)).toBe(false);
    expect(existsSync(out)).toBe(false);
    const r = await runCli('train', ...SHAPE, '--heldout', '29,30', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Every article held out leaves no training text: refused the same way.
    const all = Array.from({ length: 31 }, (_, i) => i).join(',');
    expect(await refused('train', ...SHAPE, '--heldout', all, '--out', fresh('train-all'))).toMatch(/--heldout 0,1,.*: holds every article of UDHR en/);
  });

  it('11. --help says --config takes a file', () => {
    const help = buildProgram().commands.find((c) => c.name() === 'train')!.helpInformation();
    expect(help).toMatch(/--config <file>\s+a JSON file holding an object with any of the options/);
    expect(help).not.toContain('<json>');
  });
});

describe('3. analyze alignment checks --compare-model before any work', () => {
  const alignment = (...args: string[]) => ['analyze', 'alignment', STORIES, '--parallel', 'udhr:heldout', '--max-sentences', '2', ...args];

  it('a missing folder and a model of other layers are refused before the base model runs: no partial log, no folder', async () => {
    const out = fresh('align');
    expect(await refused(...alignment('--langs', 'en,de', '--compare-model', path.join(tmp, 'no-such-model'), '--out', out)))
      .toMatch(/--compare-model .*no-such-model: no such model folder/);
    expect(existsSync(out)).toBe(false);
    expect(await refused(...alignment('--langs', 'en,de', '--compare-model', fixturePath('tiny-llama3'), '--out', out)))
      .toMatch(/--compare-model .*tiny-llama3: 3 layers, but .*stories260k has 5: one figure needs the same layers/);
    expect(existsSync(out)).toBe(false);
  });

  it('10. a language named twice in --langs is refused (alignment and corpus udhr)', async () => {
    expect(await refused(...alignment('--langs', 'en,de,de', '--out', fresh('align-twice')))).toMatch(/--langs en,de,de: names de twice/);
    const out = fresh('corpus-twice');
    expect(await refused('corpus', 'udhr', '--langs', 'en,en', '--out', out)).toMatch(/--langs 'en,en': names en twice/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('5. report on an incomplete report.json', () => {
  it('names the file and the field, in one line, and writes nothing', async () => {
    const dir = fresh('report');
    await fsp.mkdir(dir);
    const file = path.join(dir, 'report.json');
    await fsp.writeFile(file, JSON.stringify({ format: REPORT_FORMAT }));
    expect(await refused('report', dir)).toBe(`langneurons: error: ${file}: "title" is missing, expected a string; it is not a whole demo report (run the demo again to write it)`);
    // Whole but for its checks and figures (the QA's file):
    await fsp.writeFile(file, JSON.stringify({
      format: REPORT_FORMAT, title: 't', generatedAt: 'now', model: { dir: '/m', name: 'toy', parameters: 1, layers: 2, hidden: 4, intermediate: 8, vocab: 10, recipe: 'r' },
      languages: ['en'], lowResource: null, seconds: 1, steps: [], options: {}, checks: null, ok: true,
    }));
    expect(await refused('report', dir)).toMatch(new RegExp(`${file}: "checks" is null, expected an array of objects`));
    expect(readdirSync(dir)).toEqual(['report.json']);
  });
});

/** One language's statistics of the toy model at act (8 units) and o (4 units): 10 tokens, sequence means, a histogram. */
function stats(language: string): ActivationStats {
  const L = 2, tokens = 10, seed = language.charCodeAt(0);
  const site = (name: Site, width: number): SiteStats => {
    const n = L * width;
    const overZero = Float64Array.from({ length: n }, (_, i) => (seed * (i + 3)) % 11 % (tokens + 1));
    return { site: name, width, overZero, sum: Float64Array.from(overZero, (v) => v / 2), sumSq: Float64Array.from(overZero), absSum: Float64Array.from(overZero) };
  };
  return {
    meta: { format: 'langneurons-stats/1', model: { ...model }, language, layers: [0, 1], scope: { mode: 'windows', maxLen: 64, bos: false, countPadding: false, tokenBudget: 0 },
      corpus: { files: [`${language}.txt`], fingerprint: `c-${language}` }, toolVersion: 'test', shards: 1, compute: 'f32' },
    tokens, sequences: 2, sites: new Map([['act', site('act', 8)], ['o', site('o', 4)]]),
  };
}

describe('8 and 10. analyze activations: the mask against the statistics, and its options', () => {
  let dir: string;
  beforeAll(async () => {
    dir = fresh('stats');
    await fsp.mkdir(dir);
    for (const l of ['en', 'de', 'mt']) await writeStats(path.join(dir, `${l}.safetensors`), stats(l));
  });

  it('8. a mask read at a site of another width is refused, naming both widths', async () => {
    const m = fresh('o-mask.json');
    await writeMaskJson(m, mask({ mt: [[0, 1], [2]] }, { site: 'o', width: 4 }));
    const line = await refused('analyze', 'activations', dir, '--neurons', `${m}:mt`, '--site', 'act', '--out', fresh('act-o'));
    expect(line).toMatch(/a mask of site 'o', 4 units wide, but site 'act' of .*\.safetensors is 8 wide: give --site a site of 4 units/);
    // At its own width it is read.
    expect((await runCli('analyze', 'activations', dir, '--neurons', `${m}:mt`, '--out', fresh('o-o'))).code).toBe(0);
  });

  it('10. a mask given as statistics is said to be a mask, by its full path', async () => {
    const m = fresh('raw.json');
    await writeMaskJson(m, mask({ mt: [[0, 1], [2]] }));
    expect(await refused('analyze', 'activations', m, '--neurons', `${m}:mt`, '--out', fresh('mask-as-stats')))
      .toBe(`langneurons: error: ${m}: a neuron mask, not statistics: give profile's statistics files (or their folder), and the mask with --neurons`);
    // Any other file that is no safetensors: its full path, not its base name.
    const notes = fresh('notes.txt');
    await fsp.writeFile(notes, 'some notes, not statistics\n');
    expect(await refused('analyze', 'activations', notes, '--neurons', `${m}:mt`, '--out', fresh('notes-as-stats')))
      .toMatch(new RegExp(`^langneurons: error: ${notes}: not a langneurons statistics file \\(not a safetensors file: `));
  });

  it('10. --min-languages beyond the languages given is refused; the default with one language is not', async () => {
    const m = fresh('mt-mask.json');
    await writeMaskJson(m, mask({ mt: [[0, 1], [2]] }));
    expect(await refused('analyze', 'activations', dir, '--neurons', `${m}:mt`, '--min-languages', '5', '--out', fresh('min5')))
      .toMatch(/--min-languages 5: only 3 language\(s\) given \(de, en, mt\)/);
    expect((await runCli('analyze', 'activations', dir, '--neurons', `${m}:mt`, '--min-languages', '3', '--out', fresh('min3'))).code).toBe(0);
    expect((await runCli('analyze', 'activations', path.join(dir, 'mt.safetensors'), '--neurons', `${m}:mt`, '--out', fresh('one'))).code).toBe(0);
  });
});

describe('12. estimateMemory checks its options', () => {
  it('refuses batch and context sizes, threads and weight bytes that are not counts, naming the option', async () => {
    const { config } = await openCheckpoint(STORIES);
    for (const [options, field] of [
      [{ batchTokens: -5 }, 'batchTokens'], [{ batchTokens: Number.NaN }, 'batchTokens'], [{ batchTokens: 1.5 }, 'batchTokens'],
      [{ contextTokens: 0 }, 'contextTokens'], [{ threads: 0 }, 'threads'], [{ threads: '4' }, 'threads'], [{ weightBytes: -1 }, 'weightBytes'],
    ] as [Record<string, unknown>, string][]) {
      const e = (() => { try { estimateMemory(config, options as never); } catch (x) { return x; } return null; })();
      expect(e, JSON.stringify(options)).toBeInstanceOf(LangneuronsError);
      expect((e as LangneuronsError).field).toBe(field);
      expect((e as Error).message).toMatch(new RegExp(`^estimateMemory: ${field} must be an integer`));
    }
    expect(estimateMemory(config, { batchTokens: 4, contextTokens: 8, threads: 2 }).totalBytes).toBeGreaterThan(0);
  });
});
