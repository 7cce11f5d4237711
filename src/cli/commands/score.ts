import type { Command } from 'commander';

import { LangneuronsError } from '../../errors.js';
import { scoreTokens } from '../../engine/score.js';
import { addInterventionOptions, interventionFromCli, type InterventionCliOptions } from '../../intervene/index.js';
import { readTextFile } from '../../io/text.js';
import { addModelOptions, openModel, type ModelCliOptions } from '../common.js';
import { parseIntOption, printResult, Progress } from '../output.js';
import { parseIdList } from './generate.js';

interface ScoreCli extends ModelCliOptions, InterventionCliOptions { textFile?: string; text?: string; ids?: string; window?: number; stride?: number }

export function registerScore(program: Command): void {
  addInterventionOptions(addModelOptions(program
    .command('score <model-dir>')
    .description('mean negative log-likelihood per token and perplexity of a text')
    .option('--text-file <file>', 'UTF-8 text to score, as one text (a leading byte order mark and the final line break are dropped)')
    .option('--text <text>', 'text to score, given inline')
    .option('--ids <ids>', 'token ids to score, e.g. "1,461,401" (no tokenizer needed)')
    .option('--window <n>', 'tokens per window (default: the model\'s context)', parseIntOption('--window', 2))
    .option('--stride <n>', 'step between windows (default: the window; smaller re-reads context)', parseIntOption('--stride', 1))))
    .action(async (dir: string, o: ScoreCli) => {
      const given = [o.textFile, o.text, o.ids].filter((x) => x !== undefined).length;
      if (given !== 1) throw new LangneuronsError('E_OPTIONS', 'score needs exactly one of --text-file, --text or --ids');
      // The input checked before the model is opened; `!== undefined`: an empty --ids was taken for no --ids, and the
      // missing --text-file read instead.
      let ids: number[] | undefined, text: string | undefined;
      if (o.ids !== undefined) ids = parseIdList(o.ids, '--ids');
      else {
        // (a leading byte order mark is dropped, as every text file reader does, and a file's final line break, which
        // ends its last line rather than being text: a one-line file scores as `eval --task ppl` scores that line)
        text = o.text ?? (await readTextFile(o.textFile!, 'text')).replace(/\r?\n$/, '');
        if (!text.length) throw new LangneuronsError('E_INPUT', `${o.textFile ?? '--text'}: the text is empty`, { file: o.textFile ?? '--text' });
      }
      const model = await openModel(dir, o);
      ids ??= model.requireTokenizer().encode(text!);
      const intervene = await interventionFromCli(model, o);
      const progress = new Progress('scoring', o);
      const started = performance.now();
      const r = await scoreTokens(model, ids, {
        ...(o.window ? { window: o.window } : {}), ...(o.stride ? { stride: o.stride } : {}),
        onProgress: (d, t) => progress.update(d, t, 'tokens'), ...(intervene ? { intervene } : {}),
      });
      progress.done();
      const seconds = (performance.now() - started) / 1000;
      printResult(o, { model: dir, compute: model.compute, source: o.textFile ?? (o.ids ? 'ids' : 'text'), ...r, seconds, tokensPerSecond: ids.length / seconds },
        () => `tokens scored  ${r.tokens}\nmean NLL       ${r.meanNll.toFixed(6)} nats/token\nperplexity     ${r.perplexity.toFixed(4)}\n` +
          `(${(ids.length / seconds).toFixed(0)} tokens/s, compute ${model.compute})`);
    });
}
