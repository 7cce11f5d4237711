// The public API as a researcher's script uses it (QA pass of the package's entry point):
// - `code` of a LangneuronsError is one of a complete, exported list (the type named 5 codes of the 31 thrown, and
//   not E_OPTIONS or E_INPUT, the commonest: a `switch` on code had no help and a misspelt code compiled);
// - the types that the exported functions take and return can be named from the entry point (finetune's RunControl,
//   interventionFromCli's options, openCorpus's options, estimateMemory's result, …: a script had to reach into
//   langneurons/dist/src/… or write Parameters<typeof …>);
// - the docs' TypeScript call for the trainer is the entry point's (they showed the addon's `new NativeTrainer(spec,
//   …)`, which the package does not export: NativeTrainer is a type there);
// - ProfileOptions.shard says that its index is 0-based (the CLI's --shard K/N is 1-based: { index: 1, count: 2 } was
//   read as "shard 1 of 2" and silently profiled the second one);
// - the package ships no source map whose sources it lacks (1.3 MB of maps pointing at src/*.ts, which is not packed:
//   `node --enable-source-maps` printed stack traces into files that do not exist).
import { spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import * as api from '../src/index.js';
import { ENTRY, errorOf, expectConsumerTypeChecks } from './helpers/consumer.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const temps: string[] = [];
afterAll(async () => { for (const d of temps) await removeDir(d); });

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('error codes', () => {
  it('the entry point exports the list of codes, and it holds every code the sources throw', async () => {
    const codes = (api as Record<string, unknown>)['ERROR_CODES'] as readonly string[] | undefined;
    expect(Array.isArray(codes)).toBe(true);
    const used = new Set<string>();
    for (const f of await sourceFiles(path.join(repoRoot, 'src')))
      for (const m of readFileSync(f, 'utf8').matchAll(/'(E_[A-Z0-9_]+)'/g)) used.add(m[1]!);
    expect(used.size).toBeGreaterThan(20);
    expect([...used].filter((c) => !codes!.includes(c))).toEqual([]);
    expect(new Set(codes).size).toBe(codes!.length);
  });

  it('what a script meets most is in it: E_OPTIONS, E_INPUT', async () => {
    const bad = await errorOf(() => api.finetune(path.join(repoRoot, 'models', 'udhr20'), { method: 'bogus' as 'full', train: 'x.txt' }, '/nonexistent/run'));
    expect(bad).toBeInstanceOf(api.LangneuronsError);
    const codes = (api as Record<string, unknown>)['ERROR_CODES'] as readonly string[] | undefined;
    expect(codes).toContain((bad as api.LangneuronsError).code);
    expect(codes).toContain('E_INPUT');
  });
});

describe('declarations', () => {
  it('a strict consumer names the types of the exported functions from the entry point, and switches on error codes', async () => {
    const dir = await makeTempDir('langneurons-api-qa-');
    temps.push(dir);
    expectConsumerTypeChecks(dir, `
import {
  finetune, resume, interventionFromCli, openCorpus, estimateMemory, compareMasks, logLikelihood, readSafetensorsHeader,
  createNativeTrainer, LangneuronsError, ERROR_CODES,
  type RunControl, type TrainerReport, type PlacementRequest, type InterventionCliOptions, type OpenCorpusOptions,
  type LanguageSource, type MemoryEstimate, type LanguageComparison, type MaskSource, type ContinuationScore,
  type FinishReason, type TangStatsOptions, type SafetensorsHeader, type TensorToWrite, type NativeTrainerOptions,
  type HeadInfo, type PromptCompletion, type MergeReport, type LangneuronsErrorCode, type LangneuronsErrorOptions,
} from ${ENTRY};

const ctl: RunControl = { onLog: (e) => { void e; } };
const where: PlacementRequest = { device: 'cpu' };
const iv: InterventionCliOptions = { intervene: ['zero'] };
const co: OpenCorpusOptions = {};
const to: NativeTrainerOptions = { seed: 1 };
export const calls = [() => finetune('m', { method: 'neurons', train: 't' }, 'r', ctl), () => resume('r', ctl, where),
  () => interventionFromCli(undefined as never, iv), () => openCorpus('c', co), () => createNativeTrainer(undefined as never, 1, [], to)];
export type Named = [TrainerReport, LanguageSource, MemoryEstimate, LanguageComparison, MaskSource, ContinuationScore,
  FinishReason, TangStatsOptions, SafetensorsHeader, TensorToWrite, HeadInfo, PromptCompletion, MergeReport, LangneuronsErrorOptions];
export const same: [MemoryEstimate, LanguageComparison | undefined, ContinuationScore | undefined, SafetensorsHeader] | null = null as unknown as
  [ReturnType<typeof estimateMemory>, ReturnType<typeof compareMasks>['languages'][string], Awaited<ReturnType<typeof logLikelihood>>[number], Awaited<ReturnType<typeof readSafetensorsHeader>>];

export function what(e: unknown): string {
  if (!(e instanceof LangneuronsError)) return 'bug';
  const code: LangneuronsErrorCode = e.code;
  switch (code) {
    case 'E_OPTIONS': case 'E_INPUT': return 'fix the call';
    case 'E_IO': return 'fix the file';
    default: return ERROR_CODES.includes(code) ? code : 'never';
  }
}
export function misspelt(e: LangneuronsError): boolean {
  // @ts-expect-error: no such code
  return e.code === 'E_OPTION';
}
`);
  }, 120_000);

  it('ProfileOptions.shard says its index is 0-based (the CLI\'s --shard K/N is 1-based)', () => {
    const dts = readFileSync(path.join(repoRoot, 'dist', 'src', 'profile', 'profile.d.ts'), 'utf8');
    const doc = /\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*shard\?:/.exec(dts);
    expect(doc, 'a doc comment on shard').not.toBeNull();
    expect(doc![1]).toMatch(/0-based/);
    expect(doc![1]).toMatch(/index: K - 1/);
  });
});

describe('docs', () => {
  it('the trainer\'s TypeScript call in README and docs/CUDA.md is the entry point\'s createNativeTrainer', () => {
    for (const file of ['README.md', 'docs/CUDA.md']) {
      const text = readFileSync(path.join(repoRoot, file), 'utf8');
      expect(text, file).not.toMatch(/new NativeTrainer\(/);
      expect(text, file).toMatch(/createNativeTrainer\(checkpoint, threads, trainable, \{/);
    }
    expect(typeof api.createNativeTrainer).toBe('function');
    expect((api as Record<string, unknown>)['NativeTrainer']).toBeUndefined();
  });
});

describe('the npm package', () => {
  it('ships no source map whose sources it lacks', () => {
    const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot, encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    const files = new Set((JSON.parse(pack.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path));
    const dangling: string[] = [];
    for (const f of files) {
      if (!f.endsWith('.map')) continue;
      const map = JSON.parse(readFileSync(path.join(repoRoot, f), 'utf8')) as { sources: string[]; sourcesContent?: unknown[] };
      if (map.sourcesContent) continue;
      for (const s of map.sources) {
        const p = path.posix.normalize(path.posix.join(path.posix.dirname(f), s));
        if (!files.has(p)) dangling.push(`${f} -> ${p}`);
      }
    }
    expect(dangling.slice(0, 5)).toEqual([]);
  }, 60_000);
});
