// One line for every failure a user can cause or fix: our own errors, file-system errors (EACCES, EEXIST, ENOSPC
// on an --out, with the path), and running out of memory (a std::bad_alloc from the engine, or a failed
// ArrayBuffer allocation). Anything else is a bug and keeps its stack trace.
import { LangneuronsError } from '../errors.js';

const FS_REASONS: Record<string, string> = {
  EACCES: 'permission denied', EPERM: 'operation not permitted', EEXIST: 'already exists', ENOENT: 'no such file or folder',
  ENOSPC: 'no space left on the device', EROFS: 'read-only file system', ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'is a folder, not a file', EMFILE: 'too many open files', EDQUOT: 'disk quota exceeded', ENAMETOOLONG: 'name too long',
};

export function describeFailure(e: unknown): { line: string; known: boolean } {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof LangneuronsError || e instanceof RangeError || e instanceof TypeError) {
    if (/Array buffer allocation failed|Invalid typed array length/i.test(msg)) return { line: outOfMemory(msg), known: true };
    return { line: msg, known: true };
  }
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string') {
    const reason = FS_REASONS[err.code] ?? msg;
    return { line: `${err.path ?? (err as { dest?: string }).dest ?? err.syscall}: ${reason} (${err.code}, ${err.syscall})`, known: true };
  }
  if (/bad_alloc|out of memory/i.test(msg)) return { line: outOfMemory(msg), known: true };
  return { line: msg, known: false };
}

/** The engine's own out-of-memory line (native/src/core/oom.h) already names the thing, its size and a remedy. */
const ENGINE_OOM = /^(?:[\w .]+: )?out of memory allocating .+ \(\d+(?:\.\d)? [kMGTPE]?B\)/;

function outOfMemory(msg: string): string {
  if (ENGINE_OOM.test(msg)) return msg;
  return `out of memory (${msg}); check the model's needs with \`langneurons info <model>\`, use fewer --threads, a smaller --batch-tokens / --batch, or a machine with more memory`;
}
