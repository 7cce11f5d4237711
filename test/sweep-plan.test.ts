// The sweep file and its plan: the steps a grid expands to, their dependencies and hashes (what a changed
// parameter re-runs), include/exclude rules, a 100-language grid planned in under a second, and bad input refused
// with the line and the key.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';

import { udhrLanguages } from '../src/corpus/udhr.js';
import { loadSweep } from '../src/sweep/load.js';
import { planSweep, type SweepPlan } from '../src/sweep/plan.js';

const ROOT = path.resolve(__dirname, '..');
const DEMO = path.join(ROOT, 'examples', 'sweep-demo.yaml');
const MODEL = path.join(ROOT, 'models', 'udhr20');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-sweep-plan-'));
let n = 0;

/** The demo sweep with changes, written next to a fresh file (paths absolute, so the folder does not matter). */
function variant(change: (doc: Record<string, any>) => void): string {
  const doc = parse(readFileSync(DEMO, 'utf8')) as Record<string, any>;
  doc['models'] = MODEL;
  change(doc);
  const file = path.join(tmp, `sweep-${n++}.yaml`);
  writeFileSync(file, stringify(doc));
  return file;
}
const plan = (file: string) => planSweep(loadSweep(file), { out: path.join(tmp, 'out') });
const kinds = (p: SweepPlan) => Object.fromEntries([...new Set(p.steps.map((s) => s.kind))].map((k) => [k, p.steps.filter((s) => s.kind === k).length]));
const hashes = (p: SweepPlan) => new Map(p.steps.map((s) => [s.id, s.hash]));

