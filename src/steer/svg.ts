// A small self-contained SVG heatmap: labelled rows and columns, one <rect class="cell"> per value with its value
// printed in it and a <title> tooltip, and a diverging colour scale (blue < 0 < red, white at 0, symmetric
// around 0) with a legend. Plain SVG 1.1: opens in any browser, no scripts, no external fonts.

export interface HeatmapSpec {
  title: string;
  rowLabels: readonly string[];
  columnLabels: readonly string[];
  /** [row][column]; non-finite values are drawn grey. */
  values: number[][];
  rowAxis?: string;
  columnAxis?: string;
  legend?: string;
  footer?: string;
  cellLabel?: (row: number, column: number) => string;
  cellTitle?: (row: number, column: number) => string;
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!)
    // characters XML 1.0 does not allow
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '');
}

const lerp = (a: number, b: number, t: number) => Math.round(a + (b - a) * t);
const hex = (r: number, g: number, b: number) => `#${[r, g, b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;

/** Diverging colour of t in [-1, 1]: blue (#2166ac) - white - red (#b2182b). */
export function divergingColour(t: number): string {
  if (!Number.isFinite(t)) return '#cccccc';
  const u = Math.max(-1, Math.min(1, t));
  return u >= 0 ? hex(lerp(255, 178, u), lerp(255, 24, u), lerp(255, 43, u)) : hex(lerp(255, 33, -u), lerp(255, 102, -u), lerp(255, 172, -u));
}

export function heatmapSvg(spec: HeatmapSpec): string {
  const { rowLabels: rows, columnLabels: cols, values } = spec;
  const cell = 56, cellH = 30;
  const charW = 7.2;
  const rowLabelW = Math.max(40, ...rows.map((r) => r.length * charW)) + 16;
  const colLabelH = Math.max(30, ...cols.map((c) => c.length * charW * 0.75)) + 12;
  const left = 30 + rowLabelW, top = 50 + colLabelH;
  const gridW = cols.length * cell, gridH = rows.length * cellH;
  const legendW = 18, legendX = left + gridW + 40;
  const width = Math.max(legendX + legendW + 120, 30 + spec.title.length * 7.5, left + gridW + Math.max(0, ...cols.map((c) => c.length * charW * 0.72)) + 20);
  const footerLines = spec.footer ? wrap(spec.footer, Math.max(40, Math.floor((width - 40) / 6.5))) : [];
  const height = top + gridH + 50 + footerLines.length * 16;
  let maxAbs = 0;
  for (const r of values) for (const v of r) if (Number.isFinite(v)) maxAbs = Math.max(maxAbs, Math.abs(v));
  const scale = maxAbs > 0 ? maxAbs : 1;
  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width.toFixed(0)}" height="${height.toFixed(0)}" viewBox="0 0 ${width.toFixed(0)} ${height.toFixed(0)}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="20" y="24" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`);
  if (spec.columnAxis) out.push(`<text x="${left + gridW / 2}" y="44" text-anchor="middle" fill="#444">${escapeXml(spec.columnAxis)}</text>`);
  if (spec.rowAxis) out.push(`<text transform="translate(16 ${top + gridH / 2}) rotate(-90)" text-anchor="middle" fill="#444">${escapeXml(spec.rowAxis)}</text>`);
  cols.forEach((c, j) => {
    const x = left + j * cell + cell / 2, y = top - 8;
    out.push(`<text class="column-label" transform="translate(${x} ${y}) rotate(-45)" text-anchor="start">${escapeXml(c)}</text>`);
  });
  rows.forEach((r, i) => {
    out.push(`<text class="row-label" x="${left - 8}" y="${top + i * cellH + cellH / 2 + 4}" text-anchor="end">${escapeXml(r)}</text>`);
  });
  out.push('<g class="cells">');
  rows.forEach((_, i) => cols.forEach((_, j) => {
    const v = values[i]?.[j] ?? NaN;
    const fill = divergingColour(v / scale);
    const x = left + j * cell, y = top + i * cellH;
    const strong = Number.isFinite(v) && Math.abs(v / scale) > 0.6;
    const label = spec.cellLabel ? spec.cellLabel(i, j) : Number.isFinite(v) ? v.toFixed(3) : 'n/a';
    const tip = spec.cellTitle ? spec.cellTitle(i, j) : `${rows[i]} / ${cols[j]}: ${label}`;
    out.push(`<g><title>${escapeXml(tip)}</title><rect class="cell" data-row="${escapeXml(rows[i]!)}" data-column="${escapeXml(cols[j]!)}" x="${x}" y="${y}" width="${cell}" height="${cellH}" fill="${fill}" stroke="#ffffff"/>` +
      `<text x="${x + cell / 2}" y="${y + cellH / 2 + 4}" text-anchor="middle" font-size="10" fill="${strong ? '#ffffff' : '#222222'}">${escapeXml(label)}</text></g>`);
  }));
  out.push('</g>');
  // diagonal outline where row and column labels agree
  rows.forEach((r, i) => {
    const j = cols.indexOf(r);
    if (j >= 0) out.push(`<rect class="diagonal" x="${left + j * cell + 1}" y="${top + i * cellH + 1}" width="${cell - 2}" height="${cellH - 2}" fill="none" stroke="#000000" stroke-width="1.5"/>`);
  });
  // legend: a vertical gradient from +max (top) to −max (bottom)
  out.push('<defs><linearGradient id="scale" x1="0" y1="0" x2="0" y2="1">');
  for (let k = 0; k <= 10; k++) out.push(`<stop offset="${k / 10}" stop-color="${divergingColour(1 - (2 * k) / 10)}"/>`);
  out.push('</linearGradient></defs>');
  const legendH = Math.max(gridH, 90);
  out.push(`<rect x="${legendX}" y="${top}" width="${legendW}" height="${legendH}" fill="url(#scale)" stroke="#888"/>`);
  const tick = (frac: number, v: number) =>
    out.push(`<text x="${legendX + legendW + 4}" y="${top + frac * legendH + 4}" font-size="10">${v >= 0 ? '+' : ''}${v.toPrecision(3)}</text>`);
  tick(0, scale); tick(0.5, 0); tick(1, -scale);
  if (spec.legend) out.push(`<text x="${legendX}" y="${top - 8}" font-size="10">${escapeXml(spec.legend)}</text>`);
  footerLines.forEach((line, k) => out.push(`<text x="20" y="${top + gridH + 34 + k * 16}" font-size="11" fill="#444">${escapeXml(line)}</text>`));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const word of text.split(' ')) {
    if (cur && cur.length + 1 + word.length > width) { lines.push(cur); cur = word; } else cur = cur ? `${cur} ${word}` : word;
  }
  if (cur) lines.push(cur);
  return lines;
}
