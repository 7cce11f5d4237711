// The pipeline from a script, through the package's API: profile → identify → intervene → Tang's perplexity
// matrix, on the bundled model and the built-in UDHR corpus (a few seconds on 2 cores). docs/API.md walks through it.
//
//   node examples/api-pipeline.mjs <out-folder> [languages, default en,de,sw,ru,zh,th]
//
// It computes what these commands compute (test/api-subpaths.test.ts checks that it does, file for file):
//   langneurons profile models/udhr20 --corpus udhr:train --langs <langs> --max-len 128 --out <out>/stats
//   langneurons identify <out>/stats --method lape --top-rate 0.3 --out <out>/lape.json
//   langneurons steer ppl-matrix models/udhr20 --masks <out>/lape.json --eval-text udhr:heldout --max-tokens 2000 --out <out>/ppl-matrix.json
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { generate, identifyLape, loadModel, openCorpusSpec, profileCorpus, readStats, resolveIntervention, summarizeMask, writeMask } from 'langneurons';
import { computePplMatrix, deactivation, engineMatrixScorer, interventionResolver, loadEvalTexts, openEvalCorpus, writePplMatrix } from 'langneurons/steer';

const [out, langList = 'en,de,sw,ru,zh,th'] = process.argv.slice(2);
if (!out) {
  process.stderr.write('usage: node examples/api-pipeline.mjs <out-folder> [languages]\n');
  process.exit(1);
}
const languages = langList.split(',');
const modelDir = fileURLToPath(new URL('../models/udhr20', import.meta.url));

const model = await loadModel(modelDir, { device: 'auto' });  // 'cuda' on a GPU; f32 on the CPU, bf16 on a GPU by default
try {
  // 1. Profile: per-neuron statistics of the FFN activations (site act) per language, windows of 128 tokens.
  const corpus = await openCorpusSpec('udhr:train', { languages });
  const profiles = await profileCorpus(model, corpus, {
    languages, outDir: path.join(out, 'stats'), sites: ['act'],
    scope: { mode: 'windows', maxLen: 128, bos: false, countPadding: false, tokenBudget: 0 },
  });
  for (const p of profiles) console.log(`profiled ${p.language}: ${p.tokens} tokens`);

  // 2. Identify: LAPE (Tang et al.) over the languages' statistics.
  const inputs = await Promise.all(profiles.map(async (p) => ({ file: p.file, stats: await readStats(p.file) })));
  const mask = identifyLape(inputs, { topRate: 0.3 });
  const maskFile = path.join(out, 'lape.json');
  await writeMask(maskFile, mask);
  for (const [lang, n] of Object.entries(summarizeMask(mask).total)) console.log(`${lang}: ${n} neurons`);

  // 3. Intervene: generate with Swahili's neurons deactivated (the same spec grammar as --intervene).
  const off = await resolveIntervention(model, `deactivate:${maskFile}:sw`);
  const [plain] = await generate(model, 'Kila mtu ana haki', { maxNewTokens: 12 });
  const [steered] = await generate(model, 'Kila mtu ana haki', { maxNewTokens: 12, intervene: off });
  console.log(`plain:   ${JSON.stringify(plain.text)}\nwithout sw neurons: ${JSON.stringify(steered.text)}`);

  // 4. Tang's matrix: every language's held-out text scored with every language's neurons deactivated.
  const texts = await loadEvalTexts(model, await openEvalCorpus('udhr:heldout', languages), languages, 2000);
  const score = engineMatrixScorer(model, texts);
  const resolve = interventionResolver(model);
  const matrix = await computePplMatrix({
    rows: languages, columns: languages,
    intervention: (lang) => deactivation(maskFile, lang),
    score: async (column, request) => score(column, request === null ? null : await resolve(request)),
  });
  await writePplMatrix(path.join(out, 'ppl-matrix.json'), matrix);
  console.log(`diagonal: ${matrix.diagonal.hits.length} of ${matrix.diagonal.languages.length} languages are hurt most by their own deactivation`);
} finally {
  model.dispose();  // frees native (and device) memory now, not when the collector runs
}
