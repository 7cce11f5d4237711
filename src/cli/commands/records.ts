import { LangneuronsError } from '../../errors.js';
import type { Command } from 'commander';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

import { writeFileAtomic } from '../../io/atomic.js';
import { checkOutput, ensureParentDir } from '../../io/outdir.js';
import { squadRecords } from '../../train/records.js';
import { parseIntOption, printResult } from '../output.js';

/**
 * Whether `file` is what `records` writes: JSONL whose every line is {"prompt": string, "completion": string} and
 * nothing else (an empty file too). Such a file may be replaced; anything else at --out is refused.
 */
export async function isRecordsFile(file: string): Promise<boolean> {
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      const r = JSON.parse(line) as unknown;
      if (typeof r !== 'object' || r === null || Array.isArray(r)) return false;
      const keys = Object.keys(r);
      if (keys.length !== 2 || typeof (r as Record<string, unknown>)['prompt'] !== 'string' || typeof (r as Record<string, unknown>)['completion'] !== 'string') return false;
    }
    return true;
  } catch {
    return false;
  } finally {
    lines.close();
  }
}

export function registerRecords(program: Command): void {
  const records = program.command('records').description('fine-tuning records (JSONL for `finetune --train`) from task datasets');
  records
    .command('squad <files...>')
    .description('SQuAD-layout QA files (context, question, answers) as {"prompt", "completion"} records, with the prompt `eval --task xquad` uses')
    .requiredOption('--out <file>', 'the JSONL file to write (replaces only a file of such records)')
    .option('--limit <n>', 'first n records only', parseIntOption('--limit', 1))
    .option('--json', 'print one JSON document on stdout')
    .action(async (files: string[], o: { out: string; limit?: number; json?: boolean }) => {
      await checkOutput(o.out, files, 'a file of prompt/completion records', isRecordsFile);
      const r = await squadRecords(files, o.limit);
      // An empty records file would only fail later, in finetune ("no text to train on"): refused here, naming why.
      if (!r.records.length)
        throw new LangneuronsError('E_DATA', `${files.join(', ')}: no answered question to make a record of${r.skipped ? ` (${r.skipped} rows without an answer)` : ''}; nothing written`, { file: files[0]! });
      await ensureParentDir(o.out);
      await writeFileAtomic(o.out, r.records.map((x) => JSON.stringify(x) + '\n').join(''));
      printResult(o, { out: o.out, records: r.records.length, skippedWithoutAnswer: r.skipped },
        () => `${r.records.length} prompt/completion records -> ${o.out}${r.skipped ? ` (${r.skipped} rows without an answer skipped)` : ''}`);
    });
}
