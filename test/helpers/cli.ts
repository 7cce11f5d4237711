// Runs the CLI in-process (src/cli/main.ts), capturing what it writes on stdout and stderr.
import { vi } from 'vitest';

import { main } from '../../src/cli/main.js';

export async function runCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => { stdout += String(s); return true; });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { stderr += String(s); return true; });
  const before = process.exitCode;
  try {
    const code = await main(['node', 'langneurons', ...args]);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore(); err.mockRestore(); process.exitCode = before;
  }
}
