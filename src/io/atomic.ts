/**
 * Atomic file writes: write to `<path>.tmp-<pid>-<random>` in the same directory, fsync, then rename over
 * `path`. A crash leaves either the old file or the new one, never a half-written file; readers never
 * see partial content. The temporary file is removed when writing fails.
 *
 * The temporary file is created exclusively (O_CREAT|O_EXCL, plus O_NOFOLLOW): a file or symlink planted at its
 * name makes the open fail instead of being followed, and the random part makes such a collision unlikely anyway.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';

/** The longest file name most file systems take (ext4, XFS, btrfs, tmpfs: 255 bytes). */
const NAME_MAX = 255;

/**
 * `<target>.tmp-<pid>-<8 hex>`: the pid says which process wrote it (see removeOrphanTemps). A target whose name is
 * within NAME_MAX but leaves no room for the suffix gets its name cut short in the temporary's (at a character's
 * boundary): the temporary is only renamed, so its name need not be the target's, and the write does not fail with
 * ENAMETOOLONG for a name the file system takes.
 */
export function temporaryPathFor(target: string): string {
  return besideWithSuffix(target, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** `<target><suffix>`, its name cut short (at a character's boundary) where the whole would pass NAME_MAX bytes. */
function besideWithSuffix(target: string, suffix: string): string {
  const name = [...path.basename(target)];
  while (name.length > 1 && Buffer.byteLength(name.join('') + suffix) > NAME_MAX) name.pop();
  return path.join(path.dirname(target), name.join('') + suffix);
}

const TEMP_NAME = /\.tmp-(\d+)(?:-[0-9a-f]+)?$/;

/** Opens a new temporary file for writing: fails if anything (a file, a symlink) already has the name. */
export async function openExclusive(file: string): Promise<fsp.FileHandle> {
  return fsp.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | (fsc.O_NOFOLLOW ?? 0), 0o644);
}

/**
 * Whether a process with this pid runs on this host (EPERM: it exists but belongs to someone else). A zombie (ended,
 * not yet reaped by its parent: Linux's state Z in /proc/<pid>/stat) is not running: a killed writer's lock or
 * temporary file is then stale at once, not when its parent gets round to reaping it.
 */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');  // "pid (comm) S ...": the state follows the last ')'
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;  // no /proc (macOS) or it went meanwhile: as kill(pid, 0) said
  }
}

/**
 * Removes `*.tmp-<pid>[-<random>]` files that a crashed writer left in `dir` (and, with `recursive`, in its
 * subfolders): only those whose writer is no longer alive, and only plain files or symlinks (never a folder's
 * content through a link); with `targets`, only the temporaries of those file names (a folder shared with other
 * writers: a figure set's own files). Returns the paths removed.
 */
export async function removeOrphanTemps(dir: string, recursive = false, targets?: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return removed;
  }
  for (const e of entries) {
    const full = path.join(dir, e.name);
    const m = TEMP_NAME.exec(e.name);
    const ofTarget = !targets || (m !== null && targets.has(e.name.slice(0, m.index)));
    if (m && ofTarget && (e.isFile() || e.isSymbolicLink()) && !processAlive(Number(m[1]))) {
      await fsp.rm(full, { force: true });
      removed.push(full);
    } else if (recursive && e.isDirectory()) {
      removed.push(...(await removeOrphanTemps(full, true, targets)));
    }
  }
  return removed;
}

/** Sink handed to a streaming writer: writes go to the temporary file, in order. */
export interface AtomicSink {
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly bytesWritten: number;
}

/**
 * Streams content produced by `produce` into `target` atomically (for files too large to build in
 * memory, e.g. safetensors with many tensors).
 */
export async function writeFileAtomicStreaming(
  target: string,
  produce: (sink: AtomicSink) => Promise<void>,
): Promise<void> {
  const tmp = temporaryPathFor(target);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await openExclusive(tmp);
    const h = handle;
    let position = 0;
    const sink: AtomicSink = {
      async write(chunk: Uint8Array) {
        let done = 0;
        while (done < chunk.byteLength) {
          // At most 1 GiB per call: Node passes the length as a 32-bit integer (a tensor can pass 2 GiB).
          const { bytesWritten } = await h.write(chunk, done, Math.min(chunk.byteLength - done, 1 << 30), position);
          done += bytesWritten;
          position += bytesWritten;
        }
      },
      get bytesWritten() {
        return position;
      },
    };
    await produce(sink);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (err) {
    const created = handle !== undefined || (err as NodeJS.ErrnoException).code !== 'EEXIST';
    if (handle) await handle.close().catch(() => undefined);
    // Only remove what this call created: an EEXIST means the name belongs to someone else.
    if (created) await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if (err instanceof LangneuronsError) throw err;
    throw new LangneuronsError('E_IO', `${target}: could not write file: ${describeError(err)}`, {
      file: target,
      cause: err,
    });
  }
  await syncDirectory(path.dirname(target));
}

/** Writes `data` (bytes or UTF-8 text) to `target` atomically. */
export async function writeFileAtomic(target: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  await writeFileAtomicStreaming(target, (sink) => sink.write(bytes));
}

/** Makes the rename durable; best effort because some file systems refuse to fsync a directory. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    // Not fatal: the data itself was fsynced before the rename.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
