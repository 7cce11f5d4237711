// Defects a QA pass found by running the commands of README.md and docs/*.md as a user copies them: options the docs
// use that the commands' --help did not offer. `steer lss --settings` and `steer forcing --amplify` take Language
// Arithmetics' `add-mean[:<α>]` and `diffmean[:<α>]` (the README's `add-mean:4`, PIPELINE's `--amplify add-mean:1`),
// which their help did not list; `steer`'s own line left out `fallback`; `finetune --lr` / `--clip` did not say that
// neuron-lora with a head defaults to Mondal et al.'s lr 1e-5 and clip 10 (every other Mondal default is in the
// help); `--stats` of generate / score / eval / analyze logit-lens takes a comma-separated list of files and folders
// (PIPELINE §3), which the help did not say. And `demo` (the README's first command) printed the CPU-fallback line of
// `--device auto` on a machine without an NVIDIA driver, where every other command's default auto stays quiet
// (docs/CUDA.md): its model was loaded with device 'auto' given explicitly.
import type { Command } from 'commander';
import { describe, expect, it, vi } from 'vitest';

import { buildProgram } from '../src/cli/main.js';
import { createContext } from '../src/demo/context.js';
import { resolveDemoOptions } from '../src/demo/options.js';
import type { DemoRecipe } from '../src/demo/recipe.js';
import type { StepRunner } from '../src/demo/steps.js';
import { nvidiaDriverPresent, resetDeviceNotice } from '../src/engine/device.js';
import { languageStatsFile } from '../src/profile/stats.js';
import { parseSetting } from '../src/steer/settings.js';
import { MONDAL_HEAD_PRESET } from '../src/train/methods.js';
import { fixturePath } from './helpers/fixtures.js';

/** The help of `langneurons <names…>`, its line breaks and indentation folded into single spaces. */
function help(...names: string[]): string {
  let cmd: Command = buildProgram();
  for (const n of names) cmd = cmd.commands.find((c) => c.name() === n)!;
  return cmd.helpInformation().replace(/\s+/g, ' ');
}

/** The text of one option's entry in a folded help: from the flag up to the next option. */
function optionHelp(text: string, flag: string): string {
  const at = text.indexOf(` ${flag} `);
  expect(at, `${flag} in the help`).toBeGreaterThanOrEqual(0);
  const rest = text.slice(at + flag.length + 2);
  const next = rest.search(/ --[a-z]/);
  return next < 0 ? rest : rest.slice(0, next);
}

describe('1. steer: the amplification settings the docs use are in the help', () => {
  it('add-mean and diffmean parse, and lss --settings / forcing --amplify list them', () => {
    expect(parseSetting('add-mean:4')).toMatchObject({ kind: 'add-mean', alpha: 4 });
    expect(parseSetting('diffmean:2')).toMatchObject({ kind: 'diffmean', alpha: 2 });
    for (const [cmd, flag] of [['lss', '--settings'], ['forcing', '--amplify']] as const) {
      const text = optionHelp(help('steer', cmd), flag);
      expect(text, `steer ${cmd} ${flag}`).toContain('add-mean[:<α>]');
      expect(text, `steer ${cmd} ${flag}`).toContain('diffmean[:<α>]');
    }
  });

  it("steer's line names all four measures", () => {
    const top = buildProgram().commands.find((c) => c.name() === 'steer')!.description();
    for (const m of ['perplexity matrix', 'Language Steering Shift', 'language forcing', 'language fallback']) expect(top).toContain(m);
    expect(buildProgram().commands.find((c) => c.name() === 'steer')!.commands.map((c) => c.name())).toContain('fallback');
  });
});

describe('2. finetune: the defaults of neuron-lora with a head are in the help of --lr and --clip', () => {
  it('names the lr and clip that MONDAL_HEAD_PRESET applies', () => {
    const text = help('finetune');
    expect(optionHelp(text, '--lr <x>')).toContain(`neuron-lora + head ${MONDAL_HEAD_PRESET.lr.toExponential()}`);
    expect(optionHelp(text, '--clip <x>')).toContain(`neuron-lora + head ${MONDAL_HEAD_PRESET.clip}`);
  });
});

describe('3. --stats: a comma-separated list of files and folders, as PIPELINE §3 says', () => {
  it('is read as such and said in the help of every command that takes it', () => {
    expect(languageStatsFile('/nonexistent-a/de.safetensors,/nonexistent-b/en.safetensors', 'en')).toBe('/nonexistent-b/en.safetensors');
    for (const names of [['generate'], ['score'], ['eval'], ['analyze', 'logit-lens']]) {
      expect(optionHelp(help(...names), '--stats <path>'), names.join(' ')).toContain('comma-separated list');
    }
  });
});

describe("4. demo: the default device is quiet where there is no NVIDIA driver, as every command's default", () => {
  it.skipIf(nvidiaDriverPresent())('loads its model without a fallback line on stderr', async () => {
    resetDeviceNotice();
    let stderr = '';
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { stderr += String(s); return true; });
    try {
      const ctx = await createContext(fixturePath('stories260k'), '/nonexistent-demo-out', resolveDemoOptions({}), {} as DemoRecipe, {} as StepRunner);
      expect(ctx.options.device).toBe('auto');
      const model = await ctx.model();
      model.dispose();
    } finally {
      spy.mockRestore();
      resetDeviceNotice();
    }
    expect(stderr).not.toContain('no usable CUDA device');
  });
});
