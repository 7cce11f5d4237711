#!/usr/bin/env node
// Builds and runs the standalone native test binary (no Node inside: the same binary runs under ASan/UBSan and
// valgrind, see scripts/sanitize.sh). Extra arguments are passed on as a test-name filter. These are the CPU
// tests (built without CUDA, quickly); the GPU tests are built with the addon when it has the CUDA runtime and
// run after them (they report themselves skipped without a device).
//
// The build has debug information (-g at full optimisation): the same binary is the one scripts/sanitize.sh runs
// under valgrind. `--build-only` builds it and stops (sanitize.sh's valgrind check).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'build-native');
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
const buildOnly = process.argv[2] === '--build-only';
run('cmake', ['-S', root, '-B', dir, '-DCMAKE_BUILD_TYPE=Release', '-DLN_NATIVE_TESTS=ON', '-DLN_CUDA=OFF', '-DLN_DEBUG_INFO=ON']);
run('cmake', ['--build', dir, '-j', process.env.LN_JOBS ?? '2', '--target', 'native_tests']);
if (buildOnly) process.exit(0);
run(path.join(dir, 'native_tests'), process.argv.slice(2));

// The GPU tests come with an addon built with the CUDA runtime (build/native_gpu_tests); each says SKIPPED when
// there is no usable device, never passed.
const gpuTests = path.join(root, 'build', 'native_gpu_tests');
if (existsSync(gpuTests)) {
  const fixtures = process.env.LANGNEURONS_FIXTURES ? path.join(process.env.LANGNEURONS_FIXTURES, 'models')
    : path.join(root, '..', 'shared', 'fixtures', 'models');
  run(gpuTests, ['--fixtures', fixtures, ...process.argv.slice(2)]);
} else {
  console.log('native GPU tests: not built (the addon has no CUDA runtime: no nvcc, or LANGNEURONS_CUDA=0)');
}
