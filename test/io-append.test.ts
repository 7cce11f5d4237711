// appendToFile / appendToFileSync (src/io/files.ts), the appends of line logs (generations, eval checkpoints, the
// training log, the sweep journal): text appended, and a failed write names the file (Node's write errors carry no
// path, so a full disk read "write: no space left on the device" without saying which file).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { appendToFile, appendToFileSync } from '../src/io/files.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-append-'); });
afterAll(async () => { await removeDir(tmp); });

describe('appendToFile', () => {
  it('appends, creating the file, with and without sync; the sync twin too', async () => {
    const f = path.join(tmp, 'log.jsonl');
    await appendToFile(f, '{"a":1}\n');
    await appendToFile(f, '{"a":2}\n', { sync: true });
    appendToFileSync(f, '{"a":3}\n');
    expect(readFileSync(f, 'utf8')).toBe('{"a":1}\n{"a":2}\n{"a":3}\n');
  });

  it.skipIf(!existsSync('/dev/full'))('a full device (ENOSPC) fails in one line naming the file', async () => {
    await expect(appendToFile('/dev/full', 'x\n', { sync: true })).rejects.toMatchObject({ code: 'E_IO', file: '/dev/full', message: expect.stringMatching(/^\/dev\/full: cannot append: ENOSPC: no space left on device/) });
    expect(() => appendToFileSync('/dev/full', 'x\n')).toThrow(/^\/dev\/full: cannot append: ENOSPC/);
  });

  it('a folder in the way fails naming the path', async () => {
    await expect(appendToFile(tmp, 'x')).rejects.toThrow(new RegExp(`^${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot append: EISDIR`));
  });
});
