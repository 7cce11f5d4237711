#!/usr/bin/env bash
# Trains the bundled multilingual model models/udhr20/ (issue #7): 22 UDHR languages across 17 scripts (7 Latin-script
# languages of 6 families, chosen apart so that their neurons can be told apart in a 2k-neuron model), Maltese
# (mt) as the low-resource language (3 train articles; its other train articles stay unseen), articles 25-30
# held out. Reproducible: the same command and seed give the same tokenizer, initialization and data order (and,
# with the same thread count, the same weights). Resumes after a kill: run it again.
# Environment overrides (for quick trials only; the bundled model uses the defaults): STEPS, OUT, WORK, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-models/udhr20}"
WORK="${WORK:-tmp/udhr20.work}"
[ -f dist/src/cli/main.js ] || npx tsc -p tsconfig.json
node bin/langneurons.js train \
  --langs en,de,fr,sw,tr,vi,fi,ru,el,ar,hi,zh,ja,ko,he,th,ka,hy,am,ta,bn,mt \
  --low-resource mt:3 \
  --tokenizer-vocab 1024 \
  --layers 4 --hidden 128 --heads 4 --kv-heads 4 --ffn 512 \
  --chunk 128 --batch 8 --steps "${STEPS:-900}" --lr 4e-3 --warmup 30 --weight-decay 0.1 --clip 1.0 --beta2 0.95 \
  --seed 0 --threads "${THREADS:-2}" --dtype bf16 \
  --name udhr20 --out "$OUT" --work "$WORK"
