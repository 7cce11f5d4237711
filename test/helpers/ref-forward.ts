// An independent float64 forward of the Llama-family fixtures (llama, mistral, qwen2), written from the math with
// plain loops and nothing shared with the engine: the stored weights widened to float64, one sequence from
// position 0. It returns the residual stream after every layer (what the `resid` site records) and the logits
// (checked against the fixtures' own float64 references, so the reference itself is tested).
import { openCheckpoint } from '../../src/model/checkpoint.js';
import type { ModelConfig } from '../../src/model/config.js';
import { readTensor, toFloat32 } from '../../src/io/safetensors.js';

export interface RefModel { config: ModelConfig; w: Map<string, Float64Array> }

export async function loadRefModel(dir: string): Promise<RefModel> {
  const ck = await openCheckpoint(dir);
  const w = new Map<string, Float64Array>();
  for (const [name, info] of ck.tensors) w.set(name, Float64Array.from(toFloat32(info, await readTensor(info.file, info))));
  return { config: ck.config, w };
}

function linear(x: Float64Array, W: Float64Array, n: number, bias?: Float64Array): Float64Array {
  const k = x.length, y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += x[j]! * W[i * k + j]!;
    y[i] = s + (bias ? bias[i]! : 0);
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => w[i]! * v * r);
}

function invFreq(c: ModelConfig): number[] {
  const hd = c.headDim;
  return Array.from({ length: hd / 2 }, (_, i) => {
    let f = 1 / c.ropeTheta ** ((2 * i) / hd);
    const s = c.ropeScaling;
    if (s) {
      const wavelen = (2 * Math.PI) / f, lo = s.originalMaxPositions / s.lowFreqFactor, hi = s.originalMaxPositions / s.highFreqFactor;
      if (wavelen > lo) f /= s.factor;
      else if (wavelen >= hi) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f = ((1 - smooth) * f) / s.factor + smooth * f;
      }
    }
    return f;
  });
}

/** resid[l]: [T × hidden] residual stream after layer l; logits [T × vocab]. */
export function refForward(m: RefModel, ids: number[]): { resid: Float64Array[]; logits: Float64Array } {
  const c = m.config, H = c.hiddenSize, hd = c.headDim, nh = c.numHeads, nkv = c.numKvHeads, T = ids.length;
  const get = (n: string) => { const t = m.w.get(n); if (!t) throw new Error(`no tensor ${n}`); return t; };
  const embed = get('model.embed_tokens.weight');
  const h = ids.map((id) => embed.slice(id * H, (id + 1) * H));
  const freqs = invFreq(c);
  const rope = (x: Float64Array, off: number, p: number) => {
    for (let i = 0; i < hd / 2; i++) {
      const a = p * freqs[i]!, co = Math.cos(a), si = Math.sin(a), x0 = x[off + i]!, x1 = x[off + i + hd / 2]!;
      x[off + i] = x0 * co - x1 * si;
      x[off + i + hd / 2] = x1 * co + x0 * si;
    }
  };
  const resid: Float64Array[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (n: string) => (c.qkvBias ? get(`${p}self_attn.${n}_proj.bias`) : undefined);
    const q: Float64Array[] = [], k: Float64Array[] = [], v: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const x = rmsnorm(h[t]!, get(`${p}input_layernorm.weight`), c.rmsNormEps);
      q.push(linear(x, get(`${p}self_attn.q_proj.weight`), nh * hd, bias('q')));
      k.push(linear(x, get(`${p}self_attn.k_proj.weight`), nkv * hd, bias('k')));
      v.push(linear(x, get(`${p}self_attn.v_proj.weight`), nkv * hd, bias('v')));
      for (let a = 0; a < nh; a++) rope(q[t]!, a * hd, t);
      for (let a = 0; a < nkv; a++) rope(k[t]!, a * hd, t);
    }
    for (let t = 0; t < T; t++) {
      const att = new Float64Array(nh * hd);
      for (let a = 0; a < nh; a++) {
        const kv = Math.floor(a / (nh / nkv));
        const s = Array.from({ length: t + 1 }, (_, j) => {
          let d = 0;
          for (let e = 0; e < hd; e++) d += q[t]![a * hd + e]! * k[j]![kv * hd + e]!;
          return d / Math.sqrt(hd);
        });
        const mx = Math.max(...s), ex = s.map((x) => Math.exp(x - mx)), z = ex.reduce((x, y) => x + y, 0);
        for (let j = 0; j <= t; j++) for (let e = 0; e < hd; e++) att[a * hd + e]! += (ex[j]! / z) * v[j]![kv * hd + e]!;
      }
      const o = linear(att, get(`${p}self_attn.o_proj.weight`), H);
      for (let i = 0; i < H; i++) h[t]![i]! += o[i]!;
    }
    const I = c.intermediateSize;
    for (let t = 0; t < T; t++) {
      const x = rmsnorm(h[t]!, get(`${p}post_attention_layernorm.weight`), c.rmsNormEps);
      const g = linear(x, get(`${p}mlp.gate_proj.weight`), I), u = linear(x, get(`${p}mlp.up_proj.weight`), I);
      const a = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]!);
      const d = linear(a, get(`${p}mlp.down_proj.weight`), H);
      for (let i = 0; i < H; i++) h[t]![i]! += d[i]!;
    }
    const r = new Float64Array(T * H);
    h.forEach((row, t) => r.set(row, t * H));
    resid.push(r);
  }
  const head = c.tieWordEmbeddings ? embed : get('lm_head.weight');
  const logits = new Float64Array(T * c.vocabSize);
  h.forEach((row, t) => logits.set(linear(rmsnorm(row, get('model.norm.weight'), c.rmsNormEps), head, c.vocabSize), t * c.vocabSize));
  return { resid, logits };
}

/** The logit lens of a residual stream [T × hidden] (refForward's resid[l]): the final norm and the LM head applied to it. */
export function refLensLogits(m: RefModel, resid: Float64Array): Float64Array {
  const c = m.config, H = c.hiddenSize, T = resid.length / H;
  const get = (n: string) => { const t = m.w.get(n); if (!t) throw new Error(`no tensor ${n}`); return t; };
  const head = c.tieWordEmbeddings ? get('model.embed_tokens.weight') : get('lm_head.weight');
  const logits = new Float64Array(T * c.vocabSize);
  for (let t = 0; t < T; t++) logits.set(linear(rmsnorm(resid.slice(t * H, (t + 1) * H), get('model.norm.weight'), c.rmsNormEps), head, c.vocabSize), t * c.vocabSize);
  return logits;
}
