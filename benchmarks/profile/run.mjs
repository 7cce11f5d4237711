#!/usr/bin/env node
// Profiling benchmark on random-weight BF16 checkpoints with real model shapes (Qwen2.5-0.5B, Llama-3.2-1B): the
// overhead of the fused statistics, the time saved by skipping the LM head, `langneurons profile` tokens/s, and peak
// RSS as the corpus grows. Every ratio is measured in one run. See README.md next to this file.
//
//   node benchmarks/profile/run.mjs [--quick] [--models a,b] [--threads N] [--reps N] [--tokens T] [--profile-tokens N]
//                                   [--rss-tokens N] [--rss-layers K] [--no-json]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { median, runChild, writeFileAtomic } from '../common/proc.mjs';
import { dims, ensureSyntheticCheckpoint, MODEL_SHAPES } from '../common/synthetic-checkpoint.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const cacheDir = path.join(root, 'benchmarks', '.cache');
const childScript = path.join(here, 'child.mjs');
const tokenizerFixture = path.resolve(root, '../shared/fixtures/models/tiny-llama3');
const log = (...a) => console.error(...a);

function parseArgs(argv) {
  const o = { quick: false, models: Object.keys(MODEL_SHAPES), threads: 2, reps: null, tokens: null, profileTokens: null,
    rssTokens: 512, rssLayers: 2, maxLen: 512, json: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { const v = argv[++i]; if (v === undefined) throw new Error(`${a} needs a value`); return v; };
    if (a === '--quick') o.quick = true;
    else if (a === '--models') o.models = val().split(',');
    else if (a === '--threads') o.threads = Number(val());
    else if (a === '--reps') o.reps = Number(val());
    else if (a === '--tokens') o.tokens = Number(val());
    else if (a === '--profile-tokens') o.profileTokens = Number(val());
    else if (a === '--rss-tokens') o.rssTokens = Number(val());
    else if (a === '--rss-layers') o.rssLayers = Number(val());
    else if (a === '--no-json') o.json = false;
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(5, 7).join('\n').replace(/^\/\/ ?/gm, ''));
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  for (const m of o.models) if (!MODEL_SHAPES[m]) throw new Error(`unknown model ${m}; known: ${Object.keys(MODEL_SHAPES).join(', ')}`);
  o.reps ??= o.quick ? 2 : 5;
  o.tokens ??= o.quick ? 128 : 256;
  o.profileTokens ??= o.quick ? 512 : 1024;
  return o;
}

