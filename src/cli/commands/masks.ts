import type { Command } from 'commander';

import { compareMasks, readMask, summarizeMask } from '../../identify/index.js';
import { printResult } from '../output.js';
import { addTangMaskCommands } from './tang.js';

export function registerMasks(program: Command): void {
  const masks = program.command('masks').description('inspect, compare, import and export neuron masks');
  masks
    .command('show <mask>')
    .description('neurons per language and layer, overlaps between languages')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { json?: boolean }) => {
      const mask = await readMask(file);
      const s = summarizeMask(mask);
      printResult(o, { file, ...s, parameters: mask.parameters, site: mask.site, model: mask.model }, () => {
        const langs = s.languages;
        const w = Math.max(6, ...langs.map((l) => l.length));
        const lines = [
          `mask     ${file}: ${mask.method} at site ${mask.site}, ${mask.layers} layers × ${mask.width} units, model ${mask.model.name}`,
          `neurons  ${langs.map((l) => `${l} ${s.total[l]}`).join(', ')}; ${s.union} distinct; shared by k languages: ` +
            s.sharedBy.map((n, k) => (k && n ? `${k}:${n}` : '')).filter(Boolean).join(' '),
          '',
          `per layer ${'layer'.padStart(w)} ${langs.map((l) => l.padStart(w)).join(' ')}`,
          ...Array.from({ length: mask.layers }, (_, l) => `          ${String(l).padStart(w)} ${langs.map((x) => String(s.perLayer[x]![l]).padStart(w)).join(' ')}`),
          '',
          `overlap  ${''.padStart(w)} ${langs.map((l) => l.padStart(w)).join(' ')}`,
          ...langs.map((a) => `         ${a.padStart(w)} ${langs.map((b) => String(s.overlap[a]![b]).padStart(w)).join(' ')}`),
        ];
        return lines.join('\n');
      });
    });
  masks
    .command('compare <a> <b>')
    .description('per language: sizes, intersection and Jaccard index of two masks (1 when both select nothing: they agree)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (fa: string, fb: string, o: { json?: boolean }) => {
      const c = compareMasks(await readMask(fa), await readMask(fb));
      printResult(o, { a: fa, b: fb, ...c }, () => [
        `A = ${fa}\nB = ${fb}${c.sameModel ? '' : '\n(warning: the masks were made on different models)'}`,
        `${'lang'.padEnd(8)} ${'|A|'.padStart(7)} ${'|B|'.padStart(7)} ${'|A∩B|'.padStart(7)} ${'Jaccard'.padStart(8)}`,
        ...Object.entries(c.languages).map(([l, x]) => `${l.padEnd(8)} ${String(x.a).padStart(7)} ${String(x.b).padStart(7)} ${String(x.both).padStart(7)} ${x.jaccard.toFixed(4).padStart(8)}`),
        ...(c.onlyInA.length ? [`only in A: ${c.onlyInA.join(', ')}`] : []), ...(c.onlyInB.length ? [`only in B: ${c.onlyInB.join(', ')}`] : []),
      ].join('\n'));
    });
  addTangMaskCommands(masks);
}
