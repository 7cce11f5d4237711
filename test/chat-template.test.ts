// Chat templates (src/model/chat-template.ts, src/generate/chat.ts) and the commands that use them: templates in
// the style of Llama 3, Gemma 2 and Qwen 2.5 rendered to the strings their formats define (written out by hand
// here), a template that raises is a one-line error naming the template, and `generate --chat` equals generating
// from the rendered prompt's token ids.
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { LangneuronsError } from '../src/errors.js';
import { LanguageModel } from '../src/engine/model.js';
import { ModelScorer } from '../src/eval/scorer.js';
import { chatMessages, encodeChatPrompt, requireChatTemplate } from '../src/generate/chat.js';
import { generateTokens } from '../src/generate/generate.js';
import { loadChatTemplate } from '../src/model/chat-template.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { copyFixture, fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const GEMMA = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";
const QWEN = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\") %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const temps: string[] = [];
afterAll(async () => { for (const d of temps) await removeDir(d); });

/** A copy of a fixture whose tokenizer_config.json carries `template` (and the given special tokens). */
async function withTemplate(template: string | null, specials: Record<string, string> = {}): Promise<string> {
  const dir = await copyFixture('tiny-gemma2');
  temps.push(dir);
  const file = path.join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(await fsp.readFile(file, 'utf8')) as Record<string, unknown>;
  await fsp.writeFile(file, JSON.stringify({ ...cfg, ...specials, ...(template === null ? {} : { chat_template: template }) }));
  return dir;
}

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });

describe('chat templates', () => {
  it('renders Llama 3, Gemma and Qwen 2.5 style templates to their formats', async () => {
    const llama = (await loadChatTemplate(await withTemplate(LLAMA3, { bos_token: '<|begin_of_text|>' })))!;
    expect(llama.render(chatMessages(' Hello ', 'Be brief.'))).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
    const gemma = (await loadChatTemplate(await withTemplate(GEMMA, { bos_token: '<bos>' })))!;
    expect(gemma.render(chatMessages('Hello'))).toBe('<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n');
    expect(gemma.render([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Yes' }], { addGenerationPrompt: false }))
      .toBe('<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYes<end_of_turn>\n');
    const qwen = (await loadChatTemplate(await withTemplate(QWEN)))!;
    expect(qwen.render(chatMessages('Hello'))).toBe(
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
    expect(qwen.render(chatMessages('Hello', 'Be brief.'))).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
  });

  it('a hand-written template in tokenizer_config.json: rendered, then encoded without adding BOS again', async () => {
    const dir = await withTemplate('{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}');
    const t = await requireChatTemplate(dir, '--chat');
    expect(t.source).toBe(`${path.join(dir, 'tokenizer_config.json')} (chat_template)`);
    const tok = await loadTokenizer(dir);
    const ids = encodeChatPrompt({ template: t, system: 'S' }, tok, 'hé');
    // "<s>" is the BOS token (id 1); every other character is its UTF-8 bytes (ids 3 + byte).
    const bytes = [...Buffer.from('[system] S\n[user] hé\n[assistant] ', 'utf8')].map((b) => 3 + b);
    expect(ids).toEqual([1, ...bytes]);
  });

  it('a template that fails to render, or none at all, is a clear error naming it', async () => {
    const gemma = (await loadChatTemplate(await withTemplate(GEMMA)))!;
    expect(() => gemma.render(chatMessages('Hi', 'sys'))).toThrow(LangneuronsError);
    expect(() => gemma.render(chatMessages('Hi', 'sys'))).toThrow(/tokenizer_config\.json \(chat_template\): the chat template failed to render: .*System role not supported/);
    const none = await withTemplate(null);
    expect(await loadChatTemplate(none)).toBeNull();
    await expect(requireChatTemplate(none, '--chat')).rejects.toThrow(/--chat needs a chat template, and the checkpoint has none/);
    const broken = await withTemplate('{% for m in messages %}');
    await expect(loadChatTemplate(broken)).rejects.toThrow(/chat_template\): the chat template does not parse/);
  });

  it('generate --chat equals generating from the rendered prompt; --system errors are one line, exit 1', async () => {
    const dir = await withTemplate(GEMMA);
    const tok = await loadTokenizer(dir);
    const want = tok.encode('<s><start_of_turn>user\nBonjour<end_of_turn>\n<start_of_turn>model\n', { addSpecialTokens: false });
    const a = cli('generate', dir, '--chat', '--prompt', 'Bonjour', '--max-new-tokens', '12', '--ignore-eos', '--json');
    expect(a.status, a.stderr).toBe(0);
    const b = cli('generate', dir, '--prompt-ids', want.join(','), '--max-new-tokens', '12', '--ignore-eos', '--json');
    expect(JSON.parse(a.stdout).generations[0].tokens).toEqual(JSON.parse(b.stdout).generations[0].tokens);
    expect(JSON.parse(a.stdout).generations[0].tokens).toHaveLength(12);
    const sys = cli('generate', dir, '--chat', '--system', 'Be brief.', '--prompt', 'Hi');
    expect(sys.status).toBe(1);
    expect(sys.stderr.trim().split('\n')).toHaveLength(1);
    expect(sys.stderr).toMatch(/tokenizer_config\.json \(chat_template\).*System role not supported/);
    const noChat = cli('generate', dir, '--system', 'x', '--prompt', 'Hi');
    expect(noChat.status).toBe(1);
    expect(noChat.stderr).toMatch(/--system needs --chat/);
    const none = cli('generate', fixturePath('tiny-gemma2'), '--chat', '--prompt', 'Hi');
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/needs a chat template/);
  }, 60_000);

  it('eval --chat-template: the scorer generates from the chat-rendered prompts', async () => {
    const dir = await withTemplate(QWEN);
    const model = await LanguageModel.load(dir, { threads: 2 });
    const template = (await loadChatTemplate(dir))!;
    const scorer = new ModelScorer(model, { chat: { template, system: 'Translate.' } });
    const got = await scorer.generate(['Hello', 'Bonjour'], { maxNewTokens: 6, stop: [], repetitionPenalty: 1 });
    const tok = model.requireTokenizer();
    const ids = ['Hello', 'Bonjour'].map((p) => tok.encode(`<|im_start|>system\nTranslate.<|im_end|>\n<|im_start|>user\n${p}<|im_end|>\n<|im_start|>assistant\n`, { addSpecialTokens: false }));
    const want = await generateTokens(model, ids, { maxNewTokens: 6, temperature: 0, repetitionPenalty: 1 });
    expect(got.map((g) => g.text)).toEqual(want.map((g) => g.text));
    const plain = await new ModelScorer(model).generate(['Hello'], { maxNewTokens: 6, stop: [], repetitionPenalty: 1 });
    const plainWant = await generateTokens(model, [tok.encode('Hello')], { maxNewTokens: 6, temperature: 0, repetitionPenalty: 1 });
    expect(plain.map((g) => g.text)).toEqual([plainWant[0]!.text]);
  });
});
