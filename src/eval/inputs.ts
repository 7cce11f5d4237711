// The contents of the files a variant reads besides the model (intervention masks and statistics, an intervention
// file, a classification head), for the result key: a variant names them by path, and replacing one under the
// same path must not resume or reuse results computed with the old one (as for the model's own files).
import { promises as fsp, statSync } from 'node:fs';
import path from 'node:path';

import { sha256File } from '../io/files.js';

const kind = (p: string): 'file' | 'dir' | null => {
  try { const s = statSync(p); return s.isFile() ? 'file' : s.isDirectory() ? 'dir' : null; } catch { return null; }
};

// Streamed: a statistics folder or a head can hold files of any size (fs.readFile stops at 2 GiB).
const sha256Of = sha256File;

/** Paths named inside intervention specs (`deactivate:masks/raw.json:mt`, `stats=stats/`) and JSON spec files. */
function candidates(text: string): string[] {
  return text.split(/[:=,+\s"[\]{}]+/).filter((t) => t.length > 0);
}

/**
 * sha256 of every existing file named by `refs` (spec strings, paths of files or folders; a folder's files are
 * hashed one by one, a JSON file's string values that name files are followed once). Keys are absolute paths.
 */
export async function inputHashes(refs: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (p: string, follow: boolean): Promise<void> => {
    const abs = path.resolve(p), k = kind(abs);
    if (!k || out[abs]) return;
    if (k === 'dir') {
      for (const n of (await fsp.readdir(abs)).sort()) if (kind(path.join(abs, n)) === 'file') out[path.join(abs, n)] = await sha256Of(path.join(abs, n));
      return;
    }
    out[abs] = await sha256Of(abs);
    if (follow && abs.endsWith('.json')) for (const t of candidates(await fsp.readFile(abs, 'utf8'))) await visit(t, false);
  };
  for (const r of refs) {
    await visit(r, true);
    for (const t of candidates(r)) await visit(t, true);
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}
