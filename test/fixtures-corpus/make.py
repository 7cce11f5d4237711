"""Writes compressed Parquet corpus files with real pyarrow, the writer of most Hugging Face datasets
(pip install pyarrow; run from the repository root):
    python3 test/fixtures-corpus/make.py
texts.txt      the documents, one a line (UTF-8, some non-ASCII): what every file below holds in its "text" column.
gzip.parquet   columns id (int64) and text (string), GZIP, row groups of 16 rows, data pages v1, dictionary encoded.
zstd.parquet   the same, ZSTD, data pages v2 (the page layout newer writers use).
hyparquet decodes neither codec itself: test/corpus-defects-qa.test.ts reads them through hyparquet-compressors.
"""
import os
import pyarrow as pa
import pyarrow.parquet as pq

here = os.path.dirname(os.path.abspath(__file__))
words = ['human', 'rights', 'Menschenrechte', 'haki', 'za', 'binadamu', 'ħielsa', 'droits', 'de', "l'homme", 'права', 'человека']
texts = [' '.join(words[(i * 7 + k) % len(words)] for k in range(3 + i % 5)) + f' {i}.' for i in range(40)]
table = pa.table({'id': pa.array(range(len(texts)), pa.int64()), 'text': pa.array(texts, pa.string())})
with open(os.path.join(here, 'texts.txt'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(texts) + '\n')
pq.write_table(table, os.path.join(here, 'gzip.parquet'), compression='gzip', row_group_size=16)
pq.write_table(table, os.path.join(here, 'zstd.parquet'), compression='zstd', row_group_size=16, data_page_version='2.0')
for name in ('gzip.parquet', 'zstd.parquet'):
    md = pq.ParquetFile(os.path.join(here, name)).metadata
    print(name, md.num_row_groups, 'row groups', {md.row_group(0).column(c).compression for c in range(md.num_columns)})
