// Prompt formats (../shared/docs/METHODS.md §6) and the per-language tables they need.
import { LangneuronsError } from '../errors.js';
import { pyStrip } from './pystr.js';

/** English names of FLORES-200 codes (for the translation prompts). Unknown codes need --lang-name. */
export const FLORES_NAMES: Record<string, string> = {
  eng_Latn: 'English', mlt_Latn: 'Maltese', swh_Latn: 'Swahili', ind_Latn: 'Indonesian', hat_Latn: 'Haitian Creole',
  fra_Latn: 'French', deu_Latn: 'German', spa_Latn: 'Spanish', ita_Latn: 'Italian', por_Latn: 'Portuguese',
  nld_Latn: 'Dutch', pol_Latn: 'Polish', ces_Latn: 'Czech', slk_Latn: 'Slovak', slv_Latn: 'Slovenian',
  ron_Latn: 'Romanian', hun_Latn: 'Hungarian', fin_Latn: 'Finnish', est_Latn: 'Estonian', lvs_Latn: 'Latvian',
  lit_Latn: 'Lithuanian', dan_Latn: 'Danish', swe_Latn: 'Swedish', nob_Latn: 'Norwegian Bokmål', isl_Latn: 'Icelandic',
  tur_Latn: 'Turkish', vie_Latn: 'Vietnamese', tgl_Latn: 'Tagalog', zsm_Latn: 'Malay', yor_Latn: 'Yoruba',
  hau_Latn: 'Hausa', ibo_Latn: 'Igbo', zul_Latn: 'Zulu', xho_Latn: 'Xhosa', amh_Ethi: 'Amharic', som_Latn: 'Somali',
  quy_Latn: 'Quechua', eus_Latn: 'Basque', cat_Latn: 'Catalan', glg_Latn: 'Galician', cym_Latn: 'Welsh',
  gle_Latn: 'Irish', als_Latn: 'Albanian', bos_Latn: 'Bosnian', hrv_Latn: 'Croatian', srp_Cyrl: 'Serbian',
  bul_Cyrl: 'Bulgarian', mkd_Cyrl: 'Macedonian', rus_Cyrl: 'Russian', ukr_Cyrl: 'Ukrainian', bel_Cyrl: 'Belarusian',
  kaz_Cyrl: 'Kazakh', ell_Grek: 'Greek', heb_Hebr: 'Hebrew', arb_Arab: 'Arabic', pes_Arab: 'Persian', urd_Arab: 'Urdu',
  hin_Deva: 'Hindi', mar_Deva: 'Marathi', npi_Deva: 'Nepali', ben_Beng: 'Bengali', tam_Taml: 'Tamil', tel_Telu: 'Telugu',
  kan_Knda: 'Kannada', mal_Mlym: 'Malayalam', guj_Gujr: 'Gujarati', pan_Guru: 'Punjabi', sin_Sinh: 'Sinhala',
  tha_Thai: 'Thai', khm_Khmr: 'Khmer', lao_Laoo: 'Lao', mya_Mymr: 'Burmese', kat_Geor: 'Georgian', hye_Armn: 'Armenian',
  zho_Hans: 'Chinese', zho_Hant: 'Chinese (Traditional)', jpn_Jpan: 'Japanese', kor_Hang: 'Korean', azj_Latn: 'Azerbaijani',
  uzn_Latn: 'Uzbek', kir_Cyrl: 'Kyrgyz', tat_Cyrl: 'Tatar', epo_Latn: 'Esperanto', ltz_Latn: 'Luxembourgish',
  afr_Latn: 'Afrikaans', bod_Tibt: 'Tibetan',
};

