// Runs the CLI in-process (src/cli/main.ts), capturing what it writes on stdout and stderr.
import { expect, vi } from 'vitest';

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

/** Runs the CLI and expects exit 1 with exactly one error line (the bad-input rule); returns that line. */
export async function refusedCli(...args: string[]): Promise<string> {
  const r = await runCli(...args);
  expect(r.code, r.stdout + r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0]!;
}

/** Runs f with process.stdout.write captured (for calls that print their --json document), restoring it after. */
export async function captureStdout<T>(f: () => Promise<T>): Promise<{ value: T; out: string }> {
  const out: string[] = [];
  const w = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
  try {
    return { value: await f(), out: out.join('') };
  } finally {
    process.stdout.write = w;
  }
}
