// Content digests of a sweep's input files (corpora, datasets, texts), which step hashes are made of. Every
// `sweep exec` task plans the whole sweep, so without a record each of a cluster's thousands of tasks would read every
// corpus of the sweep again (gigabytes each) before its own step starts. The digests are kept in
// <out>/input-digests.json, each valid while its file's size, modification and change times (nanoseconds), inode and
// device are those recorded: git's index trusts the same facts. A file changed in any of them is read again.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, type BigIntStats } from 'node:fs';
import path from 'node:path';

import { writeFileAtomic } from '../io/atomic.js';

const FORMAT = 'langneurons-sweep-input-digests/1';
export const digestsFile = (out: string) => path.join(out, 'input-digests.json');

interface Recorded { stat: string; sha256: string }

export interface InputHasher {
  /** The digest of a file ('missing' when there is none); a folder's covers its files at any depth. */
  (file: string): string;
  /** Writes the digests taken into <out>/input-digests.json (when `out` holds a sweep's journal: a run's folder). */
  save(): Promise<void>;
}

/** What must be unchanged for a recorded digest to hold. */
const statKey = (st: BigIntStats) => `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;

function readRecorded(file: string): Map<string, Recorded> {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown; files?: Record<string, Recorded> };
    if (v?.format !== FORMAT || typeof v.files !== 'object' || v.files === null) return new Map();
    return new Map(Object.entries(v.files).filter(([, r]) => typeof r?.stat === 'string' && typeof r?.sha256 === 'string'));
  } catch {
    return new Map();  // none yet, or unreadable: digests are taken again
  }
}

/**
 * Digests of input files for one plan: each file read once per plan (in chunks: a corpus file may be larger than a
 * string can be) and not at all while the record in `out` vouches for it. `isRunFolder` says whether `out` is a run's
 * folder, where the record may be written (a `sweep plan` of a sweep never run writes nothing).
 */
export function inputHasher(out: string, isRunFolder: () => boolean): InputHasher {
  const record = digestsFile(out);
  const recorded = readRecorded(record);
  const taken = new Map<string, Recorded>();
  const cache = new Map<string, string>();
  const chunk = Buffer.alloc(4 << 20);
  const hashBytes = (file: string): string => {
    const st = statSync(file, { bigint: true });
    const key = statKey(st);
    const known = recorded.get(file);
    if (known?.stat === key) return known.sha256;
    // The latin1 text of the bytes, as the digest of a whole file was always taken: the same digest, chunk by chunk.
    const h = createHash('sha256');
    const fd = openSync(file, 'r');
    try {
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0;) h.update(chunk.toString('latin1', 0, n));
    } finally {
      closeSync(fd);
    }
    const sha256 = h.digest('hex');
    // Recorded only when the file did not change while read (its stat again): a digest of a file being written is not kept.
    if (statKey(statSync(file, { bigint: true })) === key) taken.set(file, { stat: key, sha256 });
    return sha256;
  };
  const hashOf = ((file: string): string => {
    let h = cache.get(file);
    if (h === undefined) {
      const st = statSync(file, { throwIfNoEntry: false });
      h = !st ? 'missing' : st.isDirectory()
        ? createHash('sha256').update(readdirSync(file).sort().filter((n) => !n.startsWith('.')).map((n) => {
          const sub = path.join(file, n);
          return `${n}:${statSync(sub).isFile() ? hashOf(sub) : `dir:${hashOf(sub)}`}`;
        }).join('\n')).digest('hex')
        : hashBytes(file);
      cache.set(file, h);
    }
    return h;
  }) as InputHasher;
  hashOf.save = async () => {
    if (!taken.size || !existsSync(out) || !isRunFolder()) return;
    // Concurrent tasks each add what they read: the record read again just before it is replaced (atomically).
    const files = Object.fromEntries([...readRecorded(record), ...taken]);
    await writeFileAtomic(record, JSON.stringify({ format: FORMAT, files }) + '\n');
  };
  return hashOf;
}
