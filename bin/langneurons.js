#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';
import { releaseHeldLocksSync } from '../dist/src/io/lock.js';
import { runStopHooksSync } from '../dist/src/io/stop.js';

// stdout closed early (`| head`) or on a full device: end quietly for a closed pipe, in one line for the rest
// (Node's default is an unhandled 'error' event with its stack).
process.stdout.on('error', (e) => {
  if (e.code !== 'EPIPE') process.stderr.write(`langneurons: error: stdout: ${e.code === 'ENOSPC' ? 'no space left on the device (ENOSPC)' : e.message}\n`);
  process.exit(e.code === 'EPIPE' ? 0 : 1);
});

// Stopped by Ctrl-C, a terminal closing or a scheduler's SIGTERM (Slurm's time limit, scancel): the output locks
// this run holds are removed (a requeued job on another node would otherwise be refused), one line says what
// continues, and the signal then ends the process as it would have (exit status 128 + the signal's number). Every
// output is written whole or not at all, so nothing half-written is left (docs/RELIABILITY.md). The stop hooks
// (src/io/stop.ts) pass the signal on to the worker processes of `sweep run` and remove the sweep's own locks.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    runStopHooksSync(signal);
    releaseHeldLocksSync();
    process.stderr.write(`\nlangneurons: stopped by ${signal}; finished outputs are kept. profile, eval, generate --out, steer, ` +
      'analyze alignment / logit-lens, demo, train and sweep run continue where they stopped when run again; finetune with --resume <run folder>\n');
    process.kill(process.pid, signal); // the handler was once: this one takes the default action
  });
}

process.exitCode = await main(process.argv);
