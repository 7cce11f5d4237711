// Python's notion of whitespace, for every metric and prompt that mirrors Python code (sacreBLEU, the SQuAD
// script, lm-evaluation-harness's `.strip()`). Python's str.split() / str.strip() / str.isspace() treat as
// whitespace exactly the characters below (CPython's _PyUnicode_IsWhitespace: bidirectional class WS, B or S,
// or category Zs). JavaScript's \s differs: it includes U+FEFF (the byte-order mark, found inside real XQuAD
// contexts) and excludes U+001C–U+001F and U+0085.
const PY_WS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const RUN = new RegExp(`[${PY_WS}]+`, 'u');
const LEADING = new RegExp(`^[${PY_WS}]+`, 'u');
const TRAILING = new RegExp(`[${PY_WS}]+$`, 'u');
const ONE = new RegExp(`^[${PY_WS}]$`, 'u');

/** Python's str.split() with no argument: runs of whitespace, no empty strings. */
export function pySplit(s: string): string[] {
  return s.split(RUN).filter((w) => w.length > 0);
}

/** Python's str.strip(), str.lstrip(), str.rstrip() with no argument. */
export const pyStrip = (s: string): string => s.replace(LEADING, '').replace(TRAILING, '');
export const pyLstrip = (s: string): string => s.replace(LEADING, '');
export const pyRstrip = (s: string): string => s.replace(TRAILING, '');

/** Python's str.isspace() of one character. */
export const pyIsSpace = (ch: string): boolean => ONE.test(ch);
