// The ratios benchmarks/gpu-finetune sets against the issue's targets, and its table (see README.md): pure
// functions of the results document, so that they are tested without a GPU (test/bench-gpu-finetune.test.ts).
import { stepFlops } from './flops.mjs';

export const METHODS = ['neurons', 'full', 'lora', 'random', 'mlp', 'neuron-lora'];
/** What a GPU run measures: the methods, and `neurons` with activation recomputation (the trainer's `recompute`). */
export const RUNS = [...METHODS, 'neurons-recompute'];
/** The method a run trains, and whether it recomputes activations. */
export const runMethod = (run) => (run === 'neurons-recompute' ? { method: 'neurons', recompute: true } : { method: run, recompute: false });

/** The shapes the issue's targets are set on: 'small' is the 1B shape when measured, 'big' the 8B one. */
export function targetShapes(shapes) {
  return [shapes.includes('llama-3.2-1b') ? 'llama-3.2-1b' : shapes[0], shapes.includes('llama-3.1-8b') ? 'llama-3.1-8b' : shapes[1]];
}

/** results.checks: { what, value, target, ok (true / false; null: reported, not judged), detail? }. */
export function ratioChecks(results, shapes) {
  const checks = [];
  const runOf = (shape, m) => { const r = results.shapes[shape]?.runs[m]; return r && !r.skipped ? r : null; };
  const torchOf = (shape, m) => { const r = results.torch[shape]?.[m]; return r && !r.error ? r : null; };
  // The targets are the issue's on its shapes; on others (--quick) the same ratios are reported, not judged.
  const check = (shape, what, value, target, ok, detail) => {
    const judged = shape === 'llama-3.2-1b' || shape === 'llama-3.1-8b';
    checks.push({ what: `${shape}: ${what}`, value, target: judged ? target : `${target} on the issue's shape`, ok: judged ? ok : null, ...(detail ? { detail } : {}) });
  };
  const [small, big] = targetShapes(shapes);
  {
    const n = runOf(small, 'neurons'), f = runOf(small, 'full');
    if (n && f) {
      const r = n.stepSeconds / f.stepSeconds;
      check(small, `neurons step time vs full`, `${r.toFixed(3)}x (${(n.stepSeconds * 1e3).toFixed(1)} vs ${(f.stepSeconds * 1e3).toFixed(1)} ms)`, '<= 0.45x', r <= 0.45);
      const g = n.gradOptBytes / f.gradOptBytes;
      check(small, `neurons grad+optimizer memory vs full`, `${(100 * g).toFixed(3)}%`, '<= 2%', g <= 0.02);
    }
  }
  if (big) {
    // `neurons` against the seed papers' way, and the same two figures with activation recomputation (less memory
    // for one more forward a step).
    const t = torchOf(big, 'masked-dense');
    for (const [run, name] of [['neurons', 'neurons'], ['neurons-recompute', 'neurons --recompute']]) {
      const n = runOf(big, run);
      if (!n || !t) continue;
      const r = t.step_seconds / n.stepSeconds;
      check(big, `${name} speed-up vs PyTorch dense-then-mask`, `${r.toFixed(2)}x (${(n.stepSeconds * 1e3).toFixed(1)} vs ${(t.step_seconds * 1e3).toFixed(1)} ms)`, '>= 2x', r >= 2);
      if (n.heldBytes) {
        const m = t.peak_memory_bytes / n.heldBytes;
        check(big, `${name} peak memory vs PyTorch dense-then-mask`, `${m.toFixed(2)}x smaller (${(n.heldBytes / 2 ** 30).toFixed(1)} vs ${(t.peak_memory_bytes / 2 ** 30).toFixed(1)} GiB)`, '>= 5x', m >= 5,
          'ours: every byte the trainer holds; PyTorch: torch.cuda.max_memory_allocated');
      }
    }
  }
  for (const shape of shapes) {
    const l = runOf(shape, 'lora'), t = torchOf(shape, 'lora');
    if (l && t) check(shape, `lora (r 32) step time vs PEFT LoRA`, `${(l.stepSeconds / t.step_seconds).toFixed(3)}x (${(l.stepSeconds * 1e3).toFixed(1)} vs ${(t.step_seconds * 1e3).toFixed(1)} ms)`, 'report', null,
      `PyTorch LoRA: ${t.lora_impl ?? 'peft'}`);
  }
  return checks;
}

