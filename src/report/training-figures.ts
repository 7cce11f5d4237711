// Figures of `analyze training` (src/analyze/training.ts): the training loss per step (its moving average solid, the
// raw loss faint when smoothed), the validation loss at each evaluation, and the gradient norm per step; one colour
// per run, one CSV row per (run, step).
import type { TrainingAnalysis } from '../analyze/training.js';
import type { Cell, Figure } from './figures.js';
import { colourOf, lineChart } from './svg-charts.js';

const r6 = (x: number) => Number(x.toPrecision(6));

export function trainingFigures(a: TrainingAnalysis): Figure[] {
  const runs = a.runs;
  const label = (i: number) => `${runs[i]!.name} (${runs[i]!.method}, lr ${runs[i]!.lr})`;
  // one row per (run, step) with every series of that step; evaluations on steps of their own keep theirs
  const rows: Cell[][] = runs.flatMap((r) => {
    const at = <T>(pts: [number, T][]) => new Map(pts);
    const [sm, g, lr, v, acc] = [at(r.smoothed), at(r.gradNorm), at(r.learningRate), at(r.valid), at(r.validAccuracy)];
    const steps = [...new Set([...r.loss.map((p) => p[0]), ...r.valid.map((p) => p[0])])].sort((x, y) => x - y);
    const loss = at(r.loss);
    const num = (m: Map<number, number>, s: number) => (m.has(s) ? r6(m.get(s)!) : null);
    return steps.map((s) => [r.name, r.method, s, num(loss, s), num(sm, s), num(v, s), num(acc, s), num(g, s), num(lr, s)]);
  });
  const table = { columns: ['run', 'method', 'step', 'loss', 'loss_smoothed', 'valid_loss', 'valid_accuracy', 'grad_norm', 'lr'], rows };
  const summary = runs.map((r) => {
    const s = r.summary;
    const best = s.bestValid === null ? 'no validation' : `best validation ${s.bestValid.toFixed(4)} at step ${s.bestStep}`;
    const speed = s.medianStepSeconds === null ? '' : `, median step ${s.medianStepSeconds.toPrecision(3)} s` +
      (s.medianTokensPerSecond === null ? '' : ` (${s.medianTokensPerSecond.toPrecision(3)} tokens/s)`);
    return `${r.name}: ${s.steps} steps, ${s.tokens} tokens, loss ${s.firstLoss?.toFixed(4) ?? '-'} -> ${s.lastLoss?.toFixed(4) ?? '-'}, ${best}${speed}`;
  }).join('; ');
  const smoothText = a.smooth > 1 ? `, a trailing moving average over ${a.smooth} steps (the raw loss faint)` : '';
  return [
    { name: 'training-loss', table, data: a,
      caption: `Training loss per optimizer step (mean token cross-entropy of the step's batch${smoothText}) of ${runs.length} fine-tuning run(s), from their train.jsonl. ${summary}.`,
      svg: lineChart({ title: 'Training loss per step', xLabel: 'optimizer step', yLabel: 'training loss (nats / token)',
        series: runs.flatMap((r, i) => [
          ...(a.smooth > 1 ? [{ name: `${label(i)} raw`, points: r.loss, colour: `${colourOf(i)}55` }] : []),
          { name: label(i), points: r.smoothed, colour: colourOf(i) }]) }) },
    { name: 'training-valid', table, data: a,
      caption: `Validation loss at each evaluation of ${runs.length} fine-tuning run(s) (the best checkpoint is the lowest). ${summary}.`,
      svg: lineChart({ title: 'Validation loss per evaluation', xLabel: 'optimizer step', yLabel: 'validation loss (nats / token)',
        series: runs.filter((r) => r.valid.length).map((r) => ({ name: label(runs.indexOf(r)), points: r.valid, colour: colourOf(runs.indexOf(r)) })) }) },
    { name: 'training-gradnorm', table, data: a,
      caption: `Global gradient norm per optimizer step, before clipping, of ${runs.length} fine-tuning run(s).`,
      svg: lineChart({ title: 'Gradient norm per step', xLabel: 'optimizer step', yLabel: 'gradient norm',
        series: runs.map((r, i) => ({ name: label(i), points: r.gradNorm, colour: colourOf(i) })) }) },
  ];
}
