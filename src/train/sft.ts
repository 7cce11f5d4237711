// Supervised fine-tuning records (Mondal et al.'s QA fine-tuning; TRL's dataset formats): JSONL, one record a line,
//   {"prompt": "...", "completion": "..."}          the loss on the completion tokens only
//   {"messages": [{"role", "content"}, ...]}        rendered with the model's chat template; the loss on the
//                                                   assistant messages only
// Each record is one training sequence (records are not packed together); `targets[t]` is the next token where it
// belongs to the completion / an assistant message, else -1 (no loss), so the loss is the mean next-token
// cross-entropy over the completion tokens of a batch.
//
// Tokenisation (as TRL does it): prompt + completion is encoded as one text (with the tokenizer's BOS), the tokens
// that encode(prompt) shares with its start are the prompt, the rest the completion, then EOS. Encoding the joint
// text keeps the completion's first token what the model produces after the prompt (a separate encoding of
// " Paris" would add a second word-start marker with SentencePiece tokenizers). Chat: the full conversation is
// rendered (no generation prompt) and encoded without special tokens, as transformers' apply_chat_template does;
// assistant message i covers the tokens of render(messages[..i]) past its common prefix with
// render(messages[..i-1], add_generation_prompt). A model without a chat template gets a plain one
// ("role: content" blocks, see PLAIN_TEMPLATE) and its BOS.
import { promises as fsp } from 'node:fs';
import { Template } from '@huggingface/jinja';

import { LangneuronsError } from '../errors.js';
import { withoutBom } from '../io/text.js';
import { loadChatTemplate, type ChatMessage } from '../model/chat-template.js';
import { sha256 } from './delta.js';

export type SftFormat = 'prompt-completion' | 'chat';

export interface SftExample {
  ids: Int32Array;
  /** Next-token targets: ids[t + 1] on completion positions, -1 elsewhere (the last position has none). */
  targets: Int32Array;
}

export interface SftTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  readonly eosTokenIds: number[];
}

/** The conversation layout of a model without a chat template. */
export const PLAIN_TEMPLATE =
  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

type Record_ = Record<string, unknown>;

function inputErr(file: string, msg: string): never {
  throw new LangneuronsError('E_INPUT', `${file}: ${msg}`, { file });
}

/** The record format of a JSONL training file, from its first record; null for plain text (or other JSON). */
export function detectSftFormat(text: string): SftFormat | null {
  const first = text.split(/\r?\n/).find((l) => l.trim());
  if (!first || !first.trimStart().startsWith('{')) return null;
  let o: unknown;
  try { o = JSON.parse(first); } catch { return null; }
  if (typeof o !== 'object' || o === null) return null;
  if ('messages' in o) return 'chat';
  if ('prompt' in o && 'completion' in o) return 'prompt-completion';
  return null;
}

const commonPrefix = (a: number[], b: number[]): number => {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
};

/** ids and a per-token "completion" flag as an example, cut to maxLen tokens; null when no target is left. */
function toExample(ids: number[], completion: boolean[], maxLen: number): SftExample | null {
  const n = Math.min(ids.length, maxLen);
  const targets = new Int32Array(n).fill(-1);
  let any = false;
  for (let t = 0; t + 1 < n; t++) if (completion[t + 1]) { targets[t] = ids[t + 1]!; any = true; }
  return any ? { ids: Int32Array.from(ids.slice(0, n)), targets } : null;
}

export function promptCompletionExample(prompt: string, completion: string, tok: SftTokenizer, maxLen: number): SftExample | null {
  const p = tok.encode(prompt);
  const ids = tok.encode(prompt + completion);
  const k = commonPrefix(p, ids);
  const eos = tok.eosTokenIds[0];
  if (eos !== undefined && ids[ids.length - 1] !== eos) ids.push(eos);
  return toExample(ids, ids.map((_, t) => t >= k), maxLen);
}

export interface ChatRenderer { render(messages: ChatMessage[], addGenerationPrompt: boolean): string; addSpecialTokens: boolean }

