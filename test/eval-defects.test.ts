// Evaluation defects found by QA, each on hand-made inputs: 1-based answer columns (Belebele, XWinograd), repeated
// item ids, a torn last line in the item checkpoint, an invalid XCOPA `question`, variant names of an
// --intervene-file with {lang}, `results table` on a missing or result-less folder (and its default row keys),
// `results pivot --metric` naming a metric no result has.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pivotResults, readResultsRecursive } from '../src/analyze/pivot.js';
import { loadModel } from '../src/engine/model.js';
import { defaultBy, readResults } from '../src/eval/results.js';
import { runPlan } from '../src/eval/run.js';
import type { GenOptions, Pair, Scorer } from '../src/eval/scorer.js';
import { prepareTask, type PlanItem, type TaskPlan } from '../src/eval/tasks.js';
import { MASK_FORMAT, writeMaskJson } from '../src/identify/masks.js';
import { modelIdentity } from '../src/profile/identity.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

class FakeScorer implements Scorer {
  pairs: Pair[] = [];
  prompts: string[] = [];
  constructor(private gen: (p: string) => string = () => '') {}
  async logLikelihood(pairs: Pair[]) { this.pairs.push(...pairs); return pairs.map((p) => ({ logprob: -Array.from(p.continuation).length, tokens: 1 })); }
  async generate(prompts: string[], _o: GenOptions) { this.prompts.push(...prompts); return prompts.map(this.gen); }
  async nll(texts: string[]) { return texts.map((t) => ({ totalNll: t.length, tokens: 1 })); }
}

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-eval-defects-'); });
afterAll(async () => { await removeDir(tmp); });

/** Writes rows as JSON Lines at `<tmp>/<rel>` and returns the dataset folder `<tmp>/<root>`. */
async function dataset(root: string, rel: string, rows: unknown[]): Promise<string> {
  const file = path.join(tmp, root, rel);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return path.join(tmp, root);
}

const golds = (items: PlanItem[]) => items.map((it) => (it as { gold?: number }).gold);

