// The demo report: its data (report.json), the HTML page and the SVG charts it is drawn with.
import path from 'node:path';
import { promises as fsp } from 'node:fs';

import { LangneuronsError, describeError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { renderReportHtml } from './html.js';
import { REPORT_FORMAT, type ReportData } from './report-data.js';
import { ensureOutputDir } from '../io/outdir.js';

export * from './report-data.js';
export * from './svg-charts.js';
export { renderReportHtml } from './html.js';

/** Writes `<dir>/report.json` and `<dir>/report.html`, each atomically. */
export async function writeReport(dir: string, data: ReportData): Promise<{ json: string; html: string }> {
  const files = { json: path.join(dir, 'report.json'), html: path.join(dir, 'report.html') };
  await ensureOutputDir(dir);
  await writeFileAtomic(files.json, JSON.stringify(data, null, 1) + '\n');
  await writeFileAtomic(files.html, renderReportHtml(data));
  return files;
}

/** Reads a report.json (a file, or the folder holding it). */
export async function readReport(fileOrDir: string): Promise<ReportData> {
  const file = fileOrDir.endsWith('.json') ? fileOrDir : path.join(fileOrDir, 'report.json');
  let doc: ReportData;
  try {
    doc = JSON.parse(await fsp.readFile(file, 'utf8')) as ReportData;
  } catch (e) {
    throw new LangneuronsError('E_IO', `${file}: cannot read the report data: ${describeError(e)}`, { file });
  }
  if (doc?.format !== REPORT_FORMAT) throw new LangneuronsError('E_INPUT', `${file}: not a ${REPORT_FORMAT} file`, { file });
  return doc;
}
