import { Option, type Command } from 'commander';

import { udhrLanguages, writeUdhrFolder } from '../../corpus/udhr.js';
import { printResult } from '../output.js';

export function registerCorpus(program: Command): void {
  const corpus = program.command('corpus').description('built-in corpora');
  corpus
    .command('udhr')
    .description('write the Universal Declaration of Human Rights as <lang>.txt files (one article per line)')
    .option('--langs <list>', 'comma-separated languages (ISO codes such as en,de,sw,mt,ru,zh; default: list them)')
    .addOption(new Option('--split <s>', 'articles: train (preamble, 1-24), heldout (25-30) or all').choices(['train', 'heldout', 'all']).default('all'))
    .option('--out <dir>', 'output folder (a corpus folder for profile, finetune --train, eval --text)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (o: { langs?: string; split: 'train' | 'heldout' | 'all'; out?: string; json?: boolean }) => {
      if (!o.langs || !o.out) {
        const langs = udhrLanguages();
        printResult(o, langs, () => `${langs.length} languages (give --langs and --out to write files):\n` +
          langs.filter((l) => l.id.length <= 3).map((l) => `${l.id.padEnd(4)} ${l.name}`).join('\n'));
        return;
      }
      const files = await writeUdhrFolder(o.out, o.langs.split(',').map((s) => s.trim()).filter(Boolean), { split: o.split });
      printResult(o, { files }, () => files.join('\n'));
    });
}
