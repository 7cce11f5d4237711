// QA of generation, chat templates and tokenizer handling against what transformers does: the EOS ids generation
// stops at (generation_config.json's too), which chat template a checkpoint folder holding two of them means
// (chat_template.jinja's), and ids a model has an embedding row for but its tokenizer no token (decoded to nothing,
// not an error that loses the run).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { generateTokens } from '../src/generate/generate.js';
import { argmax } from '../src/generate/sampling.js';
import { loadChatTemplate } from '../src/model/chat-template.js';
import { loadTokenizer, type LoadedTokenizer } from '../src/model/tokenizer.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const UDHR20 = path.join(repoRoot, 'models', 'udhr20');
const temps: string[] = [];
afterAll(async () => { for (const d of temps) await removeDir(d); });

async function tempDir(): Promise<string> {
  const dir = await makeTempDir('langneurons-generate-qa-');
  temps.push(dir);
  return dir;
}

/** A writable copy of the bundled model. */
async function copyUdhr20(): Promise<string> {
  const dir = await tempDir();
  for (const entry of await fsp.readdir(UDHR20)) await fsp.copyFile(path.join(UDHR20, entry), path.join(dir, entry));
  return dir;
}

/** A stand-in model whose greedy picks are `script`, one per step, over a vocabulary of `vocab` ids. */
function scriptedModel(tok: LoadedTokenizer, vocab: number, script: number[]): LanguageModel {
  let step = 0;
  return {
    contextLength: 128, config: { eosTokenIds: [] }, tokenizer: tok,
    createCache: () => ({ reset() {}, dispose() {} }),
    forward: async () => ({ next: { tokens: Int32Array.of(script[step++]!) }, logits: new Float32Array(0), vocab }),
  } as unknown as LanguageModel;
}

describe('generation QA', () => {
  it("stops at generation_config.json's EOS ids, as transformers' generate does, not only at config.json's", async () => {
    const dir = await copyUdhr20();
    const plain = await loadModel(UDHR20, { threads: 1 });
    const prompt = plain.requireTokenizer().encode('Hello');
    // The greedy first token, from the logits: an end-of-turn token in generation_config.json (as Gemma 2 lists
    // <end_of_turn>, Llama 3 Instruct <|eot_id|>) must end the generation there.
    const first = argmax((await plain.forward([prompt], { logits: 'last' })).logits);
    expect(plain.config.eosTokenIds).not.toContain(first);
    await fsp.writeFile(path.join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 0, eos_token_id: [1, first] }));
    const model = await loadModel(dir, { threads: 1 });
    const [g] = await generateTokens(model, [prompt], { maxNewTokens: 5 });
    expect(g!.finishReason).toBe('eos');
    expect(g!.tokens).toEqual([]);
    const [past] = await generateTokens(model, [prompt], { maxNewTokens: 5, stopAtEos: false });
    expect(past!.tokens[0]).toBe(first);
  });

  it("chat_template.jinja is the template where tokenizer_config.json has one too (transformers' file priority)", async () => {
    const dir = await tempDir();
    await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: 'config:{{ messages[0].content }}' }));
    await fsp.writeFile(path.join(dir, 'chat_template.jinja'), 'file:{{ messages[0].content }}');
    const both = await loadChatTemplate(dir);
    expect(both!.render([{ role: 'user', content: 'hi' }])).toBe('file:hi');
    expect(both!.source).toBe(path.join(dir, 'chat_template.jinja'));
    await fsp.rm(path.join(dir, 'chat_template.jinja'));
    expect((await loadChatTemplate(dir))!.render([{ role: 'user', content: 'hi' }])).toBe('config:hi');
  });

  it('ids past the tokenizer (a padded embedding) add no text, as transformers decodes them, with and without stops', async () => {
    const tok = await loadTokenizer(UDHR20);
    const vocab = tok.vocabSize + 8; // Qwen2.5-7B: 152064 embedding rows, 151665 tokens
    const words = tok.encode(' the rights of everyone', { addSpecialTokens: false });
    expect(words.length).toBeGreaterThanOrEqual(3);
    const padded = tok.vocabSize + 3;
    const script = [words[0]!, padded, ...words.slice(1)];
    // transformers' decode skips ids it has no token for: the text is that of the other ids.
    const text = tok.decode(words, { skipSpecialTokens: true });
    const [g] = await generateTokens(scriptedModel(tok, vocab, script), [[0]], { maxNewTokens: script.length, stopAtEos: false });
    expect(g!.tokens).toEqual(script);
    expect(g!.text).toBe(text);
    const [cut] = await generateTokens(scriptedModel(tok, vocab, script), [[0]], { maxNewTokens: script.length, stop: [' of'] });
    expect(cut!.finishReason).toBe('stop');
    expect(cut!.text).toBe(text.slice(0, text.indexOf(' of')));
    // Asked to, decode skips them; by default it still refuses an id it cannot decode.
    expect(tok.decode([...words, padded], { skipUnknownIds: true })).toBe(tok.decode(words));
    expect(() => tok.decode([padded])).toThrow(/cannot decode token id/);
  });
});
