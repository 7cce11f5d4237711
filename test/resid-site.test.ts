// The `resid` site (the residual stream after each layer, recorded inside the forward) on the fixtures, against
// their hidden states recomputed in float64 (test/helpers/ref-forward.ts, itself checked against the fixtures'
// reference logits): per-sequence means, per-unit sums, the capture, and no effect on the logits.
import { beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { FAMILY_FIXTURES, FIXTURE_NAMES, fixturePath, type FixtureName } from './helpers/fixtures.js';
import { loadRefModel, refForward, refLensLogits, type RefModel } from './helpers/ref-forward.js';
import { loadReference, relativeError, type FixtureReference } from './helpers/reference.js';

// The independent float64 forward (helpers/ref-forward.ts) is the Llama family's; the other families' residual
// streams are covered by the native all-sites float64 recomputation (native/tests/test_stats.cpp).
const LLAMA_FIXTURES = FIXTURE_NAMES.filter((n) => !(FAMILY_FIXTURES as readonly string[]).includes(n));

describe.each(LLAMA_FIXTURES)('fixture %s', (name: FixtureName) => {
  let ref: FixtureReference, rm: RefModel, model: LanguageModel;
  beforeAll(async () => {
    ref = await loadReference(name);
    rm = await loadRefModel(fixturePath(name));
    model = await loadModel(fixturePath(name), { threads: 2 });
  });

  it('the float64 reference reproduces the fixture\u2019s reference logits', () => {
    const { logits } = refForward(rm, ref.inputIds);
    const e = relativeError(logits, ref.logits);
    expect(e).toBeLessThan(1e-5);
  });

  it('the logit lens (lastLayer with logits): the final norm and LM head on each layer\u2019s stream, as float64 computes it', async () => {
    const ids = ref.inputIds, L = model.config.numLayers, V = model.config.vocabSize;
    const { resid } = refForward(rm, ids);
    const targets = ids.slice(1).concat(ids[0]!);
    for (let l = 0; l < L; l++) {
      const want = refLensLogits(rm, resid[l]!);
      const got = await model.forward([ids], { logits: 'all', lastLayer: l, targets: [targets] });
      expect(relativeError(got.logits!, want), `layer ${l}`).toBeLessThan(1e-4);
      // the target log-probabilities of the same lens
      for (let t = 0; t < ids.length; t++) {
        const row = want.subarray(t * V, (t + 1) * V);
        const mx = Math.max(...row);
        const lse = mx + Math.log(row.reduce((a, z) => a + Math.exp(z - mx), 0));
        expect(got.targetLogprobs![t]!, `layer ${l} row ${t}`).toBeCloseTo(row[targets[t]!]! - lse, 3);
      }
    }
  });

  it('sequence means, sums and the capture of resid match the float64 hidden states', async () => {
    const ids = ref.inputIds, L = model.config.numLayers, H = model.config.hiddenSize;
    const cut = (f: number) => Math.round(f * ids.length);
    const batch = [ids.slice(0, cut(0.4)), ids.slice(cut(0.4), cut(0.7)), ids.slice(cut(0.7))];
    // The first token of sequences 0 and 2 is fed but not counted (a BOS).
    const countMask = batch.map((s, k) => s.map((_, t) => (k !== 1 && t === 0 ? 0 : 1)));
    const stats = model.createStats({ sites: ['resid'], seqMeans: true });
    const plain = await model.forward(batch, { logits: 'all' });
    const withStats = await model.forward(batch, { logits: 'all', stats, countMask, capture: { site: 'resid', layer: L - 1 } });
    expect(withStats.logits).toEqual(plain.logits);  // recording reads the stream, never changes it
    const s = stats.read();
    const st = s.sites.get('resid')!;
    expect(st.width).toBe(H);
    expect(s.sequences).toBe(3);
    const refs = batch.map((seq) => refForward(rm, seq).resid);
    let worstMean = 0, worstSum = 0, worstCapture = 0;
    const sum = new Float64Array(L * H);
    for (let k = 0; k < 3; k++)
      for (let l = 0; l < L; l++) {
        const T = batch[k]!.length, want = new Float64Array(H);
        let n = 0;
        for (let t = 0; t < T; t++) {
          if (!countMask[k]![t]) continue;
          n++;
          for (let j = 0; j < H; j++) { want[j]! += refs[k]![l]![t * H + j]!; sum[l * H + j]! += refs[k]![l]![t * H + j]!; }
        }
        want.forEach((v, j) => { want[j] = v / n; });
        const got = st.seqMeans!.subarray((k * L + l) * H, (k * L + l + 1) * H);
        worstMean = Math.max(worstMean, relativeError(got, want));
      }
    for (let l = 0; l < L; l++) worstSum = Math.max(worstSum, relativeError(st.sum.subarray(l * H, (l + 1) * H), sum.subarray(l * H, (l + 1) * H)));
    const capRef = new Float64Array(ids.length * H);
    let row = 0;
    for (let k = 0; k < 3; k++) { capRef.set(refs[k]![L - 1]!, row * H); row += batch[k]!.length; }
    worstCapture = relativeError(withStats.capture!, capRef);
    console.log(`${name}: resid rel err: sequence means ${worstMean.toExponential(2)}, sums ${worstSum.toExponential(2)}, capture ${worstCapture.toExponential(2)}`);
    expect(worstMean).toBeLessThan(1e-4);
    expect(worstSum).toBeLessThan(1e-4);
    expect(worstCapture).toBeLessThan(1e-4);
    // Not vacuous: the layers' states differ from each other and from the embeddings.
    expect(relativeError(st.seqMeans!.subarray(0, H), st.seqMeans!.subarray((L - 1) * H, L * H))).toBeGreaterThan(0.05);
  });
});
