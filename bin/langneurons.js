#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

// stdout closed early (`| head`) or on a full device: end quietly for a closed pipe, in one line for the rest
// (Node's default is an unhandled 'error' event with its stack).
process.stdout.on('error', (e) => {
  if (e.code !== 'EPIPE') process.stderr.write(`langneurons: error: stdout: ${e.code === 'ENOSPC' ? 'no space left on the device (ENOSPC)' : e.message}\n`);
  process.exit(e.code === 'EPIPE' ? 0 : 1);
});

process.exitCode = await main(process.argv);
