// Inputs past the size where `array.push(...items)` overflows the call stack (about 120k arguments): a training
// file of one line of 216k tokens, a tokenizer corpus of 200k lines. Both used to fail with "Maximum call stack
// size exceeded" instead of running.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { finetune } from '../src/train/finetune.js';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-long-inputs-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

describe('inputs larger than a spread can take', () => {
  it('finetune trains on a file whose one line is 216k tokens long', async () => {
    const train = path.join(tmp, 'one-line.txt');
    writeFileSync(train, 'the cat sat on the mat. '.repeat(9000) + '\n');
    const run = path.join(tmp, 'run');
    const r = await finetune(fixturePath('stories260k'), { method: 'mlp', train, chunk: 32, batch: 2, steps: 1, evalEvery: 0, saveEvery: 1,
      threads: 2, lr: 1e-3, writeModel: false, device: 'cpu' }, run);
    expect(r.steps).toBe(1);
    const log = readFileSync(path.join(run, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(Number.isFinite(log[0].loss)).toBe(true);
  });

  it('tokenizer train reads a text file of 200k lines', () => {
    const text = path.join(tmp, 'lines.txt');
    writeFileSync(text, Array.from({ length: 200_000 }, (_, i) => `w${i % 50} x${i % 7}`).join('\n') + '\n');
    const out = path.join(tmp, 'tok');
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'langneurons.js'), 'tokenizer', 'train', '--text', text,
      '--vocab', '300', '--out', out, '--json'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).not.toMatch(/call stack/);
    expect(r.status).toBe(0);
    expect(JSON.parse(readFileSync(path.join(out, 'tokenizer.json'), 'utf8')).model.type).toBe('BPE');
  });
});
