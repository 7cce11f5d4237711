// Reads a statistics file's per-sequence means (`<site>.seq_means`, F32 [sequences, layers, width]) a range of units
// at a time, without ever holding the tensor: ap and raw-activated need, per unit, its value in every sequence, and at
// the papers' scale the means do not fit in memory (Kojima: 1.38 M units of an 8B model's linear layers × 10,000
// sentences = 55 GB). A range [start, start + size) of the flattened (layer, unit) axis is contiguous in each
// sequence's row: one positioned read per sequence, or one read for all when the range is whole rows.
//
// Reads are synchronous: the identification methods are synchronous functions (the library API takes statistics in
// memory and returns a mask), and the file is read in order by one caller that has nothing else to do meanwhile.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { describeError, LangneuronsError } from '../errors.js';
import { IO_PART_BYTES, MAX_HEADER_BYTES, parseHeaderBytes, type SafetensorsHeader } from '../io/safetensors.js';
import { refuseSequenceMean, type SeqMeansLocation } from './stats.js';

/** Bytes read at a time when a file is scanned for the non-finite value to name. */
const SCAN_BYTES = 16 << 20;

function fail(file: string, message: string): never {
  throw new LangneuronsError('E_STATS', `${file}: ${message}`, { file });
}

/**
 * One file's per-sequence means at one site, open for reading (close() when done). The file is opened once and its
 * header read again through that descriptor: a file replaced since its statistics were read (a profile or merge
 * writing it anew) is refused rather than read at the old offsets or mixed with the statistics read before (its
 * metadata differs even where its tensors lie as before), and one replaced later is not seen (the descriptor keeps
 * the file that was checked).
 */
export class SeqMeansReader {
  readonly file: string;
  readonly tensor: string;
  readonly sequences: number;
  /** layers × width: the values of one sequence. */
  readonly units: number;
  private readonly shape: [number, number, number];
  private readonly byteOffset: number;
  private readonly metadata: string | undefined;
  private fd: number | null;
  private buffer: Float32Array | null = null;

  constructor(location: SeqMeansLocation) {
    const { file, tensor, byteOffset, shape, metadata } = location;
    this.file = file; this.tensor = tensor; this.byteOffset = byteOffset; this.shape = [...shape]; this.metadata = metadata;
    this.sequences = shape[0]; this.units = shape[1] * shape[2];
    try {
      this.fd = openSync(location.path, 'r');  // (not `file`: a relative name is of the folder readStats was called in)
    } catch (e) {
      fail(file, `cannot open: ${describeError(e)}`);
    }
    try {
      this.checkHeader();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private checkHeader(): void {
    const size = this.stat();
    const changed: (why: string) => never = (why) => fail(this.file, `changed since its statistics were read (${why}): run again on the file as it is now`);
    if (size < 8) changed(`${size} bytes`);
    const prefix = new Uint8Array(8);
    this.readAt(prefix, 0);
    const length = Number(new DataView(prefix.buffer).getBigUint64(0, true));
    if (!(length <= MAX_HEADER_BYTES && length <= size - 8)) changed(`a header of ${length} bytes`);
    const bytes = new Uint8Array(length);
    this.readAt(bytes, 8);
    let header: SafetensorsHeader;
    try {
      header = parseHeaderBytes(this.file, size, bytes);
    } catch (e) {
      changed(describeError(e));
    }
    const info = header.tensors.find((t) => t.name === this.tensor);
    if (!info) changed(`no tensor "${this.tensor}"`);
    if (info.dtype !== 'F32' || info.shape.join(',') !== this.shape.join(',') || info.byteOffset !== this.byteOffset)
      changed(`tensor "${this.tensor}" is ${info.dtype} [${info.shape.join(', ')}] at byte ${info.byteOffset}, was F32 [${this.shape.join(', ')}] at byte ${this.byteOffset}`);
    // The same layout is not the same file: a profile of another model or corpus (or of the same one again) of as many
    // sequences puts its means where these lay. Its metadata (fingerprints, each profile run's part id) tells them apart.
    if (this.metadata !== undefined && JSON.stringify(header.metadata) !== this.metadata) changed('its metadata differs: the file was written again');
  }

  private stat(): number {
    try {
      return fstatSync(this.fd!).size;
    } catch (e) {
      fail(this.file, `cannot read the statistics file: ${describeError(e)}`);
    }
  }

  /** Fills `into` from byte `position` of the file. */
  private readAt(into: Uint8Array, position: number): void {
    if (this.fd === null) throw new Error(`${this.file}: read after close`);
    let done = 0;
    while (done < into.byteLength) {
      let n: number;
      try {
        n = readSync(this.fd, into, done, Math.min(into.byteLength - done, IO_PART_BYTES), position + done);
      } catch (e) {
        fail(this.file, `cannot read the statistics file: ${describeError(e)}`);
      }
      if (n === 0) fail(this.file, `unexpected end of file: wanted ${into.byteLength} bytes at offset ${position}, got ${done}`);
      done += n;
    }
  }

  /**
   * Units [start, start + size) of every sequence, as [sequences][size] (sequence s, unit start + u at s·size + u), in
   * a buffer this reader reuses: valid until its next read. `nonFinite` is the index in it of the first value that is
   * not finite, or −1 (refuseNonFinite names the one readStats would have named).
   */
  read(start: number, size: number): { values: Float32Array; nonFinite: number } {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(size) && start >= 0 && size >= 1 && start + size <= this.units))
      throw new Error(`${this.file}: units [${start}, ${start + size}) are not within [0, ${this.units})`);
    const n = this.sequences * size;
    if (!this.buffer || this.buffer.length < n) {
      this.buffer = null; // the old buffer is garbage before the new one is made
      this.buffer = new Float32Array(n);
    }
    const values = this.buffer.subarray(0, n);
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    if (size === this.units) this.readAt(bytes, this.byteOffset); // whole rows: one contiguous range
    else for (let s = 0; s < this.sequences; s++) this.readAt(bytes.subarray(s * size * 4, (s + 1) * size * 4), this.byteOffset + (s * this.units + start) * 4);
    let nonFinite = -1;
    for (let i = 0; i < n; i++) if (!Number.isFinite(values[i]!)) { nonFinite = i; break; }
    return { values, nonFinite };
  }

  /**
   * Throws readStats's refusal of the first value (in the file's order) that is not finite, if there is one: a block
   * finds some non-finite value, and the error names the same element as reading the whole file did.
   */
  refuseNonFinite(): void {
    const total = this.sequences * this.units;
    const step = Math.max(1, Math.floor(SCAN_BYTES / 4));
    const chunk = new Float32Array(Math.min(step, total));
    for (let at = 0; at < total; at += step) {
      const n = Math.min(step, total - at);
      const part = chunk.subarray(0, n);
      this.readAt(new Uint8Array(part.buffer, 0, n * 4), this.byteOffset + at * 4);
      for (let i = 0; i < n; i++) if (!Number.isFinite(part[i]!)) refuseSequenceMean(this.file, this.tensor, this.shape, at + i, part[i]!);
    }
  }

  /** Drops the read buffer (the reader stays open). */
  release(): void {
    this.buffer = null;
  }

  close(): void {
    this.buffer = null;
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    try { closeSync(fd); } catch { /* nothing was written: a failed close loses nothing */ }
  }
}
