// Corpora for profiling: sources (folders, manifests, the built-in UDHR) and token scopes.
import { LangneuronsError } from '../errors.js';
import { openCorpus, type Corpus, type OpenCorpusOptions } from './sources.js';
import { udhrCorpus, type UdhrSplit } from './udhr.js';

export * from './lines.js';
export * from './readers.js';
export * from './sources.js';
export * from './scopes.js';
export * from './udhr.js';

/**
 * Opens a corpus named on a command line: `udhr`, `udhr:train`, `udhr:heldout` (the built-in UDHR,
 * optionally restricted to `languages`), or a folder / manifest path (see openCorpus).
 */
export async function openCorpusSpec(spec: string, options: OpenCorpusOptions & { languages?: readonly string[] } = {}): Promise<Corpus> {
  const m = /^udhr(?::(train|heldout|all))?$/.exec(spec);
  if (m) return udhrCorpus(options.languages, { split: (m[1] ?? 'all') as UdhrSplit });
  if (spec.startsWith('udhr:')) throw new LangneuronsError('E_CORPUS', `unknown UDHR split in "${spec}" (udhr, udhr:train, udhr:heldout or udhr:all)`);
  return openCorpus(spec, options);
}
