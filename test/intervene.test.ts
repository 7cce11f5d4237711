// Interventions (src/intervene): spec parsing, resolution against hand-made masks and statistics, and the
// engine on the stories260k fixture: equivalence with edited down_proj weights, identity edits, positions,
// generate / score wiring, and bad input.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { logLikelihoodTokens, scoreTokens } from '../src/engine/score.js';
import { generateTokens } from '../src/generate/generate.js';
import { writeMaskJson, MASK_FORMAT, type NeuronMask } from '../src/identify/masks.js';
import { parseInterventionFile, parseInterventionSpec, resolveIntervention, resolveSpecs } from '../src/intervene/index.js';
import { readAllTensors, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { loadAddon } from '../src/native/addon.js';
import { modelIdentity } from '../src/profile/identity.js';
import { STATS_FORMAT, writeStats, type ActivationStats, type ModelIdentity } from '../src/profile/stats.js';
import { copyFixture, fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

describe('intervention specs', () => {
  it('parses the shorthand verbs', () => {
    expect(parseInterventionSpec('deactivate:masks/lape.json:en')).toMatchObject({
      neurons: { mask: 'masks/lape.json', languages: ['en'] }, operation: { op: 'set', value: 0 }, site: 'act', positions: 'all', layers: 'all' });
    expect(parseInterventionSpec('amplify:m.json:sw', 'stats').operation).toEqual({ op: 'set', value: { statistic: 'p_max', language: 'sw' } });
    expect(parseInterventionSpec('amplify:m.json:sw:p_median:stats=s').stats).toBe('s');
    expect(parseInterventionSpec('random:m.json:en').neurons).toEqual({ mask: 'm.json', languages: ['en'], randomSeed: 0 });
    expect(parseInterventionSpec('random:m.json:en:seed=3').neurons).toEqual({ mask: 'm.json', languages: ['en'], randomSeed: 3 });
  });

  it('parses the general operations and options', () => {
    const m = ':mask=m.json:lang=en+de';
    expect(parseInterventionSpec(`zero${m}`).neurons).toEqual({ mask: 'm.json', languages: ['en', 'de'] });
    expect(parseInterventionSpec(`set:0.5${m}`).operation).toEqual({ op: 'set', value: 0.5 });
    expect(parseInterventionSpec(`set:mean:de${m}`).operation).toEqual({ op: 'set', value: { statistic: 'mean', language: 'de' } });
    expect(parseInterventionSpec(`add:1.5:mean:de${m}`).operation).toEqual({ op: 'add', alpha: 1.5, value: { statistic: 'mean', language: 'de' } });
    expect(parseInterventionSpec(`add:-1${m}`).operation).toEqual({ op: 'add', value: -1 });
    expect(parseInterventionSpec(`scale:2${m}`).operation).toEqual({ op: 'scale', factor: 2 });
    expect(parseInterventionSpec('diffmean:sw:mask=m.json').neurons).toEqual({ mask: 'm.json', languages: ['sw'] });
    expect(parseInterventionSpec('diffmean:sw:0.5:mask=m.json:others=en+de').operation).toEqual({ op: 'diffmean', language: 'sw', alpha: 0.5, others: ['en', 'de'] });
    expect(parseInterventionSpec('testtime:=:max:2:neurons=all').operation).toEqual({ op: 'testtime', combine: '=', statistic: 'max', factor: 2 });
    const s = parseInterventionSpec(`scale:2${m}:site=h:positions=prompt:layers=1-3,5`);
    expect([s.site, s.positions, s.layers]).toEqual(['h', 'prompt', [[1, 3], [5, 5]]]);
  });

  it('refuses malformed specs with a message naming the problem', () => {
    const bad: [string, RegExp][] = [
      ['explode:m.json:en', /unknown operation "explode"/], ['zero', /no neurons selected/], ['zero:mask=m.json:lang=en:color=red', /unknown option "color"/],
      ['set:abc:mask=m.json:lang=en', /the value must be a finite number, got "abc"/], ['set:x1:de:mask=m.json:lang=en', /unknown statistic "x1"/],
      ['scale:nan:neurons=all', /finite number/], ['zero:neurons=all:site=q', /site must be one of act, gate, h/], ['zero:neurons=all:layers=5-2', /reversed/],
      ['zero:neurons=all:positions=middle', /positions must be/], ['testtime:-:max:neurons=all', /combines with =, \* or \+/],
      ['testtime:=:p_max:neurons=all', /unknown row statistic/], ['deactivate:m.json', /expected deactivate:<mask>:<language>/],
      ['zero:neurons=all:mask=m.json', /either neurons=all or a mask/], ['zero:neurons=all:site=h:site=act', /given twice/],
    ];
    for (const [text, msg] of bad) expect(() => parseInterventionSpec(text), text).toThrow(msg);
  });

  it('reads the JSON file form (strings and canonical objects)', () => {
    const specs = parseInterventionFile(JSON.stringify(['zero:neurons=all', { neurons: 'all', operation: { op: 'scale', factor: 3 }, layers: '2-3' }]), 'f.json', 'st');
    expect(specs.map((s) => [s.operation.op, s.layers, s.stats])).toEqual([['set', 'all', 'st'], ['scale', [[2, 3]], 'st']]);
    expect(() => parseInterventionFile('{', 'f.json')).toThrow(/not valid JSON/);
    expect(() => parseInterventionFile('[{"neurons":"all","operation":{"op":"scale"}}]', 'f.json')).toThrow(/f.json\[0\].*finite factor/);
    expect(parseInterventionFile('\ufeff["zero:neurons=all"]', 'bom.json')).toHaveLength(1); // a leading byte order mark is dropped
  });

  it('refuses unknown keys in the JSON form, naming the file, the entry and the key (the string form refuses unknown options)', () => {
    const file = (entry: unknown) => () => parseInterventionFile(JSON.stringify(['zero:neurons=all', entry]), 'iv.json');
    const all = { neurons: 'all', operation: { op: 'scale', factor: 2 } };
    expect(file({ ...all, sitee: 'h' })).toThrow(/"iv\.json\[1\]": unknown key "sitee" in the spec/);
    expect(file({ ...all, operation: { op: 'scale', factor: 2, alpha: 3 } })).toThrow(/"iv\.json\[1\]": unknown key "alpha" in a scale operation/);
    expect(file({ neurons: { mask: 'm.json', languages: ['en'], seed: 3 }, operation: { op: 'set', value: 0 } })).toThrow(/iv\.json\[1\].*unknown key "seed" in "neurons"/);
    expect(file({ ...all, operation: { op: 'set', value: { statistic: 'mean', language: 'en', lang: 'de' } } })).toThrow(/iv\.json\[1\].*unknown key "lang"/);
    // every key the canonical form has still passes
    expect(file({ neurons: { mask: 'm.json', languages: ['en'], randomSeed: 1 }, operation: { op: 'add', value: { statistic: 'mean', language: 'en' }, alpha: 2 },
      site: 'h', positions: 'prompt', layers: '1-2', stats: 's', source: 'mine' })()[1]).toMatchObject({ site: 'h', positions: 'prompt', layers: [[1, 2]] });
    // a string entry's errors name its place in the file too
    expect(() => parseInterventionFile('["zero:neurons=all:sitee=h"]', 'iv.json')).toThrow(/"iv\.json\[0\]": unknown option "sitee"/);
  });

  it('names an --intervene-file entry as <file>[<index>] in errors found when it is resolved', async () => {
    const identity: ModelIdentity = { name: 'toy', modelType: 'llama', layers: 4, hidden: 4, intermediate: 8, fingerprint: 'f'.repeat(64) };
    const specs = parseInterventionFile(JSON.stringify([{ neurons: 'all', operation: { op: 'scale', factor: 2 }, layers: '9' }]), 'iv.json');
    await expect(resolveSpecs(specs, { identity })).rejects.toThrow(/^intervention "iv\.json\[0\]": layer 9 is outside the model's layers 0-3$/);
  });
});

// ---------------------------------------------------------------------------------------------------------------

const L = 5, I = 172, LAYER = 2;
const EN = [3, 17, 100];

function mask(identity: ModelIdentity, languages: Record<string, number[][]>): NeuronMask {
  return { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: identity, sources: [], layers: L, width: I, languages };
}
const perLayer = (units: Record<number, number[]>) => Array.from({ length: L }, (_, l) => units[l] ?? []);

/** Statistics where every value is a known function of (language offset, layer, unit). */
function stats(identity: ModelIdentity, language: string, offset: number, opts: { tokens?: number; sum?: (l: number, j: number) => number; seqMeans?: boolean } = {}): ActivationStats {
  const tokens = opts.tokens ?? 10, n = L * I, B = 4, S = 3;
  const sum = new Float64Array(n), counts = new Float64Array(n * B), seqMeans = new Float32Array(S * n);
  for (let l = 0; l < L; l++) for (let j = 0; j < I; j++) {
    const u = l * I + j;
    sum[u] = opts.sum ? opts.sum(l, j) : tokens * (offset + l + j / 1000);
    counts.set([1, 1, 0, 2], u * B); // edges 0..4: median at 2 + (2 - 2) ... see the test
    for (let s = 0; s < S; s++) seqMeans[(s * L + l) * I + j] = offset + s * 10 + j;
  }
  return {
    meta: { format: STATS_FORMAT, model: identity, language, scope: { mode: 'sentences', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0 },
      layers: [0, 1, 2, 3, 4], corpus: { files: [], fingerprint: 'x' }, toolVersion: 'test', shards: 1 },
    tokens, sequences: S,
    sites: new Map([['act', { site: 'act', width: I, overZero: new Float64Array(n), sum, sumSq: new Float64Array(n),
      histogram: { edges: Float64Array.of(0, 1, 2, 3, 4), counts }, ...(opts.seqMeans === false ? {} : { seqMeans }) }]]),
  };
}

describe('interventions on stories260k', () => {
  let model: LanguageModel, identity: ModelIdentity, tmp: string, maskFile: string, statsDir: string;
  const tokens = [1, 403, 407, 261, 378, 1009 % 512, 280, 330, 47, 19];
  const edited: string[] = [];

  beforeAll(async () => {
    model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    identity = modelIdentity(model.checkpoint);
    tmp = await makeTempDir('langneurons-intervene-');
    maskFile = path.join(tmp, 'mask.json');
    await writeMaskJson(maskFile, mask(identity, { en: perLayer({ [LAYER]: EN }), sw: perLayer({ 0: [5, 6], [LAYER]: [17, 50] }), none: perLayer({}) }));
    statsDir = path.join(tmp, 'stats');
    await mkdir(statsDir);
    await writeStats(path.join(statsDir, 'en.safetensors'), stats(identity, 'en', 0));
    await writeStats(path.join(statsDir, 'de.safetensors'), stats(identity, 'de', 2));
    await writeStats(path.join(statsDir, 'sw.safetensors'), stats(identity, 'sw', 5, { seqMeans: false }));
  });
  afterAll(async () => { await removeDir(tmp); for (const d of edited) await removeDir(d); });

  /** The fixture with layer LAYER's down_proj columns `cols` multiplied by f. */
  async function editedModel(cols: number[], f: number): Promise<LanguageModel> {
    const dir = await copyFixture('stories260k');
    edited.push(dir);
    const file = path.join(dir, 'model.safetensors');
    const all = await readAllTensors(file);
    const out: Record<string, TensorToWrite> = {};
    for (const [name, { info, data }] of all) out[name] = { dtype: info.dtype, shape: info.shape, data };
    const w = out[`model.layers.${LAYER}.mlp.down_proj.weight`]!.data as Float32Array;
    for (let r = 0; r < 64; r++) for (const j of cols) w[r * I + j]! *= f;
    await writeSafetensors(file, out);
    return loadModel(dir, { threads: 2 });
  }

  const logits = async (m: LanguageModel, opts = {}) => (await m.forward([tokens, tokens.slice(0, 4)], { logits: 'all', ...opts })).logits;
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((w, x, i) => Math.max(w, Math.abs(x - b[i]!)), 0);

  it('zeroing neurons at act or h equals zeroing their down_proj columns; scaling h by 2 equals scaling them', async () => {
    const plain = await logits(model);
    for (const [spec, f] of [['deactivate:MASK:en', 0], ['zero:mask=MASK:lang=en:site=h', 0], ['scale:2:mask=MASK:lang=en:site=h', 2]] as const) {
      const want = await logits(await editedModel(EN, f));
      const iv = await resolveIntervention(model, spec.replace('MASK', maskFile));
      expect(iv.edits).toBe(3);
      const got = await logits(model, { intervene: iv });
      expect(maxDiff(got, want), spec).toBeLessThan(1e-5);
      expect(maxDiff(plain, want), 'the edit must matter').toBeGreaterThan(1e-3);
      // With the statistics on (the recorded activation loop) too.
      const withStats = await logits(model, { intervene: iv, stats: model.createStats({ sites: ['act', 'h'] }) });
      expect(maxDiff(withStats, want)).toBeLessThan(1e-5);
    }
  });

  it('an empty neuron set changes nothing; setting neurons to their own value changes nothing', async () => {
    const plain = await logits(model);
    expect(await logits(model, { intervene: await resolveIntervention(model, `deactivate:${maskFile}:none`) })).toEqual(plain);
    // One token: its act values at layer LAYER, written as the "mean" of a language, set back.
    const one = [tokens[3]!];
    const cap = (await model.forward([one], { logits: 'all', capture: { site: 'act', layer: LAYER } })).capture!;
    const own = path.join(tmp, 'own.safetensors');
    await writeStats(own, stats(identity, 'own', 0, { tokens: 1, sum: (l, j) => (l === LAYER ? cap[j]! : 0) }));
    const iv = await resolveIntervention(model, `set:mean:own:mask=${maskFile}:lang=en+sw:layers=${LAYER}:stats=${own}`);
    const base = (await model.forward([one], { logits: 'all' })).logits;
    expect((await model.forward([one], { logits: 'all', intervene: iv })).logits).toEqual(base);
    const shifted = await resolveIntervention(model, `add:0.25:mask=${maskFile}:lang=en`);
    expect((await model.forward([one], { logits: 'all', intervene: shifted })).logits).not.toEqual(base);
  });

  it("p_max / p_median of window means (not sentences, Rahmanisa's definition) resolve with a warning naming the file", async () => {
    const warnings: string[] = [];
    await resolveSpecs([parseInterventionSpec(`amplify:${maskFile}:en:p_max`)], { identity, stats: statsDir, onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([]); // sentence means: the paper's statistic
    const windows = path.join(tmp, 'stats-windows');
    await mkdir(windows, { recursive: true });
    const st = stats(identity, 'en', 0);
    st.meta.scope = { mode: 'windows', maxLen: 128, bos: false, countPadding: false, tokenBudget: 0 };
    await writeStats(path.join(windows, 'en.safetensors'), st);
    const r = await resolveSpecs([parseInterventionSpec(`amplify:${maskFile}:en:p_median`)], { identity, stats: windows, onWarning: (m) => warnings.push(m) });
    expect(r.counts).toEqual([3]);
    expect(warnings).toEqual([`${path.join(windows, 'en.safetensors')}: p_median is defined over sentences (Rahmanisa et al.), but these sequence means are of windows of 128 tokens; profile with --scope sentences --seq-means for the paper's values`]);
  });

  it('resolves statistics, composition, random sets, layers and positions into the native arrays', async () => {
    const ctx = { identity, stats: statsDir };
    const r = await resolveSpecs([
      parseInterventionSpec(`set:mean:de:mask=${maskFile}:lang=en`), // de: offset 2 -> mean 2 + 2 + j/1000
      parseInterventionSpec(`add:2:p_max:en:mask=${maskFile}:lang=en:positions=generated`), // max over sequences: 20 + j
      parseInterventionSpec(`set:p_median:en:mask=${maskFile}:lang=en:positions=prompt`), // 10 + j
      parseInterventionSpec(`set:median:en:mask=${maskFile}:lang=en`), // counts [1,1,0,2] over [0,4]: q 0.5 -> 2 in bin 1 -> 2
      parseInterventionSpec(`diffmean:en:mask=${maskFile}:others=de`), // 1 * ((0 + 2 + j/1000) - (2 + 2 + j/1000)) = -2
      parseInterventionSpec(`testtime:*:iqr:3:mask=${maskFile}:lang=sw:layers=0`),
    ], ctx);
    expect(r.counts).toEqual([3, 3, 3, 3, 3, 2]);
    expect(r.needsClasses).toBe(true);
    const v = Array.from(r.arrays.values.subarray(0, 15));
    const close = (got: number[], want: number[]) => got.forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 4));
    close(v.slice(0, 3), EN.map((j) => 4 + j / 1000));
    close(v.slice(3, 6), EN.map((j) => 2 * (20 + j)));
    close(v.slice(6, 9), EN.map((j) => 10 + j));
    close(v.slice(9, 12), [2, 2, 2]);
    close(v.slice(12, 15), [-2, -2, -2]);
    expect(Array.from(r.arrays.ops)).toEqual([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2]);
    expect(Array.from(r.arrays.when.subarray(0, 9))).toEqual([255, 255, 255, 2, 2, 2, 1, 1, 1]);
    expect(Array.from(r.arrays.neurons.subarray(15))).toEqual([5, 6]);
    expect(Array.from(r.arrays.rules)).toEqual([...new Array(15).fill(-1), 0, 0]);
    expect([Array.from(r.arrays.ruleLayers), Array.from(r.arrays.ruleStats), Array.from(r.arrays.ruleFactors)]).toEqual([[0], [4], [3]]);
    // A random set: the same size per layer, other neurons (seeded).
    const rnd = await resolveSpecs([parseInterventionSpec(`random:${maskFile}:sw:seed=7`)], ctx);
    expect(Array.from(rnd.arrays.layers)).toEqual([0, 0, LAYER, LAYER]);
    expect(Array.from(rnd.arrays.neurons)).not.toEqual([5, 6, 17, 50]);
    const again = await resolveSpecs([parseInterventionSpec(`random:${maskFile}:sw:seed=7`)], ctx);
    expect(again.arrays.neurons).toEqual(rnd.arrays.neurons);
  });

  it('composes specs in order on the same neuron', async () => {
    const cap = async (specs: string[]) => (await model.forward([tokens], { logits: 'none', lastLayer: LAYER, capture: { site: 'act', layer: LAYER },
      intervene: await resolveIntervention(model, specs) })).capture!;
    const a = await cap([`set:1.5:mask=${maskFile}:lang=en`, `scale:2:mask=${maskFile}:lang=en`]);
    const b = await cap([`scale:2:mask=${maskFile}:lang=en`, `set:1.5:mask=${maskFile}:lang=en`]);
    for (let t = 0; t < tokens.length; t++) { expect(a[t * I + 17]).toBe(3); expect(b[t * I + 17]).toBe(1.5); }
  });

  it('prompt-only and generated-only interventions leave the other positions untouched', async () => {
    // Layer 0: the FFN runs after every token's attention, so a token's act there depends on no other token's edit.
    const from = 6;
    const capture = async (positions: string | null) => (await model.forward([tokens], {
      logits: 'none', lastLayer: 0, capture: { site: 'act', layer: 0 },
      ...(positions ? { intervene: await resolveIntervention(model, `set:9:mask=${maskFile}:lang=sw:positions=${positions}`), generatedFrom: [from] } : {}),
    })).capture!;
    const plain = await capture(null);
    for (const positions of ['prompt', 'generated']) {
      const got = await capture(positions);
      for (let t = 0; t < tokens.length; t++) {
        const hit = positions === 'prompt' ? t < from : t >= from;
        for (let j = 0; j < I; j++) expect(got[t * I + j], `${positions} t=${t} j=${j}`).toBe(hit && (j === 5 || j === 6) ? 9 : plain[t * I + j]);
      }
    }
    // The same through the statistics: generated tokens' act sums at layer 0 are untouched by a prompt intervention.
    const sums = async (intervene: boolean) => {
      const st = model.createStats({ sites: ['act'], layers: 1 });
      const iv = intervene ? { intervene: await resolveIntervention(model, `zero:neurons=all:positions=prompt`), generatedFrom: [from] } : {};
      await model.forward([tokens], { logits: 'none', lastLayer: 0, stats: st, countMask: [tokens.map((_, t) => (t >= from ? 1 : 0))], ...iv });
      return st.read().sites.get('act')!.sum;
    };
    expect(await sums(true)).toEqual(await sums(false));
  });

  it('generate and score take the intervention (prefill = prompt, decoding = generated)', async () => {
    const prompt = [1, 403, 407, 261];
    const gen = async (spec?: string) => (await generateTokens(model, [prompt], { maxNewTokens: 6, stopAtEos: false,
      ...(spec ? { intervene: await resolveIntervention(model, spec) } : {}) }))[0]!.tokens;
    const plain = await gen();
    const onGenerated = await gen('zero:neurons=all:layers=1-4:positions=generated');
    expect(onGenerated[0]).toBe(plain[0]); // the first token comes from the prompt's logits
    expect(onGenerated).not.toEqual(plain);
    expect(await gen(`deactivate:${maskFile}:none`)).toEqual(plain);
    const nll = async (spec?: string) => (await scoreTokens(model, tokens, spec ? { intervene: await resolveIntervention(model, spec) } : {})).meanNll;
    expect(await nll(`deactivate:${maskFile}:none`)).toBe(await nll());
    expect(await nll('zero:neurons=all:layers=2')).not.toBe(await nll());
    // logLikelihood: the context is prompt; a generated-only edit leaves the first continuation token's score alone.
    const pair = [{ context: prompt, continuation: [378, 280, 330] }];
    const ll = async (spec?: string) => (await logLikelihoodTokens(model, pair, 4096, spec ? { intervene: await resolveIntervention(model, spec) } : {}))[0]!.logprob;
    expect(await ll('zero:neurons=all:positions=generated')).not.toBe(await ll());
    const firstOnly = [{ context: prompt, continuation: [378] }];
    expect((await logLikelihoodTokens(model, firstOnly, 4096, { intervene: await resolveIntervention(model, 'zero:neurons=all:positions=generated') }))[0]!.logprob)
      .toBe((await logLikelihoodTokens(model, firstOnly))[0]!.logprob);
  });

  it('refuses bad input with clear errors', async () => {
    const other = path.join(tmp, 'other.json');
    await writeMaskJson(other, mask({ ...identity, name: 'elsewhere', fingerprint: 'f'.repeat(64) }, { en: perLayer({}) }));
    await expect(resolveIntervention(model, `deactivate:${other}:en`)).rejects.toThrow(/mask was made for elsewhere/);
    await expect(resolveIntervention(model, `deactivate:${maskFile}:fr`)).rejects.toThrow(/unknown language "fr".*en, sw, none/);
    await expect(resolveIntervention(model, `amplify:${maskFile}:sw:p_max`, { stats: statsDir })).rejects.toThrow(/p_max needs sequence means/);
    await expect(resolveIntervention(model, `amplify:${maskFile}:sw:mean`)).rejects.toThrow(/statistics of "sw" are needed/);
    await expect(resolveIntervention(model, `set:mean:sw:mask=${maskFile}:lang=en:site=h`, { stats: statsDir })).rejects.toThrow(/no statistics at site h/);
    await expect(resolveIntervention(model, `set:mean:fr:mask=${maskFile}:lang=en`, { stats: statsDir })).rejects.toThrow(/fr.safetensors/);
    await expect(resolveIntervention(model, 'zero:neurons=all:layers=3-9')).rejects.toThrow(/layer 9 is outside/);
    const qwen = await loadModel(fixturePath('tiny-qwen2'), { threads: 1 });
    const iv = await resolveIntervention(model, 'zero:neurons=all:layers=0');
    await expect(qwen.forward([[1, 2]], { intervene: iv })).rejects.toThrow(/resolved for another model/);
  });

  it('validates the native arrays at the boundary', () => {
    const addon = loadAddon();
    const arrays = (edit: Partial<Record<string, unknown>> = {}) => ({
      layers: Int32Array.of(0), sites: Int32Array.of(0), neurons: Int32Array.of(1), ops: Uint8Array.of(0), when: Uint8Array.of(255),
      values: Float32Array.of(0), rules: Int32Array.of(-1), ruleLayers: new Int32Array(0), ruleSites: new Int32Array(0),
      ruleStats: new Int32Array(0), ruleFactors: new Float32Array(0), rulePercentiles: new Float32Array(0), ...edit,
    });
    const make = (edit: Partial<Record<string, unknown>>) => () => new addon.NativeIntervention(model.native, arrays(edit) as never);
    expect(new addon.NativeIntervention(model.native, arrays()).info()).toEqual({ edits: 1, layers: L });
    expect(make({ neurons: Int32Array.of(I) })).toThrow(/neuron 172 outside/);
    expect(make({ layers: Int32Array.of(-1) })).toThrow(/layer -1 outside/);
    expect(make({ values: Float32Array.of(NaN) })).toThrow(/finite/);
    expect(make({ ops: Uint8Array.of(9) })).toThrow(/unknown op/);
    expect(make({ sites: Int32Array.of(4) })).toThrow(/site must be act, gate or h/);
    expect(make({ rules: Int32Array.of(0) })).toThrow(/rule 0 does not exist/);
    expect(make({ values: Float64Array.of(0) })).toThrow(/'values' must be a Float32Array/);
    expect(make({ when: new Uint8Array(2) })).toThrow(/'when' has 2 entries, expected 1/);
    expect(() => new addon.NativeIntervention({} as never, arrays() as never)).toThrow(/must be a NativeModel/);
  });
});
