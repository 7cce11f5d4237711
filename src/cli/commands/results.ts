import type { Command } from 'commander';
import { Option } from 'commander';

import { buildTable, parseBy, readResults, tableCsv, tableText } from '../../eval/results.js';

export function registerResults(program: Command): void {
  const results = program.command('results').description('evaluation results');
  results
    .command('table <dir>')
    .description('table of the result JSONs of a folder')
    .option('--by <keys>', 'row keys: task, lang, variant, prompt, model', 'task,lang,variant')
    .addOption(new Option('--format <f>', 'output format').choices(['text', 'csv', 'json']).default('text'))
    .action(async (dir: string, o: { by: string; format: 'text' | 'csv' | 'json' }) => {
      const t = buildTable(await readResults(dir), parseBy(o.by));
      process.stdout.write(o.format === 'csv' ? tableCsv(t) : o.format === 'json' ? JSON.stringify(t, null, 2) + '\n' : tableText(t));
    });
}