/** The markdown table and the ratio lines. cfgs: config.json objects by shape (the PyTorch rows' model FLOPs). */
export function renderTable(results, shapes, cfgs) {
  const o = results.options, peak = results.peak;
  const lines = [];
  const gib = (b) => (b === null || b === undefined ? '-' : (b / 2 ** 30).toFixed(b < 2 ** 30 ? 4 : 2));
  const fx = (x, d = 3) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
  lines.push(`\ngpu-finetune: ${results.device} (${results.compute}), batches of ${o.batch} x ${o.seqLen} tokens, ${(o.fraction * 100).toFixed(1)}% random mask per layer, ` +
    `median of ${o.steps} steps after ${o.warmup} warm-up; peak ${peak.tflops === null ? '-' : `${peak.tflops.toFixed(1)} TFLOP/s`} (${peak.source})`);
  for (const shape of shapes) {
    const s = results.shapes[shape];
    if (!s) continue;
    lines.push(`\n### ${shape} (${s.matmulParams >= 1e9 ? `${(s.matmulParams / 1e9).toFixed(2)} B` : `${(s.matmulParams / 1e6).toFixed(2)} M`} matmul parameters, mask ${s.neurons} neurons)\n`);
    lines.push('| method | step ms | tok/s | MFU | MFU basis | trainable | grad+opt GiB | master GiB | held GiB (torch: max allocated) | device used GiB |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|');
    for (const m of RUNS) {
      const r = s.runs[m];
      if (!r) continue;
      if (r.skipped) { lines.push(`| ${m} | ${r.skipped} |||||||||`); continue; }
      lines.push(`| ${m} | ${fx(r.stepSeconds * 1e3, 1)} | ${fx(r.tokensPerSecond, 0)} | ${fx(r.mfu)} | ${r.mfuBasis} | ${r.trainable.toLocaleString('en')} | ${gib(r.gradOptBytes)} | ${gib(r.masterBytes)} | ${gib(r.heldBytes)} | ${gib(r.memory?.deviceUsed || null)} |`);
    }
    for (const [m, t] of Object.entries(results.torch[shape] ?? {})) {
      if (t.error) { lines.push(`| torch ${m} | ${t.error} |||||||||`); continue; }
      const f = stepFlops(cfgs[shape], [], Array(o.batch).fill(o.seqLen));
      const mfu = peak.tflops && m === 'full' ? f.model / t.step_seconds / (peak.tflops * 1e12) : null;
      lines.push(`| torch ${m}${t.lora_impl ? ` (${t.lora_impl})` : ''} | ${fx(t.step_seconds * 1e3, 1)} | ${fx(t.tokens_per_s, 0)} | ${fx(mfu)} | ${m === 'full' ? 'model (6 N T)' : '-'} | ${t.trainable_params.toLocaleString('en')} | ${gib(t.grad_opt_bytes)} | - | ${gib(t.peak_memory_bytes)} | ${gib(t.device_used_bytes)} |`);
    }
    // Where a step's device time goes (the trainer's clock, one step after the timed ones): a column per kind of
    // work, in the order the methods name them.
    const clocked = RUNS.filter((m) => s.runs[m]?.stepTimes?.length);
    if (clocked.length) {
      const kinds = [...new Set(clocked.flatMap((m) => s.runs[m].stepTimes.map((x) => x.step)))];
      lines.push(`\nWhere a step's device time goes (ms, one clocked step after the timed ones):\n`);
      lines.push(`| method | ${kinds.join(' | ')} | total |`);
      lines.push(`|---|${kinds.map(() => '---|').join('')}---|`);
      for (const m of clocked) {
        const by = new Map(s.runs[m].stepTimes.map((x) => [x.step, x.ms]));
        const total = [...by.values()].reduce((a, b) => a + b, 0);
        lines.push(`| ${m} | ${kinds.map((k) => fx(by.get(k), 1)).join(' | ')} | ${fx(total, 1)} |`);
      }
    }
  }
  if (results.checks?.length) {
    lines.push('');
    for (const c of results.checks) lines.push(`- ${c.what}: ${c.value} (target ${c.target}) → ${c.ok === null ? 'reported' : c.ok ? 'PASS' : 'MISSED'}`);
  }
  for (const s of results.skipped ?? []) lines.push(`- skipped: ${s.what}: ${s.why}`);
  for (const s of results.failed ?? []) lines.push(`- FAILED: ${s.what}: ${s.why}`);
  return lines.join('\n') + '\n';
}
