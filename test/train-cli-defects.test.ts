// `train`'s output and work folders and its --config, through the CLI: what it replaces with --force, where its
// work folder may be, files of the user's in either folder, and a config file checked key by key. Tiny runs (1 layer,
// 2 steps, about a second each).
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runCli } from './helpers/cli.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

const SHAPE = ['--tokenizer-vocab', '270', '--layers', '1', '--hidden', '16', '--heads', '2', '--kv-heads', '1', '--ffn', '16',
  '--chunk', '16', '--batch', '1', '--threads', '1', '--quiet'];
const train = (...args: string[]) => runCli('train', '--langs', 'en', ...SHAPE, ...args);

/** The one error line of a refused run. */
function refusal(r: { code: number; stdout: string; stderr: string }): string {
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^langneurons: error: /);
  return lines[0]!;
}

const recipeSteps = async (out: string) => (JSON.parse(await fsp.readFile(path.join(out, 'recipe.json'), 'utf8')) as { training: { steps: number } }).training.steps;

describe('train: output and work folders', () => {
  let tmp: string;
  beforeAll(async () => { tmp = await makeTempDir('langneurons-train-cli-'); });
  afterAll(async () => removeDir(tmp));

  it('--force replaces a model of other options and starts its work folder over, keeping the files train did not write', async () => {
    const out = path.join(tmp, 'forced');
    expect((await train('--steps', '2', '--out', out)).code).toBe(0);
    await fsp.writeFile(path.join(`${out}.work`, 'my-notes.txt'), 'mine\n');
    expect(refusal(await train('--steps', '3', '--out', out))).toContain('with other options; give --force');
    expect(await recipeSteps(out)).toBe(2);
    const r = await train('--steps', '3', '--out', out, '--force');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await recipeSteps(out)).toBe(3);
    expect(JSON.parse(await fsp.readFile(path.join(`${out}.work`, 'plan.json'), 'utf8')).steps).toBe(3);
    expect(await fsp.readFile(path.join(`${out}.work`, 'my-notes.txt'), 'utf8')).toBe('mine\n');
  });

  it('refuses a work folder of other options without --force (no --out yet), naming it', async () => {
    const out = path.join(tmp, 'noforce');
    const work = path.join(tmp, 'noforce-work');
    expect((await train('--steps', '2', '--out', out, '--work', work)).code).toBe(0);
    await fsp.rm(out, { recursive: true });
    expect(refusal(await train('--steps', '3', '--out', out, '--work', work))).toContain(`${work}: holds a run made with other options`);
    expect(existsSync(out)).toBe(false);
  });

  it('a work folder holding train\'s steps without their plan.json is started over only with --force', async () => {
    const out = path.join(tmp, 'no-plan');
    expect((await train('--steps', '2', '--out', out)).code).toBe(0);
    await fsp.rm(out, { recursive: true });
    await fsp.rm(path.join(`${out}.work`, 'plan.json'));
    expect(refusal(await train('--steps', '3', '--out', out))).toContain('but no plan.json');
    expect((await train('--steps', '3', '--out', out, '--force')).code).toBe(0);
    expect(await recipeSteps(out)).toBe(3);
  });

  it('a diverging run stops in one line naming the step and the remedy (the native error came twice, its stack as a bug, saying "step skipped")', async () => {
    const line = refusal(await train('--steps', '3', '--lr', '1e6', '--out', path.join(tmp, 'diverged')));
    expect(line).toMatch(/training diverged at step \d: the gradient is not finite \(norm (NaN|Infinity)\); the last save is intact .*a lower --lr \(1000000\) or --clip/);
  });

  it('refuses --work equal to --out, inside it or holding it, before any work', async () => {
    const out = path.join(tmp, 'apart');
    for (const [o, w] of [[out, out], [out, path.join(out, 'work')], [path.join(out, 'model'), out]] as const) {
      expect(refusal(await train('--steps', '2', '--out', o, '--work', w))).toMatch(/--work .* (is|is inside|holds) --out .*give another --work/);
      expect(existsSync(out)).toBe(false); // nothing made: no lock, no plan, no model
    }
  });

  it('refuses a non-empty --work that is not a train work folder, and leaves it alone', async () => {
    const work = path.join(tmp, 'users-folder');
    await fsp.mkdir(work);
    await fsp.writeFile(path.join(work, 'train.txt'), 'my own training text\n');
    await fsp.writeFile(path.join(work, 'other.txt'), 'x\n');
    expect(refusal(await train('--steps', '2', '--out', path.join(tmp, 'w-out'), '--work', work))).toContain('is not a `langneurons train` work folder');
    expect((await fsp.readdir(work)).sort()).toEqual(['other.txt', 'train.txt']);
    expect(await fsp.readFile(path.join(work, 'train.txt'), 'utf8')).toBe('my own training text\n');
    expect(existsSync(path.join(tmp, 'w-out'))).toBe(false);
  });

  it('never deletes a file of the user\'s in --out: a rerun, with or without --force, is refused before any work', async () => {
    const out = path.join(tmp, 'with-notes');
    expect((await train('--steps', '2', '--out', out)).code).toBe(0);
    await fsp.writeFile(path.join(out, 'notes.txt'), 'notes\n');
    const model = await fsp.readFile(path.join(out, 'model.safetensors'));
    for (const extra of [[], ['--force'], ['--steps', '3', '--force']]) {
      expect(refusal(await train('--steps', '2', '--out', out, ...extra))).toContain('files train did not write (notes.txt)');
      expect(await fsp.readFile(path.join(out, 'notes.txt'), 'utf8')).toBe('notes\n');
      expect((await fsp.readFile(path.join(out, 'model.safetensors'))).equals(model)).toBe(true);
    }
    await fsp.rm(path.join(out, 'notes.txt'));
    expect((await train('--steps', '2', '--out', out)).code).toBe(0); // the model alone: a rerun rewrites it
  });
});

