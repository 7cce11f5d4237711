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
import { neuronStatistic } from '../src/intervene/resolve.js';
import { readAllTensors, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { loadAddon } from '../src/native/addon.js';
import { modelIdentity } from '../src/profile/identity.js';
import { STATS_FORMAT, writeStats, type ActivationStats, type ModelIdentity, type Site, type SiteStats } from '../src/profile/stats.js';
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

  it('takes the projection sites (Kojima) and up; testtime only at act, gate, h', () => {
    for (const site of ['up', 'q', 'k', 'v', 'o', 'down'])
      expect(parseInterventionSpec(`set:median:de:mask=m.json:lang=de:site=${site}`).site).toBe(site);
    for (const site of ['act', 'gate', 'h']) expect(parseInterventionSpec(`testtime:+:mean:neurons=all:site=${site}`).site).toBe(site);
    expect(() => parseInterventionFile(JSON.stringify([{ neurons: 'all', operation: { op: 'testtime', combine: '*', statistic: 'max' }, site: 'o' }]), 'iv.json'))
      .toThrow(/^intervention "iv\.json\[0\]": testtime works on act, gate, h only, not at site o$/);
  });

  it('refuses malformed specs with a message naming the problem', () => {
    const bad: [string, RegExp][] = [
      ['explode:m.json:en', /unknown operation "explode"/], ['zero', /no neurons selected/], ['zero:mask=m.json:lang=en:color=red', /unknown option "color"/],
      ['set:abc:mask=m.json:lang=en', /the value must be a finite number, got "abc"/], ['set:x1:de:mask=m.json:lang=en', /unknown statistic "x1"/],
      ['scale:nan:neurons=all', /finite number/], ['zero:neurons=all:site=resid', /site must be one of act, gate, h, up, q, k, v, o, down, got "resid"/], ['zero:neurons=all:layers=5-2', /reversed/],
      ['zero:neurons=all:positions=middle', /positions must be/], ['testtime:-:max:neurons=all', /combines with =, \* or \+/],
      ['testtime:=:p_max:neurons=all', /unknown row statistic/], ['deactivate:m.json', /expected deactivate:<mask>:<language>/],
      ['zero:neurons=all:mask=m.json', /either neurons=all or a mask/], ['zero:neurons=all:site=h:site=act', /given twice/],
      ['testtime:=:max:neurons=all:site=q', /^intervention "testtime:=:max:neurons=all:site=q": testtime works on act, gate, h only, not at site q$/],
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

describe('interventions at projection sites: resolution (no engine)', () => {
  // A toy model: 3 layers, hidden 16, 4 heads / 2 KV heads of 4 (q 16 wide, k and v 8), intermediate 24.
  const identity: ModelIdentity = { name: 'toy', modelType: 'llama', layers: 3, hidden: 16, intermediate: 24, fingerprint: 'e'.repeat(64) };
  const siteWidths = { act: 24, gate: 24, h: 24, up: 24, q: 16, k: 8, v: 8, o: 16, down: 16 } as const;
  const ctx = { identity, siteWidths };
  let tmp: string;
  const toyMask = (site: Site, width: number, en: number[][]): NeuronMask =>
    ({ format: MASK_FORMAT, method: 'hand', parameters: {}, site, model: identity, sources: [], layers: 3, width, languages: { en } });
  const file = async (name: string, m: NeuronMask) => { const f = path.join(tmp, name); await writeMaskJson(f, m); return f; };
  beforeAll(async () => { tmp = await makeTempDir('langneurons-intervene-sites-'); });
  afterAll(async () => { await removeDir(tmp); });

  it('neurons=all covers the width of the site; each site has its native code', async () => {
    const codes = { act: 0, gate: 1, h: 2, up: 3, q: 4, k: 5, v: 6, o: 7, down: 8 } as const;
    for (const [site, code] of Object.entries(codes)) {
      const r = await resolveSpecs([parseInterventionSpec(`zero:neurons=all:site=${site}`)], ctx);
      const width = siteWidths[site as keyof typeof codes];
      expect(r.counts, site).toEqual([3 * width]);
      expect(new Set(r.arrays.sites), site).toEqual(new Set([code]));
      expect(Array.from(r.arrays.neurons.subarray(0, width)), site).toEqual(Array.from({ length: width }, (_, j) => j));
    }
    // k: KV heads × head_dim per layer (not hidden, not intermediate)
    const k = await resolveSpecs([parseInterventionSpec('scale:2:neurons=all:site=k:layers=1')], ctx);
    expect([k.counts, Array.from(new Set(k.arrays.layers))]).toEqual([[8], [1]]);
    // Without the widths of the attention projections (a bare identity) neurons=all at q cannot be laid out.
    await expect(resolveSpecs([parseInterventionSpec('zero:neurons=all:site=q')], { identity }))
      .rejects.toThrow(/^intervention "zero:neurons=all:site=q": neurons=all at site q needs the model's width there/);
    // o and down are hidden wide, FFN sites intermediate wide, known from the identity alone
    expect((await resolveSpecs([parseInterventionSpec('zero:neurons=all:site=down')], { identity })).counts).toEqual([48]);
  });

  it('a mask of a projection applies at that site only; an FFN mask at every FFN site', async () => {
    const q = await file('ap.q.json', toyMask('q', 16, [[1, 15], [], [3]]));
    const act = await file('ap.act.json', toyMask('act', 24, [[2, 23], [], []]));
    const r = await resolveSpecs([parseInterventionSpec(`scale:2:mask=${q}:lang=en:site=q`)], ctx);
    expect([Array.from(r.arrays.layers), Array.from(r.arrays.neurons), Array.from(new Set(r.arrays.sites))]).toEqual([[0, 0, 2], [1, 15, 3], [4]]);
    for (const site of ['act', 'k', 'o', 'up'])
      await expect(resolveSpecs([parseInterventionSpec(`zero:mask=${q}:lang=en:site=${site}`)], ctx))
        .rejects.toThrow(`": ${q}: the mask was made at site q, its units are not those of site ${site}: give site=q`);
    await expect(resolveSpecs([parseInterventionSpec(`zero:mask=${q}:lang=en`)], ctx)).rejects.toMatchObject({ code: 'E_INTERVENE', field: 'intervene', file: q });
    // An act mask names FFN neurons: the same units at up (or gate, h), not at a projection.
    for (const site of ['up', 'gate', 'h', 'act']) {
      const a = await resolveSpecs([parseInterventionSpec(`zero:mask=${act}:lang=en:site=${site}`)], ctx);
      expect([Array.from(a.arrays.neurons), a.arrays.sites[0]], site).toEqual([[2, 23], { act: 0, gate: 1, h: 2, up: 3 }[site]]);
    }
    await expect(resolveSpecs([parseInterventionSpec(`zero:mask=${act}:lang=en:site=v`)], ctx))
      .rejects.toThrow(/the mask was made at site act, its units are not those of site v: give site=act \(or another FFN site: act, gate, h, up\)$/);
  });

  it('refuses a projection mask of the wrong width and resid masks, naming the file', async () => {
    const narrow = await file('narrow.k.json', toyMask('k', 6, [[1], [], []]));
    await expect(resolveSpecs([parseInterventionSpec(`zero:mask=${narrow}:lang=en:site=k`)], ctx))
      .rejects.toThrow(/narrow\.k\.json: the mask has 6 units per layer at site k, the model has 8 there$/);
    const resid = await file('resid.json', toyMask('resid', 16, [[1], [], []]));
    await expect(resolveSpecs([parseInterventionSpec(`zero:mask=${resid}:lang=en:site=o`)], ctx))
      .rejects.toThrow(/resid\.json: the mask's units are residual-stream \(resid\) units, which interventions do not support/);
  });

  it('reads statistics at the projection site (stats profiled with --sites q)', async () => {
    const q = await file('stat.q.json', toyMask('q', 16, [[], [4, 9], []]));
    const W = 16, n = 3 * W, tokens = 10;
    const sum = Float64Array.from({ length: n }, (_, u) => tokens * (100 * Math.floor(u / W) + (u % W))); // mean 100 l + j
    const site = (s: Site, width: number): SiteStats => ({ site: s, width, overZero: new Float64Array(3 * width), sum: s === 'q' ? sum : new Float64Array(3 * width), sumSq: new Float64Array(3 * width) });
    const st = (language: string, sites: Site[]): ActivationStats => ({
      meta: { format: STATS_FORMAT, model: identity, language, scope: { mode: 'sentences', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0 },
        layers: [0, 1, 2], corpus: { files: [], fingerprint: 'x' }, toolVersion: 'test', shards: 1 },
      tokens, sequences: 1, sites: new Map(sites.map((s) => [s, site(s, s === 'q' ? 16 : 24)])),
    });
    const dir = path.join(tmp, 'stats-q');
    await mkdir(dir, { recursive: true });
    await writeStats(path.join(dir, 'de.safetensors'), st('de', ['act', 'q']));
    await writeStats(path.join(dir, 'en.safetensors'), st('en', ['act']));
    const r = await resolveSpecs([parseInterventionSpec(`set:mean:de:mask=${q}:lang=en:site=q`, dir)], ctx);
    expect(Array.from(r.arrays.values)).toEqual([104, 109]);
    await expect(resolveSpecs([parseInterventionSpec(`set:mean:en:mask=${q}:lang=en:site=q`, dir)], ctx))
      .rejects.toThrow(/en\.safetensors has no statistics at site q \(it has: act; profile with --sites q\)/);
  });
});

describe("Kojima's forcing value", () => {
  it("is p_median (median over the language's sentences of each sentence's mean), not the per-token median", () => {
    // kojima-takeshi188/lang_neuron selfcond/expertise.py: on_p50 = np.percentile(resp[:, labels == 1], q=50, axis=1), resp
    // holding one mean response per sentence (selfcond/models.py pools the tokens by np.mean); generate_seq_lang.py
    // --forcing on_p50 sets every selected unit to it. np.percentile's linear rule: an even count averages the middle two.
    // One layer × one unit; four sentences with means 5, 1, 3, 10 → np.percentile(…, 50) = (3 + 5) / 2 = 4. The tokens'
    // histogram (edges 0..4, counts [6, 1, 1, 1]: most tokens near 0) has its median in bin 0 → 2/3, another number.
    const st: ActivationStats = {
      meta: { format: STATS_FORMAT, model: { name: 't', modelType: 'llama', layers: 1, hidden: 4, intermediate: 1, fingerprint: 'f'.repeat(64) }, language: 'de',
        scope: { mode: 'sentences', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0, countBos: true }, layers: [0], corpus: { files: [], fingerprint: 'x' },
        toolVersion: 'test', shards: 1 },
      tokens: 9, sequences: 4, sites: new Map(),
    };
    const site: SiteStats = { site: 'q', width: 1, overZero: new Float64Array(1), sum: Float64Array.of(20), sumSq: new Float64Array(1),
      seqMeans: Float32Array.of(5, 1, 3, 10), histogram: { edges: Float64Array.of(0, 1, 2, 3, 4), counts: Float64Array.of(6, 1, 1, 1) } };
    expect(neuronStatistic(st, site, 'p_median', 0, 0)).toBe(4);
    expect(neuronStatistic(st, site, 'median', 0, 0)).not.toBe(4);
  });
});

// ---------------------------------------------------------------------------------------------------------------

const L = 5, I = 172, LAYER = 2;
const EN = [3, 17, 100];

function mask(identity: ModelIdentity, languages: Record<string, number[][]>, site: Site = 'act', width = I): NeuronMask {
  return { format: MASK_FORMAT, method: 'hand', parameters: {}, site, model: identity, sources: [], layers: L, width, languages };
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

  /** An edit of layer LAYER's projection `proj` (e.g. 'mlp.down_proj'): its columns `cols` (inputs) or its rows
   *  `rows` (outputs, and the bias's entries when it has one) multiplied by f. */
  interface WeightEdit { proj: string; cols?: readonly number[]; rows?: readonly number[]; f: number }

  /** The fixture with `edits` made to its weights. */
  async function editedWeights(edits: WeightEdit[]): Promise<LanguageModel> {
    const dir = await copyFixture('stories260k');
    edited.push(dir);
    const file = path.join(dir, 'model.safetensors');
    const all = await readAllTensors(file);
    const out: Record<string, TensorToWrite> = {};
    for (const [name, { info, data }] of all) out[name] = { dtype: info.dtype, shape: info.shape, data };
    for (const { proj, cols = [], rows = [], f } of edits) {
      const weight = out[`model.layers.${LAYER}.${proj}.weight`]!, bias = out[`model.layers.${LAYER}.${proj}.bias`];
      expect(weight.dtype).toBe('F32');
      const w = weight.data as Float32Array, [outputs, inputs] = weight.shape as [number, number];
      for (let r = 0; r < outputs; r++) for (const j of cols) w[r * inputs + j]! *= f;
      for (const j of rows) {
        for (let c = 0; c < inputs; c++) w[j * inputs + c]! *= f;
        if (bias) (bias.data as Float32Array)[j]! *= f;
      }
    }
    await writeSafetensors(file, out);
    return loadModel(dir, { threads: 2 });
  }
  /** The fixture with layer LAYER's down_proj columns `cols` multiplied by f. */
  const editedModel = (cols: number[], f: number) => editedWeights([{ proj: 'mlp.down_proj', cols, f }]);

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

  // stories260k: hidden 64, 8 heads and 4 KV heads of 8: q 64 units, k and v 32, o and down 64, up 172.
  const PROJ = { q: ['self_attn.q_proj', 64, [3, 17, 40]], k: ['self_attn.k_proj', 32, [3, 17, 30]], v: ['self_attn.v_proj', 32, [3, 17, 30]],
    o: ['self_attn.o_proj', 64, [3, 17, 50]], down: ['mlp.down_proj', 64, [3, 17, 50]], up: ['mlp.up_proj', I, EN] } as const;
  /** A mask made at `site` whose language en holds `units` at layer LAYER. */
  async function siteMask(site: keyof typeof PROJ): Promise<string> {
    const [, width, units] = PROJ[site];
    const file = path.join(tmp, `mask.${site}.json`);
    await writeMaskJson(file, mask(identity, { en: perLayer({ [LAYER]: [...units] }) }, site, width));
    return file;
  }

  it('zeroing (scaling) units of q, k, v, o, down or up equals zeroing (scaling) their rows of the projection', async () => {
    const plain = await logits(model);
    for (const site of ['q', 'k', 'v', 'o', 'down', 'up'] as const) {
      const [proj, , units] = PROJ[site];
      const file = await siteMask(site);
      for (const [op, f] of [['zero', 0], ['scale:2', 2]] as const) {
        const spec = `${op}:mask=${file}:lang=en:site=${site}`;
        const want = await logits(await editedWeights([{ proj, rows: units, f }]));
        const iv = await resolveIntervention(model, spec);
        expect(iv.edits).toBe(3);
        expect(maxDiff(await logits(model, { intervene: iv }), want), spec).toBeLessThan(1e-5);
        expect(maxDiff(plain, want), `${spec}: the edit must matter`).toBeGreaterThan(1e-3);
        // With the statistics on (of the edited site and others) too.
        const withStats = await logits(model, { intervene: iv, stats: model.createStats({ sites: [site, 'act', 'q', 'o'].filter((x, i, a) => a.indexOf(x) === i) as Site[] }) });
        expect(maxDiff(withStats, want), `${spec} with statistics`).toBeLessThan(1e-5);
      }
    }
  });

  it('statistics and captures of a projection site record the value after the edit', async () => {
    const file = await siteMask('q');
    const iv = await resolveIntervention(model, `set:0.25:mask=${file}:lang=en:site=q`);
    const st = model.createStats({ sites: ['q'] });
    await model.forward([tokens], { logits: 'none', stats: st, intervene: iv });
    const q = st.read();
    const sum = q.sites.get('q')!.sum;
    expect(q.tokens).toBe(tokens.length);
    for (const j of PROJ.q[2]) expect(sum[LAYER * 64 + j]! / q.tokens, `q unit ${j}`).toBe(0.25);
    expect(sum[LAYER * 64 + 4]! / q.tokens).not.toBe(0.25);
    const cap = (await model.forward([tokens], { logits: 'none', lastLayer: LAYER, capture: { site: 'q', layer: LAYER }, intervene: iv })).capture!;
    for (let t = 0; t < tokens.length; t++) expect(cap[t * 64 + 17]).toBe(0.25);
  });

  it('setting projection units to their own value (a statistic at site o) changes nothing', async () => {
    const one = [tokens[3]!];
    const cap = (await model.forward([one], { logits: 'all', capture: { site: 'o', layer: LAYER } })).capture!;
    const own = path.join(tmp, 'own-o.safetensors');
    const st = stats(identity, 'own', 0, { tokens: 1 });
    const o = new Float64Array(L * 64);
    for (let j = 0; j < 64; j++) o[LAYER * 64 + j] = cap[j]!;
    st.sites.set('o', { site: 'o', width: 64, overZero: new Float64Array(L * 64), sum: o, sumSq: new Float64Array(L * 64) });
    await writeStats(own, st);
    const file = await siteMask('o');
    const base = (await model.forward([one], { logits: 'all' })).logits;
    const iv = await resolveIntervention(model, `set:mean:own:mask=${file}:lang=en:site=o:stats=${own}`);
    expect((await model.forward([one], { logits: 'all', intervene: iv })).logits).toEqual(base);
    const shifted = await resolveIntervention(model, `add:0.25:mask=${file}:lang=en:site=o`);
    expect((await model.forward([one], { logits: 'all', intervene: shifted })).logits).not.toEqual(base);
  });

  it('edited keys and values go into the KV cache: decoding with the cache equals the full forward', async () => {
    const [kFile, vFile] = [await siteMask('k'), await siteMask('v')];
    const iv = await resolveIntervention(model, [`zero:mask=${kFile}:lang=en:site=k`, `scale:2:mask=${vFile}:lang=en:site=v`]);
    const full = (await model.forward([tokens], { logits: 'all', intervene: iv })).logits;
    // the prompt, then one token at a time through the cache
    const cache = model.createCache(1, tokens.length);
    const stepped: Float32Array[] = [(await model.forward([tokens.slice(0, 4)], { logits: 'all', cache, intervene: iv })).logits];
    for (let t = 4; t < tokens.length; t++) stepped.push((await model.forward([[tokens[t]!]], { logits: 'all', cache, intervene: iv })).logits);
    const cached = new Float32Array(full.length);
    let at = 0;
    for (const x of stepped) { cached.set(x, at); at += x.length; }
    // (decoding one token runs other kernels than the full forward: ~3e-5 apart without any intervention too)
    expect(maxDiff(cached, full)).toBeLessThan(1e-4);
    expect(maxDiff(full, (await model.forward([tokens], { logits: 'all' })).logits), 'the edit must matter').toBeGreaterThan(1e-2);
    // generate (prefill and decoding through the cache) and score agree with the model whose k_proj / v_proj rows are edited
    const want = await editedWeights([{ proj: PROJ.k[0], rows: PROJ.k[2], f: 0 }, { proj: PROJ.v[0], rows: PROJ.v[2], f: 2 }]);
    expect(maxDiff((await want.forward([tokens], { logits: 'all' })).logits, full)).toBeLessThan(1e-5);
    const prompt = [1, 403, 407, 261];
    const gen = async (m: LanguageModel, opts = {}) => (await generateTokens(m, [prompt], { maxNewTokens: 8, stopAtEos: false, ...opts }))[0]!.tokens;
    expect(await gen(model, { intervene: iv })).toEqual(await gen(want));
    const nll = async (m: LanguageModel, opts = {}) => (await scoreTokens(m, tokens, opts)).meanNll;
    expect(Math.abs((await nll(model, { intervene: iv })) - (await nll(want)))).toBeLessThan(1e-5);
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
    expect(make({ neurons: Int32Array.of(I) })).toThrow(/unit 172 outside \[0, 172\) of site act/);
    expect(new addon.NativeIntervention(model.native, arrays({ sites: Int32Array.of(4), neurons: Int32Array.of(63) })).info()).toEqual({ edits: 1, layers: L });
    expect(make({ sites: Int32Array.of(4), neurons: Int32Array.of(64) })).toThrow(/unit 64 outside \[0, 64\) of site q/);
    expect(make({ sites: Int32Array.of(5), neurons: Int32Array.of(32) })).toThrow(/unit 32 outside \[0, 32\) of site k/);
    expect(make({ sites: Int32Array.of(8), neurons: Int32Array.of(64) })).toThrow(/unit 64 outside \[0, 64\) of site down/);
    expect(make({ sites: Int32Array.of(3), neurons: Int32Array.of(171) })).not.toThrow();
    expect(make({ layers: Int32Array.of(-1) })).toThrow(/layer -1 outside/);
    expect(make({ values: Float32Array.of(NaN) })).toThrow(/finite/);
    expect(make({ ops: Uint8Array.of(9) })).toThrow(/unknown op/);
    expect(make({ sites: Int32Array.of(9) })).toThrow(/site must be one of act, gate, h, up, q, k, v, o, down, got 9/); // resid
    const rule = (site: number) => ({ sites: Int32Array.of(site), rules: Int32Array.of(0), ruleLayers: Int32Array.of(0), ruleSites: Int32Array.of(site),
      ruleStats: Int32Array.of(0), ruleFactors: Float32Array.of(1), rulePercentiles: Float32Array.of(50) });
    expect(make(rule(2))).not.toThrow();
    expect(make(rule(4))).toThrow(/test-time rule's site must be act, gate or h/);
    expect(make({ rules: Int32Array.of(0) })).toThrow(/rule 0 does not exist/);
    expect(make({ values: Float64Array.of(0) })).toThrow(/'values' must be a Float32Array/);
    expect(make({ when: new Uint8Array(2) })).toThrow(/'when' has 2 entries, expected 1/);
    expect(() => new addon.NativeIntervention({} as never, arrays() as never)).toThrow(/must be a NativeModel/);
  });
});
