#!/usr/bin/env node
// Builds the native addon with cmake-js (offline: Node-API headers come from the node-api-headers package).
// On failure it says what is missing instead of leaving a bare compiler log.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const debug = process.argv.includes('--debug');

function fail(msg) {
  console.error(`\nlangneurons: native build failed.\n${msg}\n`);
  process.exit(1);
}

const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
if (cmake.error || cmake.status !== 0)
  fail('cmake was not found on PATH. Install cmake >= 3.18 (Debian/Ubuntu: apt-get install cmake) and a C++17 compiler (g++ >= 9 or clang >= 10).');

const addonApiDir = require('node-addon-api').include_dir;
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [cmakeJs, 'compile', '--directory', root, '--out', path.join(root, 'build'),
  `--CDNODE_ADDON_API_DIR=${path.resolve(root, addonApiDir)}`, '--CDLN_NATIVE_TESTS=OFF'];
// The CUDA kernels (native/src/cuda, target langneurons_cuda) are not linked into the addon yet, and nvcc is slow:
// skip them unless asked for with LANGNEURONS_CUDA=1 (see docs/CUDA.md).
args.push(`--CDLN_CUDA=${process.env.LANGNEURONS_CUDA === '1' ? 'ON' : 'OFF'}`);
if (debug) args.push('--debug');
if (process.env.LANGNEURONS_BUILD_PARALLEL) args.push('--parallel', process.env.LANGNEURONS_BUILD_PARALLEL);
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
if (r.status !== 0)
  fail('cmake-js could not compile the addon (see the compiler output above). It needs cmake >= 3.18, make or ninja, ' +
    'and a C++17 compiler; CUDA sources are only compiled when nvcc is found and never block the CPU build.');
console.error('langneurons: native addon built (build/Release/langneurons.node)');
