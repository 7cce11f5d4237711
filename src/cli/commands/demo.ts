// The README's first command. Until the bundled multilingual model exists (issue "A bundled multilingual model"),
// the demo runs the engine on the stories260k fixture (a real 260K-parameter Llama trained on TinyStories) and
// checks its output against the reference recorded with llama2.c, so a newcomer sees a verified run.
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../../errors.js';
import { generateTokens } from '../../generate/generate.js';
import { scoreTokens } from '../../engine/score.js';
import { packageRoot } from '../../native/addon.js';
import { addModelOptions, openModel, type ModelCliOptions } from '../common.js';
import { printResult } from '../output.js';

export function defaultDemoModel(): string {
  return path.resolve(packageRoot(), '..', 'shared', 'fixtures', 'models', 'stories260k');
}

export function registerDemo(program: Command): void {
  addModelOptions(program
    .command('demo [model-dir]')
    .description('run the engine end to end on the default model (for now the stories260k fixture) and check it'))
    .action(async (dirArg: string | undefined, o: ModelCliOptions) => {
      const dir = dirArg ?? defaultDemoModel();
      const refFile = path.join(dir, 'reference.json');
      if (!existsSync(refFile))
        throw new LangneuronsError('E_IO', `${refFile}: the demo needs a model folder with reference.json (default: ${defaultDemoModel()})`, { file: refFile });
      const ref = JSON.parse(readFileSync(refFile, 'utf8')) as { input_ids: number[]; greedy_from_bos?: number[] };
      const model = await openModel(dir, o);
      const bos = model.config.bosTokenId ?? 1;
      let t0 = performance.now();
      const want = ref.greedy_from_bos ?? [];
      const [gen] = await generateTokens(model, [[bos]], { maxNewTokens: want.length || 64, stopAtEos: false });
      const genSeconds = (performance.now() - t0) / 1000;
      const matches = want.length ? gen!.tokens.filter((t, i) => t === want[i]).length : null;
      t0 = performance.now();
      const score = await scoreTokens(model, ref.input_ids);
      const scoreSeconds = (performance.now() - t0) / 1000;
      const ok = matches === null || matches === want.length;
      const json = {
        model: dir, compute: model.compute, engine: model.info(),
        greedyFromBos: { tokens: gen!.tokens, reference: want, matching: matches, seconds: genSeconds, tokensPerSecond: gen!.tokens.length / genSeconds },
        referenceInput: { ...score, seconds: scoreSeconds }, ok,
      };
      printResult(o, json, () => [
        `model       ${dir} (${model.config.modelType}, ${model.checkpoint.parameterCount.toLocaleString('en-US')} parameters; ` +
          'the interim default until the bundled multilingual model lands)',
        `engine      ${model.info().kernel} kernels, ${model.threads} threads, compute ${model.compute}`,
        `greedy      ${gen!.tokens.length} tokens from BOS at ${(gen!.tokens.length / genSeconds).toFixed(0)} tokens/s` +
          (matches === null ? '' : `: ${matches}/${want.length} equal to the llama2.c reference`),
        `score       reference input: mean NLL ${score.meanNll.toFixed(4)} nats/token, perplexity ${score.perplexity.toFixed(3)} over ${score.tokens} tokens`,
        ok ? 'check       OK' : 'check       FAILED: the greedy continuation differs from the reference',
      ].join('\n'));
      if (!ok) process.exitCode = 1;
    });
}
