// The native backward pass against the fixtures' float64 autograd gradients: the loss and EVERY parameter's
// gradient (relative error per tensor below 1e-4; 1e-3 for tensors whose norm is under 1e-6 of the largest).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { openCheckpoint } from '../src/model/checkpoint.js';
import { readAllTensors, toFloat32 } from '../src/io/safetensors.js';
import { createNativeTrainer, denseTrainable, tensorName } from '../src/train/native.js';

const FIXTURES = path.resolve(__dirname, '../../shared/fixtures/models');

function relErr(a: Float32Array, ref: Float32Array): { rel: number; norm: number } {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i]! - ref[i]!; num += d * d; den += ref[i]! * ref[i]!; }
  return { rel: Math.sqrt(num / Math.max(den, 1e-300)), norm: Math.sqrt(den) };
}

describe.each(['stories260k', 'tiny-llama3', 'tiny-qwen2'])('backward pass: %s', (name) => {
  it('matches the loss and every reference gradient', async () => {
    const dir = path.join(FIXTURES, name);
    const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as { input_ids: number[]; loss: number };
    const grads = await readAllTensors(path.join(dir, 'reference-grads.safetensors'));
    const ckpt = await openCheckpoint(dir);
    const tr = createNativeTrainer(ckpt, 2, denseTrainable(ckpt));
    const T = ref.input_ids.length;
    const tokens = Int32Array.from(ref.input_ids);
    const targets = new Int32Array(T).fill(-1);
    for (let t = 0; t + 1 < T; t++) targets[t] = ref.input_ids[t + 1]!;
    const res = await tr.forwardBackward(tokens, targets, Int32Array.of(T), { backward: true });
    const loss = res.lossSum / res.count;
    expect(res.count).toBe(T - 1);
    expect(Math.abs(loss - ref.loss) / ref.loss).toBeLessThan(1e-5);

    const params = tr.params().filter((p) => p.size > 0);
    const seen = new Set<string>();
    const rows: { name: string; rel: number; norm: number }[] = [];
    for (const p of params) {
      const n = tensorName(p.role, p.layer);
      const r = grads.get(n);
      expect(r, `reference gradient of ${n}`).toBeDefined();
      seen.add(n);
      rows.push({ name: n, ...relErr(tr.read('grad', p.id), toFloat32(r!.info, r!.data)) });
    }
    // Every reference gradient has a trainer parameter (nothing skipped).
    expect([...grads.keys()].filter((k) => !seen.has(k))).toEqual([]);
    const maxNorm = Math.max(...rows.map((r) => r.norm));
    let worst = rows[0]!;
    for (const r of rows) {
      const tol = r.norm < 1e-6 * maxNorm ? 1e-3 : 1e-4;
      expect(r.rel, `${r.name} (norm ${r.norm})`).toBeLessThan(tol);
      if (r.rel > worst.rel) worst = r;
    }
    console.log(`${name}: loss ${loss} (ref ${ref.loss}, rel ${(Math.abs(loss - ref.loss) / ref.loss).toExponential(2)}), ` +
      `${rows.length} gradient tensors, worst rel error ${worst.rel.toExponential(2)} (${worst.name})`);
  });
});
