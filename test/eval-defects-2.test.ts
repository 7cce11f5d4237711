// Evaluation defects found by QA (second round), each on hand-made inputs and the tiny stories260k model:
// position classes of perplexity texts (`score` and `eval --task ppl` agree), `--langs all` on the XWinograd
// release and on an empty folder, variant names of --delta with --intervene, lm-eval's INCLUDE Hebrew
// "Driving license" description, XWinograd's `jp`, --split on single-file releases, and FLORES-coded languages
// in `steer forcing` against a udhr-named mask.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pivotResults, readResultsRecursive } from '../src/analyze/pivot.js';
import { loadModel } from '../src/engine/model.js';
import { canonicalLang, includeLmEvalPrompt } from '../src/eval/prompts.js';
import { prepareTask, languagesIn, type PlanItem } from '../src/eval/tasks.js';
import { MASK_FORMAT, writeMaskJson } from '../src/identify/masks.js';
import { modelIdentity } from '../src/profile/identity.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const M = fixturePath('stories260k');
const FX = path.join(repoRoot, 'test', 'fixtures-eval');
const TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';
let tmp: string, mask: string;

beforeAll(async () => {
  tmp = await makeTempDir('ln-eval-defects2-');
  const model = await loadModel(M, { threads: 1 });
  const L = model.config.numLayers, I = model.config.intermediateSize;
  // many neurons in every layer, so that an intervention visibly changes the NLL
  const units = (from: number) => Array.from({ length: L }, () => Array.from({ length: 24 }, (_, k) => from + 2 * k).filter((j) => j < I));
  mask = path.join(tmp, 'mask.json');
  await writeMaskJson(mask, { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: modelIdentity(model.checkpoint),
    sources: [], layers: L, width: I, languages: { en: units(0), sw: units(1), ja: units(3) } });
});
afterAll(async () => { await removeDir(tmp); });

async function write(rel: string, text: string): Promise<string> {
  const file = path.join(tmp, rel);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, text);
  return file;
}

describe('perplexity texts are prompt positions in score and eval --task ppl', () => {
  it('the same text and spec give the same NLL in both, for positions=all, prompt and generated', async () => {
    const textDir = path.dirname(await write('ppl/en.txt', `${TEXT}\n`));
    const score = async (spec?: string) => {
      const r = await runCli('score', M, '--text', TEXT, '--threads', '1', '--json', ...(spec ? ['--intervene', spec] : []));
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).meanNll as number;
    };
    const evalPpl = async (spec: string | undefined, out: string) => {
      const r = await runCli('eval', M, '--task', 'ppl', '--text', textDir, '--langs', 'en', '--threads', '1', '--out', path.join(tmp, out), '--json',
        ...(spec ? ['--intervene', spec] : []));
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).results[0].metrics.mean_nll as number;
    };
    const none = await score();
    expect(await evalPpl(undefined, 'ppl-none')).toBeCloseTo(none, 5);
    const results: Record<string, [number, number]> = {};
    for (const positions of ['all', 'prompt', 'generated']) {
      const spec = `deactivate:${mask}:en:positions=${positions}`;
      results[positions] = [await score(spec), await evalPpl(spec, `ppl-${positions}`)];
    }
    console.log(`mean NLL (score, eval ppl): none ${none}, ${JSON.stringify(results)}`);
    for (const [s, e] of Object.values(results)) expect(e).toBeCloseTo(s, 5);
    // every token of a text is a prompt position: positions=prompt is positions=all, positions=generated no intervention
    expect(Math.abs(results.prompt![0] - none)).toBeGreaterThan(1e-3);
    expect(results.prompt![1]).toBeCloseTo(results.all![1], 6);
    expect(results.generated![1]).toBeCloseTo(none, 5);
  }, 120_000);
});

