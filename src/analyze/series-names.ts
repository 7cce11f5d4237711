// Names of the series of one figure made distinct: a second 'model' becomes 'model-2', so that legends, CSV rows and
// JSON keys tell them apart (two --compare-model folders named model, one run folder given twice).

/** The items with their `name` made distinct, in order (the first of a name keeps it). */
export function distinctNames<T extends { name: string }>(items: readonly T[]): T[] {
  const seen = new Map<string, number>();
  return items.map((v) => {
    const n = (seen.get(v.name) ?? 0) + 1;
    seen.set(v.name, n);
    return n === 1 ? v : { ...v, name: `${v.name}-${n}` };
  });
}