/** Short codes (ISO 639-1 as the XNLI/XCOPA/XQuAD configs use them) -> the other datasets' names. */
export const LANG_ALIASES: Record<string, { flores?: string; include?: string }> = {
  en: { flores: 'eng_Latn', include: 'English' }, mt: { flores: 'mlt_Latn' }, sw: { flores: 'swh_Latn' },
  id: { flores: 'ind_Latn', include: 'Indonesian' }, ht: { flores: 'hat_Latn' }, fr: { flores: 'fra_Latn', include: 'French' },
  de: { flores: 'deu_Latn', include: 'German' }, es: { flores: 'spa_Latn', include: 'Spanish' }, it: { flores: 'ita_Latn', include: 'Italian' },
  pt: { flores: 'por_Latn', include: 'Portuguese' }, nl: { flores: 'nld_Latn', include: 'Dutch' }, pl: { flores: 'pol_Latn', include: 'Polish' },
  tr: { flores: 'tur_Latn', include: 'Turkish' }, vi: { flores: 'vie_Latn', include: 'Vietnamese' }, zh: { flores: 'zho_Hans', include: 'Chinese' },
  ja: { flores: 'jpn_Jpan', include: 'Japanese' }, ko: { flores: 'kor_Hang', include: 'Korean' }, ru: { flores: 'rus_Cyrl', include: 'Russian' },
  uk: { flores: 'ukr_Cyrl', include: 'Ukrainian' }, bg: { flores: 'bul_Cyrl', include: 'Bulgarian' }, el: { flores: 'ell_Grek', include: 'Greek' },
  ar: { flores: 'arb_Arab', include: 'Arabic' }, he: { flores: 'heb_Hebr', include: 'Hebrew' }, fa: { flores: 'pes_Arab', include: 'Persian' },
  hi: { flores: 'hin_Deva', include: 'Hindi' }, ur: { flores: 'urd_Arab', include: 'Urdu' }, bn: { flores: 'ben_Beng', include: 'Bengali' },
  ta: { flores: 'tam_Taml', include: 'Tamil' }, te: { flores: 'tel_Telu', include: 'Telugu' }, th: { flores: 'tha_Thai' },
  et: { flores: 'est_Latn', include: 'Estonian' }, fi: { flores: 'fin_Latn', include: 'Finnish' }, hu: { flores: 'hun_Latn', include: 'Hungarian' },
  ro: { flores: 'ron_Latn' }, qu: { flores: 'quy_Latn' }, eu: { flores: 'eus_Latn', include: 'Basque' }, ka: { flores: 'kat_Geor', include: 'Georgian' },
  hy: { flores: 'hye_Armn', include: 'Armenian' }, kk: { flores: 'kaz_Cyrl', include: 'Kazakh' }, sq: { flores: 'als_Latn', include: 'Albanian' },
  hr: { flores: 'hrv_Latn', include: 'Croatian' }, sr: { flores: 'srp_Cyrl', include: 'Serbian' }, lt: { flores: 'lit_Latn', include: 'Lithuanian' },
  ms: { flores: 'zsm_Latn', include: 'Malay' }, az: { flores: 'azj_Latn', include: 'Azerbaijani' }, be: { flores: 'bel_Cyrl', include: 'Belarusian' },
  ne: { flores: 'npi_Deva', include: 'Nepali' }, ml: { flores: 'mal_Mlym', include: 'Malayalam' }, tl: { flores: 'tgl_Latn', include: 'Tagalog' },
};

/** Other short codes datasets use for a language: XWinograd's `jp` (its codes: en, fr, jp, pt, ru, zh). */
const CODE_ALIASES: Record<string, string> = { jp: 'ja' };

/** A dataset's own code of a language as the language's code (XWinograd's jp: ja), others as they are: what names an
 *  evaluation's language in its result key, so that `--langs jp` and `--langs ja` are one result. */
export function languageOfCode(lang: string): string {
  return CODE_ALIASES[lang] ?? lang;
}

/** The other codes datasets give a language (ja: XWinograd's jp), for finding its files or rows. */
export function datasetCodes(lang: string): string[] {
  return Object.keys(CODE_ALIASES).filter((code) => CODE_ALIASES[code] === lang);
}

/** One name per language across datasets: a short code (en) for its FLORES code (eng_Latn), INCLUDE folder
 *  name (English), MMMLU file/region name (EN-US, en_us, mmlu_EN-US) or another dataset's code (XWinograd's jp);
 *  a FLORES pair maps each side. */
