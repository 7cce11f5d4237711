// The identity of a model that statistics and masks are tied to: architecture and tensor table, hashed.
// (Weights are not hashed: reading gigabytes for an id is not worth it; a fine-tuned copy with the same layout
// is the same "model" for neuron indices, which is what masks need.)
import { createHash } from 'node:crypto';
import path from 'node:path';

import type { Checkpoint } from '../model/checkpoint.js';
import type { ModelIdentity } from './stats.js';

export function modelIdentity(ck: Checkpoint): ModelIdentity {
  const c = ck.config;
  const arch = {
    modelType: c.modelType, hidden: c.hiddenSize, intermediate: c.intermediateSize, layers: c.numLayers,
    heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, vocab: c.vocabSize,
  };
  // A merge that widened trained tensors to float32 keeps its base's identity (Checkpoint.baseDtypes).
  const table = [...ck.tensors.values()].map((t) => `${t.name}:${ck.baseDtypes?.get(t.name) ?? t.dtype}:${t.shape.join('x')}`).sort();
  const fingerprint = createHash('sha256').update(JSON.stringify(arch)).update('\n').update(table.join('\n')).digest('hex');
  return { name: path.basename(path.resolve(ck.dir)), modelType: c.modelType, layers: c.numLayers, hidden: c.hiddenSize, intermediate: c.intermediateSize, fingerprint };
}
