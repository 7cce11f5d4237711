// Test-time interventions with a classification head (Mondal et al.'s XNLI experiment) and the self- and
// cross-language settings of one `eval` call ({lang} in --intervene, --intervene-langs; Rahmanisa et al.).
// References: the engine's final-normed last-token state against an independent float64 recomputation from site
// captures; head logits under an intervention against the head on the unhooked model with edited down_proj
// columns (as test/intervene.test.ts does for the LM head).
import { existsSync, mkdirSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { writeMaskJson, MASK_FORMAT } from '../src/identify/masks.js';
import { resolveIntervention } from '../src/intervene/index.js';
import { writeFileAtomic } from '../src/io/atomic.js';
import { readAllTensors, readTensor, toFloat32, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { modelIdentity } from '../src/profile/identity.js';
import { encodeItem, HEAD_FORMAT, HeadClassifier, readHead } from '../src/train/head.js';
import { finetune } from '../src/train/finetune.js';
import { copyFixture, fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';
import { captureStdout } from './helpers/cli.js';

const L = 5, I = 172, H = 64, LAYER = 2, C = 3;
const EN = [3, 17, 100], SW = [5, 50, 120];

const ITEMS: Record<string, { premise: string; hypothesis: string; label: number }[]> = {
  en: [
    { premise: 'The cat sat on the mat.', hypothesis: 'A cat sat on a mat.', label: 0 },
    { premise: 'The dog ran to the park.', hypothesis: 'The dog was very happy.', label: 1 },
    { premise: 'Lily had a red ball.', hypothesis: 'Lily had no ball at all.', label: 2 },
  ],
  sw: [
    { premise: 'Mom baked a cake.', hypothesis: 'Nobody baked anything.', label: 2 },
    { premise: 'The bird sang in the tree.', hypothesis: 'A bird sang.', label: 0 },
  ],
};

describe('classification head with interventions', () => {
  let model: LanguageModel, tmp: string, maskFile: string, headDir: string, data: string;
  const dirs: string[] = [];
  const weight = Float32Array.from({ length: C * H }, (_, i) => Math.sin(1 + i * 0.37) * 0.5);

  beforeAll(async () => {
    model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    tmp = await makeTempDir('langneurons-headiv-');
    maskFile = path.join(tmp, 'mask.json');
    const perLayer = (units: number[]) => Array.from({ length: L }, (_, l) => (l === LAYER ? units : []));
    await writeMaskJson(maskFile, { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: modelIdentity(model.checkpoint),
      sources: [], layers: L, width: I, languages: { en: perLayer(EN), sw: perLayer(SW) } });
    // A hand-made head (what `finetune --head classification` writes): score.weight [3, 64] and head.json.
    headDir = path.join(tmp, 'head');
    mkdirSync(headDir);
    await writeSafetensors(path.join(headDir, 'head.safetensors'), { 'score.weight': { dtype: 'F32', shape: [C, H], data: weight } });
    const id = modelIdentity(model.checkpoint);
    await writeFileAtomic(path.join(headDir, 'head.json'), JSON.stringify({ format: HEAD_FORMAT, model: { name: id.name, fingerprint: id.fingerprint },
      numLabels: C, textFields: ['premise', 'hypothesis'], labelField: 'label', hidden: H, maxLen: 64, method: 'hand', step: 0 }));
    data = path.join(tmp, 'xnli');
    for (const [lang, items] of Object.entries(ITEMS)) {
      mkdirSync(path.join(data, lang), { recursive: true });
      writeFileSync(path.join(data, lang, 'test.jsonl'), items.map((x) => JSON.stringify(x)).join('\n') + '\n');
    }
  });
  afterAll(async () => { await removeDir(tmp); for (const d of dirs) await removeDir(d); });

  /** The fixture with layer LAYER's down_proj columns `cols` zeroed: deactivating those neurons, unhooked. */
  async function editedModel(cols: number[]): Promise<LanguageModel> {
    const dir = await copyFixture('stories260k');
    dirs.push(dir);
    const file = path.join(dir, 'model.safetensors');
    const out: Record<string, TensorToWrite> = {};
    for (const [name, { info, data: d }] of await readAllTensors(file)) out[name] = { dtype: info.dtype, shape: info.shape, data: d };
    const w = out[`model.layers.${LAYER}.mlp.down_proj.weight`]!.data as Float32Array;
    for (let r = 0; r < H; r++) for (const j of cols) w[r * I + j] = 0;
    await writeSafetensors(file, out);
    return loadModel(dir, { threads: 2 });
  }

  /** Head logits in float64 from the final residual rebuilt out of captures: embed + every layer's o and down outputs. */
  async function independentLogits(m: LanguageModel, ids: number[]): Promise<number[]> {
    const ck = m.checkpoint;
    const read = async (name: string) => { const t = ck.tensors.get(name)!; return toFloat32(t, await readTensor(t.file, t)); };
    const embed = await read('model.embed_tokens.weight'), norm = await read('model.norm.weight');
    const last = ids.length - 1;
    const h = Array.from(embed.subarray(ids[last]! * H, (ids[last]! + 1) * H), Number);
    for (let l = 0; l < L; l++)
      for (const site of ['o', 'down'] as const) {
        const c = (await m.forward([ids], { logits: 'none', capture: { site, layer: l } })).capture!;
        for (let i = 0; i < H; i++) h[i]! += c[last * H + i]!;
      }
    const rms = 1 / Math.sqrt(h.reduce((s, v) => s + v * v, 0) / H + ck.config.rmsNormEps);
    return Array.from({ length: C }, (_, k) => h.reduce((s, v, i) => s + weight[k * H + i]! * v * rms * norm[i]!, 0));
  }

  const encodeAll = (m: LanguageModel, lang: string) =>
    ITEMS[lang]!.map((x) => encodeItem([x.premise, x.hypothesis], (s) => m.requireTokenizer().encode(s), 64));
  const maxDiff = (a: ArrayLike<number>[], b: ArrayLike<number>[]) =>
    a.reduce((w, z, i) => Math.max(w, ...Array.from(z, (v, k) => Math.abs(v - b[i]![k]!))), 0);

  it("the engine's lastHidden rows are the final-normed last-token states: head logits match a float64 recomputation", async () => {
    const head = await HeadClassifier.load(model, headDir);
    const ids = encodeAll(model, 'en');
    const got = await head.logits(ids); // packed: three sequences of different lengths in one forward
    const want = await Promise.all(ids.map((x) => independentLogits(model, Array.from(x))));
    expect(maxDiff(got, want)).toBeLessThan(1e-4);
    const out = await model.forward([Array.from(ids[0]!)], { logits: 'lastHidden' });
    expect([out.rows, out.vocab, out.logits.length]).toEqual([1, H, H]);
  });

  it('an intervention on the head path equals the head on the unhooked model with edited down_proj columns', async () => {
    const head = await HeadClassifier.load(model, headDir);
    const edited = await HeadClassifier.load(await editedModel(EN), headDir);
    for (const lang of ['en', 'sw']) {
      const ids = encodeAll(model, lang);
      const iv = await resolveIntervention(model, `deactivate:${maskFile}:en`);
      const got = await head.logits(ids, iv);
      const want = await edited.logits(ids);
      const plain = await head.logits(ids);
      expect(maxDiff(got, want), lang).toBeLessThan(1e-5);
      expect(maxDiff(plain, want), 'the edit must matter').toBeGreaterThan(1e-4);
    }
  });

  it("the 'eos-joined' input format (Mondal et al.'s code): premise + ' </s> ' + hypothesis as one text, recorded in head.json", async () => {
    const tok = model.requireTokenizer();
    const x = ITEMS.en[0]!;
    const joined = Array.from(encodeItem([x.premise, x.hypothesis], (t) => tok.encode(t), 64, ' </s> '));
    expect(joined).toEqual(tok.encode(`${x.premise} </s> ${x.hypothesis}`));
    expect(joined.slice(1)).toContain(tok.eosTokenIds[0]); // the separator is the EOS token itself
    expect(joined.indexOf(tok.bosTokenId!, 1)).toBe(-1); // one BOS only
    // A head whose head.json says eos-joined scores that encoding.
    const dir = path.join(tmp, 'head-joined');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'head.safetensors'), readFileSync(path.join(headDir, 'head.safetensors')));
    const info = JSON.parse(readFileSync(path.join(headDir, 'head.json'), 'utf8'));
    writeFileSync(path.join(dir, 'head.json'), JSON.stringify({ ...info, pairFormat: 'eos-joined' }));
    const head = await HeadClassifier.load(model, dir);
    const got = await head.classify([[x.premise, x.hypothesis]], (t) => tok.encode(t));
    expect(maxDiff(got, await head.logits([Int32Array.from(joined)]))).toBe(0);
    expect(maxDiff(got, await head.logits(encodeAll(model, 'en').slice(0, 1)))).toBeGreaterThan(1e-4);
    // finetune --pair-format eos-joined records it; a bad value is refused.
    const train = path.join(tmp, 'xnli-train.jsonl');
    writeFileSync(train, ITEMS.en.map((r) => JSON.stringify(r)).join('\n') + '\n');
    await finetune(fixturePath('stories260k'), { method: 'lora', loraR: 2, loraAlpha: 4, head: 'classification', pairFormat: 'eos-joined', train, batch: 3,
      chunk: 64, steps: 1, evalEvery: 0, threads: 2, writeModel: false }, path.join(tmp, 'run-joined'));
    expect((await readHead(path.join(tmp, 'run-joined'))).info.pairFormat).toBe('eos-joined');
    await expect(finetune(fixturePath('stories260k'), { method: 'lora', head: 'classification', pairFormat: 'joined' as never, train }, path.join(tmp, 'run-bad')))
      .rejects.toThrow(/--pair-format must be one of pair, eos-joined/);
  }, 60_000);

  it('eval --head --intervene with {lang}: self-language by default, every pair with --intervene-langs all, keyed by both languages', async () => {
    const base = ['node', 'langneurons', 'eval', fixturePath('stories260k'), '--task', 'xnli', '--langs', 'en,sw', '--data', data, '--head', headDir,
      '--intervene', `deactivate:${maskFile}:{lang}`, '--threads', '2', '--json'];
    const self = await captureStdout(() => main([...base, '--out', path.join(tmp, 'self')]));
    expect(self.value).toBe(0);
    const selfRes = JSON.parse(self.out).results as { lang: string; variant: { interveneLang: string; name: string; intervene: string } }[];
    expect(selfRes.map((r) => [r.lang, r.variant.interveneLang])).toEqual([['en', 'en'], ['sw', 'sw']]);
    expect(selfRes[0]!.variant.intervene).toBe(`deactivate:${maskFile}:en`);

    const cross = await captureStdout(() => main([...base, '--intervene-langs', 'all', '--variant', 'deact', '--out', path.join(tmp, 'cross')]));
    expect(cross.value).toBe(0);
    const crossRes = JSON.parse(cross.out).results as { lang: string; variant: { interveneLang: string; name: string } }[];
    expect(crossRes.map((r) => [r.lang, r.variant.interveneLang, r.variant.name])).toEqual([
      ['en', 'en', 'deact@en'], ['en', 'sw', 'deact@sw'], ['sw', 'en', 'deact@en'], ['sw', 'sw', 'deact@sw']]);
    // Each (evaluated, intervened) file holds the logits of the head on the model with that language's columns zeroed.
    for (const [lang, ivLang] of [['en', 'en'], ['en', 'sw'], ['sw', 'en']] as const) {
      const edited = await HeadClassifier.load(await editedModel(ivLang === 'en' ? EN : SW), headDir);
      const want = await edited.logits(encodeAll(model, lang));
      // Result files are named <task>__<lang>__<variant>__<prompt>__<key>; the items checkpoint beside the result.
      const items = readdirSync(path.join(tmp, 'cross')).filter((f) => f.startsWith(`xnli__${lang}__deact_${ivLang}__`) && f.endsWith('.items.jsonl'));
      expect(items).toHaveLength(1);
      const lines = readFileSync(path.join(tmp, 'cross', items[0]!), 'utf8').trim().split('\n').slice(1);
      const got = lines.map((l) => (JSON.parse(l) as { logits: number[] }).logits);
      expect(maxDiff(got, want), `${lang} with ${ivLang}'s neurons off`).toBeLessThan(1e-5);
    }
    // A language the mask lacks is refused before anything is evaluated; --intervene-langs without {lang}, and
    // {lang} outside eval, are refused with one clear line.
    const early = await captureStdout(() => main([...base, '--intervene-langs', 'en,xx', '--out', path.join(tmp, 'early')]));
    expect(early.value).toBe(1);
    // Nothing ran: no result or checkpoint was written (the output lock may have made the folder itself).
    const early_ = path.join(tmp, 'early');
    expect(existsSync(early_) ? readdirSync(early_).filter((f) => !f.startsWith('.')) : []).toEqual([]);
    const noPlaceholder = ['node', 'langneurons', 'eval', fixturePath('stories260k'), '--task', 'xnli', '--langs', 'en', '--data', data, '--head', headDir,
      '--intervene', `deactivate:${maskFile}:en`, '--intervene-langs', 'sw', '--out', path.join(tmp, 'bad'), '--json'];
    expect((await captureStdout(() => main(noPlaceholder))).value).toBe(1);
    expect((await captureStdout(() => main(['node', 'langneurons', 'score', fixturePath('stories260k'), '--text', 'Once upon a time',
      '--intervene', `deactivate:${maskFile}:{lang}`, '--json']))).value).toBe(1);
  }, 120_000);
});
