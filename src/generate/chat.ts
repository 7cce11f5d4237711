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

/** The checkpoint's chat template, or a clear error naming where it was looked for. */
export async function requireChatTemplate(dir: string, option: string): Promise<ChatTemplate> {
  const t = await loadChatTemplate(dir);
  if (!t) throw new LangneuronsError('E_OPTIONS', `${dir}: ${option} needs a chat template, and the checkpoint has none (no "chat_template" in tokenizer_config.json, no chat_template.jinja)`, { field: option.replace(/^--/, '') });
  return t;
}
