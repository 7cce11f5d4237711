// Output paths of corpus udhr, records squad, analyze, masks/stats import-export and demo: writes are atomic and
// never replace a file the command did not write; an output that is an input is refused; paths under /proc fail
// at once in one line (Node's mkdir({recursive}) loops there); a mask of another model is refused by analyze
// activations; the demo caps its fine-tuning chunk at the model's context, refuses a folder it did not write and
// takes the output lock. Also the one-line refusals of some bad options (corpus udhr, analyze alignment, stats show,
// demo --engine-check).
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { engineCheckDir } from '../src/cli/commands/demo.js';
import { udhrCorpus } from '../src/corpus/udhr.js';
import { runDemo } from '../src/demo/run-demo.js';
import { resolveDemoOptions } from '../src/demo/options.js';
import { checkDemoFolder, DEMO_FOLDER_MARKER } from '../src/demo/out-folder.js';
import { STEP_FORMAT } from '../src/demo/steps.js';
import { LOCK_FILE } from '../src/io/lock.js';
import { ensureOutputDirSync } from '../src/io/outdir.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const MODEL = fixturePath('stories260k');
const UDHR20 = path.join(repoRoot, 'models', 'udhr20');
const TANG = path.join(repoRoot, 'test/fixtures-tang');
const PROC = '/proc/langneurons-test-x';

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('langneurons-outputs-defects-'); });
afterAll(async () => { await removeDir(tmp); });

