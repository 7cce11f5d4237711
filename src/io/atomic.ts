/**
 * Atomic file writes: write to `<path>.tmp-<pid>` in the same directory, fsync, then rename over
 * `path`. A crash leaves either the old file or the new one, never a half-written file; readers never
 * see partial content. The temporary file is removed when writing fails.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';

export function temporaryPathFor(target: string): string {
  return `${target}.tmp-${process.pid}`;
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
    handle = await fsp.open(tmp, 'w');
    const h = handle;
    let position = 0;
    const sink: AtomicSink = {
      async write(chunk: Uint8Array) {
        let done = 0;
        while (done < chunk.byteLength) {
          const { bytesWritten } = await h.write(chunk, done, chunk.byteLength - done, position);
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
    if (handle) await handle.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
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
