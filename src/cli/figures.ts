// Output of the figure-writing commands (analyze, results pivot): the figures' files into --out, then on stdout the
// files and a summary, or with --json one document holding every figure's files, caption and data.
import { writeFigures, type Figure } from '../report/figures.js';
import { printResult } from './output.js';

export async function emitFigures(o: { out: string; json?: boolean }, figs: Figure[], summary: () => string[]): Promise<void> {
  const files = await writeFigures(o.out, figs);
  printResult(o, { out: o.out, figures: Object.fromEntries(figs.map((f) => [f.name, { files: files[f.name], caption: f.caption, data: f.data }])) },
    () => [...summary(), ...figs.map((f) => `-> ${files[f.name]!.svg} (+ .png .csv .json .caption.txt)`)].join('\n'));
}
