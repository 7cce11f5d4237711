// The checks of a sweep's steer section that a schema cannot make: amplification settings that parse and whose
// statistics are profiled, prompt files and language identifier models that exist, languages of the sweep.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { parseIdentifier, parseSetting, type AmplifySetting } from '../steer/index.js';
import type { LanguageSelection, SteerGeneration, SweepFile } from './load.js';

type Fail = (p: (string | number)[], m: string) => never;

/** Settings reading p_max / p_median need the sentence means of profiling (the steps pass the sweep's statistics). */
export function checkSettingsStats(s: SweepFile, settings: AmplifySetting[], at: (string | number)[], fail: Fail): void {
  const seq = settings.find((st) => st.kind === 'neuron-stat' && (st.stat === 'p_max' || st.stat === 'p_median'));
  if (seq && !s.profile.seqMeans) fail(at, `setting ${seq.name} reads sentence means: set profile.seqMeans: true (and profile.scope: sentences, as Rahmanisa profiles)`);
}

/** The amplification settings of steer.forcing.amplify: one step per setting. */
export function forcingSettings(amplify: string | string[] | undefined): string[] {
  return amplify === undefined ? ['mean'] : Array.isArray(amplify) ? amplify : [amplify];
}

/** The --langid value of a step: a fastText model's path resolved against the sweep file's folder. */
export function langidArg(langid: string | undefined, dir: string): string | undefined {
  if (langid === undefined) return undefined;
  const c = parseIdentifier(langid);
  return c.model === undefined ? langid : `fasttext:${path.resolve(dir, c.model)}`;
}

function checkGeneration(g: SteerGeneration, dir: string, at: (string | number)[], fail: Fail): void {
  const arg = langidArg(g.langid, dir);
  if (arg?.startsWith('fasttext:') && !existsSync(arg.slice('fasttext:'.length))) fail([...at, 'langid'], `${arg.slice('fasttext:'.length)}: no such fastText model`);
}

export function checkGeneratingSteer(s: SweepFile, dir: string, fail: Fail, selection: (sel: LanguageSelection | undefined, at: (string | number)[]) => void): void {
  const f = s.steer?.forcing;
  if (f) {
    if (!existsSync(path.resolve(dir, f.prompts))) fail(['steer', 'forcing', 'prompts'], `${path.resolve(dir, f.prompts)}: no such file or folder`);
    selection(f.targets, ['steer', 'forcing', 'targets']);
    const names = forcingSettings(f.amplify);
    const settings = names.map((n, i) => {
      try { return parseSetting(n); } catch (e) { return fail(Array.isArray(f.amplify) ? ['steer', 'forcing', 'amplify', i] : ['steer', 'forcing', 'amplify'], (e as Error).message); }
    });
    const twice = settings.find((st, i) => settings.findIndex((x) => x.name === st.name) !== i);
    if (twice) fail(['steer', 'forcing', 'amplify'], `setting ${twice.name} is listed twice`);
    checkSettingsStats(s, settings, ['steer', 'forcing', 'amplify'], fail);
    checkGeneration(f, dir, ['steer', 'forcing'], fail);
  }
  const b = s.steer?.fallback;
  if (b) {
    if (!existsSync(path.resolve(dir, b.prompts))) fail(['steer', 'fallback', 'prompts'], `${path.resolve(dir, b.prompts)}: no such file or folder`);
    selection(b.deactivate, ['steer', 'fallback', 'deactivate']);
    const twice = b.deactivate.find((l, i) => b.deactivate.indexOf(l) !== i);
    if (twice !== undefined) fail(['steer', 'fallback', 'deactivate'], `'${twice}' is listed twice`);
    checkGeneration(b, dir, ['steer', 'fallback'], fail);
  }
}
