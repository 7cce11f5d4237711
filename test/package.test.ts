// What `npm pack` ships must build where users install it: the packed tree (no benchmarks/, no tests) configures,
// with the CUDA runtime when nvcc is found. It once failed on every machine with nvcc: CMakeLists.txt asked for
// benchmarks/gpu/bench_gpu.cpp, which the package does not hold.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { ENTRY, expectConsumerTypeChecks } from './helpers/consumer.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const nvccFound = spawnSync('nvcc', ['--version']).status === 0 ||
  [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].some((d) => d && existsSync(path.join(d, 'bin', 'nvcc')));
const temps: string[] = [];
afterAll(async () => { for (const d of temps) await removeDir(d); });

describe('the npm package', () => {
  it(`ships what the addon build needs, and its tree configures${nvccFound ? ' with the CUDA runtime' : ' (no nvcc here: CPU only)'}`, async () => {
    const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot, encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    const files = (JSON.parse(pack.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const needed of ['CMakeLists.txt', 'scripts/build-native.mjs', 'bin/langneurons.js', 'dist/src/index.js', 'dist/src/index.d.ts',
      'native/src/cuda/cuda_runtime.cpp', 'schemas/sweep.schema.json', 'models/udhr20/model.safetensors',
      'docs/PIPELINE.md', 'examples/sweep-demo.yaml', 'docs/API.md', 'examples/api-pipeline.mjs',  // the README's links and examples
      'dist/src/steer/public.js', 'dist/src/steer/public.d.ts', 'dist/src/eval/index.js', 'dist/src/eval/index.d.ts'])  // the entry points' files
      expect(files, needed).toContain(needed);
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('benchmarks/') || f.startsWith('build/'))).toBe(false);

    const tree = await makeTempDir('langneurons-package-');
    temps.push(tree);
    for (const f of files) {
      mkdirSync(path.dirname(path.join(tree, f)), { recursive: true });
      cpSync(path.join(repoRoot, f), path.join(tree, f));
    }
    symlinkSync(path.join(repoRoot, 'node_modules'), path.join(tree, 'node_modules'));
    const r = spawnSync(process.execPath, [path.join(tree, 'scripts', 'build-native.mjs'), '--configure-only'], { cwd: tree, encoding: 'utf8', timeout: 300_000 });
    const log = `${r.stdout}\n${r.stderr}`;
    expect(r.status, log).toBe(0);
    expect(log).not.toMatch(/WARNING: the build with the CUDA runtime failed/);
    const cache = readFileSync(path.join(tree, 'build', 'CMakeCache.txt'), 'utf8');
    expect(cache).toMatch(/LN_GPU_TESTS:BOOL=OFF/);  // the GPU tests and benchmark are a source checkout's
    if (nvccFound) expect(log).toMatch(/langneurons: CUDA runtime enabled/);
  }, 300_000);

  it('its declarations type-check in a strict consumer without skipLibCheck (no dependency\'s broken types leak in)', async () => {
    const dir = await makeTempDir('langneurons-consumer-');
    temps.push(dir);
    expectConsumerTypeChecks(dir, [
      `import { loadModel, generate, LangneuronsError, type LanguageModel } from ${ENTRY};`,
      "const model: LanguageModel = await loadModel('m', { device: 'auto', compute: 'bf16' });",
      "const out = await model.forward([[1, 2, 3]], { logits: 'last' });",
      "const [g] = await generate(model, 'x', { maxNewTokens: 2 });",
      'export const checked: [number, string | undefined, boolean] = [out.rows, g?.text, new LangneuronsError(\'E_INPUT\', \'x\') instanceof Error];',
    ].join('\n') + '\n');
  }, 120_000);
});
