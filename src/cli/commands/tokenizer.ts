import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';

import { LangneuronsError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { readTextFile } from '../../io/text.js';
import { loadTokenizer } from '../../model/tokenizer.js';
import { tokenizerConfigJson, tokenizerJson, trainBpe } from '../../pretrain/bpe.js';
import { buildPretrainCorpus } from '../../pretrain/corpus.js';
import { printResult } from '../output.js';
import { ensureOutputDir } from '../../io/outdir.js';

interface TokenizerTrainCli { langs?: string; text?: string[]; vocab: string; minFrequency?: string; maxLength?: string; seed?: string; out: string; json?: boolean }

function int(name: string, v: string, min: number): number {
  const x = Number(v);
  if (!/^\d+$/.test(v.trim()) || x < min) throw new LangneuronsError('E_OPTIONS', `--${name} must be an integer >= ${min}, got '${v}'`, { field: name });
  return x;
}

/**
 * tokenizer_config.json of a folder written by `tokenizer train` carries this key: how a rerun knows the folder is its
 * own. (A model folder's tokenizer files, `train`'s included, do not carry it, so they are never overwritten.)
 */
const WRITTEN_BY_KEY = 'langneurons_written_by';
const WRITTEN_BY = 'langneurons tokenizer train';
const OUT_FILES = ['tokenizer.json', 'tokenizer_config.json'];

/**
 * Refuses an --out that `tokenizer train` may not write: anything but a missing or empty folder, or one holding only
 * the two files a `tokenizer train` wrote (its tokenizer_config.json says so; it is written first, so a run killed
 * between the two writes leaves a folder still recognised).
 */
async function checkTokenizerOut(out: string): Promise<void> {
  const st = await fsp.lstat(out).catch(() => null);
  if (!st) return;
  if (!st.isDirectory()) throw new LangneuronsError('E_OPTIONS', `${out}: --out exists and is not a folder; choose another --out`, { file: out, field: 'out' });
  const names = await fsp.readdir(out);
  if (names.length === 0) return;
  const refuse = (why: string) => new LangneuronsError('E_OPTIONS', `${out}: --out ${why}; it is never overwritten: choose another --out (an empty or new folder)`, { file: out, field: 'out' });
  const foreign = names.filter((n) => !OUT_FILES.includes(n) && !/^tokenizer(_config)?\.json\.tmp-\d+(-[0-9a-f]+)?$/.test(n)).sort();
  if (foreign.length > 0) throw refuse(`holds files \`tokenizer train\` did not write (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''})`);
  let config: unknown = null;
  try {
    config = JSON.parse(await fsp.readFile(path.join(out, 'tokenizer_config.json'), 'utf8'));
  } catch {
    // missing or unreadable: not ours
  }
  if ((config as Record<string, unknown> | null)?.[WRITTEN_BY_KEY] !== WRITTEN_BY)
    throw refuse('holds a tokenizer that `langneurons tokenizer train` did not write');
}

export function registerTokenizer(program: Command): void {
  program
    .command('tokenizer')
    .description('byte-level BPE tokenizers (Hugging Face tokenizer.json)')
    .command('train')
    .description('train a byte-level BPE on UDHR train articles (--langs) and/or text files (--text), one document per line')
    .option('--langs <ids>', 'UDHR language ids, comma-separated (their train articles)')
    .option('--text <files...>', 'UTF-8 text files, one document per line')
    .requiredOption('--vocab <n>', 'vocabulary size: 2 special tokens + 256 bytes + merges')
    .option('--min-frequency <n>', 'stop when the best pair occurs fewer times (2)')
    .option('--max-length <n>', 'model_max_length in tokenizer_config.json (1024)')
    .requiredOption('--out <dir>', 'folder for tokenizer.json and tokenizer_config.json: a new or empty one, or one an earlier tokenizer train wrote')
    .option('--json', 'print the result as JSON')
    .action(async (o: TokenizerTrainCli) => {
      // Every option and the output folder first: nothing is written unless all of them are right.
      const vocabSize = int('vocab', o.vocab, 1);
      const minFrequency = o.minFrequency !== undefined ? int('min-frequency', o.minFrequency, 1) : undefined;
      const maxLength = o.maxLength !== undefined ? int('max-length', o.maxLength, 1) : 1024;
      await checkTokenizerOut(o.out);
      const docs: string[] = [];
      if (o.langs) docs.push(...buildPretrainCorpus({ langs: o.langs.split(',').map((s) => s.trim()).filter(Boolean), seed: 0 }).lines);
      for (const f of o.text ?? []) {
        const text = await readTextFile(f, 'text'); // warns on invalid UTF-8, refuses binary data
        for (const line of text.split(/\r?\n/)) if (line.trim()) docs.push(line); // (a spread overflows the stack past ~100k lines)
      }
      if (docs.length === 0) throw new LangneuronsError('E_OPTIONS', 'tokenizer train needs --langs and/or --text with some text', { field: 'text' });
      const t0 = performance.now();
      const bpe = trainBpe(docs, { vocabSize, ...(minFrequency !== undefined ? { minFrequency } : {}) });
      await checkTokenizerOut(o.out); // again: it may have changed while training
      await ensureOutputDir(o.out);
      // tokenizer_config.json (with the mark) first: see checkTokenizerOut.
      await writeFileAtomic(path.join(o.out, 'tokenizer_config.json'), JSON.stringify({ ...tokenizerConfigJson(bpe, maxLength), [WRITTEN_BY_KEY]: WRITTEN_BY }, null, 2) + '\n');
      await writeFileAtomic(path.join(o.out, 'tokenizer.json'), JSON.stringify(tokenizerJson(bpe), null, 1) + '\n');
      const tok = await loadTokenizer(o.out);
      const bytes = docs.reduce((s, d) => s + Buffer.byteLength(d), 0);
      const tokens = docs.reduce((s, d) => s + tok.encode(d, { addSpecialTokens: false }).length, 0);
      const r = { out: o.out, vocab: bpe.vocab.size, merges: bpe.merges.length, documents: docs.length, bytes, tokens, seconds: (performance.now() - t0) / 1000 };
      printResult(o, r, () => `wrote ${o.out}/tokenizer.json: ${r.vocab} tokens (${r.merges} merges) from ${r.documents} documents, ${r.bytes} bytes -> ${r.tokens} tokens (${(r.bytes / r.tokens).toFixed(2)} bytes/token)\n`);
    });
}
