// What `train --out` may replace: nothing that train did not make. A missing or empty folder is written; a folder
// holding the model of this very command (its recipe.json records the same options: a rerun) is rewritten with the
// same result; another model made by train is replaced only with --force; anything else is refused. Checked before
// hours of training and again just before the swap.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';

export async function checkTrainOut(out: string, force: boolean, recipeFormat: string,
  samePlan: (options: Record<string, unknown>) => boolean = () => false): Promise<void> {
  const st = await fsp.lstat(out).catch(() => null);
  if (!st) return;
  if (!st.isDirectory()) throw new LangneuronsError('E_OPTIONS', `${out}: --out exists and is not a folder; choose another --out`, { file: out, field: 'out' });
  const names = await fsp.readdir(out);
  if (names.length === 0) return;
  let format: unknown = null, options: Record<string, unknown> = {};
  try {
    ({ format, options = {} } = JSON.parse(await fsp.readFile(path.join(out, 'recipe.json'), 'utf8')) as { format?: unknown; options?: Record<string, unknown> });
  } catch {
    // no (readable) recipe.json: not ours
  }
  if (format !== recipeFormat)
    throw new LangneuronsError('E_OPTIONS', `${out}: --out is not empty and was not made by \`langneurons train\` (holds ${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''}); it is never replaced: choose another --out`, { file: out, field: 'out' });
  if (!force && !samePlan(options))
    throw new LangneuronsError('E_OPTIONS', `${out}: --out holds a model made by \`langneurons train\` with other options; give --force to replace it, or choose another --out`, { file: out, field: 'out' });
}