export function canonicalLang(lang: string): string {
  if (LANG_ALIASES[lang]) return lang;
  if (CODE_ALIASES[lang]) return CODE_ALIASES[lang];
  const pair = /^([A-Za-z]{3}_[A-Za-z]{4})-([A-Za-z]{3}_[A-Za-z]{4})$/.exec(lang);
  if (pair) return `${canonicalLang(pair[1]!)}-${canonicalLang(pair[2]!)}`;
  for (const [code, a] of Object.entries(LANG_ALIASES)) if (a.flores === lang || a.include?.toLowerCase() === lang.toLowerCase()) return code;
  const region = /^(?:mmlu_)?([A-Za-z]{2})[-_][A-Za-z]{2}$/.exec(lang);
  if (region) return region[1]!.toLowerCase();
  return lang;
}

export function floresName(code: string, override?: Record<string, string>): string {
  const n = override?.[code] ?? FLORES_NAMES[code];
  if (!n) throw new LangneuronsError('E_OPTIONS', `no English name known for '${code}' (translation prompts name the languages): pass --lang-name ${code}=<Name>`, { field: 'lang-name' });
  return n;
}

// ---- FLORES translation -------------------------------------------------------------------------------
export const FLORES_PROMPTS = ['gurgurov', 'rahmanisa'] as const;
export type FloresPrompt = typeof FLORES_PROMPTS[number];

export function floresPrompt(variant: FloresPrompt, src: string, srcName: string, tgtName: string): string {
  // Gurgurov: "Translate this sentence into {tgt}: {src} Translation:"
  if (variant === 'gurgurov') return `Translate this sentence into ${tgtName}: ${src} Translation:`;
  // Rahmanisa: "Translate from English to {Lang}.\n\nEnglish: {src}\n{Lang}:" (the source language named likewise)
  return `Translate from ${srcName} to ${tgtName}.\n\n${srcName}: ${src}\n${tgtName}:`;
}

// ---- Belebele ------------------------------------------------------------------------------------------
export const LETTERS = ['A', 'B', 'C', 'D'] as const;

export function belebelePrompt(passage: string, question: string, answers: string[]): string {
  return `Read the following passage and pick the right answer.\n\nPassage: ${passage}\n\nQuestion: ${question}\n\n` +
    answers.map((a, i) => `${LETTERS[i]}) ${a}`).join('\n') + '\n\nAnswer:';
}

// ---- INCLUDE / MMLU ------------------------------------------------------------------------------------
export function mcqPrompt(question: string, choices: string[]): string {
  return `${question}\n` + choices.map((c, i) => `${LETTERS[i]}) ${c}`).join('\n') + '\nAnswer:';
}

/** The first stand-alone letter A-D of a generation ("B", " B) ...", "Answer: C"), or null. */
export function extractLetter(text: string, n = 4): number | null {
  const m = new RegExp(`(?:^|[^A-Za-z])([${LETTERS.slice(0, n).join('')}])(?![A-Za-z])`).exec(text);
  return m ? LETTERS.indexOf(m[1] as typeof LETTERS[number]) : null;
}

// ---- XNLI ----------------------------------------------------------------------------------------------
/** lm-evaluation-harness tasks/xnli/utils.py: "{premise}, {QUESTION_WORD}?" + " {LABEL}, {hypothesis}". */
export const XNLI_WORDS: Record<string, [question: string, entailment: string, neutral: string, contradiction: string]> = {
  ar: ['صحيح', 'نعم', 'لذا', 'رقم'], bg: ['правилно', 'да', 'така', 'не'], de: ['richtig', 'Ja', 'Auch', 'Nein'],
  el: ['σωστός', 'Ναί', 'Έτσι', 'όχι'], en: ['right', 'Yes', 'Also', 'No'], es: ['correcto', 'Sí', 'Asi que', 'No'],
  fr: ['correct', 'Oui', 'Aussi', 'Non'], hi: ['सही', 'हाँ', 'इसलिए', 'नहीं'], ru: ['правильно', 'Да', 'Так', 'Нет'],
  sw: ['sahihi', 'Ndiyo', 'Hivyo', 'Hapana'], th: ['ถูกต้อง', 'ใช่', 'ดังนั้น', 'ไม่'], tr: ['doğru', 'Evet', 'Böylece', 'Hayır'],
  ur: ['صحیح', 'جی ہاں', 'اس لئے', 'نہیں'], vi: ['đúng', 'Vâng', 'Vì vậy', 'Không'], zh: ['正确', '是的', '所以', '不是的'],
};

