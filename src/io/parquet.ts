// Parquet compression codecs, shared by every reader of Parquet files (corpora, eval data, steer fact files).
// hyparquet decodes only uncompressed and Snappy pages itself; hyparquet-compressors (same authors, pure JavaScript
// with a small embedded WebAssembly Snappy) adds GZIP, BROTLI, ZSTD, LZ4 and LZ4_RAW. Hugging Face datasets are
// often written with ZSTD or GZIP, so without it such a file failed at its first data page, in the middle of a run.
// LZO has no decoder in either package: a file using it (or a codec number this reader does not know) is refused
// when it is opened, from the footer alone, before any work.
import type { Compressors, FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

/** Pass as `compressors` to every hyparquet read. */
export const PARQUET_COMPRESSORS: Compressors = compressors;

/** The codecs a page may be compressed with and still be read. */
export const READABLE_CODECS: readonly string[] = ['UNCOMPRESSED', ...new Set(['SNAPPY', ...Object.keys(compressors)])];

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
