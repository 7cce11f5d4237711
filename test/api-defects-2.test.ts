// The entry points `langneurons`, `langneurons/steer` and `langneurons/eval` used as a researcher's scripts use them
// (second QA pass of the API), each against the command doing the same thing:
// - prepareTask's `limit` was taken as given: -1 dropped the last item without a word (slice(0, -1)), 1.5 kept one,
//   0 none, each recorded as the result's limit; eval --limit refuses them;
// - runPlan on a generative plan whose new tokens fill the model's context failed on its first item (an E_INPUT
//   naming item '0') and left an item checkpoint of a result that can never be made; eval refuses it up front;
// - interventionResolver printed what resolves but departs from a method's definition (p_max of window means) on
//   stderr, with no way for a script to take it; resolveIntervention has onWarning (default: nothing);
// - `results table`'s rows (defaultBy: the keys that tell apart results that would share a row) were not exported and
//   buildTable needed its `by`: a script's table of results with two --max-gen-toks had two identical rows;
// - statistics read without their per-sequence means (readStats(f, { seqMeans: false }), as identify reads them)
//   kept the file's name as given: ap / raw-activated opened it relative to the folder current when they ran;
// - Kojima's joint ranking over several sites (identify --method ap --sites) was not exported
//   (identifyAveragePrecisionJoint), nor steer forcing's check of prompt lengths by file and line
//   (checkPromptLengths): the engine's generator names "prompt 1" of the call, an index into a group of prompts;
// - eval --chat-template could not be done from a script: ModelScorerOptions.chat needs a ChatPrompting, which no
//   entry point made (loadChatTemplate, lmEvalChatContext), nor named;
// - docs/API.md's "other measures" ran p_max on the pipeline's statistics, which have no per-sequence means (it threw),
//   and its forcing deactivated prompt languages the mask lacks (steer forcing leaves them: the script threw after
//   the generations without intervention);
// - types the entry points' functions take that a strict consumer could not name (StatsParts, QuantileVariant,
//   PercentileSource, Dtype, BleuTokenizer, SquadOptions, TableKey, FingerprintOptions, ...).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as root from '../src/index.js';
import * as evalApi from '../src/eval/index.js';
import * as steerApi from '../src/steer/public.js';
import { refusedCli, runCli } from './helpers/cli.js';
import { consumerDir as newConsumerDir, errorOf, expectConsumerTypeChecks } from './helpers/consumer.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const MODEL = path.join(repoRoot, 'models', 'udhr20');
const DATA = path.join(repoRoot, 'test', 'fixtures-eval');
const temps: string[] = [];
afterAll(async () => { for (const d of temps) await removeDir(d); });

const consumerDir = (prefix: string) => newConsumerDir(prefix, temps);  // removed after the tests

