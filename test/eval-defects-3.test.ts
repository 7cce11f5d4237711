// Evaluation defects found by QA (third round): `results table` and `results pivot` tell apart results that differ
// only in a setting (--limit, the BLEU tokenizer, the model...) and show one language under one name; a metric a
// result lacks is null in JSON; a language given twice, or two names of one language's data, are refused; a
// generation limit that fills the model's context is refused before anything is written; XQuAD rows without an
// answer and empty choices are refused naming the file.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pivotResults, readResultsRecursive } from '../src/analyze/pivot.js';
import { buildTable, defaultBy, readResults } from '../src/eval/results.js';
import { prepareTask } from '../src/eval/tasks.js';
import { runCli } from './helpers/cli.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const UDHR = path.join(repoRoot, 'models', 'udhr20'); // context 128
const FX = path.join(repoRoot, 'test', 'fixtures-eval');
let tmp: string;

beforeAll(async () => { tmp = await makeTempDir('ln-eval-defects3-'); });
afterAll(async () => { await removeDir(tmp); });

/** A result file as `eval` writes it (the fields the keys are read from). */
const result = (o: { task?: string; lang?: string; model?: string; limit?: number | null; tok?: string; maxNew?: number; mode?: string; metrics?: Record<string, number> }) => ({
  schema: 'langneurons.eval/2', task: o.task ?? 'xcopa', lang: o.lang ?? 'sw', variant: { name: 'base' }, model: o.model ?? '/m/a', prompt: 'lm-eval',
  split: 'test', limit: o.limit === undefined ? null : o.limit, generation: o.maxNew ? { maxNewTokens: o.maxNew, stop: ['\n'], repetitionPenalty: 1 } : null,
  compute: { mode: o.mode ?? 'f32', device: 'cpu', threads: 2, contextLength: 128 }, data: [{ path: `/d/${o.lang ?? 'sw'}.jsonl`, sha256: 'x', bytes: 1 }],
  items: 3, truncatedItems: 0, key: 'k', created: '2026-01-01',
  metrics: { ...(o.metrics ?? { acc: 0.5 }), ...(o.tok ? { bleu_signature: `nrefs:1|case:mixed|eff:no|tok:${o.tok}|smooth:exp|sacrebleu-compatible` } : {}) },
});

async function putResults(name: string, files: Record<string, unknown>): Promise<string> {
  const dir = path.join(tmp, name);
  for (const [rel, v] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fsp.writeFile(path.join(dir, rel), JSON.stringify(v));
  }
  return dir;
}

describe('results table and pivot: settings as keys', () => {
  it('the table adds the key that tells results apart (limit, model, tokenizer); a missing metric is null in JSON', async () => {
    const dir = await putResults('by-setting', {
      'a.json': result({ metrics: { acc: 0.5 } }),
      'b.json': result({ limit: 2, metrics: { acc: 1 } }),
      'c.json': result({ model: '/m/b', metrics: { acc: 0.25, acc_norm: 0.75 } }),
    });
    const rs = await readResults(dir);
    // a and c differ in the model; a and b in the limit: both keys are needed, in that order
    expect(defaultBy(rs)).toEqual(['task', 'lang', 'variant', 'model', 'limit']);
    expect(defaultBy(rs.filter((r) => r.model === '/m/a'))).toEqual(['task', 'lang', 'variant', 'limit']);
    const t = await runCli('results', 'table', dir, '--format', 'csv');
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout.trim().split('\n')).toEqual([
      'task,lang,variant,model,limit,items,acc,acc_norm', 'xcopa,sw,base,/m/a,2,3,1,', 'xcopa,sw,base,/m/a,all,3,0.5,', 'xcopa,sw,base,/m/b,all,3,0.25,0.75']);
    const j = JSON.parse((await runCli('results', 'table', dir, '--json')).stdout);
    expect(j.rows[0]).toEqual(['xcopa', 'sw', 'base', '/m/a', '2', 3, 1, null]);
    expect(buildTable(rs, ['task', 'tokenize', 'compute']).columns.slice(0, 3)).toEqual(['task', 'tokenize', 'compute']);
    const flores = await putResults('by-tok', {
      'a.json': result({ task: 'flores', lang: 'eng_Latn-mlt_Latn', tok: '13a', maxNew: 128, metrics: { bleu: 1 } }),
      'b.json': result({ task: 'flores', lang: 'eng_Latn-mlt_Latn', tok: 'char', maxNew: 128, metrics: { bleu: 2 } }),
      'c.json': result({ task: 'flores', lang: 'eng_Latn-mlt_Latn', tok: 'char', maxNew: 10, mode: 'bf16', metrics: { bleu: 3 } }),
    });
    expect(defaultBy(await readResults(flores))).toEqual(['task', 'lang', 'variant', 'tokenize', 'max-gen-toks']);
  });

  it('pivot: results differing in a setting are refused with the --where that narrows them, which then works', async () => {
    const dir = await putResults('pivot-setting', { 'a.json': result({}), 'b.json': result({ limit: 2, metrics: { acc: 1 } }) });
    const recs = await readResultsRecursive(dir);
    expect(() => pivotResults(recs, { rows: 'lang', cols: 'variant' }))
      .toThrow(/b\.json: a second result for lang=sw, variant=base .*they differ in limit all \/ 2\); narrow with --where \(e\.g\. limit=2\)/);
    expect(pivotResults(recs, { rows: 'lang', cols: 'variant', where: { limit: '2' } }).values).toEqual([[1]]);
    expect(pivotResults(recs, { rows: 'lang', cols: 'limit' })).toMatchObject({ cols: ['2', 'all'], values: [[1, 0.5]] });
    const r = await runCli('results', 'pivot', dir, '--where', 'limit=all', '--out', path.join(tmp, 'pv-limit'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).figures.pivot.caption).toMatch(/\(task xcopa, prompt lm-eval, model \/m\/a, split test, compute f32, device cpu\)/);
  });

  it('pivot shows a language under one name, as the table does; --where takes any of its names', async () => {
    const dir = await putResults('pivot-lang', {
      'b.json': result({ task: 'belebele', lang: 'swh_Latn', metrics: { acc: 0.25 } }),
      'x.json': result({ task: 'xcopa', lang: 'sw', metrics: { acc: 0.75 } }),
    });
    const recs = await readResultsRecursive(dir);
    const p = pivotResults(recs, { rows: 'lang', cols: 'task' });
    expect(p.rows).toEqual(['sw']);
    expect(p.values).toEqual([[0.25, 0.75]]);
    expect(pivotResults(recs, { rows: 'lang', cols: 'task', where: { lang: 'swh_Latn' } }).values).toEqual([[0.25, 0.75]]);
  });
});

