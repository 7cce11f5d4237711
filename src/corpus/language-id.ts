// Language ids become file names (`<out>/<lang>.safetensors`), so an id from a manifest, a folder or the command
// line must be a plain name: letters, digits, '_', '-', '.', not starting with '.', no path separators. A manifest
// key like "../../victim/model" would otherwise write outside --out.
import { LangneuronsError } from '../errors.js';

const LANGUAGE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function isLanguageId(id: string): boolean {
  return LANGUAGE_ID.test(id) && !id.includes('..');
}

/** Throws E_INPUT naming `where` (a file, or an option) unless id is a plain language id. */
export function checkLanguageId(id: string, where: string): string {
  if (!isLanguageId(id))
    throw new LangneuronsError('E_INPUT', `${where}: language id ${JSON.stringify(id)} is not a plain name (letters, digits, '_', '-', '.'; at most 64; no path separators or '..')`, { field: 'language' });
  return id;
}
