/**
 * Whole-file operations that never hold a file in memory: hashing and copying large files (a model's weights or
 * an optimizer state pass 2 GiB, past what `fs.readFile` returns) are streamed.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, createReadStream, promises as fsp } from 'node:fs';

import { LangneuronsError, describeError } from '../errors.js';
import { writeFileAtomicStreaming } from './atomic.js';

const CHUNK = 8 << 20;

/** SHA-256 (hex) of a string (UTF-8) or bytes in memory. */
export const sha256Hex = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** SHA-256 (hex) of a file's bytes, read in 8 MiB pieces. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const piece of createReadStream(file, { highWaterMark: CHUNK })) hash.update(piece as Buffer);
  } catch (e) {
    throw new LangneuronsError('E_IO', `${file}: cannot read: ${describeError(e)}`, { file, cause: e });
  }
  return hash.digest('hex');
}

/** Copies `from` to `to` atomically, streaming (any size). */
export async function copyFileAtomic(from: string, to: string): Promise<void> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(from, 'r');
  } catch (e) {
    throw new LangneuronsError('E_IO', `${from}: cannot read: ${describeError(e)}`, { file: from, cause: e });
  }
  try {
    const buffer = Buffer.allocUnsafe(CHUNK);
    await writeFileAtomicStreaming(to, async (sink) => {
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, CHUNK, null);
        if (bytesRead === 0) break;
        await sink.write(buffer.subarray(0, bytesRead));
      }
    });
  } finally {
    await handle.close();
  }
}

/**
 * Appends `text` to a log that grows line by line (a checkpoint of results, a training log), durably with `sync`. A
 * failure names the file (Node's write errors carry no path: "ENOSPC: no space left on device, write"); a line cut
 * short by it is what readers of these logs already skip or truncate.
 */
export async function appendToFile(file: string, text: string, o: { sync?: boolean } = {}): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(file, 'a');
    await handle.writeFile(text);
    if (o.sync) await handle.sync();
  } catch (e) {
    throw new LangneuronsError('E_IO', `${file}: cannot append: ${describeError(e)}`, { file, cause: e });
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** appendToFile's synchronous twin (the sweep journal, written where nothing may interleave). */
export function appendToFileSync(file: string, text: string): void {
  try {
    appendFileSync(file, text);
  } catch (e) {
    throw new LangneuronsError('E_IO', `${file}: cannot append: ${describeError(e)}`, { file, cause: e });
  }
}
