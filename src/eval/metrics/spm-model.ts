// A raw SentencePiece model file (`.model`, the protobuf sentencepiece_model.proto's ModelProto) read into the
// tokenizer.json that Hugging Face's SpmConverter (transformers' convert_slow_tokenizer) makes of a Unigram model:
// the pieces and scores as a Unigram vocabulary, the normalizer (its precompiled charsmap, and the collapse of
// extra spaces), and a Metaspace pre-tokenizer ("▁", prepended when add_dummy_prefix). Only the fields that
// matter are read; protobuf is read by hand (varint, fixed32 and length-delimited wire types are all these
// messages use):
//   ModelProto      { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2; NormalizerSpec normalizer_spec = 3; }
//   SentencePiece   { string piece = 1; float score = 2; Type type = 3 (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6); }
//   TrainerSpec     { ModelType model_type = 3 (UNIGRAM 1, BPE 2, WORD 3, CHAR 4); int32 unk_id = 40; }
//   NormalizerSpec  { string name = 1; bytes precompiled_charsmap = 2; bool add_dummy_prefix = 3 [true];
//                     bool remove_extra_whitespaces = 4 [true]; }

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly what: string) {}
  get done(): boolean { return this.pos >= this.buf.length; }
  varint(): number {
    let v = 0, mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error(`${this.what}: truncated varint`);
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
    throw new Error(`${this.what}: varint longer than 10 bytes`);
  }
  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.buf.length) throw new Error(`${this.what}: a field runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  fixed32(): number {
    if (this.pos + 4 > this.buf.length) throw new Error(`${this.what}: truncated float`);
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  /** Calls `field(number, wireType)`; the callback reads the value or returns false to have it skipped. */
  each(field: (num: number, wire: number) => boolean): void {
    while (!this.done) {
      const key = this.varint(), num = Math.floor(key / 8), wire = key & 7;
      if (field(num, wire)) continue;
      if (wire === 0) this.varint();
      else if (wire === 1) this.pos += 8;
      else if (wire === 2) this.bytes();
      else if (wire === 5) this.pos += 4;
      else throw new Error(`${this.what}: unsupported protobuf wire type ${wire} (field ${num})`);
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export interface SpmModel { pieces: { piece: string; score: number; type: number }[]; modelType: number; unkId: number;
  charsmap: Uint8Array; addDummyPrefix: boolean; removeExtraWhitespaces: boolean }

/** Reads a SentencePiece ModelProto; throws (plain Error) naming what is malformed. */
export function readSpmModel(buf: Uint8Array): SpmModel {
  const m: SpmModel = { pieces: [], modelType: 1, unkId: 0, charsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true };
  const top = new Reader(buf, 'ModelProto');
  top.each((num, wire) => {
    if (wire !== 2 || num < 1 || num > 3) return false;
    const sub = new Reader(top.bytes(), ['', 'SentencePiece', 'TrainerSpec', 'NormalizerSpec'][num]!);
    if (num === 1) {
      const p = { piece: '', score: 0, type: 1 };
      sub.each((n, w) => {
        if (n === 1 && w === 2) p.piece = utf8.decode(sub.bytes());
        else if (n === 2 && w === 5) p.score = sub.fixed32();
        else if (n === 3 && w === 0) p.type = sub.varint();
        else return false;
        return true;
      });
      m.pieces.push(p);
    } else if (num === 2) {
      sub.each((n, w) => {
        if (n === 3 && w === 0) m.modelType = sub.varint();
        else if (n === 40 && w === 0) m.unkId = sub.varint();
        else return false;
        return true;
      });
    } else {
      sub.each((n, w) => {
        if (n === 2 && w === 2) m.charsmap = sub.bytes();
        else if (n === 3 && w === 0) m.addDummyPrefix = sub.varint() !== 0;
        else if (n === 4 && w === 0) m.removeExtraWhitespaces = sub.varint() !== 0;
        else return false;
        return true;
      });
    }
    return true;
  });
  if (!m.pieces.length) throw new Error('ModelProto: no pieces (not a SentencePiece model?)');
  return m;
}

/** The tokenizer.json (as transformers' SpmConverter writes it for a Unigram model) of a SentencePiece model. */
export function spmTokenizerJson(m: SpmModel): Record<string, unknown> {
  if (m.modelType !== 1) throw new Error(`model_type ${m.modelType} (${['', 'UNIGRAM', 'BPE', 'WORD', 'CHAR'][m.modelType] ?? '?'}): only Unigram SentencePiece models are read; give a tokenizer.json conversion`);
  const unk = m.pieces.findIndex((p) => p.type === 2);
  const normalizers: unknown[] = [];
  if (m.charsmap.length) normalizers.push({ type: 'Precompiled', precompiled_charsmap: Buffer.from(m.charsmap).toString('base64') });
  if (m.removeExtraWhitespaces) normalizers.push({ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' });
  const metaspace = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: m.addDummyPrefix ? 'always' : 'never', split: true };
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: [], post_processor: null,
    normalizer: normalizers.length ? { type: 'Sequence', normalizers } : null,
    pre_tokenizer: metaspace, decoder: metaspace,
    model: { type: 'Unigram', unk_id: unk >= 0 ? unk : m.unkId, vocab: m.pieces.map((p) => [p.piece, p.score]), byte_fallback: false },
  };
}