describe('eval: languages given twice, generation limits, empty answers and choices', () => {
  it('a language twice, or two names of the same data, are refused before anything is written', async () => {
    const out = path.join(tmp, 'dup');
    const r1 = await runCli('eval', UDHR, '--task', 'xcopa', '--langs', 'sw,sw', '--data', FX, '--out', out);
    expect(r1.code).toBe(1);
    expect(r1.stderr.trim()).toBe("langneurons: error: --langs: 'sw' is given twice");
    const r2 = await runCli('eval', UDHR, '--task', 'belebele', '--langs', 'swh_Latn,sw', '--prompt', 'lm-eval', '--data', FX, '--out', out);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/--langs: 'swh_Latn' and 'sw' name the same belebele data \(.*swh_Latn\.jsonl\); give one of them/);
    expect(existsSync(out) ? (await fsp.readdir(out)).filter((n) => !n.startsWith('.')) : []).toEqual([]);
  });

  it('a generation limit that fills the context is refused while planning, naming --max-gen-toks', async () => {
    const out = path.join(tmp, 'gen-room');
    const r = await runCli('eval', UDHR, '--task', 'flores', '--pairs', 'eng_Latn-mlt_Latn', '--data', FX, '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/flores --prompt \w+: 128 new tokens \(the prompt format's limit\) leave no room for a prompt in the model's context of 128: give --max-gen-toks 127 or less/);
    const r2 = await runCli('eval', UDHR, '--task', 'xcopa,flores', '--langs', 'sw', '--pairs', 'eng_Latn-mlt_Latn', '--max-gen-toks', '200', '--data', FX, '--out', out);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/200 new tokens \(--max-gen-toks\) leave no room/);
    expect(existsSync(out) ? (await fsp.readdir(out)).filter((n) => !n.startsWith('.')) : []).toEqual([]); // not even xcopa's
    const ok = await runCli('eval', UDHR, '--task', 'flores', '--pairs', 'eng_Latn-mlt_Latn', '--max-gen-toks', '4', '--limit', '1', '--data', FX, '--out', out, '--json');
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('an XQuAD row without an answer and an empty choice are refused naming the file', async () => {
    const xq = path.join(tmp, 'xq');
    await fsp.mkdir(path.join(xq, 'xquad.sw'), { recursive: true });
    await fsp.writeFile(path.join(xq, 'xquad.sw', 'validation.jsonl'), [
      { id: 'q1', context: 'Nairobi ni mji mkuu wa Kenya.', question: 'Mji mkuu?', answers: { text: ['Nairobi'], answer_start: [0] } },
      { id: 'q2', context: 'Mlima.', question: 'Wapi?', answers: { text: [], answer_start: [] } },
    ].map((r) => JSON.stringify(r)).join('\n'));
    await expect(prepareTask('xquad', { dir: xq, lang: 'sw' })).rejects.toThrow(/xquad\.sw\/validation\.jsonl: row 1: column "answers" holds no answer text/);
    const xc = path.join(tmp, 'xc');
    await fsp.mkdir(path.join(xc, 'sw'), { recursive: true });
    await fsp.writeFile(path.join(xc, 'sw', 'test.jsonl'), JSON.stringify({ premise: 'Mvua ilinyesha.', choice1: 'A.', choice2: '', question: 'effect', label: 0, idx: 7 }));
    await expect(prepareTask('xcopa', { dir: xc, lang: 'sw' })).rejects.toThrow(/sw\/test\.jsonl: item 7: choice 2 is empty/);
  });
});