/** Generative XNLI (options 1. Entailment 2. Neutral 3. Contradiction); METHODS.md gives no exact string. */
export function xnliGenerativePrompt(premise: string, hypothesis: string): string {
  return `Premise: ${premise}\nHypothesis: ${hypothesis}\nWhat is the relation between the premise and the hypothesis?\n` +
    `1. Entailment\n2. Neutral\n3. Contradiction\nAnswer:`;
}

export function extractXnliLabel(text: string): number | null {
  const m = /[123]|entailment|neutral|contradiction/i.exec(text);
  if (!m) return null;
  const t = m[0].toLowerCase();
  return t === '1' || t === 'entailment' ? 0 : t === '2' || t === 'neutral' ? 1 : 2;
}

// ---- XQuAD ---------------------------------------------------------------------------------------------
/** Extractive QA by generation; METHODS.md gives no exact string. */
export function xquadPrompt(context: string, question: string): string {
  return `Context: ${context}\nQuestion: ${question}\nAnswer:`;
}

// ---- XCOPA ---------------------------------------------------------------------------------------------
/** lm-evaluation-harness tasks/xcopa/utils.py connectors (cause, effect); 'en' from the English COPA task. */
export const XCOPA_CONNECTORS: Record<string, { cause: string; effect: string }> = {
  et: { cause: 'sest', effect: 'seetõttu' }, ht: { cause: 'poukisa', effect: 'donk sa' }, it: { cause: 'perché', effect: 'quindi' },
  id: { cause: 'karena', effect: 'maka' }, qu: { cause: 'imataq', effect: 'chaymi' }, sw: { cause: 'kwa sababu', effect: 'kwa hiyo' },
  zh: { cause: '因为', effect: '所以' }, ta: { cause: 'காரணமாக', effect: 'எனவே' }, th: { cause: 'เพราะ', effect: 'ดังนั้น' },
  tr: { cause: 'çünkü', effect: 'bu yüzden' }, vi: { cause: 'bởi vì', effect: 'vì vậy' }, en: { cause: 'because', effect: 'therefore' },
};

/** lm-eval convert_choice: first character lower-cased. */
export const xcopaChoice = (c: string): string => { const cs = Array.from(c); return (cs[0] ?? '').toLowerCase() + cs.slice(1).join(''); };

/** lm-eval doc_to_text: the premise stripped, without its final character, then " " + connector. */
export function xcopaContext(premise: string, question: string, lang: string): string {
  const conn = XCOPA_CONNECTORS[lang];
  if (!conn) throw new LangneuronsError('E_OPTIONS', `xcopa: no connectors for language '${lang}' (known: ${Object.keys(XCOPA_CONNECTORS).join(', ')})`, { field: 'langs' });
  if (question !== 'cause' && question !== 'effect') throw new LangneuronsError('E_DATA', `xcopa: question must be "cause" or "effect", got "${question}"`);
  return Array.from(pyStrip(premise)).slice(0, -1).join('') + ` ${conn[question]}`; // Python slices code points
}

// ---- lm-evaluation-harness formats (`--prompt lm-eval`) ------------------------------------------------
// Byte-identical to the requests of EleutherAI/lm-evaluation-harness 4e7e0d4 (2026-08-21), zero-shot, no chat
// template: lm_eval/tasks/{belebele/_default_template_yaml, xnli/xnli_*.yaml, xquad/xquad_*.yaml,
// mmlu/default/_default_template_yaml + _generate_configs.py, include/default/<Language>/*}; a multiple-choice
// request is (description + doc_to_text, " " + choice) (api/task.py construct_requests, target_delimiter " ").

