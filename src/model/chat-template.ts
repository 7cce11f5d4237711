/**
 * Chat templates: the Jinja template a checkpoint ships (a `chat_template.jinja` file, as newer transformers
 * write, or tokenizer_config.json `chat_template`, a string or a list of named templates) rendered
 * with `@huggingface/jinja`, the implementation Hugging Face's own JavaScript libraries use, with the same
 * variables transformers' `apply_chat_template` passes: `messages`, `add_generation_prompt` and the special
 * tokens of tokenizer_config.json (`bos_token`, `eos_token`, …). `raise_exception` is @huggingface/jinja's own
 * global (it throws with the template's message; declaring it again is an error there).
 *
 * The rendered text usually starts with the BOS token already, so callers encode it with
 * `addSpecialTokens: false` (as transformers does with `tokenize=True`).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { LangneuronsError, describeError } from '../errors.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplate {
  /** Where the template came from, for error messages: "<dir>/tokenizer_config.json (chat_template)". */
  source: string;
  render(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean; extra?: Record<string, unknown> }): string;
}

type Json = Record<string, unknown>;

function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as Json).content === 'string') return (value as Json).content as string;
  return undefined;
}

function fail(source: string, message: string, cause?: unknown): never {
  throw new LangneuronsError('E_TOKENIZER', `${source}: ${message}`, cause === undefined ? {} : { cause });
}

/** The text of `<dir>/chat_template.jinja`, or undefined when there is none. */
async function readJinjaFile(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') fail(file, `cannot read: ${describeError(err)}`, err);
    return undefined;
  }
}

/**
 * Returns the checkpoint's chat template, or null when it has none. `name` picks one of several (default "default").
 * The default template is `chat_template.jinja` where the folder has one, over tokenizer_config.json's: transformers'
 * from_pretrained lets the file replace the config's template (a checkpoint whose template was fixed in the file keeps
 * the old one in its config).
 */
export async function loadChatTemplate(dir: string, name = 'default'): Promise<ChatTemplate | null> {
  const configFile = path.join(dir, 'tokenizer_config.json');
  let config: Json = {};
  try {
    config = JSON.parse(await fsp.readFile(configFile, 'utf8')) as Json;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') fail(configFile, `cannot read: ${describeError(err)}`, err);
  }
  const jinjaFile = path.join(dir, 'chat_template.jinja');
  const fromFile = name === 'default' ? await readJinjaFile(jinjaFile) : undefined;
  let text: string | undefined;
  let source = `${configFile} (chat_template)`;
  const raw = config.chat_template;
  if (fromFile !== undefined) {
    text = fromFile;
    source = jinjaFile;
  } else if (typeof raw === 'string') text = raw;
  else if (Array.isArray(raw)) {
    const entry = raw.find((e) => e && typeof e === 'object' && (e as Json).name === name) as Json | undefined;
    if (!entry || typeof entry.template !== 'string') {
      const names = raw.map((e) => (e as Json)?.name).filter((n) => typeof n === 'string');
      fail(source, `no chat template named "${name}" (templates: ${names.join(', ') || 'none'})`);
    }
    text = entry.template as string;
    source = `${configFile} (chat_template "${name}")`;
  } else if (raw !== undefined && raw !== null) fail(source, 'chat_template must be a string or a list of {name, template}');
  if (text === undefined) return null;
  let template: Template;
  try {
    template = new Template(text);
  } catch (err) {
    fail(source, `the chat template does not parse: ${describeError(err)}`, err);
  }
  const specials: Json = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    const t = tokenText(config[key]);
    if (t !== undefined) specials[key] = t;
  }
  return {
    source,
    render(messages, options = {}) {
      try {
        return template.render({
          ...specials,
          ...options.extra,
          messages,
          add_generation_prompt: options.addGenerationPrompt ?? true,
        });
      } catch (err) {
        return fail(source, `the chat template failed to render: ${describeError(err)}`, err);
      }
    },
  };
}