describe('answer columns that count from 1 (Belebele correct_answer_num, XWinograd answer)', () => {
  const belebeleRow = (ans: unknown, n: number) => ({ link: 'l', question_number: n, flores_passage: 'P.', question: 'Q?',
    mc_answer1: 'a1', mc_answer2: 'a2', mc_answer3: 'a3', mc_answer4: 'a4', correct_answer_num: ans });

  it('Belebele: "1".."4", 1..4 and A..D each name their choice, in every prompt format', async () => {
    const answers = ['1', '2', '4', 3, 1, 'A', 'B', 'D'];
    const dir = await dataset('bb-ok', 'data/swh_Latn.jsonl', answers.map(belebeleRow));
    const want = [0, 1, 3, 2, 0, 0, 1, 3];
    for (const prompt of ['lm-eval', 'loglik', 'generate']) {
      const plan = await prepareTask('belebele', { dir, lang: 'swh_Latn', prompt });
      expect(golds(plan.items), prompt).toEqual(want);
    }
    const gen = await prepareTask('belebele', { dir, lang: 'swh_Latn', prompt: 'generate' });
    expect(gen.items.map((it) => (it as { refs: string[] }).refs[0])).toEqual(['A', 'B', 'D', 'C', 'A', 'A', 'B', 'D']);
  });

  it('Belebele: an answer outside 1..4 / A..D is refused naming the file and row', async () => {
    for (const [bad, shown] of [['0', '"0"'], ['5', '"5"'], ['E', '"E"'], [0, '0'], [5, '5'], ['b', '"b"']] as const) {
      const dir = await dataset(`bb-bad-${String(bad)}-${typeof bad}`, 'data/swh_Latn.jsonl', [belebeleRow('1', 1), belebeleRow(bad, 2)]);
      await expect(prepareTask('belebele', { dir, lang: 'swh_Latn', prompt: 'lm-eval' }), String(bad))
        .rejects.toThrow(`swh_Latn.jsonl: row 1: column "correct_answer_num" is ${shown}, expected 1..4 or a letter A..D`);
    }
  });

  it('XWinograd: "1"/"2", 1/2 and A/B name their option; 0, 3 and C are refused naming the file and row', async () => {
    const row = (answer: unknown) => ({ sentence: 'The cup fell because _ was heavy.', option1: 'the cup', option2: 'the table', answer });
    const dir = await dataset('xw-ok', 'data/en/test.jsonl', ['1', '2', 1, 2, 'A', 'B'].map(row));
    expect(golds((await prepareTask('xwinograd', { dir, lang: 'en' })).items)).toEqual([0, 1, 0, 1, 0, 1]);
    for (const bad of ['0', '3', 'C', 3]) {
      const d = await dataset(`xw-bad-${String(bad)}-${typeof bad}`, 'data/en/test.jsonl', [row('1'), row(bad)]);
      await expect(prepareTask('xwinograd', { dir: d, lang: 'en' }), String(bad))
        .rejects.toThrow(`test.jsonl: row 1: column "answer" is ${JSON.stringify(bad)}, expected 1..2 or a letter A..B`);
    }
  });

  it('0-based columns are unchanged: MMLU answer 0..3 or A..D, and 4 is refused', async () => {
    const row = (answer: unknown) => ({ question: 'Q?', choices: ['a', 'b', 'c', 'd'], answer });
    const dir = await dataset('mmlu-ok', 'en/test.jsonl', [0, 3, '2', 'B'].map(row));
    expect(golds((await prepareTask('mmlu', { dir, lang: 'en', prompt: 'loglik' })).items)).toEqual([0, 3, 2, 1]);
    const bad = await dataset('mmlu-bad', 'en/test.jsonl', [row(4)]);
    await expect(prepareTask('mmlu', { dir: bad, lang: 'en' })).rejects.toThrow('test.jsonl: row 0: column "answer" is 4, expected 0..3 or a letter A..D');
  });
});

describe('item ids', () => {
  const xquadRow = (id: string, answer: string) => ({ id, context: `${answer} is here.`, question: 'What?', answers: { text: [answer], answer_start: [0] } });

  it('XQuAD: a repeated id is refused naming the file and both rows (not merged into one item)', async () => {
    const dir = await dataset('xq-dup', 'xquad.sw/validation.jsonl', [xquadRow('q1', 'Nairobi'), xquadRow('q2', 'Dodoma'), xquadRow('q1', 'Mombasa')]);
    await expect(prepareTask('xquad', { dir, lang: 'sw' }))
      .rejects.toThrow(/xquad\.sw\/validation\.jsonl: row 2: XQuAD id "q1" is also the id of row 0; item ids must be unique/);
    // --limit before the repeat: nothing repeated is read
    expect((await prepareTask('xquad', { dir, lang: 'sw', limit: 2 })).items.map((it) => it.id)).toEqual(['q1', 'q2']);
  });

  it('XCOPA: a repeated idx is refused naming the file and both rows', async () => {
    const row = (idx: number) => ({ premise: 'It rained.', choice1: 'A.', choice2: 'B.', question: 'effect', label: 0, idx });
    const dir = await dataset('xc-dup', 'sw/test.jsonl', [row(1), row(2), row(3), row(2)]);
    await expect(prepareTask('xcopa', { dir, lang: 'sw' })).rejects.toThrow(/sw\/test\.jsonl: row 3: XCOPA id "2" is also the id of row 1;/);
  });

  it('runPlan refuses a plan with two items of one id instead of scoring the second twice', async () => {
    const gen = (id: string, ref: string): PlanItem => ({ kind: 'gen', id, prompt: `say ${ref}`, refs: [ref] });
    const plan: TaskPlan = { task: 'xquad', lang: 'sw', prompt: 'generate', files: [path.join(tmp, 'hand.jsonl')], items: [gen('q1', 'a'), gen('q1', 'b')],
      gen: { maxNewTokens: 4, stop: ['\n'], repetitionPenalty: 1 } };
    await fsp.writeFile(plan.files[0]!, '{}\n');
    await expect(runPlan(plan, { scorer: new FakeScorer((p) => p.slice(4)), outDir: path.join(tmp, 'dup-out'), model: 'fake', modelFingerprint: 'fp', variant: { name: 'base' } }))
      .rejects.toThrow(/hand\.jsonl: xquad sw: two items have the id "q1"/);
  });
});