/** Belebele: "P: {passage}\nQ: {question.strip()}\nA: {mc_answer1}\n…\nD: {mc_answer4}\nAnswer:". */
export function belebeleLmEvalPrompt(passage: string, question: string, answers: string[]): string {
  return `P: ${passage}\nQ: ${pyStrip(question)}\n` + answers.map((a, i) => `${LETTERS[i]}: ${a}`).join('\n') + '\nAnswer:';
}

/** XNLI: an empty context; each choice is "{premise}, {QUESTION_WORD}? {LABEL}, {hypothesis}". */
export function xnliLmEvalChoices(premise: string, hypothesis: string, lang: string): string[] {
  const w = XNLI_WORDS[lang];
  if (!w) throw new LangneuronsError('E_OPTIONS', `xnli: no lm-eval label words for '${lang}' (known: ${Object.keys(XNLI_WORDS).join(', ')}); use --prompt generate`, { field: 'langs' });
  const [q, e, n, c] = w;
  return [e, n, c].map((label) => `${premise}, ${q}? ${label}, ${hypothesis}`);
}

/** lm-eval xquad_<lang>.yaml labels: "{Context}: {context}\n\n{Question}: {question}\n\n{Answer}:". */
export const XQUAD_LABELS: Record<string, [context: string, question: string, answer: string]> = {
  ar: ['سيا', 'سؤال', 'إجابة'], de: ['Kontext', 'Frage', 'Antwort'], el: ['Συμφραζόμενα', 'Ερώτηση', 'Απάντηση'],
  en: ['Context', 'Question', 'Answer'], es: ['Contexto', 'Pregunta', 'Respuesta'], hi: ['प्रसंग', 'सवाल', 'उत्तर'],
  ro: ['Context', 'Întrebare', 'Răspuns'], ru: ['Контекст', 'Вопрос', 'Ответ'], th: ['บริบท', 'คำถาม', 'คำตอบ'],
  tr: ['Bağlam', 'Soru', 'Cevap'], vi: ['Bối cảnh', 'Câu hỏi', 'Trả lời'], zh: ['语境', '问题', '回答'],
};

export function xquadLmEvalPrompt(context: string, question: string, lang: string): string {
  const l = XQUAD_LABELS[lang];
  if (!l) throw new LangneuronsError('E_OPTIONS', `xquad: lm-eval has no prompt for '${lang}' (it has: ${Object.keys(XQUAD_LABELS).join(', ')}); use --prompt generate`, { field: 'langs' });
  return `${l[0]}: ${context}\n\n${l[1]}: ${question}\n\n${l[2]}:`;
}

/** MMLU (cais/mmlu; also openai/MMMLU's translations, with the English subject): the subject header (lm-eval's
 *  description), then "{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:". */
export function mmluLmEvalParts(subject: string, question: string, choices: string[]): [description: string, question: string] {
  return [`The following are multiple choice questions (with answers) about ${subject.split('_').join(' ')}.\n\n`,
    `${pyStrip(question)}\n` + choices.map((c, i) => `${LETTERS[i]}. ${c}`).join('\n') + '\nAnswer:'];
}

export function mmluLmEvalPrompt(subject: string, question: string, choices: string[]): string {
  return mmluLmEvalParts(subject, question, choices).join('');
}

/** The domain as lm-eval's task description writes it where it differs from the `domain` column: its Hebrew
 *  "Driving License" task file (include_base_44_hebrew_driving_license.yaml) says "Driving license" (checked
 *  against every INCLUDE task file of lm-eval 4e7e0d4; the others write the column's value). */
const INCLUDE_DESCRIPTION_DOMAIN: Record<string, Record<string, string>> = { he: { 'Driving License': 'Driving license' } };

/** INCLUDE (include-base-44): one task per domain; its description is joined to the question with nothing
 *  between (lm-eval's system message has no delimiter), and the YAML's folded line puts a space before "D.".
 *  `lang`: the dataset's language (Hebrew or he), for lm-eval's one description that differs from the domain. */
