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
import { lmEvalEncode, lmEvalEncodePair, ModelScorer } from '../src/eval/scorer.js';
import { prepareTask, type PlanItem } from '../src/eval/tasks.js';
import { chatMessages, encodeChatPrompt, lmEvalChatContext, requireChatTemplate } from '../src/generate/chat.js';
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

  it('eval --chat-template --system: runs with other system turns get variant names of their own', async () => {
    const FX = path.join(repoRoot, 'test', 'fixtures-eval');
    const dir = await withTemplate(QWEN);
    const out = path.join(dir, 'results-system');
    const names = ['Answer A.', 'Answer B.'].map((sys) => {
      const r = cli('eval', dir, '--task', 'mmlu', '--prompt', 'lm-eval', '--langs', 'en', '--data', path.join(FX, 'mmlu'), '--chat-template', '--system', sys, '--threads', '1', '--out', out, '--json');
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout).results[0].variant.name as string;
    });
    expect(names[0]).toMatch(/^base-chat-system-[0-9a-f]{8}$/);
    expect(names[1]).toMatch(/^base-chat-system-[0-9a-f]{8}$/);
    expect(names[0]).not.toBe(names[1]);
  }, 60_000);

  it('eval --chat-template: the scorer generates from the chat-rendered prompts', async () => {
    const dir = await withTemplate(QWEN);
    const model = await LanguageModel.load(dir, { threads: 2 });
    const template = (await loadChatTemplate(dir))!;
    const scorer = new ModelScorer(model, { chat: { template, system: 'Translate.' } });
    const got = await scorer.generate(['Hello', 'Bonjour'], { maxNewTokens: 6, stop: [], repetitionPenalty: 1 });
    const tok = model.requireTokenizer();
    // rendered, then encoded as lm-eval does: this template renders no BOS, so the tokenizer's own is added
    const rendered = (p: string) => `<|im_start|>system\nTranslate.<|im_end|>\n<|im_start|>user\n${p}<|im_end|>\n<|im_start|>assistant\n`;
    expect(lmEvalEncode(tok, lmEvalChatContext({ template, system: 'Translate.' }, '', 'Hello'))).toEqual(tok.encode(rendered('Hello')));
    expect(tok.encode(rendered('Hello'))[0]).toBe(tok.bosTokenId);
    const ids = ['Hello', 'Bonjour'].map((p) => tok.encode(rendered(p)));
    const want = await generateTokens(model, ids, { maxNewTokens: 6, temperature: 0, repetitionPenalty: 1 });
    expect(got.map((g) => g.text)).toEqual(want.map((g) => g.text));
    const plain = await new ModelScorer(model).generate(['Hello'], { maxNewTokens: 6, stop: [], repetitionPenalty: 1 });
    const plainWant = await generateTokens(model, [tok.encode('Hello')], { maxNewTokens: 6, temperature: 0, repetitionPenalty: 1 });
    expect(plain.map((g) => g.text)).toEqual([plainWant[0]!.text]);
  });

  it("eval --chat-template on multiple choice: lm-eval's chat contexts (description a system turn, answers without the space), one BOS", async () => {
    const FX = path.join(repoRoot, 'test', 'fixtures-eval');
    const dir = await withTemplate(LLAMA3);
    const template = (await loadChatTemplate(dir))!;
    const mcItem = (p: { items: PlanItem[] }) => p.items[0] as Extract<PlanItem, { kind: 'mc' }>;
    const chatContext = (d: string, q: string) => lmEvalChatContext({ template }, d, q);
    const header = (role: string, text: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n${text}<|eot_id|>`;
    const question = 'What is 2 + 3?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:';
    // MMLU: plain, (description + question, " A"); chat, [system: description, user: question] + generation prompt, "A"
    const plain = mcItem(await prepareTask('mmlu', { dir: path.join(FX, 'mmlu'), lang: 'en', prompt: 'lm-eval' }));
    expect(plain.pairs[0]).toEqual({ context: `The following are multiple choice questions (with answers) about elementary mathematics.\n\n${question}`, continuation: ' A' });
    const chat = mcItem(await prepareTask('mmlu', { dir: path.join(FX, 'mmlu'), lang: 'en', prompt: 'lm-eval', chatContext }));
    const rendered = '<s>' + header('system', 'The following are multiple choice questions (with answers) about elementary mathematics.') +
      header('user', question) + '<|start_header_id|>assistant<|end_header_id|>\n\n';
    expect(chat.pairs.map((p) => p.continuation)).toEqual(['A', 'B', 'C', 'D']);
    expect(chat.pairs[0]!.context).toBe(rendered);
    // --system comes first, "\n\n" before the description (maybe_delimit)
    expect(lmEvalChatContext({ template, system: 'Be brief.' }, 'Describe.', 'Q')).toBe(
      '<s>' + header('system', 'Be brief.\n\nDescribe.') + header('user', 'Q') + '<|start_header_id|>assistant<|end_header_id|>\n\n');
    // XWinograd: each partial sentence is its own user turn, the rest of the sentence follows without the space
    const xw = mcItem(await prepareTask('xwinograd', { dir: path.join(FX, 'xwinograd'), lang: 'en', chatContext }));
    expect(xw.pairs.map((p) => p.context)).toEqual(xw.choices.map((c) => '<s>' + header('user', c) + '<|start_header_id|>assistant<|end_header_id|>\n\n'));
    expect(xw.pairs[0]!.continuation).toBe('is too large.');
    // Encoded: the rendered BOS once (lm-eval's has_bos_prefix), "\n\n" moved to the continuation (rstrip)
    const tok = await loadTokenizer(dir);
    const bytes = (t: string) => [...Buffer.from(t, 'utf8')].map((b) => 3 + b);
    const enc = lmEvalEncodePair(tok, chat.pairs[1]!);
    expect(enc.context).toEqual([1, ...bytes(rendered.slice(3, -2))]);
    expect(enc.continuation).toEqual(bytes('\n\nB'));
    expect(lmEvalEncodePair(tok, plain.pairs[1]!).context[0]).toBe(1);
    expect(lmEvalEncodePair(tok, plain.pairs[1]!).context[1]).not.toBe(1);
  });

  it("eval --chat-template with a template that refuses a system turn: the description is dropped (as lm-eval retries), --system is an error", async () => {
    const FX = path.join(repoRoot, 'test', 'fixtures-eval');
    const dir = await withTemplate(GEMMA);
    const template = (await loadChatTemplate(dir))!;
    let told = 0;
    expect(lmEvalChatContext({ template }, 'Describe.', 'Q', () => told++)).toBe('<s><start_of_turn>user\nQ<end_of_turn>\n<start_of_turn>model\n');
    expect(told).toBe(1);
    expect(() => lmEvalChatContext({ template, system: 'S' }, 'Describe.', 'Q')).toThrow(/System role not supported/);
    const out = path.join(dir, 'results');
    const r = cli('eval', dir, '--task', 'mmlu', '--prompt', 'lm-eval', '--langs', 'en', '--data', path.join(FX, 'mmlu'), '--chat-template', '--threads', '1', '--out', out, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.match(/failed to render with a system turn .*: the tasks' descriptions .* are left out of the chat contexts/g)).toHaveLength(1);
    const res = JSON.parse(r.stdout).results[0];
    expect(res.variant.name).toBe('base-chat');
    expect(res.items).toBeGreaterThan(0);
    expect(res.template).toMatch(/ — through the chat template: the description \(if any\) a system turn, the question the user turn, the answers without their leading space$/);
    // an empty --system is no system turn (as in lm-eval): the description is dropped as without it, not an error
    const empty = cli('eval', dir, '--task', 'mmlu', '--prompt', 'lm-eval', '--langs', 'en', '--data', path.join(FX, 'mmlu'), '--chat-template', '--system', '', '--threads', '1', '--out', out, '--json');
    expect(empty.status, empty.stderr).toBe(0);
    expect(JSON.parse(empty.stdout).results[0].metrics).toEqual(res.metrics);
    const bad = cli('eval', dir, '--task', 'mmlu', '--prompt', 'lm-eval', '--langs', 'en', '--data', path.join(FX, 'mmlu'), '--chat-template', '--system', 'S', '--threads', '1', '--out', out);
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/System role not supported/);
  }, 60_000);
});
