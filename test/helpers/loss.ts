// The trainer's validation loss recomputed from a checkpoint: mean next-token loss of a text file (one document per
// non-empty line, BOS as the tokenizer adds it) in 64-token chunks, on the CPU in f32 (the values as written).
import { readFileSync } from 'node:fs';

import { LanguageModel } from '../../src/engine/model.js';

export async function fileLoss(dir: string, file: string, chunk = 64): Promise<number> {
  const model = await LanguageModel.load(dir, { threads: 2, device: 'cpu' });
  try {
    const tok = model.requireTokenizer();
    const ids = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).flatMap((l) => tok.encode(l));
    let sum = 0, count = 0;
    for (let i = 0; i < ids.length; i += chunk) {
      const c = ids.slice(i, i + chunk);
      if (c.length < 2) continue;
      const r = await model.forward([c], { logits: 'none', targets: [[...c.slice(1), -1]] });
      for (let t = 0; t + 1 < c.length; t++) sum -= r.targetLogprobs![t]!;
      count += c.length - 1;
    }
    return sum / count;
  } finally {
    await model.dispose();
  }
}
