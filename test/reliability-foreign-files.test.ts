// Files the tool did not write are never replaced, and a run never continues on inputs that changed (QA of the
// reliability promises): a user's run.json, a fine-tuning run's run.json under generate --out, a mask changed under a
// run being resumed, another language's statistics under stats merge --out, an unfinished profile read by identify.
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MASK_FORMAT, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { finetune, resume } from '../src/train/finetune.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

const STORIES = fixturePath('stories260k');
let tmp: string, train: string;
beforeAll(async () => {
  tmp = await makeTempDir('ln-foreign-');
  train = path.join(tmp, 'mt.txt');
  await fsp.writeFile(train, 'Il-bnedmin kollha jitwieldu ħielsa u ugwali fid-dinjità u d-drittijiet.\n'.repeat(20));
});
afterAll(async () => { await removeDir(tmp); });

const fast = { chunk: 32, batch: 1, evalEvery: 0, threads: 1, device: 'cpu' as const };

describe('outputs the tool did not write', () => {
  it("finetune --out refuses a folder whose run.json is not a fine-tuning run's, leaving it alone (it took it over)", async () => {
    const u = path.join(tmp, 'user');
    await fsp.mkdir(path.join(u, 'model'), { recursive: true });
    await fsp.writeFile(path.join(u, 'run.json'), '{"experiment":"important"}');
    await fsp.writeFile(path.join(u, 'model', 'model.safetensors'), 'precious');
    await expect(finetune(STORIES, { ...fast, method: 'mlp', train, steps: 1 }, u)).rejects.toThrow(/holds a run\.json that is not a fine-tuning run's/);
    expect(readFileSync(path.join(u, 'run.json'), 'utf8')).toBe('{"experiment":"important"}');
    expect(readFileSync(path.join(u, 'model', 'model.safetensors'), 'utf8')).toBe('precious');
  });

  it("generate --out refuses a folder holding another command's run.json (a fine-tuning run's became unresumable)", async () => {
    const run = path.join(tmp, 'ft');
    await finetune(STORIES, { ...fast, method: 'mlp', train, steps: 2, saveEvery: 1 }, run, { stopAfterStep: 1 });
    const before = readFileSync(path.join(run, 'run.json'), 'utf8');
    const r = await runCli('generate', STORIES, '--prompt', 'hi', '--max-new-tokens', '3', '--out', run);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/run\.json: not a generate run's summary \(it would be replaced\); use another --out/);
    expect(readFileSync(path.join(run, 'run.json'), 'utf8')).toBe(before);
    expect((await resume(run)).steps).toBe(2);
  });

  it('finetune --resume refuses a mask changed since the run started (it trained other neurons on the old ones\' state)', async () => {
    const ck = await openCheckpoint(STORIES);
    const L = ck.config.numLayers;
    const mask = (k: number): NeuronMask => ({ format: MASK_FORMAT, method: 'test', parameters: {}, site: 'act', model: modelIdentity(ck), sources: [],
      layers: L, width: ck.config.intermediateSize, languages: { mt: Array.from({ length: L }, (_, l) => [k + l, k + l + 20]) } });
    const m = path.join(tmp, 'mask.json');
    await writeMask(m, mask(1));
    const run = path.join(tmp, 'ft-mask');
    await finetune(STORIES, { ...fast, method: 'neurons', masks: m, langs: ['mt'], train, steps: 3, saveEvery: 1 }, run, { stopAfterStep: 1 });
    await writeMask(m, mask(5)); // the same counts, other neurons
    await expect(resume(run)).rejects.toThrow(/the mask .*mask\.json changed since the run started; cannot resume exactly/);
    await writeMask(m, mask(1));
    expect((await resume(run)).steps).toBe(3);
  });

  it("stats merge --out refuses another language's statistics (a mistyped --out lost a finished profile)", async () => {
    const stats = path.join(tmp, 'stats');
    for (const [k, lang] of [[1, 'en'], [2, 'en'], [0, 'de']] as const) {
      const r = await runCli('profile', STORIES, '--corpus', 'udhr:train', '--langs', lang, '--tokens', '1000', '--max-len', '64', '--threads', '1',
        ...(k ? ['--shard', `${k}/2`] : []), '--out', path.join(stats, `p${k}`));
      expect(r.code, r.stderr).toBe(0);
    }
    const de = path.join(stats, 'p0', 'de.safetensors');
    const before = readFileSync(de);
    const r = await runCli('stats', 'merge', path.join(stats, 'p1', 'en.safetensors'), path.join(stats, 'p2', 'en.safetensors'), '--out', de);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/de\.safetensors: holds the statistics of de on stories260k, not en on stories260k; choose another --out/);
    expect(readFileSync(de).equals(before)).toBe(true);
    // an unfinished profile in a folder is said, not read as if whole
    await fsp.copyFile(de, path.join(stats, 'p0', '.sw.checkpoint.safetensors'));
    const id = await runCli('identify', path.join(stats, 'p0'), '--out', path.join(tmp, 'm.json'));
    expect(id.code).toBe(1);
    expect(id.stderr).toMatch(/p0: the profile of sw is unfinished \(\.sw\.checkpoint\.safetensors\): run the same profile again to finish it/);
    expect(existsSync(path.join(tmp, 'm.json'))).toBe(false);
  }, 60_000);
});