export function includeLmEvalParts(domain: string, question: string, choices: string[], lang: string): [description: string, question: string] {
  const described = INCLUDE_DESCRIPTION_DOMAIN[canonicalLang(lang)]?.[domain] ?? domain;
  return [`The following is multiple-choice question about ${described}.`,
    `${pyStrip(question)}\nA. ${choices[0]}\nB. ${choices[1]}\nC. ${choices[2]}\n D. ${choices[3]}\nAnswer:`];
}

export function includeLmEvalPrompt(domain: string, question: string, choices: string[], lang: string): string {
  return includeLmEvalParts(domain, question, choices, lang).join('');
}

/** The template each (task, prompt format) records in its results. */
export const TEMPLATES: Record<string, string> = {
  'ppl/text': '{text}',
  'flores/gurgurov': 'Translate this sentence into {tgt}: {src} Translation:',
  'flores/rahmanisa': 'Translate from {Src} to {Tgt}.\n\n{Src}: {src}\n{Tgt}:',
  'belebele/generate': 'Read the following passage and pick the right answer.\n\nPassage: {flores_passage}\n\nQuestion: {question}\n\nA) {mc_answer1}\nB) {mc_answer2}\nC) {mc_answer3}\nD) {mc_answer4}\n\nAnswer: -> generated letter',
  'belebele/loglik': 'Read the following passage and pick the right answer.\n\nPassage: {flores_passage}\n\nQuestion: {question}\n\nA) {mc_answer1}\nB) {mc_answer2}\nC) {mc_answer3}\nD) {mc_answer4}\n\nAnswer: | " A" " B" " C" " D"',
  'belebele/lm-eval': 'P: {flores_passage}\nQ: {question.strip()}\nA: {mc_answer1}\nB: {mc_answer2}\nC: {mc_answer3}\nD: {mc_answer4}\nAnswer: | " A" " B" " C" " D"',
  'xnli/lm-eval': '"" | " {premise}, {QUESTION_WORD}? {ENTAILMENT_LABEL|NEUTRAL_LABEL|CONTRADICTION_LABEL}, {hypothesis}"',
  'xnli/generate': 'Premise: {premise}\nHypothesis: {hypothesis}\nWhat is the relation between the premise and the hypothesis?\n1. Entailment\n2. Neutral\n3. Contradiction\nAnswer: -> generated 1/2/3',
  'xnli/head': 'classification head on (premise, hypothesis)',
  'xquad/generate': 'Context: {context}\nQuestion: {question}\nAnswer: -> generated answer, SQuAD EM/F1 over all answers',
  'xquad/lm-eval': '{Context}: {context}\n\n{Question}: {question}\n\n{Answer}: -> until "\\n", 256 tokens; EM/F1 against answers.text[0]',
  'xcopa/lm-eval': '{premise[:-1]} {because|therefore} | " {choice with its first letter lower-cased}"',
  'xwinograd/partial': '{sentence[:idx]}{option} | " {sentence[idx+1:].strip()}"',
  'include/loglik': '{question}\nA) {a}\nB) {b}\nC) {c}\nD) {d}\nAnswer: | " A" " B" " C" " D"',
  'include/generate': '{question}\nA) {a}\nB) {b}\nC) {c}\nD) {d}\nAnswer: -> generated letter',
  'include/lm-eval': 'The following is multiple-choice question about {domain}.{question.strip()}\nA. {option_a}\nB. {option_b}\nC. {option_c}\n D. {option_d}\nAnswer: | " A" " B" " C" " D"',
  'mmlu/loglik': '{question}\nA) {c0}\nB) {c1}\nC) {c2}\nD) {c3}\nAnswer: | " A" " B" " C" " D"',
  'mmlu/generate': '{question}\nA) {c0}\nB) {c1}\nC) {c2}\nD) {c3}\nAnswer: -> generated letter',
  'mmlu/lm-eval': 'The following are multiple choice questions (with answers) about {subject}.\n\n{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer: | " A" " B" " C" " D"',
};
