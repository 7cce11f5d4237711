// Step 3: Tang's deactivation matrix on held-out text (src/steer/ppl-matrix.ts). For every language i, its LAPE neurons are set to 0 and the
// mean token NLL of every language j's held-out articles is measured; ΔNLL[i][j] is the change against no
// intervention. The diagonal check (src/steer/ppl-matrix.ts diagonalDominance, column view): the share of
// languages whose text is hurt most by their own language's deactivation.
import path from 'node:path';

import { udhrCorpus } from '../corpus/udhr.js';
import { computePplMatrix, writePplMatrix, type NllSum, type PplMatrix } from '../steer/ppl-matrix.js';
import { deactivation, interventionResolver, loadEvalTexts, type EvalTexts } from '../steer/engine.js';
import type { LanguageModel } from '../engine/model.js';
import { logLikelihoodTokens } from '../engine/score.js';
import { warnOnce, type Intervention } from '../intervene/index.js';
import type { DemoContext } from './context.js';
import type { IdentifyResult } from './neurons-step.js';

export interface MatrixResult {
  file: string;
  svg: string;
  matrix: PplMatrix;
  evalText: { origin: string; fingerprint: string; maxTokens: number; tokens: Record<string, number> };
}

/**
 * Scores every language's held-out text under one intervention in one call (packed forwards of up to 16k tokens:
 * faster than a call per cell on a small model). Windows as engineMatrixScorer (src/steer/engine.ts) cuts them:
 * each document from its BOS in windows of at most the model's context, the first token of a window unscored.
 */
function rowScorer(model: LanguageModel, texts: EvalTexts): (iv: Intervention | null) => Promise<Map<string, NllSum>> {
  const window = model.contextLength;
  const pairs: { context: number[]; continuation: number[] }[] = [], owners: string[] = [];
  for (const [lang, docs] of texts.documents)
    for (const ids of docs)
      for (let b = 0; b + 1 < ids.length; b += window) {
        const chunk = ids.slice(b, b + window);
        if (chunk.length >= 2) { pairs.push({ context: chunk.slice(0, 1), continuation: chunk.slice(1) }); owners.push(lang); }
      }
  return async (iv) => {
    const scores = await logLikelihoodTokens(model, pairs, 16_384, iv ? { intervene: iv } : {});
    const out = new Map<string, NllSum>([...texts.documents.keys()].map((l) => [l, { totalNll: 0, tokens: 0 }]));
    scores.forEach((s, i) => { const sum = out.get(owners[i]!)!; sum.totalNll -= s.logprob; sum.tokens += s.tokens; });
    return out;
  };
}

export async function matrixStep(ctx: DemoContext, identify: { key: string; result: IdentifyResult }) {
  const langs = ctx.recipe.languages, maxTokens = ctx.options.matrixTokens;
  const corpus = udhrCorpus(langs, { split: 'heldout', heldoutArticles: ctx.recipe.heldoutArticles });
  const inputs = { step: 'ppl-matrix', model: ctx.modelDigest, identify: identify.key, text: await corpus.fingerprint(langs), maxTokens };
  return ctx.runner.run<MatrixResult>('ppl-matrix', inputs, async () => {
    const model = await ctx.model();
    const texts = await loadEvalTexts(model, corpus, langs, maxTokens || Infinity);
    const scoreRow = rowScorer(model, texts);
    const resolve = interventionResolver(model, { onWarning: warnOnce });
    const maskFile = identify.result.maskFile;
    // Deactivating an empty set changes nothing (tested in test/intervene.test.ts): a language without neurons
    // gets the baseline's scores without running the model again.
    const empty = new Set(langs.filter((l) => !(identify.result.total[l]! > 0)));
    const rows = new Map<string, Promise<Map<string, NllSum>>>();
    const row = (lang: string | null) => {
      const key = lang === null || empty.has(lang) ? '' : lang;
      if (!rows.has(key)) rows.set(key, key === '' ? scoreRow(null) : resolve(deactivation(maskFile, key)).then(scoreRow));
      return rows.get(key)!;
    };
    const matrix = await computePplMatrix<string>({
      rows: langs, columns: langs,
      intervention: (lang) => lang,
      score: async (col, lang) => (await row(lang)).get(col)!,
      onCell: (done, total, r, col) => ctx.runner.progress('ppl-matrix', `${done}/${total} ${r === null ? 'no intervention' : `-${r}`} → ${col}`),
    });
    const file = path.join(ctx.outDir, 'ppl-matrix.json');
    const files = await writePplMatrix(file, matrix, { model: ctx.modelDir, mask: maskFile, evalText: { origin: texts.origin, fingerprint: texts.fingerprint, maxTokens } });
    return { file, svg: files.svg, matrix,
      evalText: { origin: texts.origin, fingerprint: texts.fingerprint, maxTokens, tokens: Object.fromEntries(texts.tokens) } };
  });
}
