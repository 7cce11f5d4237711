// config.json's `layer_types` (written by transformers >= 4.53: one "full_attention" / "sliding_attention" per layer).
// The rules are transformers' own: Qwen2Config / Qwen3Config / Gemma2Config have the field, and their attention layers
// take `sliding_window` on "sliding_attention" layers only (configuration_qwen2.py, configuration_qwen3.py,
// configuration_gemma2.py, modeling_*.py); Qwen2Config / Qwen3Config set sliding_window to None unless
// use_sliding_window; Gemma2Config's default is sliding_attention on the even layers; AutoConfig runs a mistral
// config.json holding the field as Ministral (configuration_auto.py, modeling_ministral.py); LlamaConfig and
// CohereConfig have no such field. Configs are the shared fixtures' config.json with layer_types edited.
import { spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { LangneuronsError } from '../src/errors.js';
import { loadModel } from '../src/engine/model.js';
import { assertSequenceFits, parseModelConfig, type ModelConfig } from '../src/model/config.js';
import { copyFixture, fixturePath, removeDir, repoRoot, type FixtureName } from './helpers/fixtures.js';
import { loadReference, relativeError } from './helpers/reference.js';

const FULL = 'full_attention', SLIDING = 'sliding_attention';

/** A fixture's config.json, with `edit` applied (undefined deletes a field). */
function fixtureConfig(name: FixtureName, edit: Record<string, unknown> = {}): Record<string, unknown> {
  const json = JSON.parse(readFileSync(fixturePath(name, 'config.json'), 'utf8')) as Record<string, unknown>;
  for (const [k, v] of Object.entries(edit)) if (v === undefined) delete json[k]; else json[k] = v;
  return json;
}
const parse = (json: unknown): ModelConfig => parseModelConfig(json, '/models/m/config.json');

function refused(json: unknown): LangneuronsError {
  let err: unknown;
  try {
    parse(json);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LangneuronsError);
  const e = err as LangneuronsError;
  expect(e.code).toBe('E_CONFIG');
  expect(e.message.startsWith('config.json: ')).toBe(true);
  expect(e.message).not.toContain('\n');
  return e;
}

describe('layer_types: the list itself', () => {
  // transformers' layer_type_validation wants one entry per layer (tiny-gemma2 has 3, the others 2), and these
  // families build masks for full_attention and sliding_attention only.
  it.each([
    ['tiny-gemma2', 'not a list', 'sliding_attention', /"layer_types" must be a list of 3 entries .*each "full_attention" or "sliding_attention", got "sliding_attention"/],
    ['tiny-qwen3', 'one entry short', [FULL], /"layer_types" has 1 entries; expected a list of 2 entries \(one per layer, num_hidden_layers\)/],
    ['tiny-qwen2', 'one entry too many', [FULL, FULL, FULL], /"layer_types" has 3 entries; expected a list of 2 entries/],
    ['tiny-mistral', 'an unknown type', [FULL, 'chunked_attention'], /"layer_types"\[1\] is "chunked_attention"; expected a list of 2 entries .*"full_attention" or "sliding_attention"/],
    ['tiny-qwen2-yarn', 'a non-string', [FULL, 1], /"layer_types"\[1\] is 1; expected/],
  ] as const)('%s with %s is one E_CONFIG error naming the field', (name, _what, layerTypes, pattern) => {
    const e = refused(fixtureConfig(name, { layer_types: layerTypes }));
    expect(e.field).toBe('layer_types');
    expect(e.message).toMatch(pattern);
  });

  it('llama and cohere: transformers has no such field, so it is ignored, whatever it holds', () => {
    for (const name of ['tiny-llama3', 'stories260k', 'tiny-cohere'] as const) {
      const plain = parse(fixtureConfig(name));
      expect(parse(fixtureConfig(name, { layer_types: ['chunked_attention'] }))).toEqual(plain);
      expect(parse(fixtureConfig(name, { layer_types: Array(plain.numLayers).fill(SLIDING) }))).toEqual(plain);
    }
  });

  it('null is no layer_types (the config class derives it)', () => {
    for (const name of ['tiny-gemma2', 'tiny-qwen3', 'tiny-mistral'] as const)
      expect(parse(fixtureConfig(name, { layer_types: null }))).toEqual(parse(fixtureConfig(name)));
  });
});

describe('layer_types: gemma2', () => {
  // tiny-gemma2: 3 layers, sliding_window 8, max_position_embeddings 256.
  it('Gemma2Config\'s default (sliding_attention where (i + 1) % 2, i.e. the even layers) is the engine\'s alternation', () => {
    const plain = parse(fixtureConfig('tiny-gemma2'));
    expect(plain).toMatchObject({ slidingWindow: 8, slidingPeriod: 2 });
    expect(parse(fixtureConfig('tiny-gemma2', { layer_types: [SLIDING, FULL, SLIDING] }))).toEqual(plain);
  });

  it('every layer sliding, or none, are patterns the engine computes; others are refused naming the layers', () => {
    expect(parse(fixtureConfig('tiny-gemma2', { layer_types: [SLIDING, SLIDING, SLIDING] }))).toMatchObject({ slidingWindow: 8, slidingPeriod: 1 });
    const none = parse(fixtureConfig('tiny-gemma2', { layer_types: [FULL, FULL, FULL] }));
    expect(none.slidingWindow).toBeNull();
    expect(none.warnings).toEqual([]);
    // Layer 0 should slide and does not, layer 1 should not and does; layer 2 agrees.
    const e = refused(fixtureConfig('tiny-gemma2', { layer_types: [FULL, SLIDING, SLIDING] }));
    expect(e.field).toBe('layer_types');
    expect(e.message).toMatch(/"layer_types" differs from Gemma 2's alternation \(sliding_attention on even layers, full_attention on odd ones\) at layers 0-1 \(it has sliding_attention on layers 1-2\): the engine applies sliding_window 8 on every layer, on the even layers or on none/);
    const e5 = refused(fixtureConfig('tiny-gemma2', { num_hidden_layers: 5, layer_types: [SLIDING, FULL, FULL, FULL, SLIDING] }));
    expect(e5.message).toContain('at layer 2 (it has sliding_attention on layers 0, 4)');
  });

  it('a window as long as the context slides nothing: any pattern is accepted', () => {
    const c = parse(fixtureConfig('tiny-gemma2', { sliding_window: 256, layer_types: [FULL, SLIDING, SLIDING] }));
    expect(c.slidingWindow).toBeNull();
    expect(c.exactUpTo).toBeNull();
  });

  it('runs what the layer types say: the default explicit matches transformers, all full_attention is full attention', async () => {
    // The reference logits (transformers' Gemma2ForCausalLM) are of a 48-token sequence, longer than the window 8.
    const ref = await loadReference('tiny-gemma2');
    const dirs: string[] = [];
    const run = async (edit: Record<string, unknown>) => {
      const dir = await copyFixture('tiny-gemma2');
      dirs.push(dir);
      await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(fixtureConfig('tiny-gemma2', edit)));
      const model = await loadModel(dir, { threads: 1, device: 'cpu', compute: 'f32' });
      try {
        return (await model.forward([ref.inputIds], { logits: 'all' })).logits;
      } finally {
        await model.dispose();
      }
    };
    try {
      expect(relativeError(await run({ layer_types: [SLIDING, FULL, SLIDING] }), ref.logits)).toBeLessThan(1e-4);
      const allFull = await run({ layer_types: [FULL, FULL, FULL] });
      // The same function as a window that never bites (sliding_window = the context), and not the reference's.
      expect(relativeError(allFull, await run({ sliding_window: 256 }))).toBe(0);
      expect(relativeError(allFull, ref.logits)).toBeGreaterThan(1e-3);
    } finally {
      await Promise.all(dirs.map(removeDir));
    }
  });
});

describe('layer_types: mistral (run by transformers as Ministral)', () => {
  // tiny-mistral: 2 layers, sliding_window null, max_position_embeddings 512; 4 layers for the patterns.
  const four = (layerTypes: string[], window: number | null = 16) => fixtureConfig('tiny-mistral', { num_hidden_layers: 4, sliding_window: window, layer_types: layerTypes });

  it('every layer, the even layers or none: computed; another mix is refused naming the layers that differ', () => {
    expect(parse(four([SLIDING, SLIDING, SLIDING, SLIDING]))).toMatchObject({ slidingWindow: 16, slidingPeriod: 1 });
    expect(parse(four([SLIDING, FULL, SLIDING, FULL]))).toMatchObject({ slidingWindow: 16, slidingPeriod: 2 });
    expect(parse(four([FULL, FULL, FULL, FULL])).slidingWindow).toBeNull();
    const e = refused(four([FULL, SLIDING, SLIDING, SLIDING]));
    expect(e.field).toBe('layer_types');
    expect(e.message).toMatch(/"layer_types" differs from Mistral's sliding_attention on every layer at layer 0 \(it has sliding_attention on layers 1-3\): the engine applies sliding_window 16/);
    expect(refused(four([SLIDING, SLIDING, FULL, FULL])).message).toContain('at layers 2-3 (it has sliding_attention on layers 0-1)');
  });

  it('without a window (sliding_window null, Mistral v0.2 and later) nothing slides: sliding_attention layers run full attention, said once', () => {
    const allFull = parse(fixtureConfig('tiny-mistral', { layer_types: [FULL, FULL] }));
    expect(allFull).toEqual(parse(fixtureConfig('tiny-mistral')));
    const marked = parse(fixtureConfig('tiny-mistral', { layer_types: [FULL, SLIDING] }));
    expect(marked.slidingWindow).toBeNull();
    expect(marked.warnings).toHaveLength(1);
    expect(marked.warnings[0]).toMatch(/"layer_types" marks layer 1 as sliding_attention, but "sliding_window" is null: they run full attention/);
  });
});

describe('layer_types: qwen2 / qwen3', () => {
  it('as transformers writes it for the fixtures (use_sliding_window false: every layer full_attention): nothing changes', () => {
    for (const name of ['tiny-qwen3', 'tiny-qwen2-yarn', 'tiny-qwen2'] as const) {
      const plain = parse(fixtureConfig(name));
      expect(parse(fixtureConfig(name, { layer_types: [FULL, FULL] }))).toEqual(plain);
      expect(plain.exactUpTo).toBeNull();
    }
  });

  it('sliding_attention layers without use_sliding_window have no window (Qwen2Config sets it to None): accepted, said once', () => {
    for (const name of ['tiny-qwen3', 'tiny-qwen2'] as const) {
      const c = parse(fixtureConfig(name, { sliding_window: 16, layer_types: [FULL, SLIDING] }));
      expect(c.exactUpTo).toBeNull();
      expect(c.slidingWindow).toBeNull();
      expect(c.warnings).toHaveLength(1);
      expect(c.warnings[0]).toMatch(/"layer_types" marks layer 1 as sliding_attention, but "use_sliding_window" is false, so transformers sets sliding_window to None: they run full attention/);
    }
  });

  it('use_sliding_window with every layer full_attention slides no layer: every length is exact, no refusal', () => {
    const c = parse(fixtureConfig('tiny-qwen3', { use_sliding_window: true, sliding_window: 16, layer_types: [FULL, FULL] }));
    expect(c.exactUpTo).toBeNull();
    expect(c.warnings).toEqual([]);
    expect(() => assertSequenceFits(c, 256)).not.toThrow();
  });

  it('use_sliding_window with a sliding layer: exact up to the window (whichever layers slide), longer sequences refused', () => {
    const c = parse(fixtureConfig('tiny-qwen3', { use_sliding_window: true, sliding_window: 16, layer_types: [FULL, SLIDING] }));
    expect(c.exactUpTo).toBe(16);
    expect(c.slidingWindow).toBeNull();
    expect(c.warnings[0]).toMatch(/use_sliding_window with sliding_window 16 < max_position_embeddings 256 on layer 1 \(layer_types\): attention is exact only for sequences of at most 16 tokens/);
    expect(() => assertSequenceFits(c, 16)).not.toThrow();
    expect(() => assertSequenceFits(c, 17)).toThrow(LangneuronsError);
  });

  it('without layer_types, max_window_layers says which layers slide (and must be an integer >= 0)', () => {
    const c = parse(fixtureConfig('tiny-qwen2-yarn', { use_sliding_window: true, sliding_window: 16, max_window_layers: 1 }));
    expect(c.exactUpTo).toBe(16);
    expect(c.warnings.find((w) => w.includes('use_sliding_window'))).toMatch(/on layer 1 \(from max_window_layers on\)/);
    // No layer from max_window_layers on; older transformers' eager path windowed every layer: still refused past it.
    const none = parse(fixtureConfig('tiny-qwen2-yarn', { use_sliding_window: true, sliding_window: 16 }));
    expect(none.exactUpTo).toBe(16);
    expect(none.warnings.find((w) => w.includes('use_sliding_window'))).toMatch(/on no layer from max_window_layers 2 on/);
    const e = refused(fixtureConfig('tiny-qwen2-yarn', { use_sliding_window: true, sliding_window: 16, max_window_layers: -1 }));
    expect(e.field).toBe('max_window_layers');
    expect(e.message).toMatch(/"max_window_layers" must be a non-negative integer, got -1/);
  });
});

describe('layer_types on the command line', () => {
  const temps: string[] = [];
  afterAll(async () => { await Promise.all(temps.map(removeDir)); });

  it.each([
    ['a pattern the engine does not compute', [FULL, SLIDING, SLIDING], /"layer_types" differs from Gemma 2's alternation .* at layers 0-1/],
    ['an entry of another type', [SLIDING, FULL, 'chunked_attention'], /"layer_types"\[2\] is "chunked_attention"; expected a list of 3 entries/],
  ])('info on a copy of tiny-gemma2 with %s: exit 1, one line naming the field', async (_what, layerTypes, pattern) => {
    const dir = await copyFixture('tiny-gemma2');
    temps.push(dir);
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(fixtureConfig('tiny-gemma2', { layer_types: layerTypes })));
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'langneurons.js'), 'info', dir], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(lines[0]).toContain('config.json');
  });
});
