// lm-evaluation-harness parity (`--prompt lm-eval`) and the public dataset layouts.
// Expected requests: test/fixtures-eval/lm-eval/requests.json, recorded by test/fixtures-eval/lm-eval/record.py
// from lm-evaluation-harness 4e7e0d47f33bc71070c1d38394bafbb52b117163 (2026-08-21): its own task files
// lm_eval/tasks/{belebele/belebele_deu_Latn.yaml, xnli/xnli_{de,sw}.yaml, xquad/xquad_de.yaml,
// xcopa/default_sw.yaml + utils.py, xwinograd/xwinograd_en.yaml + utils.py, mmlu/default/_default_template_yaml,
// include/default/Indonesian/*}, rendered with lm-eval's jinja2 settings on the same fixture items.
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { languagesIn, prepareTask, type PlanItem, type TaskPlan } from '../src/eval/tasks.js';
import { runPlan } from '../src/eval/run.js';
import type { GenOptions, Pair, Scorer } from '../src/eval/scorer.js';
import { makeTempDir, repoRoot } from './helpers/fixtures.js';

const FX = path.join(repoRoot, 'test/fixtures-eval');
const dir = (t: string) => path.join(FX, t);
interface Recorded { pairs?: [string, string][]; choices?: string[]; gold?: number; context?: string; until?: string[] }
const REC = JSON.parse(readFileSync(path.join(FX, 'lm-eval/requests.json'), 'utf8')) as { lm_eval_commit: string; tasks: Record<string, Recorded[]> };

/** The plan's requests in the recorded form. */
function asRecorded(plan: TaskPlan): Recorded[] {
  return plan.items.map((it: PlanItem) => {
    if (it.kind === 'mc') return { pairs: it.pairs.map((p): [string, string] => [p.context, p.continuation]), choices: it.choices, gold: it.gold };
    if (it.kind === 'gen') return { context: it.prompt, until: plan.gen!.stop };
    throw new Error(`unexpected item kind ${it.kind}`);
  });
}

describe('--prompt lm-eval sends lm-evaluation-harness\'s requests, byte for byte', () => {
  it('recorded at the stated lm-eval commit', () => {
    expect(REC.lm_eval_commit).toBe('4e7e0d47f33bc71070c1d38394bafbb52b117163');
  });

  const cases: [string, string, Parameters<typeof prepareTask>[1]][] = [
    ['belebele_deu_Latn', 'belebele', { dir: dir('belebele'), lang: 'de', prompt: 'lm-eval' }],
    ['xnli_de', 'xnli', { dir: dir('xnli'), lang: 'de' }], // lm-eval is xnli's default; it reads the validation split
    ['xnli_sw', 'xnli', { dir: dir('xnli'), lang: 'sw', split: 'test' }],
    ['xquad_de', 'xquad', { dir: dir('xquad'), lang: 'de', prompt: 'lm-eval' }], // xquad.de.json, SQuAD format
    ['xcopa_sw', 'xcopa', { dir: dir('xcopa'), lang: 'sw' }],
    ['xwinograd_en', 'xwinograd', { dir: dir('xwinograd'), lang: 'en' }],
    ['mmlu_en', 'mmlu', { dir: dir('mmlu'), lang: 'en', prompt: 'lm-eval' }],
    ['mmmlu_de', 'mmlu', { dir: dir('mmlu'), lang: 'de_de', prompt: 'lm-eval' }], // openai/MMMLU test/mmlu_DE-DE.csv
    ['include_indonesian', 'include', { dir: dir('include'), lang: 'id', prompt: 'lm-eval' }],
  ];
  for (const [name, task, opts] of cases) {
    it(`${name}: contexts, continuations, acc_norm choices and gold`, async () => {
      const plan = await prepareTask(task, opts);
      expect(asRecorded(plan)).toEqual(REC.tasks[name]);
    });
  }

  it('xquad: lm-eval generation settings (until "\\n", 256 tokens) and answers.text[0] as the only reference', async () => {
    const plan = await prepareTask('xquad', { dir: dir('xquad'), lang: 'de', prompt: 'lm-eval' });
    expect(plan.gen).toEqual({ maxNewTokens: 256, stop: ['\n'], repetitionPenalty: 1 });
    expect(plan.items.map((it) => (it.kind === 'gen' ? it.refs : null))).toEqual([['308'], ['Kawann Short'], ['Pittsburgh Steelers']]);
    // the U+FEFF at the start of a real context stays in the prompt, as in lm-eval
    expect((plan.items[2] as { prompt: string }).prompt.startsWith('Kontext: \ufeffDie Broncos')).toBe(true);
  });

  it('acc_norm as lm-eval computes it: log-likelihood over len(choice), the choices of multiple-input xwinograd being its contexts', async () => {
    const plan = await prepareTask('xwinograd', { dir: dir('xwinograd'), lang: 'en' });
    const [c0, c1] = REC.tasks.xwinograd_en![0]!.choices!;
    expect([c0!.length, c1!.length]).toEqual([59, 61]);
    // item 1 (gold 0): ll -10 vs -10.2 -> acc picks 0; -10/59 = -0.16949 < -10.2/61 = -0.16721 -> acc_norm picks 1.
    // item 2 (gold 1): ll -10.2 vs -10 -> both pick 1.
    const lls = [[-10, -10.2], [-10.2, -10]];
    let call = 0; // one call per item (batchItems 1)
    const scorer: Scorer = {
      async logLikelihood(pairs: Pair[]) { const ll = lls[call++]!; return pairs.map((_, j) => ({ logprob: ll[j]!, tokens: 1 })); },
      async generate(_p: string[], _o: GenOptions) { return []; },
      async nll() { return []; },
    };
    const r = await runPlan(plan, { scorer, outDir: await makeTempDir('xw-'), model: 'fake', modelFingerprint: 'fp', variant: { name: 'base' }, batchItems: 1 });
    expect(r.metrics.acc).toBe(1);
    expect(r.metrics.acc_norm).toBe(0.5);
  });
});

