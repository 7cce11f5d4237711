// Reliability of the `eval --delta` cache (issue 19, item 8): keyed by the base model's fingerprint and the delta's
// content; a partly written, damaged or foreign cache is rebuilt, never trusted; staging folders of dead
// processes go; folders that are not ours are never removed.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { mergedDeltaModel } from '../src/eval/delta-cache.js';
import { finetune } from '../src/train/finetune.js';
import { olderDelta } from './helpers/delta.js';

const STORIES = path.resolve(__dirname, '../../shared/fixtures/models/stories260k');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-rel-cache-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

describe('eval --delta cache', () => {
  it('is verified: partial, damaged and foreign caches are rebuilt; a changed base gets its own; dead staging goes', async () => {
    const train = path.join(tmp, 'mt.txt');
    writeFileSync(train, udhrArticles('mt').filter((a) => a.number <= 2).map((a) => a.text).join('\n') + '\n');
    const run = path.join(tmp, 'run');
    await finetune(STORIES, { method: 'mlp', train, chunk: 48, batch: 2, steps: 2, lr: 1e-2, threads: 1, writeModel: false, evalEvery: 0 }, run);
    const delta = path.join(run, 'delta.safetensors');
    const root = path.join(tmp, 'cache');
    await fsp.mkdir(root);

    const dir = await mergedDeltaModel(STORIES, delta, false, root);
    const merged = readFileSync(path.join(dir, 'model.safetensors'));
    expect(JSON.parse(readFileSync(path.join(dir, 'cache.json'), 'utf8')).format).toBe('langneurons-delta-cache/2');
    // The merged weights equal `delta apply`'s.
    const applied = path.join(tmp, 'applied');
    const { applyDelta } = await import('../src/train/delta.js');
    await applyDelta(STORIES, delta, applied);
    expect(merged.equals(readFileSync(path.join(applied, 'model.safetensors')))).toBe(true);

    // Partly written (killed mid-copy): truncated weights -> rebuilt.
    await fsp.truncate(path.join(dir, 'model.safetensors'), 1000);
    expect(await mergedDeltaModel(STORIES, delta, false, root)).toBe(dir);
    expect(readFileSync(path.join(dir, 'model.safetensors')).equals(merged)).toBe(true);
    // No record (a cache from before, or a kill before the record): rebuilt.
    await fsp.rm(path.join(dir, 'cache.json'));
    await fsp.writeFile(path.join(dir, 'model.safetensors'), 'x');
    await mergedDeltaModel(STORIES, delta, false, root);
    expect(readFileSync(path.join(dir, 'model.safetensors')).equals(merged)).toBe(true);
    // Foreign content under the cache's name (another model with a record for another key): rebuilt.
    const rec = JSON.parse(readFileSync(path.join(dir, 'cache.json'), 'utf8'));
    cpSync(path.join(STORIES, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    writeFileSync(path.join(dir, 'cache.json'), JSON.stringify({ ...rec, key: '0'.repeat(64) }));
    await mergedDeltaModel(STORIES, delta, false, root);
    expect(readFileSync(path.join(dir, 'model.safetensors')).equals(merged)).toBe(true);

    // Same path, other weights: another fingerprint, another cache (never the old merge). (A delta now records its
    // base's weights and is refused on others: the cache key matters for deltas from before that, without them.)
    const base2 = path.join(tmp, 'base2');
    cpSync(STORIES, base2, { recursive: true });
    const bytes = readFileSync(path.join(base2, 'model.safetensors'));
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(path.join(base2, 'model.safetensors'), bytes);
    await expect(mergedDeltaModel(base2, delta, false, root)).rejects.toThrow(/delta was trained from other weights/);
    const older = await olderDelta(run, path.join(tmp, 'older-delta'));
    expect(await mergedDeltaModel(base2, older, false, root)).not.toBe(dir);

    // A staging folder of a dead process is removed; one holding foreign files is left alone, and a cache name
    // holding foreign files is refused, not deleted.
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const stale = `${dir}.tmp-${dead}`;
    await fsp.mkdir(stale);
    writeFileSync(path.join(stale, 'model.safetensors'), 'half');
    const strange = path.join(root, `langneurons-delta-0123456789abcdef.tmp-${dead}`);
    await fsp.mkdir(strange);
    writeFileSync(path.join(strange, 'thesis.tex'), 'mine');
    await mergedDeltaModel(STORIES, delta, false, root);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(path.join(strange, 'thesis.tex'))).toBe(true);
    writeFileSync(path.join(dir, 'thesis.tex'), 'mine');
    await fsp.rm(path.join(dir, 'cache.json'));
    await expect(mergedDeltaModel(STORIES, delta, false, root)).rejects.toThrow(/holds files a delta merge does not write \(thesis\.tex\)/);
    expect(existsSync(path.join(dir, 'thesis.tex'))).toBe(true);
  }, 120_000);
});
