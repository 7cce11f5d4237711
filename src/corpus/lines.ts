// Streamed line reader for corpus files: reads a fixed-size chunk at a time, so memory stays bounded by
// the chunk size plus the longest line, however large the file is. Node's readline would do too, but a
// hand-rolled loop lets tests count the chunks actually read (the streaming guarantee is then testable).
import { promises as fsp } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { LangneuronsError, describeError } from '../errors.js';
import { Utf8Check } from '../io/text.js';

/** Counts the reads a reader made; pass one in to observe (tests) or to report progress. */
export interface ReadCounter {
  chunks: number;
  bytes: number;
}

export interface ReadLinesOptions {
  /** Bytes per read (default 64 KiB). */
  chunkBytes?: number;
  counter?: ReadCounter;
}

export interface NumberedLine {
  text: string;
  /** 1-based, as editors show it. */
  lineNumber: number;
}

export const DEFAULT_CHUNK_BYTES = 64 * 1024;

/**
 * Lines of a UTF-8 file, without their terminator ('\n' or '\r\n'); a leading BOM is dropped. Multi-byte
 * characters split across chunks are reassembled by the StringDecoder. Breaking out of the loop closes
 * the file.
 */
export async function* readLines(file: string, options: ReadLinesOptions = {}): AsyncGenerator<NumberedLine> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (err) {
    throw new LangneuronsError('E_CORPUS', `cannot open ${file}: ${describeError(err)}`, { file, cause: err });
  }
  try {
    const buffer = Buffer.allocUnsafe(chunkBytes);
    const decoder = new StringDecoder('utf8');
    const utf8 = new Utf8Check(); // invalid bytes: a warning; a mostly binary file: refused at its first chunk
    let pending = '';
    let lineNumber = 0;
    let first = true;
    const clean = (line: string): string => {
      if (first) {
        first = false;
        if (line.charCodeAt(0) === 0xfeff) line = line.slice(1);
      }
      return line.endsWith('\r') ? line.slice(0, -1) : line;
    };
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, chunkBytes, null);
      if (bytesRead === 0) break;
      if (options.counter) {
        options.counter.chunks++;
        options.counter.bytes += bytesRead;
      }
      utf8.update(buffer.subarray(0, bytesRead));
      utf8.refuseBinary(file, false);
      pending += decoder.write(buffer.subarray(0, bytesRead));
      let start = 0;
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n', start)) {
        const text = clean(pending.slice(start, nl));
        start = nl + 1;
        yield { text, lineNumber: ++lineNumber };
      }
      pending = pending.slice(start);
    }
    pending += decoder.end();
    utf8.end();
    utf8.refuseBinary(file, true);
    utf8.warnReplaced(file);
    if (pending.length > 0) yield { text: clean(pending), lineNumber: ++lineNumber };
  } finally {
    await handle.close();
  }
}
