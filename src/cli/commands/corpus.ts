import { Option, type Command } from 'commander';

import { udhrLanguages, writeUdhrFolder } from '../../corpus/udhr.js';
import { LangneuronsError } from '../../errors.js';
import { printResult } from '../output.js';

export function registerCorpus(program: Command): void {
  const corpus = program.command('corpus').description('built-in corpora');
  corpus
    .command('udhr')
    .description('write the Universal Declaration of Human Rights as <lang>.txt files (one article per line)')
    .option('--langs <list>', 'comma-separated languages (ISO codes such as en,de,sw,mt,ru,zh; default: list them)')
    .addOption(new Option('--split <s>', 'articles: train (preamble, 1-24), heldout (25-30) or all').choices(['train', 'heldout', 'all']).default('all'))
    .option('--out <dir>', 'output folder: one <lang>.txt per language (a corpus folder for profile and eval --text; finetune --train takes one of its files)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (o: { langs?: string; split: 'train' | 'heldout' | 'all'; out?: string; json?: boolean }) => {
      if (Boolean(o.langs) !== Boolean(o.out))
        throw new LangneuronsError('E_OPTIONS', `${o.langs ? '--langs' : '--out'} needs ${o.langs ? '--out' : '--langs'}: give both to write files, neither to list the languages`, { field: o.langs ? '--out' : '--langs' });
      if (!o.langs || !o.out) {
        const langs = udhrLanguages();
        printResult(o, langs, () => `${langs.length} languages (give --langs and --out to write files):\n` +
          langs.filter((l) => l.id.length <= 3).map((l) => `${l.id.padEnd(4)} ${l.name}`).join('\n'));
        return;
      }
      const langs = o.langs.split(',').map((s) => s.trim()).filter(Boolean);
      if (!langs.length) throw new LangneuronsError('E_OPTIONS', `--langs '${o.langs}': no language named`, { field: '--langs' });
      const twice = langs.find((l, i) => langs.indexOf(l) !== i);
      if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `--langs '${o.langs}': names ${twice} twice; name each language once`, { field: '--langs' });
      const files = await writeUdhrFolder(o.out, langs, { split: o.split });
      printResult(o, { files }, () => files.join('\n'));
    });
}
