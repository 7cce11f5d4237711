// Parquet compression codecs, shared by every reader of Parquet files (corpora, eval data, steer fact files).
// hyparquet decodes only uncompressed and Snappy pages itself; hyparquet-compressors (same authors, pure JavaScript
// with a small embedded WebAssembly Snappy) adds GZIP, BROTLI, ZSTD, LZ4 and LZ4_RAW. Hugging Face datasets are
// often written with ZSTD or GZIP, so without it such a file failed at its first data page, in the middle of a run.
// LZO has no decoder in either package: a file using it (or a codec number this reader does not know) is refused
// when it is opened, from the footer alone, before any work.
import type { Compressors, FileMetaData } from 'hyparquet';

/** What hyparquet decodes itself (a pure-JavaScript Snappy). */
const BUILT_IN = ['UNCOMPRESSED', 'SNAPPY'];

/** The codecs a page may be compressed with and still be read (hyparquet's own, and hyparquet-compressors'). */
export const READABLE_CODECS: readonly string[] = [...BUILT_IN, 'GZIP', 'BROTLI', 'ZSTD', 'LZ4', 'LZ4_RAW'];

let loaded: Promise<Compressors> | null = null;

/**
 * The decoders to pass as `compressors` to a hyparquet read of a file with this footer: none for the codecs hyparquet
 * decodes itself, else hyparquet-compressors', loaded on first use. (Importing it instantiates a WebAssembly module,
 * which every command would pay at start-up, and which fails outright under a tight memory limit.) hyparquet's own
 * Snappy keeps decoding Snappy pages either way.
 */
export async function parquetCompressors(metadata: FileMetaData): Promise<Compressors | undefined> {
  const codecs = metadata.row_groups.flatMap((g) => g.columns.map((c) => c.meta_data?.codec as string | undefined));
  if (codecs.every((c) => c === undefined || BUILT_IN.includes(c))) return undefined;
  loaded ??= import('hyparquet-compressors').then(({ compressors }) => {
    const { SNAPPY: _builtIn, ...others } = compressors as Compressors & { SNAPPY?: unknown };
    return others as Compressors;
  });
  return loaded;
}

/**
 * Why the file cannot be decoded, from its footer: the first column chunk (of the top-level `columns` read; all by
 * default) compressed with a codec we have no decoder for. Null when every chunk read is decodable.
 */
export function unreadableCodec(metadata: FileMetaData, columns?: readonly string[]): string | null {
  for (const [g, group] of metadata.row_groups.entries()) {
    for (const chunk of group.columns) {
      const meta = chunk.meta_data;
      if (!meta) continue; // no metadata: nothing hyparquet would decode from it either
      const column = meta.path_in_schema.join('.');
      if (columns && !columns.includes(meta.path_in_schema[0]!)) continue;
      // hyparquet maps the footer's codec number through its table: a number beyond it comes back undefined.
      const codec = meta.codec as string | undefined;
      if (codec !== undefined && READABLE_CODECS.includes(codec)) continue;
      return `column "${column}" (row group ${g}) is compressed with ${codec ?? 'a codec unknown to this reader'}, which langneurons cannot decode ` +
        `(readable: ${READABLE_CODECS.join(', ')}); write the file again with another compression (e.g. pyarrow's compression="zstd")`;
    }
  }
  return null;
}
