// The option objects of the library's entry points (loadModel, forward, generate, scoring, profileCorpus), as plain
// JavaScript callers pass them: a key the function does not know (a typo, `{ devcie: 'cuda' }`) would otherwise be
// ignored and the call run with the default in its place, without a word.
import { LangneuronsError } from '../errors.js';

/** Every key of an options type, written out as a record so that the compiler checks the list against the type. */
export type OptionKeys<T> = { readonly [K in keyof T]-?: true };

/** Refuses options that are not an object, or that hold a key `known` does not list: E_OPTIONS naming the call and
 *  the key (as `field`), with the keys it takes. */
export function checkOptions(fn: string, options: unknown, known: Readonly<Record<string, true>>): void {
  const keys = Object.keys(known);
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new LangneuronsError('E_OPTIONS', `${fn}: options must be an object ({ ${keys.join(', ')} }), got ${Array.isArray(options) ? 'an array' : JSON.stringify(options) ?? String(options)}`);
  for (const key of Object.keys(options))
    if (!Object.hasOwn(known, key)) throw new LangneuronsError('E_OPTIONS', `${fn}: unknown option '${key}' (options: ${keys.join(', ')})`, { field: key });
}
