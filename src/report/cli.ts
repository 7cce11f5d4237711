// `langneurons report <dir>`: renders report.html again from a demo's report.json (e.g. after a renderer update),
// and prints the checks it records.
import type { Command } from 'commander';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { printResult } from '../cli/output.js';
import { LangneuronsError, describeError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readReport, renderReportHtml } from './index.js';

export function registerReport(program: Command): void {
  program
    .command('report <dir>')
    .description('render report.html from the report.json of a demo output folder; prints its checks')
    .option('--json', 'print one JSON document on stdout')
    .action(async (dir: string, o: { json?: boolean }) => {
      const data = await readReport(dir);
      const folder = dir.endsWith('.json') ? path.dirname(dir) : dir;
      const files = { json: dir.endsWith('.json') ? dir : path.join(folder, 'report.json'), html: path.join(folder, 'report.html') };
      // Only the page is written (the data it is drawn from stays as it is); over a page of a demo's folder only,
      // not over a report.html beside some other .json given.
      const besideItsData = path.resolve(files.json) === path.resolve(folder, 'report.json');  // read above: a demo's
      if (await fsp.lstat(files.html).catch(() => null) && !besideItsData && !(await readReport(folder).then(() => true, () => false)))
        throw new LangneuronsError('E_EXISTS', `${files.html}: exists, and no demo report.json beside it says it is ours; it is not overwritten`, { file: files.html });
      let html: string;
      try {
        html = renderReportHtml(data);
      } catch (e) {
        // readReport checked every field the page reads itself; the analyses are drawn by the figure code, whose
        // data is not checked field by field: a damaged one is still one line naming the file.
        throw new LangneuronsError('E_INPUT', `${files.json}: the page cannot be drawn from it (${describeError(e)}); it is damaged or from another version`, { file: files.json, cause: e });
      }
      await writeFileAtomic(files.html, html);
      printResult(o, { ...files, ok: data.ok, checks: data.checks }, () =>
        [...data.checks.map((c) => `${c.passed ? 'PASS' : 'FAIL'} ${c.name}: ${c.measured}`), `-> ${files.html}`].join('\n'));
      if (!data.ok) process.exitCode = 1;
    });
}
