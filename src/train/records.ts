// Fine-tuning records from task datasets: SQuAD-layout QA (Hugging Face squad / xquad columns: context, question,
// answers {text, answer_start}) as {"prompt", "completion"} records whose prompt is exactly the one `eval --task
// xquad` generates from (src/eval/prompts.ts xquadPrompt), and whose completion is " " + the first answer.
import { LangneuronsError } from '../errors.js';
import { readRows, requireColumns, str } from '../eval/data.js';
import { xquadPrompt } from '../eval/prompts.js';

export interface PromptCompletion { prompt: string; completion: string }

/** The records of SQuAD-layout files (JSONL, CSV or Parquet); rows without an answer are skipped and counted. */
export async function squadRecords(files: string[], limit?: number): Promise<{ records: PromptCompletion[]; skipped: number }> {
  const records: PromptCompletion[] = [];
  let skipped = 0;
  for (const file of files) {
    const rows = await readRows(file);
    requireColumns(file, rows, ['context', 'question', 'answers'], 'SQuAD');
    rows.forEach((row, i) => {
      const a = row.answers as { text?: unknown } | null;
      if (!a || typeof a !== 'object' || !Array.isArray(a.text) || !a.text.every((t) => typeof t === 'string'))
        throw new LangneuronsError('E_DATA', `${file}: row ${i}: column "answers" must be {text: [...], answer_start: [...]}`, { file, field: 'answers' });
      const answer = (a.text as string[])[0]?.trim();
      if (!answer) { skipped++; return; } // SQuAD 2.0's unanswerable questions
      records.push({ prompt: xquadPrompt(str(file, row, i, 'context'), str(file, row, i, 'question')), completion: ` ${answer}` });
    });
  }
  return { records: limit !== undefined ? records.slice(0, limit) : records, skipped };
}
