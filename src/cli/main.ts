// The `langneurons` command line. Errors from bad input are printed as one line naming the file or option,
// with exit code 1 (2 for usage errors); a stack trace only with LANGNEURONS_DEBUG=1.
import { Command, CommanderError } from 'commander';

import { describeFailure } from './failure.js';
import { registerAnalyze } from './commands/analyze.js';
import { registerCorpus } from './commands/corpus.js';
import { registerDemo } from './commands/demo.js';
import { registerEval } from './commands/eval.js';
import { registerFinetune } from './commands/finetune.js';
import { registerGenerate } from './commands/generate.js';
import { registerIdentify } from './commands/identify.js';
import { registerInfo } from './commands/info.js';
import { registerMasks } from './commands/masks.js';
import { registerProfile } from './commands/profile.js';
import { registerRecords } from './commands/records.js';
import { registerReport } from '../report/cli.js';
import { registerResults } from './commands/results.js';
import { registerScore } from './commands/score.js';
import { registerStats } from './commands/stats.js';
import { registerSteer } from './commands/steer.js';
import { registerSweep } from './commands/sweep.js';
import { registerTokenizer } from './commands/tokenizer.js';
import { registerTrain } from './commands/train.js';
import { TOOL_VERSION } from '../version.js';

export function buildProgram(): Command {
  const program = new Command('langneurons')
    .description('find, profile, steer and fine-tune the language-specific neurons of multilingual LLMs')
    .version(TOOL_VERSION)
    .exitOverride()
    // Usage errors (an unknown option, a missing argument) read like every other bad input: one line, exit 1.
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s, write) => write(`langneurons: ${s.trim().replace(/\s*\n\s*/g, ' ')}\n`) });
  registerInfo(program);
  registerGenerate(program);
  registerScore(program);
  registerCorpus(program);
  registerProfile(program);
  registerStats(program);
  registerIdentify(program);
  registerMasks(program);
  registerSteer(program);
  registerEval(program);
  registerResults(program);
  registerAnalyze(program);
  registerDemo(program);
  registerReport(program);
  registerFinetune(program);
  registerRecords(program);
  registerTrain(program);
  registerTokenizer(program);
  registerSweep(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    const { line, known } = describeFailure(e); // src/cli/failure.ts
    process.stderr.write(`langneurons: error: ${line}\n`);
    if (process.env.LANGNEURONS_DEBUG || !known) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
    return 1;
  }
}
