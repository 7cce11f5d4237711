// CSV as RFC 4180 writes it (and Python's csv module / pandas' to_csv, which some hub datasets ship, e.g.
// openai/MMMLU's test/mmlu_<LANG>.csv): comma-separated fields, optionally quoted with ", a doubled "" inside
// quotes is one ", quoted fields may hold commas and line breaks; records end with \n or \r\n. The first record
// names the columns. An empty header cell (pandas' index column) is named by its position ("_0").
export class CsvError extends Error {
  constructor(message: string, readonly line: number) { super(message); }
}

/** Records of a CSV text, each a list of fields; `line` of an error is 1-based. */
export function parseCsvRecords(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;  // byte-order mark
  let line = 1;
  let quoted = false;     // inside a quoted field
  let wasQuoted = false;  // the current field was quoted (only a separator or line end may follow)
  const endField = () => { record.push(field); field = ''; wasQuoted = false; };
  const endRecord = () => {
    endField();
    if (!(record.length === 1 && record[0] === '')) records.push(record);  // skip blank lines
    record = [];
  };
  for (; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') { field += '"'; i++; } else { quoted = false; wasQuoted = true; }
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === ',') endField();
    else if (ch === '\n' || (ch === '\r' && text[i + 1] === '\n')) {
      if (ch === '\r') i++;
      endRecord();
      line++;
    } else if (wasQuoted) throw new CsvError(`line ${line}: text after a closing quote (expected a comma or a line end)`, line);
    else if (ch === '"') {
      if (field !== '') throw new CsvError(`line ${line}: a quote inside an unquoted field (quote the whole field and double the quote)`, line);
      quoted = true;
    } else field += ch;
  }
  if (quoted) throw new CsvError(`line ${line}: a quoted field is not closed before the end of the file`, line);
  if (field !== '' || record.length > 0 || wasQuoted) endRecord();
  return records;
}

/** Rows of a CSV text as objects keyed by the header; every record must have the header's field count. */
export function parseCsv(text: string): Record<string, string>[] {
  const records = parseCsvRecords(text);
  if (!records.length) return [];
  const header = records[0]!.map((h, k) => (h.trim() === '' ? `_${k}` : h.trim()));
  const dup = header.find((h, k) => header.indexOf(h) !== k);
  if (dup !== undefined) throw new CsvError(`the header names column "${dup}" twice`, 1);
  return records.slice(1).map((r, n) => {
    if (r.length !== header.length)
      throw new CsvError(`record ${n + 2} has ${r.length} fields, the header has ${header.length}`, n + 2);
    const row: Record<string, string> = {};
    header.forEach((h, k) => { row[h] = r[k]!; });
    return row;
  });
}
