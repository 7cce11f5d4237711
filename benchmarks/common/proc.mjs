// Small helpers shared by benchmarks: peak RSS, child processes that return one JSON result, atomic writes.
import { fork } from 'node:child_process';
import fs from 'node:fs';

/** { peak, current } resident set sizes in bytes from /proc/self/status (VmHWM, VmRSS), or nulls off Linux. */
export function rss() {
  try {
    const s = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (key) => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(s);
      return m ? Number(m[1]) * 1024 : null;
    };
    return { peak: kb('VmHWM'), current: kb('VmRSS'), file: kb('RssFile'), anon: kb('RssAnon') };
  } catch {
    return { peak: null, current: null, file: null, anon: null };
  }
}

/**
 * Runs `script` in a fresh Node process with `task` (JSON) as its only argument; the child answers with
 * process.send({ ok: true, result }) or ({ ok: false, error }). stderr/stdout of the child are inherited.
 */
export function runChild(script, task, { execArgv = [] } = {}) {
  return new Promise((resolve, reject) => {
    const child = fork(script, [JSON.stringify(task)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    let answer = null;
    child.on('message', (m) => { answer = m; });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (answer?.ok) resolve(answer.result);
      else reject(new Error(answer?.error ?? `child ${script} exited with ${signal ?? `code ${code}`} without a result`));
    });
  });
}

/** Child side of runChild: runs `main(task)` and sends its result (or error) to the parent, then exits. */
export async function childMain(main) {
  try {
    const task = JSON.parse(process.argv[2] ?? '{}');
    const result = await main(task);
    process.send({ ok: true, result }, () => process.exit(0));
  } catch (e) {
    process.send({ ok: false, error: e?.stack ?? String(e) }, () => process.exit(1));
  }
}

/** Writes `text` to `file` atomically (tmp in the same directory + rename). */
export function writeFileAtomic(file, text) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** The median of a non-empty list of numbers (the mean of the two middle values for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The benchmark's options: `defaults` with `--name value` pairs from the command line applied (a value becomes a
 * number where the default is one). An unknown name or a missing value throws, naming the options there are.
 */
export function parseOptions(defaults, argv = process.argv.slice(2)) {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, ''), v = argv[i + 1];
    if (!(k in o) || v === undefined) throw new Error(`unknown option ${argv[i]} (options: ${Object.keys(o).join(', ')})`);
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  return o;
}