describe('train --config', () => {
  let tmp: string;
  beforeAll(async () => { tmp = await makeTempDir('langneurons-train-config-'); });
  afterAll(async () => removeDir(tmp));

  const BASE = { langs: 'en', tokenizerVocab: 270, layers: 1, hidden: 16, heads: 2, 'kv-heads': 1, ffn: 16, chunk: 16, batch: 1, threads: 1, steps: 2 };

  async function withConfig(text: string, ...flags: string[]) {
    const file = path.join(tmp, 'config.json');
    await fsp.writeFile(file, text);
    const out = path.join(tmp, 'out');
    return { file, out, r: await runCli('train', '--config', file, '--quiet', '--out', out, ...flags) };
  }

  it.each([
    ['null', 'null', /config\.json: --config must hold a JSON object/],
    ['[1, 2]', '[1, 2]', /config\.json: --config must hold a JSON object .* got an array/],
    ['{"langs": ', '{"langs": ', /config\.json: not valid JSON/],
    ['langs: ["en", 5]', JSON.stringify({ ...BASE, langs: ['en', 5] }), /config\.json: "langs" must be UDHR language ids .* got \["en",5\]/],
    ['langs: []', JSON.stringify({ ...BASE, langs: [] }), /config\.json: "langs" must be UDHR language ids/],
    ['langs: "en,zz-none"', JSON.stringify({ ...BASE, langs: 'en,zz-none' }), /config\.json: "langs": unknown UDHR language "zz-none"/],
    ['tokenizerVocab: "300"', JSON.stringify({ ...BASE, tokenizerVocab: '300' }), /config\.json: "tokenizerVocab" must be a number, got "300"/],
    ['stepz: 5', JSON.stringify({ ...BASE, stepz: 5 }), /config\.json: unknown key "stepz" \(the options of train/],
    ['quiet: true', JSON.stringify({ ...BASE, quiet: true }), /config\.json: unknown key "quiet"/],
    ['lowResource: { lang: "en", articles: -2 }', JSON.stringify({ ...BASE, lowResource: { lang: 'en', articles: -2 } }), /config\.json: "lowResource" must be a language and at least 1 train article/],
    ['"low-resource": "en"', JSON.stringify({ ...BASE, 'low-resource': 'en' }), /config\.json: "low-resource" must be "<lang>:<train articles>"/],
    ['layers: 0', JSON.stringify({ ...BASE, layers: 0 }), /config\.json: "layers" must be an integer >= 1, got 0/],
    ['kvHeads: 1', JSON.stringify({ ...BASE, kvHeads: 1 }), /config\.json: "kv-heads" and "kvHeads" both give --kv-heads/],
    ['heldout: [1.5]', JSON.stringify({ ...BASE, heldout: [1.5] }), /config\.json: "heldout" must be one or more article numbers/],
    ['heldout: "25,x"', JSON.stringify({ ...BASE, heldout: '25,x' }), /config\.json: "heldout" must be article numbers/],
    ['force: "yes"', JSON.stringify({ ...BASE, force: 'yes' }), /config\.json: "force" must be true or false/],
  ])('refuses %s in one line naming the file and the key, before any work', async (_what, text, message) => {
    const { out, r } = await withConfig(text);
    expect(refusal(r)).toMatch(message);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.work`)).toBe(false);
  });

  it('a flag overrides a config key, and its errors name the flag', async () => {
    const { out, r } = await withConfig(JSON.stringify({ ...BASE, layers: 0 }), '--layers', '-1');
    expect(refusal(r)).toBe('langneurons: error: --layers must be an integer >= 1, got -1');
    expect(existsSync(out)).toBe(false);
  });

  it('takes the flag names the help lists: "heldout", "low-resource", "save-every"', async () => {
    const { out, r } = await withConfig(JSON.stringify({ ...BASE, langs: ['en', 'ru'], heldout: '25,26', 'low-resource': 'ru:3', 'save-every': 1 }));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const recipe = JSON.parse(await fsp.readFile(path.join(out, 'recipe.json'), 'utf8')) as { options: Record<string, unknown> };
    expect(recipe.options['heldoutArticles']).toEqual([25, 26]);
    expect(recipe.options['lowResource']).toEqual({ lang: 'ru', articles: 3 });
  });
});
