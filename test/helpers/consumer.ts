// What a user of the package meets: a strict TypeScript consumer type-checked against dist/'s declarations, and the
// error a call throws.
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';

import { makeTempDir, repoRoot } from './fixtures.js';

/** The entry point a consumer imports (dist/, as the package ships it), as a quoted module specifier. */
export const ENTRY = JSON.stringify(path.join(repoRoot, 'dist', 'src', 'index.js'));

/** A new ESM package folder whose node_modules/langneurons is this package (dist/ as built), as `npm install` leaves
 *  it: the entry points are imported by name (`langneurons`, `langneurons/steer`, `langneurons/eval`). Its path is
 *  added to `temps` (the caller's list of folders to remove). */
export async function consumerDir(prefix: string, temps: string[]): Promise<string> {
  const dir = await makeTempDir(prefix);
  temps.push(dir);
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(repoRoot, path.join(dir, 'node_modules', 'langneurons'), 'dir');
  writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}\n');
  return dir;
}

/** Writes `source` as dir/use.ts of an ESM package and expects tsc (strict, without skipLibCheck) to accept it;
 *  `compilerOptions` replace the defaults (NodeNext) where given. */
export function expectConsumerTypeChecks(dir: string, source: string, compilerOptions: Record<string, unknown> = {}): void {
  writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}\n');
  writeFileSync(path.join(dir, 'use.ts'), source);
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: {
    target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false,
    types: ['node'], typeRoots: [path.join(repoRoot, 'node_modules', '@types')], ...compilerOptions }, files: ['use.ts'] }));
  const tsc = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8', timeout: 120_000 });
  expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
}

/** The error a call throws or rejects with. */
export async function errorOf(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('no error');
}
