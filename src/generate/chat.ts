/**
 * Prompting instruct models through their chat template (`generate --chat`, `eval --chat-template`): a prompt
 * becomes the user turn of a conversation (after an optional system turn), rendered with the checkpoint's own
 * template (src/model/chat-template.ts) with the generation prompt appended, and encoded without adding special
 * tokens again (the rendered text carries them), as transformers' apply_chat_template(tokenize=True) does.
 */
import { LangneuronsError } from '../errors.js';
import { loadChatTemplate, type ChatMessage, type ChatTemplate } from '../model/chat-template.js';
import type { LoadedTokenizer } from '../model/tokenizer.js';

export interface ChatPrompting {
  template: ChatTemplate;
  /** A system turn before every prompt (refused by templates without a system role, e.g. Gemma's). */
  system?: string;
}

/** The conversation of one prompt: [system], user. */
export function chatMessages(prompt: string, system?: string): ChatMessage[] {
  return [...(system !== undefined ? [{ role: 'system', content: system }] : []), { role: 'user', content: prompt }];
}

/** The token ids of a prompt rendered through the chat template, ready for generation. */
export function encodeChatPrompt(chat: ChatPrompting, tok: LoadedTokenizer, prompt: string): number[] {
  const text = chat.template.render(chatMessages(prompt, chat.system), { addGenerationPrompt: true });
  return tok.encode(text, { addSpecialTokens: false });
}

/** lm-eval's maybe_delimit: prefix and suffix joined by `delimiter` unless either has whitespace at the join. */
function maybeDelimit(prefix: string, suffix: string, delimiter: string): string {
  if (!prefix) return suffix;
  if (!suffix) return prefix;
  return /\s$/u.test(prefix) || /^\s/u.test(suffix) ? prefix + suffix : prefix + delimiter + suffix;
}

/**
 * The context of a log-likelihood request under `eval --chat-template`, as lm-evaluation-harness renders it
 * (api/task.py fewshot_context, zero-shot, no gen_prefix): a system turn of `--system` and the task's description
 * ("\n\n" between, maybe_delimit), the question as the user turn, the generation prompt appended; the answer then
 * follows with no target delimiter (construct_requests). A template that refuses the system turn gets the
 * conversation without it, as lm-eval retries (HFLM.apply_chat_template), when that turn is only the task's
 * description (`onDescriptionDropped` is told); the user's own --system stays an error, as in generation.
 */
export function lmEvalChatContext(chat: ChatPrompting, description: string, question: string, onDescriptionDropped?: () => void): string {
  const system = maybeDelimit(chat.system ?? '', description, '\n\n');
  const user = { role: 'user', content: question };
  if (!system) return chat.template.render([user], { addGenerationPrompt: true });
  try {
    return chat.template.render([{ role: 'system', content: system }, user], { addGenerationPrompt: true });
  } catch (e) {
    if (chat.system) throw e; // the user's own system turn (an empty one is none, as in lm-eval)
    onDescriptionDropped?.();
    return chat.template.render([user], { addGenerationPrompt: true });
  }
}

/** The checkpoint's chat template, or a clear error naming where it was looked for. */
export async function requireChatTemplate(dir: string, option: string): Promise<ChatTemplate> {
  const t = await loadChatTemplate(dir);
  if (!t) throw new LangneuronsError('E_OPTIONS', `${dir}: ${option} needs a chat template, and the checkpoint has none (no "chat_template" in tokenizer_config.json, no chat_template.jinja)`, { field: option.replace(/^--/, '') });
  return t;
}
