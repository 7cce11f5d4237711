import type { Command } from 'commander';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { writeFileAtomic } from '../../io/atomic.js';
import { squadRecords } from '../../train/records.js';
import { parseIntOption, printResult } from '../output.js';

export function registerRecords(program: Command): void {
  const records = program.command('records').description('fine-tuning records (JSONL for `finetune --train`) from task datasets');
  records
    .command('squad <files...>')
    .description('SQuAD-layout QA files (context, question, answers) as {"prompt", "completion"} records, with the prompt `eval --task xquad` uses')
    .requiredOption('--out <file>', 'the JSONL file to write')
    .option('--limit <n>', 'first n records only', parseIntOption('--limit', 1))
    .option('--json', 'print one JSON document on stdout')
    .action(async (files: string[], o: { out: string; limit?: number; json?: boolean }) => {
      const r = await squadRecords(files, o.limit);
      await fsp.mkdir(path.dirname(path.resolve(o.out)), { recursive: true });
      await writeFileAtomic(o.out, r.records.map((x) => JSON.stringify(x) + '\n').join(''));
      printResult(o, { out: o.out, records: r.records.length, skippedWithoutAnswer: r.skipped },
        () => `${r.records.length} prompt/completion records -> ${o.out}${r.skipped ? ` (${r.skipped} rows without an answer skipped)` : ''}`);
    });
}
