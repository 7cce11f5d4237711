// Every command of the pipeline on each family fixture (Gemma 2, Cohere, Qwen3, YaRN), from the command line:
// info, profile (sequences of 64 tokens: past Gemma 2's window of 8 and YaRN's original context of 32), identify,
// generate with an intervention, finetune, and eval (FLORES with --chat-template on a checkpoint given a template,
// perplexity) — each exits 0 with parseable JSON. The numbers themselves are checked in engine-families,
// train-families and chat-template tests.
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copyFixture, FAMILY_FIXTURES, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const json = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args, '--json'], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`langneurons ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
};
const FX = path.join(repoRoot, 'test', 'fixtures-eval');
const CHATML = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

let dir: string;
beforeAll(async () => { dir = await makeTempDir('ln-cli-families-'); });
afterAll(async () => { await removeDir(dir); });

describe.each(FAMILY_FIXTURES)('the pipeline on %s', (name) => {
  it('info, profile, identify, generate --intervene, finetune, eval', async () => {
    const model = await copyFixture(name);
    const tc = path.join(model, 'tokenizer_config.json');
    await fsp.writeFile(tc, JSON.stringify({ ...JSON.parse(await fsp.readFile(tc, 'utf8')), chat_template: CHATML }));
    const out = path.join(dir, name);
    const info = json('info', model);
    expect(info.modelType).toBe(name === 'tiny-qwen2-yarn' ? 'qwen2' : name.slice(5));
    const prof = json('profile', model, '--corpus', 'udhr:train', '--max-len', '64', '--tokens', '1k', '--threads', '2', '--langs', 'en,mt', '--out', path.join(out, 'stats'));
    expect(prof.results.map((r: { tokens: number }) => r.tokens)).toEqual([1000, 1000]);
    const mask = path.join(out, 'mask.json');
    json('identify', path.join(out, 'stats'), '--method', 'lape', '--top-rate', '0.05', '--out', mask);
    // (These random tiny models may repeat one token with or without the edit: its effect on the values is tested
    // in engine-families.)
    const off = json('generate', model, '--prompt', 'Il-bniedem', '--max-new-tokens', '16', '--ignore-eos', '--intervene', 'zero:neurons=all');
    expect(off.generations[0].tokens).toHaveLength(16);
    json('generate', model, '--prompt', 'Il-bniedem', '--max-new-tokens', '4', '--intervene', `deactivate:${mask}:mt`);
    const train = path.join(out, 'train.txt');
    await fsp.writeFile(train, 'Il-bnedmin kollha jitwieldu ħielsa u ugwali fid-dinjità u d-drittijiet.\n'.repeat(8));
    const ft = json('finetune', model, '--method', 'neurons', '--masks', mask, '--lang', 'mt', '--train', train, '--steps', '2', '--chunk', '64', '--batch', '2', '--threads', '2', '--out', path.join(out, 'run'));
    expect(ft.steps ?? ft.result?.steps ?? 2).toBe(2);
    // FLORES generates up to 128 new tokens: the yarn fixture's context of 128 leaves no room for a prompt, which
    // eval refuses (test/eval-results.test.ts); the other families run it through their chat template.
    if (name !== 'tiny-qwen2-yarn') {
      const ev = json('eval', model, '--task', 'flores', '--pairs', 'eng_Latn-mlt_Latn', '--data', path.join(FX, 'flores'), '--limit', '2', '--chat-template', '--out', path.join(out, 'results'));
      expect(ev.results[0].variant).toMatchObject({ name: 'base-chat' });
      expect(ev.results[0].variant.chatTemplate).toMatch(/tokenizer_config\.json \(chat_template\)/);
    }
    const ppl = json('eval', model, '--task', 'ppl', '--text', path.join(FX, 'ppl'), '--langs', 'sw', '--limit', '2', '--out', path.join(out, 'results'));
    expect(Number.isFinite(ppl.results[0].metrics.ppl ?? ppl.results[0].metrics.perplexity)).toBe(true);
  }, 300_000);
});