export function chatExample(messages: ChatMessage[], r: ChatRenderer, tok: SftTokenizer, maxLen: number, where: string): SftExample | null {
  const enc = (m: ChatMessage[], gen: boolean) => tok.encode(r.render(m, gen), { addSpecialTokens: r.addSpecialTokens });
  const ids = enc(messages, false);
  const completion = ids.map(() => false);
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = enc(messages.slice(0, i), true), through = enc(messages.slice(0, i + 1), false);
    if (commonPrefix(through, ids) !== through.length)
      inputErr(where, `the chat template does not render the conversation up to message ${i} as a prefix of the whole; cannot tell the assistant's tokens`);
    for (let t = commonPrefix(before, through); t < through.length; t++) completion[t] = true;
  });
  return toExample(ids, completion, maxLen);
}

function messagesOf(o: Record_, where: string): ChatMessage[] {
  const m = o['messages'];
  if (!Array.isArray(m) || !m.length) inputErr(where, '"messages" must be a non-empty array of {"role", "content"}');
  return m.map((x: unknown, i) => {
    const e = x as Record_;
    if (typeof e !== 'object' || e === null || typeof e['role'] !== 'string' || typeof e['content'] !== 'string')
      inputErr(where, `messages[${i}] must be {"role": string, "content": string}`);
    return { role: e['role'] as string, content: e['content'] as string };
  });
}

/** The model's chat template, or the plain layout with the tokenizer's BOS. */
export async function chatRenderer(modelDir: string): Promise<ChatRenderer & { source: string }> {
  const t = await loadChatTemplate(modelDir);
  if (t) return { source: t.source, addSpecialTokens: false, render: (m, gen) => t.render(m, { addGenerationPrompt: gen }) };
  const plain = new Template(PLAIN_TEMPLATE);
  return { source: 'plain "role: content" layout (the model has no chat template)', addSpecialTokens: true,
    render: (m, gen) => plain.render({ messages: m, add_generation_prompt: gen }) };
}

/**
 * Reads a JSONL file of prompt/completion or chat records into examples of at most maxLen tokens; null when the
 * file's first line is not such a record (plain text, trained on every token).
 */
export async function loadSftExamples(file: string, tok: SftTokenizer, modelDir: string, maxLen: number, what: string):
  Promise<{ examples: SftExample[]; sha: string; format: SftFormat; dropped: number } | null> {
  let text: string;
  try {
    text = withoutBom(await fsp.readFile(file, 'utf8'));
  } catch (e) {
    throw new LangneuronsError('E_IO', `${file}: cannot read the ${what} file: ${(e as Error).message}`, { file });
  }
  const format = detectSftFormat(text);
  if (!format) return null;
  const renderer = format === 'chat' ? await chatRenderer(modelDir) : null;
  const examples: SftExample[] = [];
  let dropped = 0;
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${file}: line ${i + 1}`;
    let o: Record_;
    try {
      o = JSON.parse(line) as Record_;
    } catch (e) {
      throw new LangneuronsError('E_INPUT', `${where} is not JSON (${(e as Error).message})`, { file });
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) inputErr(file, `line ${i + 1} is not a JSON object`);
    let ex: SftExample | null;
    if (format === 'chat') ex = chatExample(messagesOf(o, `${file}: line ${i + 1}`), renderer!, tok, maxLen, `${file}: line ${i + 1}`);
    else {
      if (typeof o['prompt'] !== 'string' || typeof o['completion'] !== 'string')
        inputErr(file, `line ${i + 1}: "prompt" and "completion" must be strings (the file's first record is prompt/completion)`);
      ex = promptCompletionExample(o['prompt'] as string, o['completion'] as string, tok, maxLen);
    }
    if (ex) examples.push(ex);
    else dropped++; // the prompt fills the whole --chunk: nothing left to learn from
  });
  if (!examples.length)
    inputErr(file, `the ${what} file has no record with a completion token within --chunk ${maxLen} tokens${dropped ? ` (${dropped} record(s) cut off)` : ''}`);
  return { examples, sha: sha256(text), format, dropped };
}
