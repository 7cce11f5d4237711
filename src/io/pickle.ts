// A restricted pickle reader and a small pickle writer, for PyTorch's data.pkl (src/io/torch-file.ts).
//
// Reading never executes anything: the only callables are the few globals PyTorch's files of masks and counts use
// (tensor rebuilds, storage types, OrderedDict), resolved to our own functions by the caller; any other global is
// refused when it is named, with an error that names it. Values: numbers (bigint beyond 2^53), strings, Uint8Array
// (bytes), arrays (lists and tuples), Map (dicts), null, booleans, and what the caller's hooks return.
//
// Writing covers the same values (protocol 2, what torch.save uses): lists, tuples, dicts, ints, floats, strings,
// booleans, None, globals, reduce calls and persistent ids.

/** A global `module.name`, as a value (a storage type passed as an argument) or a callable (REDUCE). */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string { return `${this.module}.${this.name}`; }
}

export interface UnpickleHooks {
  /** The globals accepted, by `module.name`. */
  allowed: ReadonlySet<string>;
  /** Calls an accepted global with its arguments (REDUCE). */
  call(fn: PickleGlobal, args: unknown[]): unknown;
  /** Resolves a persistent id (PyTorch: the tuple naming a storage record). */
  persistentLoad(pid: unknown): unknown;
}

export class PickleError extends Error {}

const MARK = Symbol('mark');