/** Runs `source` as <dir>/<name> (the package imported by name) in `dir`: its exit status, stdout and stderr. */
function runScript(dir: string, name: string, source: string, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  writeFileSync(path.join(dir, name), source);
  const r = spawnSync(process.execPath, [path.join(dir, name), ...args], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The CLI as a separate process in `cwd` (paths named relative to it, as a user in that folder names them). */
function cliIn(cwd: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'langneurons.js'), ...args], { cwd, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const jsonFiles = (d: string) => readdirSync(d).filter((n) => n.endsWith('.json')).sort();

// One consumer folder laid out as docs/API.md's scripts expect: statistics (with per-sequence means of windows, at three
// sites), a LAPE mask, facts, prompts, the evaluation data, and a copy of the model with a chat template.
let work: string;
beforeAll(async () => {
  work = await consumerDir('langneurons-api2-');
  const p = cliIn(work, 'profile', MODEL, '--corpus', 'udhr:train', '--langs', 'en,de,sw', '--max-len', '128', '--sites', 'act,q,down', '--seq-means', '--out', 'stats', '--json');
  expect(p.status, p.stderr).toBe(0);
  const i = cliIn(work, 'identify', 'stats', '--method', 'lape', '--top-rate', '0.3', '--out', 'lape.json', '--json');
  expect(i.status, i.stderr).toBe(0);
  mkdirSync(path.join(work, 'facts'));
  writeFileSync(path.join(work, 'facts', 'facts.jsonl'), [
    { template: 'All human beings are born [X] and [Y].', sub_en: 'free', obj_en: 'equal', sub_sw: 'huru', obj_sw: 'sawa' },
    { template: '[X] has the right to [Y].', sub_en: 'Everyone', obj_en: 'education', sub_sw: 'Kila mtu', obj_sw: 'elimu' },
  ].map((f) => JSON.stringify(f)).join('\n') + '\n');
  mkdirSync(path.join(work, 'prompts'));
  writeFileSync(path.join(work, 'prompts', 'en.txt'), 'All human beings are born\nEveryone has the right to\n');
  writeFileSync(path.join(work, 'prompts', 'de.txt'), 'Alle Menschen sind frei\n');
  writeFileSync(path.join(work, 'prompts', 'it.txt'), 'Tutti gli esseri umani\n');  // a language the mask has no neurons for
  symlinkSync(DATA, path.join(work, 'data'), 'dir');
  mkdirSync(path.join(work, 'models'));
  cpSync(MODEL, path.join(work, 'models', 'udhr20'), { recursive: true });
  cpSync(MODEL, path.join(work, 'models', 'my-instruct'), { recursive: true });
  writeFileSync(path.join(work, 'models', 'my-instruct', 'chat_template.jinja'),
    '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}');
}, 300_000);

describe('langneurons/eval', () => {
  it('prepareTask refuses a limit that is not an integer >= 1, as eval --limit does (-1 dropped the last item)', async () => {
    const dir = evalApi.datasetDir(DATA, 'xcopa');
    expect((await evalApi.prepareTask('xcopa', { dir, lang: 'sw' })).items).toHaveLength(3);
    expect((await evalApi.prepareTask('xcopa', { dir, lang: 'sw', limit: 2 })).items).toHaveLength(2);
    for (const limit of [-1, 0, 1.5, Number.NaN]) {
      const e = await errorOf(() => evalApi.prepareTask('xcopa', { dir, lang: 'sw', limit }));
      expect(e, String(limit)).toBeInstanceOf(root.LangneuronsError);
      expect(e).toMatchObject({ code: 'E_OPTIONS', field: 'limit' });
      expect((e as Error).message).toBe(`--limit must be an integer >= 1, got ${limit}`);
    }
    expect(await refusedCli('eval', MODEL, '--task', 'xcopa', '--langs', 'sw', '--data', DATA, '--limit', '0', '--out', path.join(work, 'never'))).toMatch(/--limit/);
  });

  it('runPlan refuses new tokens that fill the context before writing anything, as eval does', async () => {
    const model = await root.loadModel(MODEL, { threads: 2 });
    try {
      const plan = await evalApi.prepareTask('flores', { dir: evalApi.datasetDir(DATA, 'flores'), lang: 'eng_Latn-mlt_Latn' });
      expect(plan.gen!.maxNewTokens).toBe(128);  // the gurgurov prompt's limit: udhr20's whole context
      const out = path.join(await makeTempDir('langneurons-api2-gen-'), 'results');
      temps.push(path.dirname(out));
      const e = await errorOf(() => evalApi.runPlan(plan, {
        scorer: new evalApi.ModelScorer(model), outDir: out, model: MODEL, modelFingerprint: 'x', variant: { name: 'base' },
      }));
      expect(e).toMatchObject({ code: 'E_OPTIONS', field: 'max-gen-toks' });
      expect((e as Error).message).toBe("flores eng_Latn-mlt_Latn --prompt gurgurov: 128 new tokens leave no room for a prompt in the model's context of 128: " +
        'prepare the task with maxGenToks 127 or less (eval --max-gen-toks)');
      expect(readdirSync(path.dirname(out))).toEqual([]);  // no results folder, no orphan item checkpoint
      const cli = await refusedCli('eval', MODEL, '--task', 'flores', '--pairs', 'eng_Latn-mlt_Latn', '--data', DATA, '--out', out);
      expect(cli).toMatch(/128 new tokens .*leave no room for a prompt in the model's context of 128: give --max-gen-toks 127 or less/);
    } finally {
      model.dispose();
    }
  });

  it("buildTable(readResults(dir)) is results table's table, with its default rows (defaultBy)", async () => {
    const model = await root.loadModel(MODEL, { threads: 2 });
    const out = path.join(await makeTempDir('langneurons-api2-table-'), 'results');
    temps.push(path.dirname(out));
    try {
      // Two results that differ only by their generation limit: task, lang and variant alone would give two rows alike.
      for (const maxGenToks of [8, 16]) {
        const plan = await evalApi.prepareTask('xquad', { dir: evalApi.datasetDir(DATA, 'xquad'), lang: 'sw', maxGenToks });
        await evalApi.runPlan(plan, { scorer: new evalApi.ModelScorer(model), outDir: out, model: MODEL, modelFingerprint: await evalApi.modelFingerprint(MODEL), variant: { name: 'base' } });
      }
    } finally {
      model.dispose();
    }
    const results = await evalApi.readResults(out);
    expect(results).toHaveLength(2);
    expect(evalApi.defaultBy(results)).toEqual(['task', 'lang', 'variant', 'max-gen-toks']);
    const table = evalApi.buildTable(results);
    expect(table.rows.map((r) => r.slice(0, 4))).toEqual([['xquad', 'sw', 'base', '16'], ['xquad', 'sw', 'base', '8']]);
    for (const [format, print] of [['text', evalApi.tableText], ['csv', evalApi.tableCsv]] as const) {
      const c = await runCli('results', 'table', out, '--format', format);
      expect(c.code, c.stderr).toBe(0);
      expect(print(table), format).toBe(c.stdout);
    }
    expect(evalApi.TABLE_KEYS).toContain('max-gen-toks');
  });

  it('eval --chat-template from a script (loadChatTemplate, lmEvalChatContext): the result eval writes', async () => {
    const spec = path.join('models', 'my-instruct');
    const r = runScript(work, 'chat.mjs', [
      "import path from 'node:path';",
      "import { loadModel } from 'langneurons';",
      "import { datasetDir, lmEvalChatContext, loadChatTemplate, modelFingerprint, ModelScorer, prepareTask, runPlan } from 'langneurons/eval';",
      'const [dir] = process.argv.slice(2);',
      'const model = await loadModel(dir);',
      'const template = await loadChatTemplate(dir);',
      'const chat = { template };',
      "for (const task of ['xcopa', 'xquad']) {",
      "  const plan = await prepareTask(task, { dir: datasetDir('data', task), lang: 'sw', maxGenToks: task === 'xquad' ? 12 : undefined,",
      '    chatContext: (description, question) => lmEvalChatContext(chat, description, question) });',
      "  await runPlan(plan, { scorer: new ModelScorer(model, { chat }), outDir: 'results-api', model: path.resolve(dir), modelFingerprint: await modelFingerprint(dir),",
      "    variant: { name: 'base-chat', chatTemplate: template.source } });",
      '}',
      'model.dispose();',
    ].join('\n') + '\n', [spec]);
    expect(r.status, r.stderr).toBe(0);
    for (const [task, extra] of [['xcopa', []], ['xquad', ['--max-gen-toks', '12']]] as const) {
      const c = cliIn(work, 'eval', spec, '--task', task, '--langs', 'sw', '--data', 'data', '--chat-template', '--out', 'results-cli', ...extra, '--json');
      expect(c.status, c.stderr).toBe(0);
    }
    const [api, cli] = ['results-api', 'results-cli'].map((d) => path.join(work, d));
    expect(jsonFiles(api)).toHaveLength(2);
    expect(jsonFiles(api)).toEqual(jsonFiles(cli!));  // the same names: the same keys
    for (const name of jsonFiles(api!)) {
      const [a, b] = [api, cli].map((d) => JSON.parse(readFileSync(path.join(d!, name), 'utf8')) as Record<string, unknown>);
      for (const field of ['key', 'variant', 'template', 'metrics', 'generation']) expect(a![field], `${name} ${field}`).toEqual(b![field]);
      expect(readFileSync(path.join(api!, name.replace(/\.json$/, '.items.jsonl')), 'utf8')).toBe(readFileSync(path.join(cli!, name.replace(/\.json$/, '.items.jsonl')), 'utf8'));
    }
    expect(JSON.parse(readFileSync(path.join(api!, jsonFiles(api!)[0]!), 'utf8')).template).toMatch(/through the chat template/);
  }, 300_000);
});

describe('langneurons/steer', () => {
  it("interventionResolver's warnings go to its onWarning, not to the script's stderr; steer lss still prints them", async () => {
    const r = runScript(work, 'warn.mjs', [
      "import { loadModel } from 'langneurons';",
      "import { amplification, interventionResolver, parseSetting } from 'langneurons/steer';",
      'const model = await loadModel(process.argv[2]);',
      'const warnings = [];',
      "await interventionResolver(model, { onWarning: (m) => warnings.push(m) })(amplification('lape.json', 'sw', parseSetting('p_max'), 'stats'));",
      "await interventionResolver(model)(amplification('lape.json', 'en', parseSetting('p_median'), 'stats'));",  // no onWarning: dropped, as resolveIntervention drops it
      'model.dispose();',
      'console.log(JSON.stringify(warnings));',
    ].join('\n') + '\n', [MODEL]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(['stats/sw.safetensors: p_max is defined over sentences (Rahmanisa et al.), but these sequence means are of windows of 128 tokens; ' +
      "profile with --scope sentences --seq-means for the paper's values"]);
    const c = cliIn(work, 'steer', 'lss', MODEL, '--masks', 'lape.json', '--facts', 'facts', '--settings', 'p_max', '--stats', 'stats', '--base', 'en', '--targets', 'sw', '--out', 'lss.json', '--json');
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/^warning: stats\/sw\.safetensors: p_max is defined over sentences/m);
  }, 120_000);

  it("checkPromptLengths names a prompt too long for the context by file and line, as steer fallback's refusal does", async () => {
    const dir = path.join(work, 'long-prompts');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'en.txt'), 'Everyone has\n');
    writeFileSync(path.join(dir, 'sw.txt'), 'Kila mtu\n' + 'Kila mtu ana haki '.repeat(40) + '\n');
    const prompts = await steerApi.readPrompts(dir);
    const model = await root.loadModel(MODEL, { threads: 2 });
    let e: unknown;
    try {
      e = await errorOf(() => steerApi.checkPromptLengths(model, prompts));
    } finally {
      model.dispose();
    }
    expect(e).toBeInstanceOf(root.LangneuronsError);
    expect(e).toMatchObject({ code: 'E_PROMPTS', file: path.join(dir, 'sw.txt') });
    const cli = await refusedCli('steer', 'fallback', MODEL, '--masks', path.join(work, 'lape.json'), '--prompts', dir, '--deactivate', 'en', '--langid', 'eld', '--out', path.join(work, 'fb.json'));
    expect(cli).toBe(`langneurons: error: ${(e as Error).message}`);
    expect((e as Error).message).toMatch(/sw\.txt:2: the prompt has \d+ tokens, longer than the model's context of 128$/);
  });
});

describe('langneurons: identification from statistics read without their means', () => {
  /** Runs a script that reads the statistics of `work`/stats by a relative name (whole, or without their means), changes
   *  folder, and writes the masks `lines` compute (from `inputs`) into <work>/<out>; returns that folder. */
  function identifyScript(name: string, seqMeans: boolean, lines: string[]): string {
    const out = path.join(work, name);
    const r = runScript(work, `${name}.mjs`, [
      "import { mkdirSync, readdirSync } from 'node:fs';",
      "import { identifyAveragePrecision, identifyAveragePrecisionJoint, identifyRawActivated, readStats, writeMask } from 'langneurons';",
      `const out = ${JSON.stringify(out)};`,
      'mkdirSync(out);',
      "const files = readdirSync('stats').filter((n) => n.endsWith('.safetensors')).sort().map((n) => `stats/${n}`);",
      `const inputs = await Promise.all(files.map(async (file) => ({ file, stats: await readStats(file, { seqMeans: ${seqMeans} }) })));`,
      "process.chdir('/');",
      ...lines,
    ].join('\n') + '\n');
    expect(r.status, r.stderr).toBe(0);
    return out;
  }

  function identifyCli(...args: string[][]): string {
    for (const a of args) {
      const c = cliIn(work, 'identify', 'stats', ...a, '--json');
      expect(c.status, c.stderr).toBe(0);
    }
    return path.join(work, 'cli-masks');
  }

  const expectSameMasks = (api: string, cli: string, names: string[]) => {
    expect(readdirSync(api).sort()).toEqual(names);
    for (const name of names) expect(readFileSync(path.join(api, name), 'utf8'), name).toBe(readFileSync(path.join(cli, name), 'utf8'));
  };

  it('ap and raw-activated of statistics read by a relative name without their means are identify\'s masks after the script changed folder', () => {
    const cli = identifyCli(['--method', 'ap', '--n', '40', '--out', 'cli-masks/ap.json'], ['--method', 'raw-activated', '--out', 'cli-masks/raw.json']);
    for (const seqMeans of [true, false]) {
      const api = identifyScript(`api-masks-${seqMeans ? 'whole' : 'streamed'}`, seqMeans, [
        'await writeMask(`${out}/ap.json`, identifyAveragePrecision(inputs, { n: 40 }));',
        'await writeMask(`${out}/raw.json`, identifyRawActivated(inputs));',
      ]);
      expectSameMasks(api, cli, ['ap.json', 'raw.json']);
    }
  }, 300_000);

  it("identifyAveragePrecisionJoint: Kojima's ranking over several sites, identify --method ap --sites's masks", () => {
    const cli = identifyCli(['--method', 'ap', '--n', '40', '--sites', 'act,q,down', '--out', 'cli-masks/joint.json']);
    const api = identifyScript('api-masks-joint', false, [
      "for (const [site, mask] of identifyAveragePrecisionJoint(inputs, ['act', 'q', 'down'], { n: 40 })) await writeMask(`${out}/joint.${site}.json`, mask);",
    ]);
    expectSameMasks(api, cli, ['joint.act.json', 'joint.down.json', 'joint.q.json']);
    // (one ranking over the three sites, not three rankings: they share each language's 20 top and 20 bottom units)
    const units = (s: string) => Object.values((JSON.parse(readFileSync(path.join(api, `joint.${s}.json`), 'utf8')) as { languages: Record<string, number[][]> }).languages['sw']!)
      .reduce((a, l) => a + l.length, 0);
    expect(units('act') + units('q') + units('down')).toBe(40);
  }, 300_000);
});

describe('docs/API.md', () => {
  /** The ```ts blocks of docs/API.md, as JavaScript (types stripped), imports first, after loading the model. */
  function docsScript(blocks: number[], tail: string): string {
    const md = readFileSync(path.join(repoRoot, 'docs', 'API.md'), 'utf8');
    const all = [...md.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const imports: string[] = [], bodies: string[] = [];
    for (const b of blocks) {
      const code = all[b]!;
      const own = code.match(/^import[\s\S]*?from '[^']+';$/gm) ?? [];
      imports.push(...own);
      bodies.push(own.reduce((c, i) => c.replace(i, ''), code));
    }
    const source = [...imports, "import { loadModel as loadModelForTheDocs } from 'langneurons';", "const model = await loadModelForTheDocs('models/udhr20');",
      ...bodies, tail, 'model.dispose();'].join('\n');
    return ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
  }

  it('"The other measures" runs on the pipeline\'s statistics and mask, and its forcing is steer forcing\'s', async () => {
    const r = runScript(work, 'measures.mjs', docsScript([1], 'console.log(JSON.stringify({ lss, forcing, warnings }));'));
    expect(r.status, r.stderr).toBe(0);
    const { lss, forcing } = JSON.parse(r.stdout) as { lss: { settings: unknown[] }; forcing: Record<string, unknown> };
    expect(lss.settings).toHaveLength(3);
    const c = cliIn(work, 'steer', 'forcing', MODEL, '--masks', 'lape.json', '--prompts', 'prompts', '--target', 'sw', '--amplify', 'mean', '--stats', 'stats', '--out', 'forcing.json', '--json');
    expect(c.status, c.stderr).toBe(0);
    const cli = JSON.parse(readFileSync(path.join(work, 'forcing.json'), 'utf8')) as Record<string, unknown>;
    expect(cli['sourcesNotInMask']).toEqual(['it']);
    for (const field of ['identifier', 'targets', 'meanRate']) expect(forcing[field], field).toEqual(cli[field]);
  }, 300_000);

  it('"Evaluation" with its chat template runs, and writes the results eval writes', async () => {
    const r = runScript(work, 'evaluation.mjs', docsScript([2, 3], 'console.log(JSON.stringify(result.metrics));'));
    expect(r.status, r.stderr).toBe(0);
    const written = jsonFiles(path.join(work, 'results'));
    expect(written.map((n) => n.replace(/__[0-9a-f]{12}\.json$/, ''))).toEqual(['xcopa__sw__base-chat__lm-eval', 'xcopa__sw__sw-off__lm-eval']);
    for (const args of [['models/udhr20', '--intervene', 'deactivate:lape.json:sw', '--variant', 'sw-off'], ['models/my-instruct', '--chat-template']]) {
      const c = cliIn(work, 'eval', args[0]!, '--task', 'xcopa', '--langs', 'sw', '--data', 'data', ...args.slice(1), '--out', 'results-docs-cli', '--json');
      expect(c.status, c.stderr).toBe(0);
    }
    expect(jsonFiles(path.join(work, 'results-docs-cli'))).toEqual(written);
  }, 300_000);
});

describe('declarations', () => {
  it('a strict consumer names the types the entry points\' functions take', async () => {
    expectConsumerTypeChecks(await consumerDir('langneurons-api2-types-'), `
import { readStats, identifyLape, identifyActProb, identifyAveragePrecisionJoint, writeSafetensors, loadModel,
  type StatsParts, type SeqMeansLocation, type QuantileVariant, type PercentileSource, type SequenceMeansOptions, type SequenceMeansBlock,
  type Dtype, type EncodeOptions, type DecodeOptions } from 'langneurons';
import { checkPromptLengths, interventionResolver } from 'langneurons/steer';
import { buildTable, defaultBy, loadChatTemplate, lmEvalChatContext, modelFingerprint, squadScores, corpusBleu, readRows, TABLE_KEYS,
  type BleuTokenizer, type BleuSmoothing, type SquadOptions, type Row, type FingerprintOptions, type TableKey, type ChatPrompting,
  type ChatTemplate, type ChatMessage } from 'langneurons/eval';

const parts: StatsParts = { seqMeans: false };
const quantile: QuantileVariant = 'interpolated';
const percentileOf: PercentileSource = 'pooled-histogram';
const streaming: SequenceMeansOptions = { seqMeansBudget: 2 ** 20, onBlock: (b: SequenceMeansBlock) => { void b.start; } };
const dtype: Dtype = 'BF16';
const tokenize: BleuTokenizer = 'intl';
const smooth: BleuSmoothing = 'floor';
const squad: SquadOptions = {};
const fp: FingerprintOptions = { full: true };
const by: TableKey[] = [...TABLE_KEYS.slice(0, 3)];
const messages: ChatMessage[] = [{ role: 'user', content: 'x' }];
export const calls = [
  async () => identifyLape([{ file: 'f', stats: await readStats('f', parts) }], { quantile }),
  async () => identifyActProb([], 'act-prob-90p', { percentileOf }),
  () => identifyAveragePrecisionJoint([], ['q', 'k'], streaming),
  () => writeSafetensors('x', { t: { dtype, shape: [1], data: new Float32Array(1) } }),
  () => corpusBleu(['a'], [['a']], { tokenize, smooth }), () => squadScores('a', ['a'], squad), () => modelFingerprint('m', fp),
  async (rows: Row[]) => { rows.push(...await readRows('x.jsonl')); return buildTable([], by ?? defaultBy([])); },
  async () => {
    const template: ChatTemplate | null = await loadChatTemplate('m');
    const chat: ChatPrompting = { template: template!, system: 's' };
    const model = await loadModel('m');
    const resolve = interventionResolver(model, { onWarning: (m: string) => { void m; } });
    checkPromptLengths(model, [{ text: 't', file: 'f', line: 1 }]);
    return [lmEvalChatContext(chat, 'd', 'q'), template!.render(messages), resolve, model.requireTokenizer().encode('x', {} as EncodeOptions), {} as DecodeOptions];
  },
];
export type Location = SeqMeansLocation['path'];
`);
  }, 120_000);
});