describe('sweep plan of the demo', () => {
  it('expands 2 languages × 2 identification settings × 2 fine-tuning methods × 1 task into its steps', async () => {
    const p = await plan(DEMO);
    // profile: 2 languages; identify + ppl-matrix: 2 settings; text: train and held-out of 2 languages;
    // finetune: neurons per setting and language (4) + lora per language, shared by both settings (2);
    // eval per language: base, 3 fine-tuned models, 2 interventions (one per setting) = 6, × 2 languages.
    expect(kinds(p)).toEqual({ profile: 2, identify: 2, 'ppl-matrix': 2, text: 4, finetune: 6, eval: 12 });
    const byId = p.byId;
    expect(byId.get('identify/udhr20/lape-topRate=0.05')!.deps.sort()).toEqual(['profile/udhr20/mt', 'profile/udhr20/sw']);
    expect(byId.get('finetune/udhr20/lape-topRate=0.1/neurons/mt')!.deps.sort())
      .toEqual(['identify/udhr20/lape-topRate=0.1', 'text/udhr:heldout/mt', 'text/udhr:train/mt']);
    expect(byId.get('finetune/udhr20/lora/sw')!.deps.sort()).toEqual(['text/udhr:heldout/sw', 'text/udhr:train/sw']);
    expect(byId.get('eval/udhr20/ppl/sw/ft-lora')!.deps.sort()).toEqual(['finetune/udhr20/lora/sw', 'text/udhr:heldout/sw']);
    expect(byId.get('eval/udhr20/ppl/mt/iv0-deactivate@lape-topRate=0.05')!.argv).toContain('deactivate:{step:identify/udhr20/lape-topRate=0.05}/mask.json:mt');
    // the step's cell names the intervention as written ({lang} filled), for the report
    expect(byId.get('eval/udhr20/ppl/mt/iv0-deactivate@lape-topRate=0.05')!.cell.intervention).toBe('deactivate:{mask}:mt');
    // every dependency comes before the step that needs it
    const seen = new Set<string>();
    for (const s of p.steps) { for (const d of s.deps) expect(seen.has(d), `${s.id} after ${d}`).toBe(true); seen.add(s.id); }
    expect(new Set(p.steps.map((s) => s.hash)).size).toBe(p.steps.length);
  });

  it('hashes each step by what determines it: one changed parameter re-runs only what depends on it', async () => {
    const a = hashes(await plan(DEMO));
    const steps = hashes(await plan(variant((d) => { d['finetune'].steps = 5; })));
    const changed = [...a.keys()].filter((id) => a.get(id) !== steps.get(id));
    expect(changed.sort()).toEqual([...a.keys()].filter((id) => id.startsWith('finetune/') || /\/ft-/.test(id)).sort());
    // the output folder does not enter the hash (two sweeps share steps); the identification setting does
    const other = hashes(await planSweep(loadSweep(DEMO), { out: path.join(tmp, 'elsewhere') }));
    expect(other).toEqual(a);
    const tokens = hashes(await plan(variant((d) => { d['profile'].tokens = 2000; })));
    expect(tokens.get('text/udhr:train/mt')).toBe(a.get('text/udhr:train/mt'));
    expect(tokens.get('finetune/udhr20/lora/mt')).toBe(a.get('finetune/udhr20/lora/mt')); // lora reads no mask
    expect(tokens.get('eval/udhr20/ppl/mt/base')).toBe(a.get('eval/udhr20/ppl/mt/base'));
    for (const id of ['profile/udhr20/mt', 'identify/udhr20/lape-topRate=0.1', 'finetune/udhr20/lape-topRate=0.1/neurons/mt', 'eval/udhr20/ppl/mt/ft-neurons@lape-topRate=0.1'])
      expect(tokens.get(id), id).not.toBe(a.get(id));
    // eval.maxGenToks reaches the eval steps' commands (and so their hashes), nothing else
    const short = await plan(variant((d) => { d['eval'].maxGenToks = 16; }));
    const evals = short.steps.filter((s) => s.kind === 'eval');
    expect(evals.length).toBeGreaterThan(0);
    for (const s of evals) {
      expect(s.argv.join(' '), s.id).toContain('--max-gen-toks 16');
      expect(s.hash, s.id).not.toBe(a.get(s.id));
    }
    for (const s of short.steps.filter((x) => x.kind !== 'eval')) expect(s.hash, s.id).toBe(a.get(s.id));
  });

  it("plans Kojima's setting: sentence responses with the BOS, one joint AP ranking over seven sites, the steer steps on the set of masks", async () => {
    const file = variant((d) => {
      Object.assign(d['profile'], { scope: 'sentences', countBos: true, dropLong: true, seqMeans: true, sites: 'q,k,v,o,gate,up,down' });
      d['identify'] = [{ name: 'kojima', method: 'ap', n: 20, sites: 'q,k,v,o,gate,up,down' }];
      d['finetune'].methods = ['lora']; d['finetune'].lr = 1e-3;
      d['eval'].interventions = ['zero:neurons=all:layers=0'];
      d['steer'].lss = { facts: d['models'], settings: 'scale:2' }; // any existing path: the plan only names it
    });
    const p = await plan(file);
    const argv = (id: string) => p.byId.get(id)!.argv;
    expect(argv('profile/udhr20/mt').join(' ')).toContain('--scope sentences --max-len 64 --sites q,k,v,o,gate,up,down --seq-means --count-bos --drop-long');
    const identify = argv('identify/udhr20/kojima');
    expect(identify.slice(identify.indexOf('--method'), identify.indexOf('--out'))).toEqual(['--method', 'ap', '--sites', 'q,k,v,o,gate,up,down', '--n', '20']);
    const set = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'].map((x) => `{step:identify/udhr20/kojima}/mask.${x}.json`).join(',');
    expect(p.byId.get('identify/udhr20/kojima')!.masks).toEqual(['q', 'k', 'v', 'o', 'gate', 'up', 'down'].map((x) => `mask.${x}.json`));
    for (const id of ['ppl-matrix/udhr20/kojima', 'lss/udhr20/kojima']) {
      expect(argv(id)[argv(id).indexOf('--masks') + 1], id).toBe(set);
      expect(p.byId.get(id)!.deps).toEqual(['identify/udhr20/kojima']);
    }
  });

  it("refuses Kojima settings that could not run: sites not profiled, a joint ranking for fine-tuning or {mask}, windows with countBos", () => {
    const bad: [(d: Record<string, any>) => void, RegExp][] = [
      [(d) => { d['identify'] = [{ method: 'lape', sites: 'q,k' }]; }, /identify\[0\]\.sites.*applies to method ap; method is 'lape'/],
      [(d) => { d['profile'].seqMeans = true; d['identify'] = [{ method: 'ap', sites: 'q,k' }]; }, /site q is not profiled: add it to profile\.sites \(act\)/],
      [(d) => { Object.assign(d['profile'], { seqMeans: true, sites: 'q,k' }); d['identify'] = [{ method: 'ap', sites: 'q,k' }]; },
        /a joint ranking gives one mask per site \(q,k\): fine-tuning a mask's neurons \(finetune\.methods neurons\) needs an FFN mask/],
      [(d) => { Object.assign(d['profile'], { seqMeans: true, sites: 'q,k' }); d['identify'] = [{ method: 'ap', sites: 'q,k' }]; d['finetune'].methods = ['lora']; d['finetune'].lr = 1e-3; },
        /eval\.interventions with \{mask\} take one mask/],
      [(d) => { d['profile'].sites = 'act,q'; d['identify'] = [{ method: 'lape', site: 'q' }]; d['finetune'].methods = ['lora']; d['finetune'].lr = 1e-3; },
        /its units are q outputs, not FFN neurons: eval\.interventions "deactivate:\{mask\}:\{lang\}" must edit them there \(add :site=q\)/],
      [(d) => { d['profile'].countBos = true; }, /profile\.countBos.*applies to scope: sentences/],
    ];
    for (const [change, msg] of bad) expect(() => loadSweep(variant(change))).toThrow(msg);
    // a projection site's mask with {mask} specs that edit it there is fine
    expect(() => loadSweep(variant((d) => { d['profile'].sites = 'act,q'; d['identify'] = [{ method: 'lape', site: 'q' }]; d['finetune'].methods = ['lora']; d['finetune'].lr = 1e-3;
      d['eval'].interventions = ['deactivate:{mask}:{lang}:site=q']; }))).not.toThrow();
  });

  it('prunes the grid with exclude and include rules', async () => {
    const ex = await plan(variant((d) => { d['exclude'] = [{ method: 'lora', language: 'sw' }, { identify: 'lape-topRate=0.1', task: 'ppl' }]; }));
    const ids = ex.steps.map((s) => s.id);
    expect(ids).not.toContain('finetune/udhr20/lora/sw');
    expect(ids).not.toContain('eval/udhr20/ppl/sw/ft-lora');
    expect(ids).toContain('finetune/udhr20/lora/mt');
    expect(ids.filter((id) => id.startsWith('eval/') && id.includes('lape-topRate=0.1'))).toEqual([]);
    expect(ids).toContain('finetune/udhr20/lape-topRate=0.1/neurons/sw'); // the rule names a task: fine-tuning has none
    const inc = await plan(variant((d) => { d['include'] = [{ method: 'neurons', language: 'mt' }]; }));
    expect(inc.steps.filter((s) => s.kind === 'finetune').map((s) => s.id).sort())
      .toEqual(['finetune/udhr20/lape-topRate=0.05/neurons/mt', 'finetune/udhr20/lape-topRate=0.1/neurons/mt']);
    expect(inc.byId.has('eval/udhr20/ppl/sw/base')).toBe(true); // base evaluations have no method: the rule does not apply
  });

  it('plans an LSS step per identification setting; settings that read statistics get every language\'s statistics', async () => {
    const facts = path.join(tmp, 'facts.jsonl');
    writeFileSync(facts, JSON.stringify({ template: '[X] [Y].', sub_mt: 'a', obj_mt: 'b', sub_sw: 'c', obj_sw: 'd' }) + '\n');
    const p = await plan(variant((d) => { d['steer'].lss = { facts, settings: 'scale:2' }; }));
    expect(kinds(p)['lss']).toBe(2);
    expect(p.byId.get('lss/udhr20/lape-topRate=0.1')!.deps).toEqual(['identify/udhr20/lape-topRate=0.1']);
    const changed = await plan(variant((d) => { d['steer'].lss = { facts, settings: 'scale:3' }; }));
    expect(changed.byId.get('lss/udhr20/lape-topRate=0.1')!.hash).not.toBe(p.byId.get('lss/udhr20/lape-topRate=0.1')!.hash);
    // a YAML list is the same step as the comma-separated string (it was refused: 'must be string')
    const listed = await plan(variant((d) => { d['steer'].lss = { facts, settings: ['scale:2', 'set:max'] }; }));
    const joined = await plan(variant((d) => { d['steer'].lss = { facts, settings: 'scale:2,set:max' }; }));
    const step = (q: typeof p) => q.byId.get('lss/udhr20/lape-topRate=0.1')!;
    expect(step(listed).argv).toEqual(step(joined).argv);
    expect(step(listed).argv).toContain('scale:2,set:max');
    expect(step(listed).hash).toBe(step(joined).hash);
    expect(() => loadSweep(variant((d) => { d['steer'].lss = { facts, settings: ['scale:2,set:max'] }; }))).toThrow(/steer\.lss\.settings\[0\]: one setting per list item \(no comma\)/);
    expect(() => loadSweep(variant((d) => { d['steer'].lss = { facts, settings: [] }; }))).toThrow(/steer\.lss\.settings: must NOT have fewer than 1 items/);
    // a setting given twice is said as such, without the statistics advice that is about other settings
    expect(() => loadSweep(variant((d) => { d['steer'].lss = { facts, settings: ['scale:2', 'scale:2'] }; }))).toThrow(/"scale:2" is given twice$/);
    // p_max reads sentence means: refused without them; with them, the step reads each language's final statistics
    const file = variant((d) => { d['steer'].lss = { facts, settings: 'scale:2,p_max' }; });
    expect(() => loadSweep(file)).toThrow(/:\d+: steer\.lss\.settings: setting p_max reads sentence means: set profile\.seqMeans: true/);
    const withStats = await plan(variant((d) => { d['steer'].lss = { facts, settings: 'scale:2,p_max' }; d['profile'].seqMeans = true; }));
    const argv = step(withStats).argv;
    expect(argv[argv.indexOf('--stats') + 1]).toBe('{step:profile/udhr20/mt}/mt.safetensors,{step:profile/udhr20/sw}/sw.safetensors');
    expect(step(withStats).deps.sort()).toEqual(['identify/udhr20/lape-topRate=0.1', 'profile/udhr20/mt', 'profile/udhr20/sw']);
    expect(step(p).argv).not.toContain('--stats'); // scale:2 reads none: the step (and its hash) as before
  });

  it("plans Language Arithmetics' forcing and fallback per identification setting (and amplification), with their generation", async () => {
    const prompts = path.join(tmp, 'prompts');
    mkdirSync(prompts, { recursive: true });
    writeFileSync(path.join(prompts, 'mt.jsonl'), JSON.stringify({ prompt: 'Q: Kif int? \nA:' }) + '\n');
    const neutral = path.join(tmp, 'neutral.txt');
    writeFileSync(neutral, 'Q: Hello?A: \n');
    const lid = path.join(ROOT, 'test', 'fixtures-langid', 'tiny-lid.bin');
    const la = (extra: (d: Record<string, any>) => void = () => {}) => variant((d) => {
      d['steer'].forcing = { prompts, amplify: ['add-mean:1', 'scale:3'], deactivateValue: 0, langid: `fasttext:${path.relative(tmp, lid)}`, maxNewTokens: 256,
        stop: ['\nQ:', '\nA:'], repetitionPenalty: 1.1 };
      d['steer'].fallback = { prompts: neutral, deactivate: ['mt', 'sw'], deactivateValue: -1.5, langid: 'fasttext', maxNewTokens: 128, stop: ['\nQ:'] };
      extra(d);
    });
    const p = await plan(la());
    expect(kinds(p)['forcing']).toBe(4); // 2 settings × 2 amplifications
    expect(kinds(p)['fallback']).toBe(2);
    const f = p.byId.get('forcing/udhr20/lape-topRate=0.1/amplify=add-mean:1')!;
    expect(f.cell).toEqual({ model: 'udhr20', identify: 'lape-topRate=0.1', variant: 'amplify=add-mean:1' });
    expect(f.argv).toEqual(['steer', 'forcing', '{model:0}', '--masks', '{step:identify/udhr20/lape-topRate=0.1}/mask.json', '--prompts', prompts, '--target', 'mt,sw',
      '--amplify', 'add-mean:1', '--stats', '{step:profile/udhr20/mt}/mt.safetensors,{step:profile/udhr20/sw}/sw.safetensors', '--deactivate-value', '0',
      '--langid', `fasttext:${lid}`, '--max-new-tokens', '256', '--stop', '\\nQ:', '--stop', '\\nA:', '--repetition-penalty', '1.1', '--out', '{out}/forcing.json', '--json']);
    expect(p.byId.get('forcing/udhr20/lape-topRate=0.1/amplify=scale:3')!.argv).not.toContain('--stats');
    expect(p.byId.get('fallback/udhr20/lape-topRate=0.05')!.argv).toEqual(['steer', 'fallback', '{model:0}', '--masks', '{step:identify/udhr20/lape-topRate=0.05}/mask.json',
      '--prompts', neutral, '--deactivate', 'mt,sw', '--deactivate-value', '-1.5', '--langid', 'fasttext', '--max-new-tokens', '128', '--stop', '\\nQ:',
      '--out', '{out}/fallback.json', '--json']);
    // the prompts' content is part of the hash: a changed prompt re-runs forcing, not fallback
    writeFileSync(path.join(prompts, 'mt.jsonl'), JSON.stringify({ prompt: 'Q: X\'jisimek? \nA:' }) + '\n');
    const q = await plan(la());
    expect(q.byId.get(f.id)!.hash).not.toBe(f.hash);
    expect(q.byId.get('fallback/udhr20/lape-topRate=0.05')!.hash).toBe(p.byId.get('fallback/udhr20/lape-topRate=0.05')!.hash);
    const bad: [(d: Record<string, any>) => void, RegExp][] = [
      [(d) => { d['steer'].forcing.prompts = path.join(tmp, 'nope'); }, /steer\.forcing\.prompts: .*nope: no such file or folder/],
      [(d) => { d['steer'].forcing.amplify = 'louder'; }, /steer\.forcing\.amplify: amplification setting "louder": unknown setting/],
      [(d) => { d['steer'].forcing.amplify = ['p_max']; }, /steer\.forcing\.amplify: setting p_max reads sentence means/],
      [(d) => { d['steer'].forcing.targets = ['de']; }, /steer\.forcing\.targets\[0\]: 'de' is not one of the sweep's languages/],
      [(d) => { d['steer'].forcing.langid = 'fasttext:missing.bin'; }, /steer\.forcing\.langid: .*missing\.bin: no such fastText model/],
      [(d) => { d['steer'].forcing.langid = 'franc'; }, /steer\.forcing\.langid: must match pattern/],
      [(d) => { d['steer'].fallback.deactivate = ['mt', 'mt']; }, /steer\.fallback\.deactivate: 'mt' is listed twice/],
      [(d) => { d['steer'].fallback.deactivate = ['en']; }, /steer\.fallback\.deactivate\[0\]: 'en' is not one of the sweep's languages/],
    ];
    for (const [change, msg] of bad) expect(() => loadSweep(la(change))).toThrow(msg);
  });

  it('eval interventions that read statistics get every language\'s statistics; a joint ranking\'s identify step names its masks', async () => {
    const p = await plan(variant((d) => { d['eval'].interventions = ['add:1:mean:{lang}:mask={mask}:lang={lang}', 'deactivate:{mask}:{lang}']; }));
    const add = p.byId.get('eval/udhr20/ppl/mt/iv0-add@lape-topRate=0.05')!.argv;
    expect(add[add.indexOf('--stats') + 1]).toBe('{step:profile/udhr20/mt}/mt.safetensors,{step:profile/udhr20/sw}/sw.safetensors');
    expect(p.byId.get('eval/udhr20/ppl/mt/iv1-deactivate@lape-topRate=0.05')!.argv).not.toContain('--stats');
    expect(p.byId.get('identify/udhr20/lape-topRate=0.05')!.masks).toEqual(['mask.json']);
  });

  it('plans shards with a merge step per language', async () => {
    const p = await plan(variant((d) => { d['profile'].shards = 3; }));
    expect(kinds(p)['profile']).toBe(6);
    expect(p.byId.get('merge/udhr20/mt')!.deps).toEqual(['profile/udhr20/mt/1of3', 'profile/udhr20/mt/2of3', 'profile/udhr20/mt/3of3']);
    expect(p.byId.get('identify/udhr20/lape-topRate=0.05')!.deps.sort()).toEqual(['merge/udhr20/mt', 'merge/udhr20/sw']);
  });
});

describe('sweep plan of a large grid', () => {
  it('plans 100 languages × 5 methods × 3 tasks in under a second', async () => {
    const data = path.join(tmp, 'data');
    mkdirSync(data, { recursive: true });
    const langs = udhrLanguages().slice(0, 100).map((l) => l.id);  // languages the UDHR corpus has (the plan checks)
    const file = variant((d) => {
      d['languages'] = langs; d['lowResource'] = langs.slice(0, 10);
      d['identify'] = [{ method: 'lape', topRate: 0.05 }];
      d['finetune'].methods = ['full', 'mlp', 'neurons', 'random', 'lora'];
      delete d['finetune'].lr;
      d['eval'] = { tasks: ['ppl', 'belebele', 'xnli'], text: 'udhr:heldout', data };
    });
    // CPU time, not wall time: the test machine may be shared (wall time is printed)
    const started = performance.now(), cpu0 = process.cpuUsage();
    const p = await planSweep(loadSweep(file), { out: path.join(tmp, 'big') });
    const cpu = process.cpuUsage(cpu0), seconds = (cpu.user + cpu.system) / 1e6;
    console.log(`sweep plan of ${p.steps.length} steps: ${seconds.toFixed(3)} s CPU, ${((performance.now() - started) / 1000).toFixed(3)} s wall`);
    // profile 100; identify 1 (+ its ppl-matrix); text: train and held-out per language; finetune 5 per language;
    // eval: per task and language the base model and the 5 fine-tuned ones.
    expect(kinds(p)).toEqual({ profile: 100, identify: 1, 'ppl-matrix': 1, text: 200, finetune: 500, eval: 1800 });
    expect(p.steps.length).toBe(2602);
    expect(p.byId.get('identify/udhr20/lape-topRate=0.05')!.deps.length).toBe(100);
    expect(p.byId.get(`eval/udhr20/xnli/${langs[42]}/ft-neurons@lape-topRate=0.05`)!.deps).toEqual([`finetune/udhr20/lape-topRate=0.05/neurons/${langs[42]}`]);
    // dependencies: identify 100, ppl-matrix 1; finetune: train + held-out text (full, mlp, lora), + the mask (neurons,
    // random): 3·100·2 + 2·100·3; eval ppl: base 1 (text), fine-tuned 2 each: 100·11; belebele, xnli: 5 per language.
    expect(p.steps.reduce((a, s) => a + s.deps.length, 0)).toBe(100 + 1 + 1200 + 1100 + 1000);
    expect(seconds).toBeLessThan(1);
  });
});

describe('bad sweep files', () => {
  const refused = (change: (doc: Record<string, any>) => void): string => {
    const file = variant(change);
    try { loadSweep(file); } catch (e) { return (e as Error).message.replace(file, 'F'); }
    throw new Error('accepted');
  };
  const lineOf = (file: string, text: string) => readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes(text)) + 1;

  it('names the line and the key of an unknown key, a wrong type, a bad value', () => {
    const file = variant((d) => { d['finetune'].stpes = 4; });
    expect(() => loadSweep(file)).toThrow(`${file}:${lineOf(file, 'stpes')}: finetune.stpes: unknown key 'stpes'`);
    expect(refused((d) => { d['profile'].maxLen = 'long'; })).toMatch(/^F:\d+: profile\.maxLen: must be integer$/);
    expect(refused((d) => { d['identify'][0].method = 'magic'; })).toMatch(/^F:\d+: identify\[0\]\.method: must be one of "lape", /);
    expect(refused((d) => { d['finetune'].methods = ['neurons', 'adapter']; })).toMatch(/^F:\d+: finetune\.methods\[1\]: must be one of /);
    expect(refused((d) => { delete d['profile']; })).toMatch(/^F:\d+: \(top level\): missing key 'profile'$/);
    expect(refused((d) => { d['resources'].default.mem = 'lots'; })).toMatch(/^F:\d+: resources\.default\.mem: must match pattern/);
  });

  it('refuses impossible combinations and missing inputs before anything runs', () => {
    expect(refused((d) => { d['finetune'].languages = ['mt', 'de']; })).toMatch(/^F:\d+: finetune\.languages\[1\]: 'de' is not one of the sweep's languages \(mt, sw\)$/);
    expect(refused((d) => { d['identify'] = [{ method: 'ap' }]; })).toMatch(/identify\[0\]\.method: ap needs sequence means: set profile\.seqMeans: true$/);
    expect(refused((d) => { d['identify'] = [{ method: 'ap', topRate: 0.1, filterRate: 0.9 }]; d['profile'].seqMeans = true; })).toMatch(/LAPE settings/);
    expect(refused((d) => { delete d['lowResource']; d['finetune'].languages = 'low'; })).toMatch(/finetune\.languages: 'low' selects the lowResource languages/);
    expect(refused((d) => { d['models'] = '/nonexistent/model'; })).toMatch(/^F:\d+: models: \/nonexistent\/model: no model there \(no config\.json\)$/);
    expect(refused((d) => { d['profile'].corpus = '/nonexistent/corpus'; })).toMatch(/profile\.corpus: \/nonexistent\/corpus: no such file or folder$/);
    expect(refused((d) => { d['eval'].tasks = ['ppl', 'xnli']; })).toMatch(/eval\.tasks\[1\]: task xnli needs eval\.data/);
    expect(refused((d) => { d['eval'].interventions = ['deactivate:{mask}:{language}']; })).toMatch(/unknown placeholder \{language\}/);
    expect(refused((d) => { d['finetune'].lr = { neurons: 1e-3, full: 1e-4 }; })).toMatch(/finetune\.lr\.full: a learning rate for method 'full'/);
  });

  it('refuses what would only fail when its step runs: token budgets, language ids, each language\'s input file', () => {
    expect(refused((d) => { d['profile'].tokens = '2Q'; })).toMatch(/^F:\d+: profile\.tokens: /);
    expect(refused((d) => { d['languages'] = ['mt', 'qqq']; d['lowResource'] = ['mt']; })).toMatch(/^F:\d+: profile\.corpus: unknown UDHR language "qqq"/);
    expect(refused((d) => { d['languages'] = ['mt', '../x']; d['lowResource'] = ['mt']; })).toMatch(/^F:\d+: languages\[1\]: language id "\.\.\/x" is not a plain name/);
    // Text folders holding only mt.txt, while finetune / eval read every selected language's file.
    const texts = path.join(tmp, 'texts-mt-only');
    mkdirSync(texts, { recursive: true });
    writeFileSync(path.join(texts, 'mt.txt'), 'Il-bnedmin kollha jitwieldu ħielsa\n');
    expect(refused((d) => { d['finetune'].languages = 'all'; d['finetune'].train = `${texts}/{lang}.txt`; }))
      .toMatch(new RegExp(`^F:\\d+: finetune\\.train: ${texts}/sw\\.txt: no such file \\(language sw\\)$`));
    expect(refused((d) => { d['eval'].languages = 'all'; d['eval'].text = texts; }))
      .toMatch(new RegExp(`^F:\\d+: eval\\.text: ${texts}/sw\\.txt: no such file \\(language sw\\)$`));
    expect(refused((d) => { d['finetune'].train = path.join(texts, 'mt.txt'); })).toMatch(/finetune\.train: .*mt\.txt: is a file; give a folder holding <lang>\.txt, or a path with \{lang\}/);
    const corpus = path.join(tmp, 'corpus-mt-only');
    mkdirSync(corpus, { recursive: true });
    writeFileSync(path.join(corpus, 'mt.txt'), 'Il-bnedmin kollha jitwieldu ħielsa\n');
    expect(refused((d) => { d['profile'].corpus = corpus; })).toMatch(/profile\.corpus: .*corpus-mt-only: no corpus for sw \(expected <lang>\.txt/);
    // windows and chunks beyond the model's context (udhr20: 128), which the steps would refuse after those before them
    expect(refused((d) => { d['finetune'].chunk = 1000; })).toMatch(/^F:\d+: finetune\.chunk: 1000 is longer than the context of .*udhr20 \(128 tokens\)$/);
    expect(refused((d) => { d['profile'].maxLen = 129; })).toMatch(/^F:\d+: profile\.maxLen: 129 exceeds the context of .*udhr20 \(128 tokens\): give a maxLen of at most 128$/);
    expect(refused((d) => { d['profile'].maxLen = 128; d['profile'].scope = 'sentences'; })).toMatch(/profile\.maxLen: 128 plus BOS exceeds .*at most 127$/);
    expect(refused((d) => { delete d['profile'].maxLen; })).toMatch(/^F:\d+: profile: the default maxLen 512 exceeds the context/);
    expect(() => loadSweep(variant((d) => { d['profile'].maxLen = 128; d['finetune'].chunk = 128; }))).not.toThrow();
  });

  it('the CLI prints one line with the line number and exits 1, for YAML syntax errors too', () => {
    const file = path.join(tmp, 'broken.yaml');
    writeFileSync(file, 'models: x\nlanguages: [mt, sw\nprofile: {corpus: udhr}\n');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'langneurons.js'), 'sweep', 'plan', file], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^langneurons: error: ${file.replace(/[.]/g, '\\.')}:\\d+: not valid YAML`));
    const dupe = path.join(tmp, 'dupe.yaml');
    writeFileSync(dupe, readFileSync(variant(() => {}), 'utf8') + 'retries: 2\nretries: 3\n');
    expect(() => loadSweep(dupe)).toThrow(/not valid YAML: Map keys must be unique/);
    const bad = variant((d) => { d['retries'] = 'twice'; });
    const r2 = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'langneurons.js'), 'sweep', 'run', bad], { encoding: 'utf8' });
    expect(r2.status).toBe(1);
    expect(r2.stderr).toBe(`langneurons: error: ${bad}:${lineOf(bad, 'retries')}: retries: must be integer\n`);
  });
});