/** Reads one pickle (protocols 0-5, without the code-running opcodes beyond REDUCE of an accepted global). */
export function unpickle(buf: Uint8Array, hooks: UnpickleHooks): unknown {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  const need = (n: number) => { if (p + n > buf.length) throw new PickleError(`truncated at byte ${p} (needs ${n} more)`); };
  const u8 = () => { need(1); return buf[p++]!; };
  const u16 = () => { need(2); const v = dv.getUint16(p, true); p += 2; return v; };
  const u32 = () => { need(4); const v = dv.getUint32(p, true); p += 4; return v; };
  const i32 = () => { need(4); const v = dv.getInt32(p, true); p += 4; return v; };
  const u64 = () => { need(8); const v = dv.getBigUint64(p, true); p += 8; if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleError('length too large'); return Number(v); };
  const bytes = (n: number) => { need(n); const b = buf.subarray(p, p + n); p += n; return b; };
  const text = (n: number) => new TextDecoder('utf-8', { fatal: true }).decode(bytes(n));
  const line = () => { const e = buf.indexOf(0x0a, p); if (e < 0) throw new PickleError(`unterminated line at byte ${p}`); const s = new TextDecoder().decode(buf.subarray(p, e)); p = e + 1; return s; };
  const pop = () => { if (!stack.length) throw new PickleError(`stack underflow at byte ${p}`); return stack.pop(); };
  const top = () => { if (!stack.length) throw new PickleError(`stack underflow at byte ${p}`); return stack[stack.length - 1]; };
  const popMark = (): unknown[] => {
    const k = stack.lastIndexOf(MARK);
    if (k < 0) throw new PickleError(`no MARK before byte ${p}`);
    const items = stack.splice(k);
    items.shift();
    return items;
  };
  const int = (b: bigint): number | bigint => (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b);
  const long = (b: Uint8Array): number | bigint => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b.length && b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return int(v);
  };
  const global = (module: string, name: string): PickleGlobal => {
    const g = new PickleGlobal(module, name);
    if (!hooks.allowed.has(g.qualified))
      throw new PickleError(`refuses the global '${g.qualified}' (accepted: ${[...hooks.allowed].join(', ')}); nothing from the file is executed`);
    return g;
  };
  const setItems = (d: unknown, kv: unknown[]) => {
    if (!(d instanceof Map)) throw new PickleError(`SETITEM(S) on a ${typeof d}, not a dict`);
    for (let i = 0; i + 1 < kv.length; i += 2) d.set(kv[i], kv[i + 1]);
  };
  const append = (l: unknown, xs: unknown[]) => {
    if (!Array.isArray(l)) throw new PickleError(`APPEND(S) on a ${typeof l}, not a list`);
    for (const x of xs) l.push(x); // (a spread overflows the stack on long lists)
  };

  for (;;) {
    const at = p;
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: u64(); break; // FRAME: a length hint only
      case 0x2e: return pop(); // STOP
      case 0x28: stack.push(MARK); break;
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x64: { const d = new Map(); setItems(d, popMark()); stack.push(d); break; } // DICT
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(), a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x61: { const x = pop(); append(top(), [x]); break; } // APPEND
      case 0x65: { const xs = popMark(); append(top(), xs); break; } // APPENDS
      case 0x73: { const v = pop(), k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const kv = popMark(); setItems(top(), kv); break; } // SETITEMS
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(long(bytes(u8()))); break; // LONG1
      case 0x8b: stack.push(long(bytes(u32()))); break; // LONG4
      case 0x49: { const s = line(); stack.push(s === '00' ? false : s === '01' ? true : int(BigInt(s))); break; } // INT
      case 0x4c: stack.push(int(BigInt(line().replace(/L$/, '')))); break; // LONG
      case 0x47: { need(8); stack.push(dv.getFloat64(p, false)); p += 8; break; } // BINFLOAT (big-endian)
      case 0x46: stack.push(Number(line())); break; // FLOAT
      case 0x58: stack.push(text(u32())); break; // BINUNICODE
      case 0x8c: stack.push(text(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(text(u64())); break; // BINUNICODE8
      case 0x54: stack.push(new TextDecoder('latin1').decode(bytes(i32()))); break; // BINSTRING
      case 0x55: stack.push(new TextDecoder('latin1').decode(bytes(u8()))); break; // SHORT_BINSTRING
      case 0x42: stack.push(bytes(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(bytes(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: stack.push(bytes(u64()).slice()); break; // BINBYTES8
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x70: memo.set(Number(line()), top()); break; // PUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: case 0x67: { // BINGET, LONG_BINGET, GET
        const k = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line());
        if (!memo.has(k)) throw new PickleError(`memo entry ${k} read before it was written (byte ${at})`);
        stack.push(memo.get(k));
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x63: { const m = line(); stack.push(global(m, line())); break; } // GLOBAL
      case 0x93: { const n = pop(), m = pop(); stack.push(global(String(m), String(n))); break; } // STACK_GLOBAL
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        if (!(fn instanceof PickleGlobal)) throw new PickleError(`REDUCE of something that is not an accepted global (byte ${at})`);
        if (!Array.isArray(args)) throw new PickleError(`REDUCE of ${fn.qualified} without an argument tuple (byte ${at})`);
        stack.push(hooks.call(fn, args));
        break;
      }
      case 0x62: { // BUILD: only a dict's state into a dict (an OrderedDict with items)
        const state = pop(), obj = top();
        if (!(obj instanceof Map) || !(state instanceof Map || state === null))
          throw new PickleError(`BUILD of an object (byte ${at}): objects are not rebuilt from a file`);
        if (state) for (const [k, v] of state) obj.set(k, v);
        break;
      }
      case 0x51: stack.push(hooks.persistentLoad(pop())); break; // BINPERSID
      case 0x50: stack.push(hooks.persistentLoad(line())); break; // PERSID
      default:
        throw new PickleError(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at} (objects, sets and extensions are not read)`);
    }
  }
}

// ------------------------------------------------------------------------------------------------------------------

/** A call `fn(*args)` in the written pickle (REDUCE). */
export class PickleReduce {
  constructor(readonly fn: PickleGlobal, readonly args: PickleValue[]) {}
}
/** A persistent id (BINPERSID): PyTorch's reference to a storage record. */
export class PicklePersistent {
  constructor(readonly pid: PickleValue) {}
}
/** A tuple (arrays are written as lists). */
export class PickleTuple {
  constructor(readonly items: PickleValue[]) {}
}
export type PickleValue = null | boolean | number | bigint | string | PickleValue[] | Map<string | number, PickleValue>
  | PickleGlobal | PickleReduce | PicklePersistent | PickleTuple;

/** Writes a value as a protocol-2 pickle. Numbers that are integers are written as ints, others as floats. */
export function pickle(value: PickleValue): Uint8Array {
  const out: number[] = [0x80, 2];
  const u32 = (n: number) => out.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  const str = (s: string) => { const b = new TextEncoder().encode(s); out.push(0x58); u32(b.length); for (const x of b) out.push(x); };
  const bigint = (v: bigint) => {
    const b: number[] = [];
    let x = v;
    while (true) { // two's complement, little-endian, as short as it can be
      b.push(Number(x & 0xffn));
      x >>= 8n;
      if ((x === 0n && !(b[b.length - 1]! & 0x80)) || (x === -1n && b[b.length - 1]! & 0x80)) break;
    }
    out.push(0x8a, b.length, ...b);
  };
  const put = (v: PickleValue): void => {
    if (v === null) out.push(0x4e);
    else if (v === true) out.push(0x88);
    else if (v === false) out.push(0x89);
    else if (typeof v === 'bigint') bigint(v);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && v >= 0 && v < 256) out.push(0x4b, v);
      else if (Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff) { out.push(0x4a); u32(v); }
      else if (Number.isSafeInteger(v)) bigint(BigInt(v));
      else { const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, v, false); out.push(0x47, ...b); }
    } else if (typeof v === 'string') str(v);
    else if (Array.isArray(v)) { out.push(0x5d); if (v.length) { out.push(0x28); v.forEach(put); out.push(0x65); } }
    else if (v instanceof Map) { out.push(0x7d); if (v.size) { out.push(0x28); for (const [k, x] of v) { put(k); put(x); } out.push(0x75); } }
    else if (v instanceof PickleTuple) { out.push(0x28); v.items.forEach(put); out.push(0x74); }
    else if (v instanceof PickleGlobal) { out.push(0x63); for (const b of new TextEncoder().encode(`${v.module}\n${v.name}\n`)) out.push(b); }
    else if (v instanceof PickleReduce) { put(v.fn); put(new PickleTuple(v.args)); out.push(0x52); }
    else if (v instanceof PicklePersistent) { put(v.pid); out.push(0x51); }
    else throw new PickleError(`cannot pickle ${String(v)}`);
  };
  put(value);
  out.push(0x2e);
  return Uint8Array.from(out);
}