/** Runs a command expected to fail within `seconds`; returns its one error line. */
async function refused(args: string[], seconds = 20): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${args.join(' ')}: no answer in ${seconds} s`)), seconds * 1000); });
  try {
    const r = await Promise.race([runCli(...args), hung]);
    expect(r.code, r.stdout).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    return lines[0]!;
  } finally {
    clearTimeout(timer);
  }
}

async function ok(...args: string[]): Promise<string> {
  const r = await runCli(...args);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

const udhrText = async (id: string, split: 'all' | 'train' | 'heldout') => {
  const lines: string[] = [];
  for await (const d of udhrCorpus([id], { split }).source(id).documents()) lines.push(d);
  return `${lines.join('\n')}\n`;
};

describe('corpus udhr --out', () => {
  it('refuses a file it did not write, before writing anything, and leaves it alone', async () => {
    const out = path.join(tmp, 'cu');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'mt.txt'), 'mine\n');
    expect(await refused(['corpus', 'udhr', '--langs', 'en,mt', '--out', out])).toMatch(/mt\.txt: exists and is not a UDHR text written by langneurons/);
    expect(await fsp.readFile(path.join(out, 'mt.txt'), 'utf8')).toBe('mine\n');
    expect(existsSync(path.join(out, 'en.txt'))).toBe(false);  // checked before the first write
  });

  it('never writes through a link planted at a file name (writes are atomic renames)', async () => {
    const out = path.join(tmp, 'cu-link');
    await fsp.mkdir(out);
    const victim = path.join(tmp, 'victim.txt');
    await fsp.writeFile(victim, 'precious\n');
    await fsp.symlink(victim, path.join(out, 'mt.txt'));
    expect(await refused(['corpus', 'udhr', '--langs', 'mt', '--out', out])).toMatch(/mt\.txt: exists/);
    expect(await fsp.readFile(victim, 'utf8')).toBe('precious\n');
  });

  it('rewrites its own files (any split), leaving no temporary file', async () => {
    const out = path.join(tmp, 'cu-own');
    await ok('corpus', 'udhr', '--langs', 'en,mt', '--split', 'train', '--out', out);
    expect(await fsp.readFile(path.join(out, 'mt.txt'), 'utf8')).toBe(await udhrText('mt', 'train'));
    await ok('corpus', 'udhr', '--langs', 'en,mt', '--out', out);
    expect(await fsp.readFile(path.join(out, 'mt.txt'), 'utf8')).toBe(await udhrText('mt', 'all'));
    expect((await fsp.readdir(out)).sort()).toEqual(['en.txt', 'mt.txt']);
  });

  it('--langs without --out (and --out without --langs) is refused instead of listing every language', async () => {
    expect(await refused(['corpus', 'udhr', '--langs', 'en'])).toMatch(/--langs needs --out/);
    expect(await refused(['corpus', 'udhr', '--out', path.join(tmp, 'cu-x')])).toMatch(/--out needs --langs/);
    expect(existsSync(path.join(tmp, 'cu-x'))).toBe(false);
    expect(await ok('corpus', 'udhr')).toMatch(/languages \(give --langs and --out/);
  });
});

describe('records squad --out', () => {
  const squadRow = (q: string) => JSON.stringify({ context: 'The sky is blue.', question: q, answers: { text: ['blue'], answer_start: [11] } });

  it('refuses its own input, and an existing file that is not a file of records; replaces its own', async () => {
    const input = path.join(tmp, 'in.jsonl');
    const rows = `${squadRow('What colour is the sky?')}\n${squadRow('Which colour?')}\n`;
    await fsp.writeFile(input, rows);
    expect(await refused(['records', 'squad', input, '--out', input])).toMatch(/--out .*in\.jsonl is also an input/);
    expect(await fsp.readFile(input, 'utf8')).toBe(rows);

    const notes = path.join(tmp, 'notes.jsonl');
    await fsp.writeFile(notes, '{"mine": true}\n');
    expect(await refused(['records', 'squad', input, '--out', notes])).toMatch(/notes\.jsonl: exists and is not a file of prompt\/completion records/);
    expect(await fsp.readFile(notes, 'utf8')).toBe('{"mine": true}\n');

    // only unanswerable rows: refused (it wrote an empty file, exit 0, which finetune then refused)
    const unanswerable = path.join(tmp, 'unanswerable.jsonl');
    await fsp.writeFile(unanswerable, JSON.stringify({ context: 'x', question: 'y?', answers: { text: [], answer_start: [] } }) + '\n');
    expect(await refused(['records', 'squad', unanswerable, '--out', path.join(tmp, 'none.jsonl')])).toMatch(/unanswerable\.jsonl: no answered question to make a record of \(1 rows without an answer\); nothing written/);
    expect(existsSync(path.join(tmp, 'none.jsonl'))).toBe(false);

    const out = path.join(tmp, 'rec', 'out.jsonl');
    await ok('records', 'squad', input, '--out', out, '--limit', '1');
    expect((await fsp.readFile(out, 'utf8')).trim().split('\n')).toHaveLength(1);
    await ok('records', 'squad', input, '--out', out);  // its own records: replaced
    const recs = (await fsp.readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(recs).toHaveLength(2);
    expect(recs[0]!['completion']).toBe(' blue');
  });
});

describe('outputs under /proc fail at once in one line', () => {
  let mask: string;
  beforeAll(async () => {
    mask = path.join(tmp, 'mask.json');
    await ok('masks', 'import', path.join(TANG, 'mask.pt'), '--langs', 'en,sw', '--model', MODEL, '--out', mask);
  });

  it('corpus udhr, records squad, analyze layers, masks export, stats import, demo', async () => {
    expect(await refused(['corpus', 'udhr', '--langs', 'mt', '--out', PROC])).toMatch(/^langneurons: error: \/proc\/langneurons-test-x: cannot create the output folder/);
    const input = path.join(tmp, 'proc-in.jsonl');
    await fsp.writeFile(input, JSON.stringify({ context: 'c', question: 'q', answers: { text: ['a'], answer_start: [0] } }) + '\n');
    expect(await refused(['records', 'squad', input, '--out', `${PROC}/y.jsonl`])).toMatch(/\/proc\/langneurons-test-x: cannot create the output folder/);
    expect(await refused(['analyze', 'layers', mask, '--out', PROC])).toMatch(/\/proc\/langneurons-test-x: cannot create the output folder/);
    expect(await refused(['masks', 'export', mask, '--format', 'tang', '--out', `${PROC}/m.pt`])).toMatch(/\/proc\/langneurons-test-x: cannot create the output folder/);
    expect(await refused(['stats', 'import', path.join(TANG, 'counts.pt'), '--lang', 'en', '--model', MODEL, '--max-len', '64', '--out', `${PROC}/en.safetensors`]))
      .toMatch(/\/proc\/langneurons-test-x: cannot create the output folder/);
    expect(await refused(['demo', UDHR20, '--quick', '--out', PROC])).toMatch(/\/proc\/langneurons-test-x: cannot create the output folder/);
  }, 60_000);

  it('sweep run (its journal and Slurm scripts create folders synchronously)', async () => {
    expect(() => ensureOutputDirSync(`${PROC}/deeper`)).toThrow(/\/proc\/langneurons-test-x: cannot create the output folder/);
    expect(await refused(['sweep', 'run', path.join(repoRoot, 'examples', 'sweep-demo.yaml'), '--executor', 'slurm', '--dry-run', '--out', PROC]))
      .toMatch(/\/proc\/langneurons-test-x: cannot create the output folder/);
  }, 60_000);
});

describe('analyze activations --neurons', () => {
  it('refuses a mask of another model than the statistics, naming both', async () => {
    const stats = path.join(tmp, 'act-stats');
    for (const lang of ['en', 'sw'])
      await ok('stats', 'import', path.join(TANG, 'counts.pt'), '--lang', lang, '--model', MODEL, '--max-len', '64', '--out', path.join(stats, `${lang}.safetensors`));
    const mask = path.join(tmp, 'act-mask.json');
    await ok('masks', 'import', path.join(TANG, 'mask.pt'), '--langs', 'en,sw', '--model', MODEL, '--out', mask);
    await ok('analyze', 'activations', stats, '--neurons', `${mask}:en`, '--out', path.join(tmp, 'act-ok'));

    const other = JSON.parse(await fsp.readFile(mask, 'utf8')) as { model: { name: string; fingerprint: string } };
    other.model = { ...other.model, name: 'other-model', fingerprint: 'f'.repeat(64) };
    const foreign = path.join(tmp, 'act-foreign.json');
    await fsp.writeFile(foreign, JSON.stringify(other));
    const line = await refused(['analyze', 'activations', stats, '--neurons', `${foreign}:en`, '--out', path.join(tmp, 'act-no')]);
    expect(line).toMatch(/act-foreign\.json:en: a mask of model other-model \(ffffffffffff\), but .*en\.safetensors holds statistics of stories260k/);
    expect(existsSync(path.join(tmp, 'act-no'))).toBe(false);
  }, 60_000);
});

describe('bad option values and inputs: one line', () => {
  it('analyze alignment --max-tokens 1 is refused as an option value', async () => {
    const line = await refused(['analyze', 'alignment', UDHR20, '--parallel', 'udhr', '--langs', 'de', '--max-tokens', '1', '--out', path.join(tmp, 'al')]);
    expect(line).toMatch(/--max-tokens must be an integer in \[2, /);
  });

  it('stats show names the full path of a file that is no statistics file, and says a folder is one', async () => {
    const dir = path.join(tmp, 'show');
    await fsp.mkdir(dir);
    const json = path.join(dir, 'lape.json');
    await fsp.writeFile(json, '{"format": "langneurons-mask/1"}\n');
    expect(await refused(['stats', 'show', json])).toMatch(new RegExp(`^langneurons: error: ${json}: not a langneurons statistics file \\(not a safetensors file: .*header length`));
    expect(await refused(['stats', 'show', fixturePath('stories260k', 'model.safetensors')])).toMatch(/model\.safetensors: not a langneurons statistics file \(a safetensors file without langneurons metadata/);
    expect(await refused(['stats', 'show', dir])).toMatch(new RegExp(`${dir}: is a folder; stats show takes one statistics file`));
  });

  it('demo --engine-check without a model folder, where the fixture is absent, says to pass one', () => {
    const root = path.join(tmp, 'node_modules', 'langneurons');
    expect(() => engineCheckDir(undefined, root)).toThrow(/stories260k fixture is not at .*; pass the model folder: langneurons demo <model-dir> --engine-check$/);
    expect(engineCheckDir('given', root)).toBe('given');
  });
});

describe('demo output folder and context', () => {
  it('the fine-tuning chunk defaults to at most the model\u2019s context; a larger one is refused', () => {
    expect(resolveDemoOptions({ quick: true }, 64).chunk).toBe(64);
    expect(resolveDemoOptions({ quick: true }, 2048).chunk).toBe(128);
    expect(() => resolveDemoOptions({ chunk: 256 }, 64)).toThrow(/chunk 256 exceeds the model's context of 64/);
  });

  it('runDemo on a model of context 64 refuses chunk 256 before writing anything', async () => {
    const model = path.join(tmp, 'ctx64');
    await fsp.mkdir(model);
    for (const f of await fsp.readdir(UDHR20)) if (f !== 'model.safetensors') await fsp.copyFile(path.join(UDHR20, f), path.join(model, f));
    await fsp.symlink(path.join(UDHR20, 'model.safetensors'), path.join(model, 'model.safetensors'));
    const cfg = JSON.parse(await fsp.readFile(path.join(model, 'config.json'), 'utf8')) as Record<string, unknown>;
    await fsp.writeFile(path.join(model, 'config.json'), JSON.stringify({ ...cfg, max_position_embeddings: 64 }));
    const out = path.join(tmp, 'demo-ctx');
    await expect(runDemo(model, out, { quick: true, chunk: 256 })).rejects.toThrow(/chunk 256 exceeds the model's context of 64/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a folder holding files it did not write, leaving them alone', async () => {
    const out = path.join(tmp, 'demo-user');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'report.html'), 'my report\n');
    await fsp.writeFile(path.join(out, 'ppl-matrix.csv'), 'a,b\n');
    const line = await refused(['demo', UDHR20, '--quick', '--out', out]);
    expect(line).toMatch(/--out .*demo-user: holds files the demo did not write \(ppl-matrix\.csv, report\.html\)/);
    expect((await fsp.readdir(out)).sort()).toEqual(['ppl-matrix.csv', 'report.html']);
    expect(await fsp.readFile(path.join(out, 'report.html'), 'utf8')).toBe('my report\n');
  });

  it('accepts a missing or empty folder and one an earlier demo wrote (marker, or step records)', async () => {
    await checkDemoFolder(path.join(tmp, 'demo-missing'));
    const empty = path.join(tmp, 'demo-empty');
    await fsp.mkdir(empty);
    await checkDemoFolder(empty);
    const marked = path.join(tmp, 'demo-marked');
    await fsp.mkdir(marked);
    await fsp.writeFile(path.join(marked, DEMO_FOLDER_MARKER), JSON.stringify({ format: 'langneurons-demo-folder/1' }));
    await fsp.writeFile(path.join(marked, 'report.html'), '<html>');
    await checkDemoFolder(marked);
    const older = path.join(tmp, 'demo-older');
    await fsp.mkdir(path.join(older, 'steps'), { recursive: true });
    await fsp.writeFile(path.join(older, 'steps', 'profile.json'), JSON.stringify({ format: STEP_FORMAT, name: 'profile' }));
    await fsp.writeFile(path.join(older, 'report.html'), '<html>');
    await checkDemoFolder(older);
    const file = path.join(tmp, 'demo-file');
    await fsp.writeFile(file, 'x');
    await expect(checkDemoFolder(file)).rejects.toThrow(/is a file, not a folder/);
  });

  it('--device is honoured: a bad one, or cuda without a usable GPU, refused before the folder is made (it ran on the CPU, exit 0)', async () => {
    const out = path.join(tmp, 'demo-device');
    expect(await refused(['demo', UDHR20, '--quick', '--device', 'bogus', '--out', out])).toMatch(/--device must be auto, cpu, cuda or cuda:N, got 'bogus'/);
    expect(await refused(['demo', UDHR20, '--quick', '--device', 'cuda', '--out', out])).toMatch(/--device cuda: no usable CUDA device/);
    expect(existsSync(out)).toBe(false);
    expect(resolveDemoOptions({ device: 'cpu' }, undefined).device).toBe('cpu');
  });

  it('takes the output lock: a folder another live demo holds is refused', async () => {
    const out = path.join(tmp, 'demo-locked');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, LOCK_FILE), JSON.stringify({ pid: process.ppid, hostname: os.hostname(), command: 'demo', started: 'now' }));
    expect(await refused(['demo', UDHR20, '--quick', '--out', out])).toMatch(/demo-locked: in use by demo \(pid /);
    expect(await fsp.readdir(out)).toEqual([LOCK_FILE]);
  });
});