describe('eval --langs all', () => {
  it('lists the languages of the XWinograd release dataset.tsv (en, jp) and evaluates them', async () => {
    expect(await languagesIn('xwinograd', path.join(FX, 'xwinograd-release'))).toEqual(['en', 'jp']);
    const r = await runCli('eval', M, '--task', 'xwinograd', '--langs', 'all', '--data', path.join(FX, 'xwinograd-release'),
      '--threads', '1', '--out', path.join(tmp, 'xw-all'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout).results as { lang: string }[]).map((x) => x.lang)).toEqual(['en', 'jp']);
  }, 60_000);

  it('an empty data folder is an error naming the folder, not "0 result file(s)"', async () => {
    const empty = path.join(tmp, 'empty-data');
    await fsp.mkdir(empty, { recursive: true });
    await expect(languagesIn('xcopa', empty)).rejects.toThrow(`${empty}: no xcopa data of any language (split test)`);
    const r = await runCli('eval', M, '--task', 'xcopa', '--langs', 'all', '--data', empty, '--threads', '1', '--out', path.join(tmp, 'empty-out'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(empty);
    // so is a --langs that names no language
    const r2 = await runCli('eval', M, '--task', 'xcopa', '--langs', ',', '--data', empty, '--threads', '1', '--out', path.join(tmp, 'empty-out'));
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain('no language to evaluate');
  });
});

describe('a refused eval', () => {
  it('leaves no --out folder behind (the lock made it)', async () => {
    const out = path.join(tmp, 'refused-eval');
    const r = await runCli('eval', M, '--task', 'xnli', '--langs', 'sw', '--data', FX, '--prompt', 'head', '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--prompt head needs --head/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('--split on single-file releases', () => {
  it('XWinograd dataset.tsv (test only) and xquad.<lang>.json (validation only) refuse another --split', async () => {
    const xw = path.join(FX, 'xwinograd-release');
    expect((await prepareTask('xwinograd', { dir: xw, lang: 'en' })).split).toBe('test');
    expect((await prepareTask('xwinograd', { dir: xw, lang: 'en', split: 'test' })).items.length).toBeGreaterThan(0);
    await expect(prepareTask('xwinograd', { dir: xw, lang: 'en', split: 'validation' }))
      .rejects.toThrow(`${path.join(xw, 'dataset.tsv')}: the XWinograd release file has one split, test; --split validation is not in it`);
    await expect(languagesIn('xwinograd', xw, 'validation')).rejects.toThrow('no xwinograd data of any language (split validation)');
    const xq = path.join(FX, 'xquad');
    expect((await prepareTask('xquad', { dir: xq, lang: 'de' })).split).toBe('validation');
    await expect(prepareTask('xquad', { dir: xq, lang: 'de', split: 'test' }))
      .rejects.toThrow('xquad.de.json: the XQuAD (google-deepmind/xquad) release file has one split, validation; --split test is not in it');
  });
});

describe('eval --delta with --intervene', () => {
  it('names both in the variant (delta-<run>+intervene-<spec>), also with {lang}; results pivot tells the rows apart', async () => {
    const train = await write('ft/train.txt', Array.from({ length: 8 }, () => TEXT).join('\n') + '\n');
    const run = path.join(tmp, 'run-lora');
    const ft = await runCli('finetune', M, '--method', 'lora', '--lora-r', '4', '--train', train, '--out', run, '--steps', '2', '--chunk', '64',
      '--batch', '2', '--threads', '1');
    expect(ft.code, ft.stderr).toBe(0);
    const textDir = path.dirname(await write('ppl-delta/en.txt', `${TEXT}\n`));
    const out = path.join(tmp, 'delta-out');
    const ev = async (...extra: string[]) => {
      const r = await runCli('eval', M, '--task', 'ppl', '--text', textDir, '--langs', 'en', '--delta', path.join(run, 'adapter'),
        '--threads', '1', '--out', out, '--json', ...extra);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout).results as { variant: { name: string } }[]).map((x) => x.variant.name);
    };
    expect(await ev()).toEqual(['delta-run-lora']);
    expect(await ev('--intervene', `deactivate:${mask}:en`)).toEqual([`delta-run-lora+intervene-deactivate:${mask}:en`]);
    expect(await ev('--intervene', `deactivate:${mask}:{lang}`, '--intervene-langs', 'sw'))
      .toEqual([`delta-run-lora+intervene-deactivate:${mask}:sw`]);
    const p = pivotResults(await readResultsRecursive(out), { rows: 'lang', cols: 'variant' });
    expect(p.cols).toEqual(['delta-run-lora', `delta-run-lora+intervene-deactivate:${mask}:en`, `delta-run-lora+intervene-deactivate:${mask}:sw`]);
  }, 120_000);
});

describe("lm-eval's INCLUDE descriptions", () => {
  it('Hebrew "Driving License" is "Driving license" in lm-eval 4e7e0d4\'s task file; other languages and domains keep the column', async () => {
    const q = ['1', '2', '3', '4'];
    expect(includeLmEvalPrompt('Driving License', 'Q?', q, 'Hebrew')).toBe('The following is multiple-choice question about Driving license.Q?\nA. 1\nB. 2\nC. 3\n D. 4\nAnswer:');
    expect(includeLmEvalPrompt('Driving License', 'Q?', q, 'he')).toMatch(/^The following is multiple-choice question about Driving license\./);
    expect(includeLmEvalPrompt('Driving License', 'Q?', q, 'German')).toMatch(/^The following is multiple-choice question about Driving License\./);
    expect(includeLmEvalPrompt('STEM', 'Q?', q, 'Hebrew')).toMatch(/^The following is multiple-choice question about STEM\./);
    // through the task, from the dataset's Hebrew folder
    const row = { language: 'Hebrew', domain: 'Driving License', question: ' Q? ', option_a: 'a', option_b: 'b', option_c: 'c', option_d: 'd', answer: 2 };
    await write('include/Hebrew/test.jsonl', JSON.stringify(row) + '\n');
    const plan = await prepareTask('include', { dir: path.join(tmp, 'include'), lang: 'Hebrew', prompt: 'lm-eval' });
    const item = plan.items[0] as Extract<PlanItem, { kind: 'mc' }>;
    expect(item.pairs[0]!.context).toBe('The following is multiple-choice question about Driving license.Q?\nA. a\nB. b\nC. c\n D. d\nAnswer:');
  });
});

describe("XWinograd's language codes", () => {
  it('jp is ja (the other codes en, fr, pt, ru, zh are ISO 639-1 already)', () => {
    expect(canonicalLang('jp')).toBe('ja');
    for (const c of ['en', 'fr', 'pt', 'ru', 'zh']) expect(canonicalLang(c)).toBe(c);
  });

  it('--langs ja finds the jp rows of dataset.tsv and the hub\'s jp/ folder', async () => {
    const xw = path.join(FX, 'xwinograd-release');
    const asJa = await prepareTask('xwinograd', { dir: xw, lang: 'ja' });
    const asJp = await prepareTask('xwinograd', { dir: xw, lang: 'jp' });
    expect(asJa.items.length).toBeGreaterThan(0);
    expect(asJa.items).toEqual(asJp.items);
    const row = { sentence: '猫が_を追いかけた。', option1: '犬', option2: '鳥', answer: '1' };
    await write('xw-hub/jp/test.jsonl', JSON.stringify(row) + '\n');
    const hub = await prepareTask('xwinograd', { dir: path.join(tmp, 'xw-hub'), lang: 'ja' });
    expect(hub.items.length).toBe(1);
    expect(hub.files[0]).toContain(path.join('jp', 'test.jsonl'));
  });

  it("{lang} = jp takes the mask's ja neurons", async () => {
    const r = await runCli('eval', M, '--task', 'xwinograd', '--langs', 'jp', '--data', path.join(FX, 'xwinograd-release'),
      '--intervene', `deactivate:${mask}:{lang}`, '--threads', '1', '--out', path.join(tmp, 'xw-jp'), '--json');
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout).results as { lang: string; variant: { interveneLang: string } }[];
    expect(res.map((x) => [x.lang, x.variant.interveneLang])).toEqual([['jp', 'ja']]);
  }, 60_000);
});

describe('steer forcing with FLORES-coded languages against a udhr-named mask', () => {
  it('eng_Latn.txt prompts deactivate en, --target swh_Latn amplifies sw', async () => {
    const prompts = path.dirname(await write('forcing/eng_Latn.txt', 'Once upon a time\nThe little dog\n'));
    const out = path.join(tmp, 'forcing.json');
    const r = await runCli('steer', 'forcing', M, '--masks', mask, '--prompts', prompts, '--target', 'swh_Latn', '--amplify', 'scale:5',
      '--langid', 'eld', '--max-new-tokens', '2', '--no-baseline', '--threads', '1', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    const doc = JSON.parse(await fsp.readFile(out, 'utf8'));
    expect(doc.sourcesNotInMask).toEqual([]);
    expect(doc.targets.map((t: { target: string }) => t.target)).toEqual(['swh_Latn']);
    // a language the mask has under no name is still refused
    const bad = await runCli('steer', 'forcing', M, '--masks', mask, '--prompts', prompts, '--target', 'deu_Latn', '--amplify', 'scale:5',
      '--langid', 'eld', '--max-new-tokens', '2', '--no-baseline', '--threads', '1', '--out', path.join(tmp, 'forcing-bad.json'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('deu_Latn');
  }, 60_000);

  it("zho_Hant and cmn_Hans (no alias of the eval tables) take a zh mask's neurons, as the identifiers' codes make them zh", async () => {
    const doc = JSON.parse(await fsp.readFile(mask, 'utf8'));
    doc.languages.zh = doc.languages.ja;
    const zhMask = await write('mask-zh.json', JSON.stringify(doc));
    const prompts = path.dirname(await write('forcing-zh/zho_Hant.txt', 'Once upon a time\n'));
    await write('forcing-zh/cmn_Hans.txt', 'The little dog\n');
    const out = path.join(tmp, 'forcing-zh.json');
    const r = await runCli('steer', 'forcing', M, '--masks', zhMask, '--prompts', prompts, '--target', 'zho_Hant', '--amplify', 'scale:5',
      '--langid', 'eld', '--max-new-tokens', '2', '--no-baseline', '--threads', '1', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(await fsp.readFile(out, 'utf8')).sourcesNotInMask).toEqual([]); // both deactivated zh (was: not in the mask)
  }, 60_000);
});

describe('eval checks every task and language before it evaluates any', () => {
  it("a language missing from the last task's data fails at once: nothing of the tasks before it is evaluated or written", async () => {
    const out = path.join(tmp, 'eval-missing-lang');
    // xcopa has sw (test/fixtures-eval/xcopa/sw), xwinograd has en only
    const r = await runCli('eval', M, '--task', 'xcopa,xwinograd', '--data', FX, '--langs', 'sw', '--threads', '1', '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/xwinograd: no xwinograd data for language 'sw' \(split test\); languages present: en/);
    expect(r.stderr).not.toMatch(/^xcopa sw/m); // no xcopa result line: it never ran
    const written = existsSync(out) ? (await fsp.readdir(out)).filter((f) => f.endsWith('.json') || f.endsWith('.jsonl')) : [];
    expect(written).toEqual([]);
    // xcopa alone runs and writes its result (it was held back by xwinograd's missing language, nothing else)
    const ok = await runCli('eval', M, '--task', 'xcopa', '--data', FX, '--langs', 'sw', '--limit', '1', '--threads', '1', '--out', out, '--json');
    expect(ok.code, ok.stderr).toBe(0);
    expect((await fsp.readdir(out)).filter((f) => f.startsWith('xcopa__sw__') && f.endsWith('.json'))).toHaveLength(1);
  }, 60_000);
});