/** A folder with the synthetic checkpoint (symlinked) and a small byte-level tokenizer, so that `profile` can read text. */
function profilingDir(name) {
  const ck = ensureSyntheticCheckpoint(cacheDir, name, { log });
  const dir = path.join(cacheDir, `profile-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) {
    const link = path.join(dir, f);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.join(ck.dir, f), link);
  }
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tokenizerFixture, f), path.join(dir, f));
  return { ...ck, profileDir: dir };
}

/** A corpus folder with en.txt of about `chars` characters of pseudo-words (deterministic), for one run. */
function syntheticCorpus(chars) {
  const dir = path.join(cacheDir, `profile-corpus-${chars}`);
  const file = path.join(dir, 'en.txt');
  if (fs.existsSync(file) && fs.statSync(file).size >= chars) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const syl = ['ka', 'lo', 'mi', 'ne', 'ru', 'sta', 'pe', 'do', 'vi', 'tha', 'gu', 'ber', 'an', 'en', 'is', 'or', 'qu', 'ze'];
  let seed = 99, text = '', line = '';
  const rnd = (n) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
  while (text.length < chars) {
    let w = '';
    for (let k = 1 + rnd(3); k > 0; k--) w += syl[rnd(syl.length)];
    line += (line ? ' ' : '') + w;
    if (line.length > 80 + rnd(60)) { text += line + '.\n'; line = ''; }
  }
  writeFileAtomic(file, text);
  return dir;
}

/** FLOPs of a forward of one sequence of T tokens: projections, causal attention, LM head rows. */
function forwardFlops(d, T, lmRows) {
  const proj = 2 * d.L * d.layerMatmul * T;
  const attn = d.L * 2 * 2 * d.nh * d.hd * (T * (T + 1)) / 2;
  const lm = 2 * d.H * d.V * lmRows;
  return { proj, attn, lm, total: proj + attn + lm };
}

const fmt = (x, n = 3) => Number(x).toFixed(n);
/**
 * Ratios of two variants of the forward child, `num` over `den`, for wall and CPU time: the best times' ratio, and
 * the median over rounds of each round's ratio (the two ran back to back, so a load change between rounds cancels;
 * on these shared machines one forward's time moves by several per cent from round to round, more than the
 * effects measured here). Targets are judged on the median.
 */
function ratios(f, num, den) {
  const paired = (key) => median(f.runs[num].map((r, i) => r[key] / f.runs[den][i][key]));
  return { bestWall: f.wall[num] / f.wall[den], bestCpu: f.cpu[num] / f.cpu[den], wall: paired('wall'), cpu: paired('cpu') };
}
const mb = (b) => `${(b / 2 ** 20).toFixed(0)} MB`;

async function benchModel(name, o) {
  const ck = profilingDir(name);
  const d = dims(ck.config);
  const rows = [], raw = { model: name };

  // (a) + (b): one child, interleaved variants.
  log(`${name}: forwards of ${o.tokens} tokens (base / stats / naive with the LM head), ${o.reps} round(s) ...`);
  // --expose-gc: the child collects garbage before every timed forward, so that freeing the previous variant's
  // results (the naive forward's logits are T x vocab floats, 155 MB on the Qwen shape) is not timed in the next one.
  const f = await runChild(childScript, { kind: 'forward', dir: ck.dir, tokens: o.tokens, reps: o.reps, threads: o.threads },
    { execArgv: ['--expose-gc'] });
  raw.forward = f;
  const oh = ratios(f, 'stats', 'base');
  rows.push({ model: name, metric: `(a) statistics overhead: forward ${o.tokens} tok, logits none, default stats vs none (median of ${o.reps} paired rounds)`,
    value: `median ratio ${fmt(oh.wall, 4)} wall, ${fmt(oh.cpu, 4)} CPU; best times ${fmt(f.wall.stats)} s vs ${fmt(f.wall.base)} s wall ` +
      `(${fmt(oh.bestWall, 4)}), ${fmt(f.cpu.stats)} vs ${fmt(f.cpu.base)} CPU-s (${fmt(oh.bestCpu, 4)})`,
    ratio: oh.wall, cpuRatio: oh.cpu, bestRatio: oh.bestWall, bestCpuRatio: oh.bestCpu, target: '<= 1.03',
    pass: Math.min(oh.wall, oh.cpu) <= 1.03 ? 'pass' : 'fail' });
  const fl = forwardFlops(d, o.tokens, o.tokens);
  const share = fl.lm / fl.total;
  const nv = ratios(f, 'stats', 'naive');  // t_profile / t_naive
  const savedWall = 1 - nv.wall, savedCpu = 1 - nv.cpu;
  rows.push({ model: name, metric: `(b) profiling (no LM head) vs naive (logits 'all', LM head over all ${o.tokens} tokens), both with stats (median of ${o.reps} paired rounds)`,
    value: `speedup x${fmt(1 / nv.wall)} wall (time saved ${fmt(100 * savedWall, 1)}%), x${fmt(1 / nv.cpu)} CPU (saved ${fmt(100 * savedCpu, 1)}%); ` +
      `best times: saved ${fmt(100 * (1 - nv.bestWall), 1)}% wall, ${fmt(100 * (1 - nv.bestCpu), 1)}% CPU; ` +
      `LM head = ${fmt(100 * share, 1)}% of the naive forward's FLOPs`,
    ratio: 1 / nv.wall, cpuRatio: 1 / nv.cpu, savedWall, savedCpu, bestSavedWall: 1 - nv.bestWall, bestSavedCpu: 1 - nv.bestCpu,
    lmHeadFlopShare: share, target: `time saved >= LM-head FLOP share (${fmt(100 * share, 1)}%)`,
    pass: Math.max(savedWall, savedCpu) >= share ? 'pass' : 'fail' });

  // (c): langneurons profile (profileCorpus), all layers, 512-token windows.
  const pc = syntheticCorpus(o.profileTokens * 8);
  log(`${name}: profileCorpus, ${o.profileTokens} tokens in ${o.maxLen}-token windows, all layers ...`);
  const p = await runChild(childScript, { kind: 'profile', dir: ck.profileDir, corpus: pc, lang: 'en', tokens: o.profileTokens,
    maxLen: o.maxLen, batchTokens: 2 * o.maxLen, threads: o.threads });
  raw.profile = p;
  const tps = p.tokens / p.seconds;
  const perTokFlop = forwardFlops(d, o.maxLen, 0).total / o.maxLen;
  rows.push({ model: name, metric: `(c) langneurons profile (profileCorpus): ${p.tokens} tokens, ${o.maxLen}-token windows, all ${d.L} layers, stats act`,
    value: `${fmt(tps, 1)} tokens/s (${fmt(p.seconds, 1)} s wall, ${fmt(p.cpuSeconds, 1)} CPU-s; ${fmt(tps * perTokFlop / 1e9, 1)} GFLOP/s; ` +
      `forward-only rate from (a): ${fmt(o.tokens / f.wall.stats, 1)} tokens/s)`,
    ratio: tps / (o.tokens / f.wall.stats), target: 'info (ratio: vs the bare profiling forward of (a))', pass: 'info' });

  // (d): peak RSS with N and 10 N tokens, fresh processes, corpus files sized to the run.
  const rss = [];
  for (const n of [o.rssTokens, 10 * o.rssTokens]) {
    const corpus = syntheticCorpus(n * 8);
    log(`${name}: peak RSS, profileCorpus of ${n} tokens (layers 0..${o.rssLayers - 1}) ...`);
    rss.push(await runChild(childScript, { kind: 'profile', dir: ck.profileDir, corpus, lang: 'en', tokens: n, maxLen: o.maxLen,
      batchTokens: o.maxLen, layers: o.rssLayers, threads: o.threads }));
  }
  raw.rss = rss;
  const [r1, r10] = rss;
  const grow = r10.rss.peak / r1.rss.peak;
  rows.push({ model: name, metric: `(d) peak RSS (VmHWM), profile ${r1.tokens} vs ${r10.tokens} tokens (fresh processes, layers 0..${o.rssLayers - 1}, ${o.maxLen}-token windows)`,
    value: `${mb(r1.rss.peak)} vs ${mb(r10.rss.peak)} (anon ${mb(r1.rss.anon)} vs ${mb(r10.rss.anon)}, file ${mb(r1.rss.file)} vs ${mb(r10.rss.file)})`,
    ratio: grow, target: 'within 5% (0.95..1.05)', pass: Math.abs(grow - 1) <= 0.05 ? 'pass' : 'fail' });
  return { rows, raw };
}