describe('item checkpoint', () => {
  it('a torn last line is cut off before the resumed run appends: every line parses, the result is the uninterrupted one', async () => {
    const rows = Array.from({ length: 5 }, (_, k) => ({ premise: `Thing ${k} happened.`, choice1: `Choice one ${k}.`, choice2: `Two ${k}.`, question: k % 2 ? 'cause' : 'effect', label: k % 2, idx: k }));
    const dir = await dataset('xc-torn', 'sw/test.jsonl', rows);
    const plan = await prepareTask('xcopa', { dir, lang: 'sw' });
    const out = path.join(tmp, 'torn-out');
    const opts = (scorer: Scorer) => ({ scorer, outDir: out, model: 'fake', modelFingerprint: 'fp', variant: { name: 'base' }, batchItems: 2 });
    const whole = await runPlan(plan, opts(new FakeScorer()));
    const names = await fsp.readdir(out);
    const ck = path.join(out, names.find((n) => n.endsWith('.items.jsonl'))!);
    await fsp.rm(path.join(out, names.find((n) => n.endsWith('.json'))!));
    // killed in the middle of the second batch's append: header, items 0 and 1, and half of item 2's line
    const lines = (await fsp.readFile(ck, 'utf8')).split('\n');
    expect(lines).toHaveLength(7); // header, 5 items, '' after the last newline
    await fsp.writeFile(ck, lines.slice(0, 3).join('\n') + '\n' + lines[3]!.slice(0, 20));
    const again = new FakeScorer();
    const resumed = await runPlan(plan, opts(again));
    expect(again.pairs).toHaveLength(3 * 2); // items 2, 3, 4 scored again (two choices each)
    expect(resumed.metrics).toEqual(whole.metrics);
    const after = (await fsp.readFile(ck, 'utf8')).split('\n');
    expect(after.at(-1)).toBe('');
    const parsed = after.slice(1, -1).map((l) => JSON.parse(l) as { id: string });
    expect(parsed.map((r) => r.id)).toEqual(['0', '1', '2', '3', '4']);
  });
});

describe('XCOPA question column', () => {
  it('a question other than "cause" / "effect" is refused when the rows are read, naming the file and row', async () => {
    const row = (question: unknown) => ({ premise: 'It rained.', choice1: 'A.', choice2: 'B.', question, label: 0 });
    const dir = await dataset('xc-q', 'sw/test.jsonl', [row('cause'), row('reason')]);
    await expect(prepareTask('xcopa', { dir, lang: 'sw' }))
      .rejects.toThrow(/xc-q\/sw\/test\.jsonl: row 1: column "question" is "reason", expected "cause" or "effect"/);
    const dir2 = await dataset('xc-q2', 'sw/test.jsonl', [row('Effect')]);
    await expect(prepareTask('xcopa', { dir: dir2, lang: 'sw' })).rejects.toThrow(/xc-q2\/sw\/test\.jsonl: row 0: column "question" is "Effect"/);
  });
});

/** A hand-made result file (the fields `results table` and `results pivot` read). */
const result = (task: string, lang: string, variant: string, prompt: string, metrics: Record<string, number>) => ({
  schema: 'langneurons.eval/2', task, lang, variant: { name: variant }, model: 'm', prompt, items: 4, metrics, key: 'k', created: '2025-01-01',
});

async function putResults(name: string, files: Record<string, unknown>): Promise<string> {
  const dir = path.join(tmp, name);
  for (const [rel, v] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fsp.writeFile(path.join(dir, rel), JSON.stringify(v));
  }
  await fsp.mkdir(dir, { recursive: true });
  return dir;
}

