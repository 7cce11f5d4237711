import type { Command } from 'commander';
import { Option } from 'commander';

import { PIVOT_KEYS, parsePivotKey, parseWhere, pivotResults, readResultsRecursive } from '../../analyze/pivot.js';
import { LangneuronsError } from '../../errors.js';
import { buildTable, defaultBy, TABLE_KEYS, parseBy, readResults, tableCsv, tableText } from '../../eval/results.js';
import { pivotFigures } from '../../report/analysis-figures.js';
import { emitFigures } from '../figures.js';

const noResults = (dir: string) =>
  new LangneuronsError('E_INPUT', `${dir}: no evaluation results (langneurons.eval result files) in the folder or its sub-folders`, { file: dir });

export function registerResults(program: Command): void {
  const results = program.command('results').description('evaluation results');
  results
    .command('table <dir>')
    .description('table of the result JSONs of a folder')
    .option('--by <keys>', `row keys: ${TABLE_KEYS.join(', ')} (default: task,lang,variant, and where results would share a row, the keys that tell them apart: the prompt, the model, the --limit, ...)`)
    .addOption(new Option('--format <f>', 'output format').choices(['text', 'csv', 'json']).default('text'))
    .option('--json', 'the same as --format json (every command takes --json)')
    .action(async (dir: string, o: { by?: string; format: 'text' | 'csv' | 'json'; json?: boolean }) => {
      if (o.json && o.format !== 'text' && o.format !== 'json')
        throw new LangneuronsError('E_OPTIONS', `--json and --format ${o.format} ask for two formats; give one`, { field: 'format' });
      if (o.json) o.format = 'json';
      const by = o.by !== undefined ? parseBy(o.by) : undefined; // a bad --by fails before the folder is read
      const rs = await readResults(dir);
      if (!rs.length) throw noResults(dir);
      const t = buildTable(rs, by ?? defaultBy(rs));
      process.stdout.write(o.format === 'csv' ? tableCsv(t) : o.format === 'json' ? JSON.stringify(t, null, 2) + '\n' : tableText(t));
    });
  results
    .command('pivot <dir>')
    .description('one metric of the result files under <dir> (recursive) as rows × columns, Δ against a baseline column, means; table + heatmap')
    .option('--rows <key>', `row key: ${PIVOT_KEYS.join(', ')}`, 'lang')
    .option('--cols <key>', 'column key', 'variant')
    .option('--metric <name>', 'metric (default: acc, accuracy, chrf, bleu, f1, em, ppl... whichever every result has)')
    .option('--baseline <value>', 'column the others are compared with (e.g. base, the unmodified model)')
    .option('--where <k=v,...>', 'keep only results with these key values, e.g. task=xcopa,limit=all,tokenize=13a (a limit is a number or all)')
    .option('--low-resource <langs>', 'row values to mark as low-resource (their own mean row)')
    .requiredOption('--out <dir>', 'folder for the figure')
    .option('--json', 'print one JSON document on stdout')
    .action(async (dir: string, o: { rows: string; cols: string; metric?: string; baseline?: string; where?: string; lowResource?: string; out: string; json?: boolean }) => {
      const recs = await readResultsRecursive(dir);
      if (!recs.length) throw noResults(dir);
      const p = pivotResults(recs, {
        rows: parsePivotKey('--rows', o.rows), cols: parsePivotKey('--cols', o.cols), where: parseWhere(o.where),
        ...(o.metric ? { metric: o.metric } : {}), ...(o.baseline !== undefined ? { baseline: o.baseline } : {}),
        ...(o.lowResource ? { lowResource: o.lowResource.split(',').map((x) => x.trim()).filter(Boolean) } : {}),
      });
      const figs = pivotFigures(p, dir);
      await emitFigures(o, figs, () => {
        const t = figs[0]!.table;
        const cells = [t.columns, ...t.rows.map((r) => r.map((v) => (v === null ? '' : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : String(v))))];
        const w = t.columns.map((_, j) => Math.max(...cells.map((r) => String(r[j] ?? '').length)));
        return [`${p.metric}: ${p.rowKey} × ${p.colKey}${p.baseline ? `, Δ against ${p.baseline}` : ''}`, ...cells.map((r) => r.map((c, j) => String(c).padEnd(w[j]!)).join('  ').trimEnd())];
      });
    });
}