const o = parseArgs(process.argv.slice(2));
if (!fs.existsSync(path.join(root, 'dist', 'src', 'profile', 'profile.js'))) throw new Error('build first: npx tsc -p tsconfig.json');
const started = performance.now();
const load0 = os.loadavg();
log(`profile benchmark: models ${o.models.join(', ')}, ${o.threads} threads, load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
const rows = [], raw = [];
for (const m of o.models) {
  const r = await benchModel(m, o);
  rows.push(...r.rows);
  raw.push(r.raw);
}
const load1 = os.loadavg();
const seconds = (performance.now() - started) / 1000;

const table = ['| model | metric | value | ratio | target | result |', '|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.model} | ${r.metric} | ${r.value} | ${fmt(r.ratio, 4)}${r.cpuRatio !== undefined ? ` (CPU ${fmt(r.cpuRatio, 4)})` : ''} | ${r.target} | ${r.pass} |`)].join('\n');
console.log(table);
console.log(`\n${o.threads} threads; load average ${load0.map((x) => x.toFixed(2)).join(' ')} at the start, ${load1.map((x) => x.toFixed(2)).join(' ')} at the end; ${seconds.toFixed(0)} s`);
if (o.json) {
  const out = { date: new Date().toISOString(), options: o, host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavgStart: load0, loadavgEnd: load1 },
    seconds, rows, raw };
  writeFileAtomic(path.join(here, 'results.json'), JSON.stringify(out, null, 2) + '\n');
  log(`wrote ${path.join(here, 'results.json')}`);
}
