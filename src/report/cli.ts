// `langneurons report <dir>`: renders report.html again from a demo's report.json (e.g. after a renderer update),
// and prints the checks it records.
import type { Command } from 'commander';
import path from 'node:path';

import { printResult } from '../cli/output.js';
import { readReport, writeReport } from './index.js';

export function registerReport(program: Command): void {
  program
    .command('report <dir>')
    .description('render report.html from the report.json of a demo output folder; prints its checks')
    .option('--json', 'print one JSON document on stdout')
    .action(async (dir: string, o: { json?: boolean }) => {
      const data = await readReport(dir);
      const folder = dir.endsWith('.json') ? path.dirname(dir) : dir;
      const files = await writeReport(folder, data);
      printResult(o, { ...files, ok: data.ok, checks: data.checks }, () =>
        [...data.checks.map((c) => `${c.passed ? 'PASS' : 'FAIL'} ${c.name}: ${c.measured}`), `-> ${files.html}`].join('\n'));
      if (!data.ok) process.exitCode = 1;
    });
}
