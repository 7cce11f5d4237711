// The data of the demo report (`report.json`): every figure's numbers, the checks and what the run was. The HTML
// page (src/report/html.ts) is rendered from this alone, so `report.json` and `report.html` always agree.
import type { OverlapAnalysis } from '../analyze/masks.js';
import type { WeightUpdateAnalysis } from '../analyze/weights.js';

export const REPORT_FORMAT = 'langneurons-demo-report/1';

export interface ReportCheck { name: string; claim: string; passed: boolean; measured: string }

export interface NeuronsFigure {
  method: string;
  parameters: Record<string, unknown>;
  /** Top rates tried (automatic choice) and the fewest neurons of a language at each. */
  topRateLadder?: { topRate: number; fewest: number }[];
  languages: string[];
  layers: number;
  /** [language][layer] neuron counts. */
  perLayer: number[][];
  total: number[];
  union: number;
}

export interface DeactivationFigure {
  rows: string[];
  columns: string[];
  /** [deactivated language][text language], nats per token. */
  deltaNll: number[][];
  baselineNll: number[];
  baselinePerplexity: number[];
  tokens: number[];
  /** Column view: share of languages whose text is hurt most by their own deactivation. */
  diagonalShare: number;
  /** Row view: share of languages whose deactivation hurts their own text more than any other text. */
  rowShare: number;
  misses: { language: string; strongest: string }[];
}

export interface SteeringFigure {
  identifier: string;
  identifierAccuracy: number;
  targets: string[];
  /** 'none' (no intervention) first, then the settings. */
  settings: string[];
  /** [target][setting] share of continuations identified as the target. */
  share: number[][];
  generations: number[];
  maxNewTokens: number;
  baselineKeepsPromptLanguage: number;
  examples: { target: string; setting: string; source: string; prompt: string; text: string; detected: string | null }[];
}

export interface TrainingFigure {
  language: string;
  trainArticles: number[];
  validArticles: number[];
  baseValidLoss: number;
  methods: {
    /** trainableShare, stepSeconds, tokensPerSecond: NaN in memory where undefined (a one-step run has no timed step),
     *  null in report.json. */
    method: string; lr: number; trainableParameters: number; trainableShare: number | null; steps: number; stepSeconds: number | null;
    tokensPerSecond: number | null; bestValid: number; bestStep: number; finalValid: number;
    trainLoss: [number, number][]; validLoss: [number, number][];
  }[];
}

export interface ReportData {
  format: typeof REPORT_FORMAT;
  title: string;
  generatedAt: string;
  model: { dir: string; name: string; parameters: number; layers: number; hidden: number; intermediate: number; vocab: number; recipe: string };
  languages: string[];
  lowResource: string | null;
  /** Seconds of this run (steps skipped on resume count 0) and of each step when it ran. */
  seconds: number;
  steps: { name: string; seconds: number; skipped: boolean }[];
  options: Record<string, unknown>;
  checks: ReportCheck[];
  ok: boolean;
  figures: { neurons: NeuronsFigure; deactivation: DeactivationFigure; steering: SteeringFigure; training: TrainingFigure; analyses?: AnalysesFigure };
}

/** The `analyze` figures of the run (src/report/analysis-figures.ts), drawn by the same renderer; absent in reports
 * written before they existed. */
export interface AnalysesFigure {
  overlap?: OverlapAnalysis;
  /** Per fine-tuning method with a delta or an adapter: where it changed the weights, and the share on the language's neurons. */
  weightUpdates?: { method: string; analysis: WeightUpdateAnalysis }[];
}
