// The package's three entry points used by name, as a script uses them (docs/API.md): `langneurons`,
// `langneurons/steer`, `langneurons/eval`. What a script computes through them is what the commands compute: the
// example pipeline's statistics, mask and perplexity matrix against `profile`, `identify` and `steer ppl-matrix`;
// an evaluation through runPlan against `eval`, result file for result file.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readMask } from '../src/identify/masks.js';
import { readStats } from '../src/profile/stats.js';
import { runCli } from './helpers/cli.js';
import { consumerDir as newConsumerDir, expectConsumerTypeChecks } from './helpers/consumer.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const MODEL = path.join(repoRoot, 'models', 'udhr20');
const LANGS = ['en', 'sw', 'zh'];
const temps: string[] = [];
afterAll(async () => { for (const d of temps) await removeDir(d); });

const consumerDir = (prefix: string) => newConsumerDir(prefix, temps);  // removed after the tests

/** Runs `lines` as <consumer dir>/script.mjs with `args` (the package imported by name) and returns its stdout. */
async function runScript(lines: string[], args: string[]): Promise<{ stdout: string }> {
  const dir = await consumerDir('langneurons-script-');
  writeFileSync(path.join(dir, 'script.mjs'), lines.join('\n') + '\n');
  const r = spawnSync(process.execPath, [path.join(dir, 'script.mjs'), ...args], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
  expect(r.status, r.stdout + r.stderr).toBe(0);
  return { stdout: r.stdout };
}

/** name → value of a perplexity matrix's ΔNLL, whatever the order of its rows and columns. */
function deltaByCell(file: string): Record<string, number> {
  const m = JSON.parse(readFileSync(file, 'utf8')) as { rows: string[]; columns: string[]; deltaNll: number[][] };
  return Object.fromEntries(m.rows.flatMap((r, i) => m.columns.map((c, j) => [`${r}→${c}`, m.deltaNll[i]![j]!])));
}

describe('the entry points by name', () => {
  const source = [
    "import { loadModel, resolveIntervention, type LanguageModel } from 'langneurons';",
    "import { computePplMatrix, deactivation, engineMatrixScorer, interventionResolver, loadEvalTexts, openEvalCorpus, type PplMatrix, type SteerRequest } from 'langneurons/steer';",
    "import { inputHashes, modelFingerprint, ModelScorer, prepareTask, runPlan, type EvalResult, type RunOptions } from 'langneurons/eval';",
    "const model: LanguageModel = await loadModel('m');",
    "const texts = await loadEvalTexts(model, await openEvalCorpus('udhr:heldout', ['en']), ['en'], 100);",
    'const score = engineMatrixScorer(model, texts), resolve = interventionResolver(model);',
    'const matrix: PplMatrix = await computePplMatrix<SteerRequest>({ rows: [\'en\'], columns: [\'en\'], intervention: (l) => deactivation(\'m.json\', l),',
    '  score: async (c, r) => score(c, r === null ? null : await resolve(r)) });',
    "const options: RunOptions = { scorer: new ModelScorer(model, { intervene: await resolveIntervention(model, 'deactivate:m.json:en') }), outDir: 'o',",
    "  model: 'm', modelFingerprint: await modelFingerprint('m'), variant: { name: 'x', inputs: await inputHashes(['m.json']) } };",
    "const result: EvalResult = await runPlan(await prepareTask('xcopa', { dir: 'd', lang: 'sw' }), options);",
    'export const checked: [number, string] = [matrix.diagonal.share, result.task];',
  ].join('\n') + '\n';

  it('a strict TypeScript consumer finds all three with moduleResolution nodenext', async () => {
    expectConsumerTypeChecks(await consumerDir('langneurons-subpaths-'), source);
  }, 120_000);

  it('and with the older moduleResolution node (typesVersions)', async () => {
    expectConsumerTypeChecks(await consumerDir('langneurons-subpaths-node10-'), source, { module: 'ES2022', moduleResolution: 'node10' });
  }, 120_000);

  it('every name docs/API.md imports from an entry point is one it exports', async () => {
    const docs = readFileSync(path.join(repoRoot, 'docs', 'API.md'), 'utf8');
    const entries: Record<string, Record<string, unknown>> = {
      langneurons: await import('../src/index.js'), 'langneurons/steer': await import('../src/steer/public.js'), 'langneurons/eval': await import('../src/eval/index.js'),
    };
    const imports = [...docs.matchAll(/import \{([^}]+)\} from '(langneurons[^']*)'/g)];
    expect(imports.length).toBeGreaterThanOrEqual(5);
    const missing: string[] = [];
    for (const [, names, from] of imports) {
      expect(Object.keys(entries), from).toContain(from);
      for (const raw of names!.split(',')) {
        const name = raw.trim().replace(/^type\s+/, '');
        if (name && !/^type\s/.test(raw.trim()) && !(name in entries[from!]!)) missing.push(`${from}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('a script computes what the commands compute', () => {
  let api: string, cli: string;
  beforeAll(async () => {
    api = await makeTempDir('langneurons-api-');
    cli = await makeTempDir('langneurons-api-cli-');
    temps.push(api, cli);
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'examples', 'api-pipeline.mjs'), api, LANGS.join(',')], { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^diagonal: \d of 3 languages/m);
    for (const args of [
      ['profile', MODEL, '--corpus', 'udhr:train', '--langs', LANGS.join(','), '--max-len', '128', '--out', path.join(cli, 'stats')],
      ['identify', path.join(cli, 'stats'), '--method', 'lape', '--top-rate', '0.3', '--out', path.join(cli, 'lape.json')],
      ['steer', 'ppl-matrix', MODEL, '--masks', path.join(cli, 'lape.json'), '--eval-text', 'udhr:heldout', '--max-tokens', '2000', '--out', path.join(cli, 'ppl-matrix.json')],
    ]) {
      const c = await runCli(...args, '--json');
      expect(c.code, c.stderr).toBe(0);
    }
  }, 600_000);

  it('examples/api-pipeline.mjs: the statistics, the LAPE mask and Tang\'s matrix of profile, identify and steer ppl-matrix', async () => {
    for (const lang of LANGS) {
      const [a, b] = [await readStats(path.join(api, 'stats', `${lang}.safetensors`)), await readStats(path.join(cli, 'stats', `${lang}.safetensors`))];
      expect(a.tokens, lang).toBe(b.tokens);
      expect(a.tokens).toBeGreaterThan(1000);
      expect(a.sites, lang).toEqual(b.sites);
    }
    const [ma, mb] = [await readMask(path.join(api, 'lape.json')), await readMask(path.join(cli, 'lape.json'))];
    expect(Object.keys(ma.languages).sort()).toEqual([...LANGS].sort());
    expect(ma.languages).toEqual(mb.languages);
    const [da, db] = [deltaByCell(path.join(api, 'ppl-matrix.json')), deltaByCell(path.join(cli, 'ppl-matrix.json'))];
    expect(Object.keys(da)).toHaveLength(9);
    expect(da).toEqual(db);
    expect(Object.values(da).some((d) => d > 0)).toBe(true);  // a deactivation that changes nothing would pass too
  });

  it('langneurons/steer: Language Steering Shift composed as docs/API.md composes it is steer lss\'s result', async () => {
    const facts = path.join(api, 'facts.jsonl');
    writeFileSync(facts, [
      { template: 'All human beings are born [X] and [Y].', sub_en: 'free', obj_en: 'equal', sub_sw: 'huru', obj_sw: 'sawa', sub_zh: '自由', obj_zh: '平等' },
      { template: '[X] has the right to [Y].', sub_en: 'Everyone', obj_en: 'education', sub_sw: 'Kila mtu', obj_sw: 'elimu', sub_zh: '人人', obj_zh: '教育' },
    ].map((f) => JSON.stringify(f)).join('\n') + '\n');
    const mask = path.join(api, 'lape.json'), settings = 'set:max,add:max';
    const r = await runScript([
      "import { loadModel } from 'langneurons';",
      "import { amplification, computeLss, engineLogLikelihood, interventionResolver, parseSettings, readFacts } from 'langneurons/steer';",
      'const [modelDir, facts, mask, settings] = process.argv.slice(2);',
      'const model = await loadModel(modelDir);',
      'const resolve = interventionResolver(model), ll = engineLogLikelihood(model);',
      'const lss = await computeLss({',
      "  facts: await readFacts(facts), pairs: [{ base: 'en', target: 'sw' }, { base: 'zh', target: 'sw' }], settings: parseSettings(settings),",
      '  amplify: (target, setting) => amplification(mask, target, setting),',
      '  logLikelihood: async (pairs, request) => ll(pairs, request === null ? null : await resolve(request)),',
      '});',
      'model.dispose();',
      'console.log(JSON.stringify(lss));',
    ], [MODEL, facts, mask, settings]);
    const out = path.join(cli, 'lss.json');
    const c = await runCli('steer', 'lss', MODEL, '--masks', mask, '--facts', facts, '--settings', settings, '--base', 'en,zh', '--targets', 'sw', '--out', out, '--json');
    expect(c.code, c.stderr).toBe(0);
    const [a, b] = [JSON.parse(r.stdout) as Record<string, unknown>, JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>];
    expect((a['settings'] as unknown[]).length).toBe(2);
    for (const field of ['settings', 'best']) expect(a[field], field).toEqual(b[field]);
  }, 300_000);

  it('langneurons/eval: runPlan with an intervention writes the result eval writes (file name, key, metrics, items)', async () => {
    const data = path.join(repoRoot, 'test', 'fixtures-eval');
    const spec = `deactivate:${path.join(api, 'lape.json')}:sw`;
    const out = path.join(await makeTempDir('langneurons-eval-out-'), 'results');
    temps.push(path.dirname(out));
    const r = await runScript([
      "import path from 'node:path';",
      "import { loadModel, resolveIntervention } from 'langneurons';",
      "import { datasetDir, inputHashes, modelFingerprint, ModelScorer, prepareTask, runPlan } from 'langneurons/eval';",
      'const [modelDir, data, spec, out] = process.argv.slice(2);',
      'const model = await loadModel(modelDir);',
      "const plan = await prepareTask('xcopa', { dir: datasetDir(data, 'xcopa'), lang: 'sw' });",
      'const result = await runPlan(plan, {',
      '  scorer: new ModelScorer(model, { intervene: await resolveIntervention(model, spec) }),',
      '  outDir: out, model: path.resolve(modelDir), modelFingerprint: await modelFingerprint(modelDir),',
      "  variant: { name: 'sw-off', intervene: spec, inputs: await inputHashes([spec]) },",
      '});',
      'model.dispose();',
      'console.log(JSON.stringify(result.metrics));',
    ], [MODEL, data, spec, out]);
    const c = await runCli('eval', MODEL, '--task', 'xcopa', '--langs', 'sw', '--data', data, '--intervene', spec, '--variant', 'sw-off', '--out', path.join(cli, 'results'), '--json');
    expect(c.code, c.stderr).toBe(0);
    const results = (d: string) => readdirSync(d).filter((n) => n.endsWith('.json')).sort();
    expect(results(out)).toHaveLength(1);
    expect(results(out)).toEqual(results(path.join(cli, 'results')));  // the same name: the same key
    const [a, b] = [out, path.join(cli, 'results')].map((d) => JSON.parse(readFileSync(path.join(d, results(d)[0]!), 'utf8')) as Record<string, unknown>);
    for (const field of ['key', 'metrics', 'variant', 'items', 'modelFingerprint']) expect(a![field], field).toEqual(b![field]);
    expect(JSON.parse(r.stdout)).toEqual(b!['metrics']);
    // items scored on the engine, one by one: the log-likelihoods of every choice
    const itemsOf = (d: string) => readFileSync(path.join(d, results(d)[0]!.replace(/\.json$/, '.items.jsonl')), 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as unknown);
    expect(itemsOf(out)).toEqual(itemsOf(path.join(cli, 'results')));
  }, 300_000);
});
