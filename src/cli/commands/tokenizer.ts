import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';

import { LangneuronsError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { withoutBom } from '../../io/text.js';
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
    .requiredOption('--out <dir>', 'folder for tokenizer.json and tokenizer_config.json')
    .option('--json', 'print the result as JSON')
    .action(async (o: TokenizerTrainCli) => {
      const docs: string[] = [];
      if (o.langs) docs.push(...buildPretrainCorpus({ langs: o.langs.split(',').map((s) => s.trim()).filter(Boolean), seed: 0 }).lines);
      for (const f of o.text ?? []) {
        const text = await fsp.readFile(f, 'utf8').catch((e: Error) => {
          throw new LangneuronsError('E_IO', `${f}: cannot read the text file: ${e.message}`, { file: f });
        });
        for (const line of withoutBom(text).split(/\r?\n/)) if (line.trim()) docs.push(line); // (a spread overflows the stack past ~100k lines)
      }
      if (docs.length === 0) throw new LangneuronsError('E_OPTIONS', 'tokenizer train needs --langs and/or --text with some text', { field: 'text' });
      const t0 = performance.now();
      const bpe = trainBpe(docs, { vocabSize: int('vocab', o.vocab, 1), ...(o.minFrequency ? { minFrequency: int('min-frequency', o.minFrequency, 1) } : {}) });
      await ensureOutputDir(o.out);
      await writeFileAtomic(path.join(o.out, 'tokenizer.json'), JSON.stringify(tokenizerJson(bpe), null, 1) + '\n');
      await writeFileAtomic(path.join(o.out, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(bpe, o.maxLength ? int('max-length', o.maxLength, 1) : 1024), null, 2) + '\n');
      const tok = await loadTokenizer(o.out);
      const bytes = docs.reduce((s, d) => s + Buffer.byteLength(d), 0);
      const tokens = docs.reduce((s, d) => s + tok.encode(d, { addSpecialTokens: false }).length, 0);
      const r = { out: o.out, vocab: bpe.vocab.size, merges: bpe.merges.length, documents: docs.length, bytes, tokens, seconds: (performance.now() - t0) / 1000 };
      printResult(o, r, () => `wrote ${o.out}/tokenizer.json: ${r.vocab} tokens (${r.merges} merges) from ${r.documents} documents, ${r.bytes} bytes -> ${r.tokens} tokens (${(r.bytes / r.tokens).toFixed(2)} bytes/token)\n`);
    });
}