describe('results table', () => {
  it('a missing folder, and a folder without result files, exit 1 naming the folder', async () => {
    const missing = path.join(tmp, 'no-such-results');
    const r1 = await runCli('results', 'table', missing);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toContain(`${missing}: cannot read the results folder`);
    await expect(readResults(missing)).rejects.toThrow(missing);
    const other = await putResults('not-results', { 'sub/fig.json': { format: 'langneurons-figure/1' } });
    const r2 = await runCli('results', 'table', other);
    expect(r2.code).toBe(1);
    expect(r2.stdout).toBe('');
    expect(r2.stderr).toMatch(new RegExp(`${other.replace(/[/\\.]/g, '\\$&')}: no evaluation results`));
    const r3 = await runCli('results', 'pivot', other, '--out', path.join(tmp, 'pv-none'));
    expect(r3.code).toBe(1);
    expect(r3.stderr).toContain(`${other}: no evaluation results`);
  });

  it('the default row keys add the prompt where two results differ only by it', async () => {
    const dir = await putResults('by-prompt', {
      'a.json': result('belebele', 'sw', 'base', 'generate', { acc: 0.25 }),
      'b.json': result('belebele', 'sw', 'base', 'lm-eval', { acc: 0.5 }),
      'c.json': result('xcopa', 'sw', 'base', 'lm-eval', { acc: 0.75 }),
    });
    const rs = await readResults(dir);
    expect(defaultBy(rs)).toEqual(['task', 'lang', 'variant', 'prompt']);
    expect(defaultBy(rs.filter((r) => r.prompt === 'lm-eval'))).toEqual(['task', 'lang', 'variant']);
    const t = await runCli('results', 'table', dir, '--format', 'csv');
    expect(t.code).toBe(0);
    expect(t.stdout.split('\n').slice(0, 3)).toEqual(['task,lang,variant,prompt,items,acc', 'belebele,sw,base,generate,4,0.25', 'belebele,sw,base,lm-eval,4,0.5']);
    const explicit = await runCli('results', 'table', dir, '--by', 'task,lang', '--format', 'csv');
    expect(explicit.stdout.split('\n')[0]).toBe('task,lang,items,acc');
    // --json, as every command takes it: the --format json document
    const j = await runCli('results', 'table', dir, '--json');
    expect(j.code, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual(JSON.parse((await runCli('results', 'table', dir, '--format', 'json')).stdout));
    expect((await runCli('results', 'table', dir, '--json', '--format', 'csv')).code).toBe(1);
  });
});

describe('results pivot --metric', () => {
  it('a metric no result has is refused naming the metrics there are, and nothing is written', async () => {
    const dir = await putResults('pivot-metric', {
      'x/en.json': result('xquad', 'en', 'base', 'generate', { f1: 50, exact_match: 40 }),
      'x/de.json': result('xquad', 'de', 'base', 'generate', { f1: 30, exact_match: 20 }),
      'c/en.json': result('xcopa', 'en', 'base', 'lm-eval', { acc: 0.6 }),
    });
    const recs = await readResultsRecursive(dir);
    const xq = recs.filter((r) => r.keys.task === 'xquad');
    expect(() => pivotResults(xq, { rows: 'lang', cols: 'variant', metric: 'acc' })).toThrow("--metric: no result has 'acc' (they have: exact_match, f1)");
    // a metric only some results have leaves the others' cells empty
    expect(pivotResults(recs, { rows: 'lang', cols: 'task', metric: 'f1' }).values).toEqual([[null, 30], [null, 50]]);
    const out = path.join(tmp, 'pv-typo');
    const r = await runCli('results', 'pivot', dir, '--where', 'task=xquad', '--metric', 'f_1', '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--metric: no result has 'f_1' (they have: exact_match, f1)");
    expect(existsSync(out) ? await fsp.readdir(out) : []).toEqual([]);
  });
});

describe('eval --intervene-file with {lang}', () => {
  it('each intervention language gets its own variant name (file@lang), so results table and pivot tell them apart', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 1 });
    const L = model.config.numLayers, I = model.config.intermediateSize;
    const perLayer = (u: number) => Array.from({ length: L }, (_, l) => (l === 1 ? [u] : []));
    const mask = path.join(tmp, 'iv-mask.json');
    await writeMaskJson(mask, { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: modelIdentity(model.checkpoint),
      sources: [], layers: L, width: I, languages: { en: perLayer(3), sw: perLayer(5) } });
    const ivl = path.join(tmp, 'ivl.json');
    await fsp.writeFile(ivl, JSON.stringify([`deactivate:${mask}:{lang}`]));
    const row = { premise: 'The sun rose.', choice1: 'It was day.', choice2: 'It was night.', question: 'effect', label: 0, idx: 0 };
    const data = await dataset('iv-xcopa', 'en/test.jsonl', [row]);
    await dataset('iv-xcopa', 'sw/test.jsonl', [row]);
    const out = path.join(tmp, 'iv-out');
    const r = await runCli('eval', fixturePath('stories260k'), '--task', 'xcopa', '--langs', 'en,sw', '--data', data, '--intervene-file', ivl,
      '--intervene-langs', 'all', '--threads', '1', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout).results as { lang: string; variant: { name: string; interveneLang: string } }[];
    expect(res.map((x) => [x.lang, x.variant.interveneLang, x.variant.name])).toEqual([
      ['en', 'en', `intervene-file:${ivl}@en`], ['en', 'sw', `intervene-file:${ivl}@sw`],
      ['sw', 'en', `intervene-file:${ivl}@en`], ['sw', 'sw', `intervene-file:${ivl}@sw`]]);
    const p = pivotResults(await readResultsRecursive(out), { rows: 'lang', cols: 'variant' });
    expect(p.cols).toEqual([`intervene-file:${ivl}@en`, `intervene-file:${ivl}@sw`]);
    expect(p.values.flat().every((v) => v !== null)).toBe(true);
  }, 60_000);

  it('{lang} of a dataset code the mask does not name (deu_Latn) takes the mask\'s short code (de)', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 1 });
    const L = model.config.numLayers, I = model.config.intermediateSize;
    const mask = path.join(tmp, 'iv-mask-short.json');
    await writeMaskJson(mask, { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: modelIdentity(model.checkpoint),
      sources: [], layers: L, width: I, languages: { de: Array.from({ length: L }, (_, l) => (l === 1 ? [7] : [])) } });
    const row = { flores_passage: 'Die Sonne geht auf.', question: 'Was?', mc_answer1: 'a', mc_answer2: 'b', mc_answer3: 'c', mc_answer4: 'd',
      correct_answer_num: '2', link: 'x', question_number: 1 };
    const data = await dataset('iv-belebele', 'data/deu_Latn.jsonl', [row]);
    const run = (...extra: string[]) => runCli('eval', fixturePath('stories260k'), '--task', 'belebele', '--langs', 'deu_Latn', '--data', data,
      '--intervene', `deactivate:${mask}:{lang}`, '--threads', '1', '--out', path.join(tmp, 'iv-short-out'), '--json', ...extra);
    const r = await run();
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout).results as { lang: string; variant: { interveneLang: string } }[];
    expect(res.map((x) => [x.lang, x.variant.interveneLang])).toEqual([['deu_Latn', 'de']]);
    // a language the mask has under no name is still refused
    const r2 = await runCli('eval', fixturePath('stories260k'), '--task', 'belebele', '--langs', 'deu_Latn', '--data', data,
      '--intervene', `deactivate:${mask}:{lang}`, '--intervene-langs', 'fr', '--threads', '1', '--out', path.join(tmp, 'iv-short-out2'));
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/unknown language "fr"|"fr"/);
  }, 60_000);
});
