// The demo's checks: what its results must show, each with the measured value and the bar it is held to.
import type { MethodRun, FinetuneData } from './finetune-step.js';
import type { MatrixResult } from './matrix-step.js';
import type { SteeringResult } from './steering-step.js';

export interface Check {
  name: string;
  /** What is checked, in one sentence. */
  claim: string;
  passed: boolean;
  /** The measurement, in words. */
  measured: string;
}

/** Identifier accuracy on held-out pieces that the steering measure relies on. */
export const MIN_IDENTIFIER_ACCURACY = 0.9;

export function diagonalCheck(m: MatrixResult, required: number): Check {
  const d = m.matrix.diagonal;
  return {
    name: 'diagonal-dominance',
    claim: `deactivating a language's neurons raises that language's held-out NLL more than any other language's deactivation does, for at least ${(100 * required).toFixed(0)}% of the languages`,
    passed: d.share >= required,
    measured: `${d.hits.length}/${d.languages.length} languages (${(100 * d.share).toFixed(0)}%)` +
      (d.misses.length ? `; misses (text ← strongest deactivation): ${d.misses.map((x) => `${x.language} ← ${x.strongest}`).join(', ')}` : ''),
  };
}

/** The first setting is the one checked; the others are reported. */
export function steeringCheck(s: SteeringResult): Check {
  const setting = s.settings[0]!;
  const rows = s.runs.map((r) => ({ target: r.target, before: r.baseline.share, after: r.settings[setting]!.share }));
  return {
    name: 'steering',
    claim: `steering toward a language (prompt language deactivated, target amplified with ${setting}) raises the target's share of the generated text over the run without intervention, for every target`,
    passed: rows.every((r) => r.after > r.before),
    measured: rows.map((r) => `${r.target}: ${(100 * r.before).toFixed(0)}% → ${(100 * r.after).toFixed(0)}%`).join(', '),
  };
}

export function identifierCheck(s: SteeringResult): Check {
  const a = s.identifier.accuracy;
  return {
    name: 'language-identifier',
    claim: `the character n-gram identifier labels held-out text of the model's languages (pieces of ~${a.pieceChars} characters) correctly at least ${(100 * MIN_IDENTIFIER_ACCURACY).toFixed(0)}% of the time`,
    passed: a.accuracy >= MIN_IDENTIFIER_ACCURACY,
    measured: `${(100 * a.accuracy).toFixed(1)}% of ${a.pieces} pieces`,
  };
}

export function finetuneCheck(data: FinetuneData, runs: MethodRun[]): Check {
  const n = runs.find((r) => r.method === 'neurons');
  return {
    name: 'neuron-finetuning',
    claim: `fine-tuning only ${data.language}'s neurons on its unseen train articles lowers the loss on its held-out articles`,
    passed: !!n && n.bestValid < data.baseValidLoss,
    measured: n ? `validation loss ${data.baseValidLoss.toFixed(3)} → ${n.bestValid.toFixed(3)} (best, step ${n.bestStep}) with ${n.trainableParameters.toLocaleString('en-US')} trainable parameters`
      : 'method neurons was not run',
  };
}