describe('the public layouts beside the Hugging Face ones', () => {
  it('XQuAD SQuAD JSON (google-deepmind/xquad xquad.<lang>.json): read whole, flattened to the hub rows, listed as its language', async () => {
    const plan = await prepareTask('xquad', { dir: dir('xquad'), lang: 'de' });
    expect(plan.files.map((f) => path.basename(f))).toEqual(['xquad.de.json']);
    expect(plan.items.map((it) => it.id)).toEqual(['56beb4343aeaaa14008c925b', '56beb4343aeaaa14008c925c', '56bec0353d8a7d14008b4a0a']);
    expect((plan.items[1] as { refs: string[] }).refs).toEqual(['Kawann Short', 'Defensive Tackle Kawann Short']);
    expect(await languagesIn('xquad', dir('xquad'))).toEqual(['de', 'sw']);
  });

  it('XNLI-1.0 TSV (xnli.dev.tsv, all languages in one file, unquoted): the same plan as the hub rows', async () => {
    const tsv = await prepareTask('xnli', { dir: dir('xnli-release'), lang: 'de' });
    const hub = await prepareTask('xnli', { dir: dir('xnli'), lang: 'de' });
    expect(tsv.items).toEqual(hub.items);
    expect(tsv.split).toBe('validation');
    expect(await languagesIn('xnli', dir('xnli-release'))).toEqual(['de', 'en']);
    // a quote is a character, not a quoting mark (csv.QUOTE_NONE)
    const en = await prepareTask('xnli', { dir: dir('xnli-release'), lang: 'en' });
    expect((en.items[1] as { pairs: Pair[] }).pairs[0]!.continuation).toBe(' And he said, "Mama, I\'m home.", right? Yes, He didn\'t say a word.');
    await expect(prepareTask('xnli', { dir: dir('xnli-release'), lang: 'fr' })).rejects.toThrow(/xnli\.dev\.tsv: no rows of language 'fr'; languages present: de, en/);
  });

  it('openai/MMMLU hub names: test/mmlu_DE-DE.csv for --langs de_de, DE-DE, de-de and its own name', async () => {
    for (const lang of ['de_de', 'DE-DE', 'de-de', 'mmlu_DE-DE']) {
      const plan = await prepareTask('mmlu', { dir: dir('mmlu'), lang });
      expect(plan.files.map((f) => path.relative(dir('mmlu'), f))).toEqual(['test/mmlu_DE-DE.csv']);
      expect(plan.items.length).toBe(3);
    }
  });

  it('a .json file that is not one JSON document is read as JSON Lines, and bad SQuAD JSON names the place', async () => {
    const d = await makeTempDir('xq-');
    await fsp.writeFile(path.join(d, 'xquad.fr.json'), JSON.stringify({ version: '1.1', data: [{ title: 't', paragraphs: [{ context: 'c' }] }] }));
    await expect(prepareTask('xquad', { dir: d, lang: 'fr' })).rejects.toThrow(/xquad\.fr\.json: data\[0\]\.paragraphs\[0\] needs "context" \(a string\) and "qas" \(a list\)/);
    await fsp.writeFile(path.join(d, 'xquad.fr.json'), '{"id": "a", "context": "c", "question": "q", "answers": {"text": ["c"], "answer_start": [0]}}\n{"id": "b", "context": "d", "question": "q", "answers": {"text": ["d"], "answer_start": [0]}}\n');
    expect((await prepareTask('xquad', { dir: d, lang: 'fr' })).items.map((it) => it.id)).toEqual(['a', 'b']);
  });
});

describe('the original XWinograd release (dataset.tsv)', () => {
  it('rows become the hub\'s fields (pronoun -> "_", candidates, answer), then lm-eval\'s partial-scoring requests', async () => {
    const plan = await prepareTask('xwinograd', { dir: dir('xwinograd-release'), lang: 'en' });
    expect(plan.files.map((f) => path.basename(f))).toEqual(['dataset.tsv']);
    const pairs = plan.items.map((it) => (it.kind === 'mc' ? [it.pairs.map((p) => [p.context, p.continuation]), it.gold] : null));
    expect(pairs).toEqual([
      [[["The trophy doesn't fit into the brown suitcase because The trophy", ' is too large.'], ["The trophy doesn't fit into the brown suitcase because suitcase", ' is too large.']], 0],
      [[["The trophy doesn't fit into the brown suitcase because The trophy", ' is too small.'], ["The trophy doesn't fit into the brown suitcase because suitcase", ' is too small.']], 1]]);
    const jp = await prepareTask('xwinograd', { dir: dir('xwinograd-release'), lang: 'jp' });
    expect((jp.items[0] as { pairs: Pair[] }).pairs[1]).toEqual({ context: 'トロフィーはスーツケースに入らない、なぜならスーツケース', continuation: ' は大きすぎるから。' });
    await expect(prepareTask('xwinograd', { dir: dir('xwinograd-release'), lang: 'ru' })).rejects.toThrow(/dataset\.tsv: no rows of language 'ru'; languages present: en, jp/);
  });
});
