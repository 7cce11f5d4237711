// The masks a steering measure intervenes on: one mask file, or several given as a comma-separated list, e.g. the
// per-site masks `identify --method ap --sites q,k,v,o,gate,up,down` writes (Kojima et al. fix the units of every
// linear layer at once). One mask alone is edited where maskInterventionSite says (an FFN mask at act, as Tang
// deactivates, whatever FFN site it was identified at); in a set every mask is edited at its own site, since the
// set's gate and up masks are gate_proj's and up_proj's outputs, not the same quantity. The languages of the set
// are those of every mask, so the masks must name the same languages.
import { LangneuronsError } from '../errors.js';
import { checkMaskForModel, readMask, type NeuronMask } from '../identify/masks.js';
import type { InterventionSite } from '../intervene/index.js';
import type { ModelIdentity } from '../profile/stats.js';
import { maskInterventionSite, type SteerRequest } from './engine.js';

export interface MaskSet {
  files: string[];
  masks: NeuronMask[];
  /** Where each mask's units are edited (undefined: the default site act). */
  sites: (InterventionSite | undefined)[];
}

/** The files of a --masks value: one path, or several separated by commas. */
function maskFiles(spec: string): string[] {
  const files = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (!files.length) throw new LangneuronsError('E_OPTIONS', '--masks names no mask file', { field: '--masks' });
  return files;
}

/** Reads and checks every mask of a --masks value (before the model is opened: a bad mask fails fast). */
export async function readMaskSet(spec: string): Promise<MaskSet> {
  const files = maskFiles(spec);
  const masks: NeuronMask[] = [];
  for (const f of files) masks.push(await readMask(f));
  // (A resid mask in a set keeps its site: resolving it refuses it, naming the file.)
  const sites = masks.length === 1 ? [maskInterventionSite(masks[0]!)] : masks.map((m) => m.site as InterventionSite);
  const seen = new Map<string, string>();
  files.forEach((f, i) => {
    const at = sites[i] ?? 'act';
    if (seen.has(at))
      throw new LangneuronsError('E_INPUT', `--masks: ${seen.get(at)} and ${f} are both masks of site ${at} (a set takes one mask per site)`, { file: f, field: '--masks' });
    seen.set(at, f);
    const want = Object.keys(masks[0]!.languages).sort().join(','), got = Object.keys(masks[i]!.languages).sort().join(',');
    if (got !== want)
      throw new LangneuronsError('E_INPUT', `--masks: ${f} has the languages ${got || 'none'}, ${files[0]} has ${want || 'none'}: the masks of a set must name the same languages`, { file: f, field: '--masks' });
  });
  return { files, masks, sites };
}

/** Checks every mask of the set against the model. */
export function checkMaskSetForModel(set: MaskSet, model: ModelIdentity): void {
  set.masks.forEach((m, i) => checkMaskForModel(m, model, set.files[i]));
}

/** One request over the whole set: `one` for each mask (at its site), applied in the set's order, under the first's label. */
export function onMaskSet(set: MaskSet, one: (file: string, site: InterventionSite | undefined) => SteerRequest): SteerRequest {
  const parts = set.files.map((f, i) => one(f, set.sites[i]));
  return parts.length === 1 ? parts[0]! : { specs: parts.flatMap((p) => p.specs), label: parts[0]!.label };
}
