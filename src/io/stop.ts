/**
 * What must be undone at once when the CLI is stopped by SIGINT / SIGTERM / SIGHUP, besides removing its output locks
 * (lock.ts): the handlers in bin/langneurons.js run these hooks synchronously, then end the process by the signal, so
 * no `finally` and no 'close' event runs after them. A hook is added for as long as what it undoes exists: the worker
 * processes of `sweep run` (stopped with the same signal: a scheduler's SIGTERM or a `kill` reaches the coordinator
 * alone, and its workers went on running, orphaned), the sweep's own lock files (not output locks of lock.ts).
 */
const hooks = new Set<(signal: NodeJS.Signals) => void>();

/** Adds `hook`, run when the process is stopped by a signal; returns the function that removes it again. */
export function onStopSignal(hook: (signal: NodeJS.Signals) => void): () => void {
  hooks.add(hook);
  return () => { hooks.delete(hook); };
}

/** Runs every hook once (for the CLI's signal handlers); a hook that throws does not keep the others from running. */
export function runStopHooksSync(signal: NodeJS.Signals): void {
  const now = [...hooks];
  hooks.clear();
  for (const hook of now) {
    try { hook(signal); } catch { /* stopping anyway: the next hook still runs */ }
  }
}
