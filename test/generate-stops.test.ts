// Stop strings found from the end of the output (src/generate/stops.ts) against the rule they implement: decode
// the whole output at every step (special tokens skipped, the tokenizer's space clean-up) and stop at the first
// step whose text contains a stop, cut before its first occurrence. Token sequences are drawn to hit the clean-up
// rules, multi-byte characters split over ids, special tokens and long outputs; stops from their own text.
import { promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { StopFinder } from '../src/generate/stops.js';
import { loadTokenizer, type LoadedTokenizer } from '../src/model/tokenizer.js';
import { fixturePath, fixturesDir, lenmlTokenizerDir as lenml, makeTempDir, removeDir, xorshift32 as rng } from './helpers/fixtures.js';


/** llama2's sentencepiece tokenizer with transformers' space clean-up switched on (llama3's has it on already). */
async function llama2WithCleanUp(): Promise<string> {
  const dir = await makeTempDir();
  await fsp.copyFile(path.join(lenml('llama2'), 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', clean_up_tokenization_spaces: true }));
  return dir;
}

const CASES: [string, () => Promise<string>][] = [
  ['llama3 (clean-up on)', async () => lenml('llama3')],
  ['llama2 + clean-up', llama2WithCleanUp],
  ['qwen3', async () => lenml('qwen3')],
  ...readdirSync(fixturesDir).sort().map((m): [string, () => Promise<string>] => [`fixture ${m}`, async () => path.join(fixturesDir, m)]),
];

const PIECES = [' .', '.', ' ?', '!', ' ,', ' n', "'t", " '", "'", ' s', "'s", "'re", ' ', '  ', '\n', '\n\n', 'a', ' b', 'é', '水', '🇲🇹', 'is', "n't", ' ve'];

/** The rule, by brute force: the first step whose whole decoded output holds a stop, and the text cut there. */
function byFullDecode(tok: LoadedTokenizer, ids: number[], stops: string[]): { step: number; text: string } | null {
  for (let k = 1; k <= ids.length; k++) {
    const text = tok.decode(ids.slice(0, k), { skipSpecialTokens: true });
    const at = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
    if (at.length) return { step: k, text: text.slice(0, Math.min(...at)) };
  }
  return null;
}

function byFinder(tok: LoadedTokenizer, ids: number[], stops: string[]): { step: number; text: string } | null {
  const finder = new StopFinder(tok, stops);
  const scan = finder.start();
  const out: number[] = [];
  for (const id of ids) {
    out.push(id);
    const cut = finder.step(scan, out, id);
    if (cut !== null) return { step: out.length, text: cut };
  }
  return null;
}

describe.each(CASES)('%s', (_label, makeDir) => {
  it('the decode stream holds the whole text at every step (random ids, specials, split characters)', async () => {
    const dir = await makeDir();
    const tok = await loadTokenizer(dir);
    if (dir.includes('langneurons-test-')) await removeDir(dir);
    expect(tok.decodesLocally).toBe(true);
    const pool = PIECES.flatMap((p) => tok.encode(p, { addSpecialTokens: false }));
    const specials = tok.eosTokenIds.concat(tok.bosTokenId ?? []);
    for (let c = 0; c < 12; c++) {
      const next = rng(77 + c);
      const ids = Array.from({ length: 60 }, () => { const r = next() % 10; return r < 6 ? pool[next() % pool.length]! : r < 9 ? next() % tok.vocabSize : specials[next() % specials.length]!; });
      for (const skip of [true, false]) {
        const stream = tok.createDecodeStream({ skipSpecialTokens: skip });
        let emitted = '';
        ids.forEach((id, k) => {
          emitted += stream.step(id);
          expect(emitted + stream.held(), `case ${c} step ${k}`).toBe(tok.decode(ids.slice(0, k + 1), { skipSpecialTokens: skip, cleanUpTokenizationSpaces: false }));
        });
      }
    }
  });

  it('stops at the step and cut the whole-output rule gives', async () => {
    const dir = await makeDir();
    const tok = await loadTokenizer(dir);
    if (dir.includes('langneurons-test-')) await removeDir(dir);
    const pool = PIECES.flatMap((p) => tok.encode(p, { addSpecialTokens: false }));
    const words = tok.encode(' the cat is not here, they said.', { addSpecialTokens: false });
    let stopped = 0;
    let compared = 0;
    for (let c = 0; c < 40; c++) {
      const next = rng(500 + c);
      // Long ordinary runs first (so a stop can lie far behind the end), then the clean-up's raw material.
      const ids = [
        ...Array.from({ length: 20 + (next() % 60) }, () => words[next() % words.length]!),
        ...Array.from({ length: 30 }, () => (next() % 5 ? pool[next() % pool.length]! : next() % tok.vocabSize)),
      ];
      const full = tok.decode(ids, { skipSpecialTokens: true });
      const pick = () => { const a = next() % Math.max(1, full.length - 1); return full.slice(a, a + 1 + (next() % 5)); };
      const stops = [[pick()], [pick(), pick()], ['\n'], [' .'], ["'s", '!'], ['  '], [' '], ['zzzz-none']][c % 8]!.filter((s) => s.length > 0);
      if (!stops.length) continue;
      const want = byFullDecode(tok, ids, stops);
      expect(byFinder(tok, ids, stops), `case ${c}: ${JSON.stringify({ stops, ids })}`).toEqual(want);
      compared++;
      if (want) stopped++;
    }
    expect(compared).toBeGreaterThan(30);
    expect(stopped).toBeGreaterThan(10); // the comparison covers stopping runs, not only runs that never stop
  });
});

describe('a stop that the space clean-up makes behind the newest text', () => {
  it("llama3: 'x', ' n', \"'\", 't' decode to \"xn't\" only at the fourth id, which makes the stop 'xn'", async () => {
    const tok = await loadTokenizer(lenml('llama3'));
    const ids = ['x', ' n', "'", 't'].map((p) => tok.encode(p, { addSpecialTokens: false })).flat();
    expect(ids).toHaveLength(4);
    expect(ids.map((_, k) => tok.decode(ids.slice(0, k + 1), { skipSpecialTokens: true }))).toEqual(['x', 'x n', "x n'", "xn't"]);
    // 'xn' ends before the newest id's text: found from the end only when the search reaches back far enough.
    expect(byFinder(tok, ids, ['xn'])).toEqual({ step: 4, text: '' });
    expect(byFinder(tok, ids, ['zz', "n't"])).toEqual({ step: 4, text: 'x' });
    expect(byFinder(tok, ids, ['x n'])).toEqual({ step: 2, text: '' });
  });
});

describe('without the space clean-up (vLLM\'s text: `cleanUpTokenizationSpaces: false`, eval --prompt arithmetics)', () => {
  it("llama3: the same ids decode to \"x n't\", so 'xn' is never a stop there and \" n't\" is", async () => {
    const tok = await loadTokenizer(lenml('llama3'));
    const ids = ['x', ' n', "'", 't'].map((p) => tok.encode(p, { addSpecialTokens: false })).flat();
    const raw = (stops: string[]) => {
      const finder = new StopFinder(tok, stops, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false });
      const scan = finder.start();
      for (let k = 1; k <= ids.length; k++) { const cut = finder.step(scan, ids.slice(0, k), ids[k - 1]!); if (cut !== null) return { step: k, text: cut }; }
      return null;
    };
    expect(tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false })).toBe("x n't");
    expect(raw(['xn'])).toBeNull();
    expect(raw([" n't"])).toEqual({ step: 4, text: 'x' });
    expect(byFinder(tok, ids, [" n't"])).toBeNull(); // with the clean-up (llama3's config): "xn't" holds no " n't"
  });
});

describe('a decoder outside the known local ones', () => {
  it('is searched in the whole output at every step, with the same answers', async () => {
    const dir = await makeTempDir();
    const json = JSON.parse(await fsp.readFile(path.join(fixturePath('stories260k'), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    json['decoder'] = { type: 'CTC', pad_token: '<pad>', word_delimiter_token: '|', cleanup: true };
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
    const tok = await loadTokenizer(dir);
    await removeDir(dir);
    expect(tok.decodesLocally).toBe(false);
    const ids = tok.encode('aab b. cc, dd!', { addSpecialTokens: false });
    for (const stops of [['b.'], ['c,'], ['zz'], ['d']]) expect(byFinder(tok, ids, stops), stops[0]).toEqual(byFullDecode(tok, ids, stops));
  });
});
