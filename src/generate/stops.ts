/**
 * Stop strings during generation, found without decoding a sequence's whole output at every step.
 *
 * The rule (as before, and as lm-evaluation-harness cuts `until`): generation ends at the first step whose output,
 * decoded with special tokens skipped and the tokenizer's space clean-up, contains a stop string; the text is cut
 * before the first occurrence. Decoding the whole output at every step made a step's host work grow with the
 * output (Llama 3: ~75 us per sequence at 256 tokens, even with fast-decode.ts), which a GPU step of a few
 * milliseconds waits for.
 *
 * Here each sequence keeps a decode stream (tokenizer.ts: the output's text without clean-up, emitted + held)
 * and looks for the stops in its end only; where one may be, the whole output is decoded and searched as the rule
 * says, so the answer is the rule's. Why the end suffices:
 *  - The clean-up only deletes spaces (" ." -> ".", " n't" -> "n't", ...). So if the cleaned text contains stop s,
 *    the uncleaned text with its spaces removed contains s with its spaces removed (`s'` below).
 *  - Each clean-up rule looks at most 3 characters past where it matches, in 10 passes that only delete spaces:
 *    whether a character survives depends on at most the next 30 non-space characters (and the spaces among
 *    them). Text more than LOOKAHEAD non-space characters before the end of what was already emitted is cleaned
 *    the same at this step as at the last, where it had no stop.
 *  - So a stop that appears now has its s' ending at most LOOKAHEAD non-space characters before the end of the
 *    text emitted until the last step: within `tail + new text`, searched here.
 * This needs the decode stream's text to be decode's, and decode to be local (`LoadedTokenizer.decodesLocally`:
 * the supported families' decoders); otherwise the whole output is searched at every step. (So is it for a stop
 * of spaces only: its s' is empty and found in every region.)
 */
import type { DecodeOptions, DecodeStream, LoadedTokenizer } from '../model/tokenizer.js';

const LOOKAHEAD = 40; // > 30, see above

const withoutSpaces = (s: string) => (s.includes(' ') ? s.replaceAll(' ', '') : s);

export class StopFinder {
  private readonly compact: string[];
  private readonly keep: number;
  private readonly everyStep: boolean;

  /** `decode`: how the output's text is decoded (the generator's own options: special tokens and ids past the
   *  tokenizer's vocabulary skipped, and the tokenizer's space clean-up as its config says unless they say otherwise). */
  constructor(private readonly tok: LoadedTokenizer, private readonly stops: readonly string[],
    private readonly decode: DecodeOptions = { skipSpecialTokens: true }) {
    this.compact = stops.map(withoutSpaces);
    this.everyStep = !tok.decodesLocally;
    this.keep = LOOKAHEAD + Math.max(0, ...this.compact.map((s) => s.length));
  }

  /** State of one sequence's output. */
  start(): StopScan {
    return { stream: this.tok.createDecodeStream({ skipSpecialTokens: true, skipUnknownIds: this.decode.skipUnknownIds ?? false }), tail: '' };
  }

  /**
   * After `id` was appended to `tokens` (the sequence's output so far): the output's text cut before the first
   * stop, or null when it contains none.
   */
  step(scan: StopScan, tokens: readonly number[], id: number): string | null {
    if (!this.everyStep) {
      const fresh = withoutSpaces(scan.stream.step(id));
      const region = scan.tail + fresh + withoutSpaces(scan.stream.held());
      scan.tail = (scan.tail + fresh).slice(-this.keep);
      if (!this.compact.some((s) => region.includes(s))) return null;
    }
    const text = this.tok.decode(tokens, this.decode);
    const at = this.stops.map((s) => text.indexOf(s)).filter((k) => k >= 0);
    return at.length ? text.slice(0, Math.min(...at)) : null;
  }
}

export interface StopScan {
  stream: DecodeStream;
  /** The last `keep` characters, spaces removed, of the text the stream has emitted. */
  tail: string;
}
