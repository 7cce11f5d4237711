#!/usr/bin/env node
// Builds the native addon with cmake-js (offline: Node-API headers come from the node-api-headers package).
// On failure it says what is missing instead of leaving a bare compiler log.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const debug = process.argv.includes('--debug');
// --cuda-sim: the addon and the GPU tests on the CUDA simulator (native/cuda_sim, docs/CUDA-SIM.md) in build-sim/,
// for scripts/cuda-sim-check.sh; the regular addon in build/ is left alone.
const cudaSim = process.argv.includes('--cuda-sim');
// --configure-only: cmake's configure step alone (test/package.test.ts checks that a packed tree configures).
const configureOnly = process.argv.includes('--configure-only');
const outDir = path.join(root, cudaSim ? 'build-sim' : 'build');

function fail(msg) {
  console.error(`\nlangneurons: native build failed.\n${msg}\n`);
  process.exit(1);
}

const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
if (cmake.error || cmake.status !== 0)
  fail('cmake was not found on PATH. Install cmake >= 3.18 (Debian/Ubuntu: apt-get install cmake) and a C++17 compiler (g++ >= 9 or clang >= 10).');

const addonApiDir = require('node-addon-api').include_dir;
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [cmakeJs, configureOnly ? 'configure' : 'compile', '--directory', root, '--out', outDir,
  `--CDNODE_ADDON_API_DIR=${path.resolve(root, addonApiDir)}`, '--CDLN_NATIVE_TESTS=OFF'];
// The CUDA runtime (native/src/cuda) is built into the addon whenever nvcc is found (on the PATH or in
// $CUDA_HOME/bin, /usr/local/cuda/bin); LANGNEURONS_CUDA=0 turns it off. It needs no GPU, driver or cuBLAS to
// build: cudart is linked statically and cuBLASLt is loaded at run time (docs/CUDA.md).
const cudaOff = process.env.LANGNEURONS_CUDA === '0' || cudaSim;
args.push(`--CDLN_CUDA=${cudaOff ? 'OFF' : 'ON'}`);
if (cudaSim) args.push('--CDLN_CUDA_SIM=ON');
// A source checkout also builds the GPU tests and benchmark (scripts/gpu-check.sh runs them); an installed package
// (benchmarks/ and the tests are not shipped) builds the addon alone.
const sourceCheckout = existsSync(path.join(root, 'benchmarks', 'gpu', 'bench_gpu.cpp'));
args.push(`--CDLN_GPU_TESTS=${sourceCheckout ? 'ON' : 'OFF'}`);
if (process.env.LN_CUDA_ARCHITECTURES) args.push(`--CDLN_CUDA_ARCHITECTURES=${process.env.LN_CUDA_ARCHITECTURES}`);
// CI: a CUDA kernel that spills registers fails the build (a warning otherwise; CMakeLists.txt).
if (process.env.LN_CUDA_SPILLS_FATAL === '1') args.push('--CDLN_CUDA_SPILLS_FATAL=ON');
if (!cudaOff && !process.env.CUDACXX) {
  const onPath = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
  if (onPath.error || onPath.status !== 0) {
    for (const dir of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean)) {
      const nvcc = path.join(dir, 'bin', 'nvcc');
      if (spawnSync(nvcc, ['--version']).status === 0) { args.push(`--CDCMAKE_CUDA_COMPILER=${nvcc}`); break; }
    }
  }
}
if (debug) args.push('--debug');
if (process.env.LANGNEURONS_BUILD_PARALLEL) args.push('--parallel', process.env.LANGNEURONS_BUILD_PARALLEL);
let r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
// An installed package whose CUDA build fails (an nvcc too old or too new for the host compiler, say) still gets
// the CPU engine, said loudly; a source checkout fails instead, so that CI sees every CUDA compile error.
let cudaFailed = false;
if (r.status !== 0 && !cudaOff && !sourceCheckout) {
  console.error('\nlangneurons: WARNING: the build with the CUDA runtime failed (the compiler output is above); building the ' +
    'CPU engine alone. The GPU cannot be used until the CUDA build works: fix it, then run `npm rebuild langneurons` ' +
    '(LANGNEURONS_CUDA=0 skips the CUDA build).\n');
  rmSync(outDir, { recursive: true, force: true });
  r = spawnSync(process.execPath, args.map((a) => (a.startsWith('--CDLN_CUDA=') ? '--CDLN_CUDA=OFF' : a)), { stdio: 'inherit', cwd: root });
  cudaFailed = true;
}
if (r.status !== 0)
  fail('cmake-js could not compile the addon (see the compiler output above). It needs cmake >= 3.18, make or ninja, ' +
    `and a C++17 compiler${cudaOff || cudaFailed ? '' : '; the CUDA runtime is compiled because nvcc was found (LANGNEURONS_CUDA=0 turns it off)'}.`);
if (configureOnly) process.exit(0);
if (cudaSim) {
  console.error('langneurons: addon and GPU tests built on the CUDA simulator (build-sim/; not a GPU build)');
  process.exit(0);
}
const cache = spawnSync('cmake', ['-L', '-N', path.join(root, 'build')], { encoding: 'utf8' });
const withCuda = /LN_CUDA:BOOL=ON/.test(cache.stdout ?? '') && existsSync(path.join(root, 'build', 'liblangneurons_cuda.a'));
const cpuOnlyWhy = cudaFailed ? 'the CUDA build failed: see the warning above' : cudaOff ? 'LANGNEURONS_CUDA=0' : 'no nvcc found';
console.error(`langneurons: native addon built (build/Release/langneurons.node), ${withCuda ? 'with the CUDA runtime' : `CPU only (${cpuOnlyWhy})`}`);
