// Small self-contained SVG charts for the report: a line chart, a bar chart (grouped or stacked) and a heatmap
// (the diverging heatmap of src/steer/svg.ts). Plain SVG 1.1 without scripts or external fonts, meant to be
// inlined in an HTML page: no XML declaration, no ids (several charts share one page). Every drawn datum is one
// element with a class (`point`, `bar`, `cell`) and a <title> tooltip, so tests can count them.
import { escapeXml, heatmapSvg, type HeatmapSpec } from '../steer/svg.js';

/** Colours of series / groups (Tableau 10), then repeated. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
export const colourOf = (i: number): string => PALETTE[i % PALETTE.length]!;

export interface LineSeries {
  name: string;
  /** [x, y] pairs; non-finite y values are skipped. */
  points: [number, number][];
  dashed?: boolean;
  /** Colour of the line (default: the palette by the series' index), e.g. one colour per language across variants. */
  colour?: string;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  width?: number;
  height?: number;
}

export interface BarGroup {
  name: string;
  /** One value per category. */
  values: number[];
}

export interface BarChartSpec {
  title: string;
  categories: string[];
  groups: BarGroup[];
  /** Stack the groups of a category (default: side by side). */
  stacked?: boolean;
  /** Title of the category axis (e.g. 'layer'); none by default. */
  xLabel?: string;
  yLabel: string;
  /** Upper end of the y axis (default: from the data). */
  yMax?: number;
  /** Format of a value in tooltips and labels. */
  format?: (v: number) => string;
  /** Print each bar's value above it (grouped bars only). */
  valueLabels?: boolean;
  width?: number;
  height?: number;
}

const MARGIN = { left: 64, right: 20, top: 40, bottom: 56 };
const fmt = (v: number): string => (Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function frame(width: number, height: number, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="22" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
  ];
}

/** Tick labels with as many decimals as the ticks' spacing needs (0.9990, 0.9995, 1.0000 rather than 1.0, 1.0, 1). */
export function tickLabels(ticks: number[]): string[] {
  if (ticks.length < 2) return ticks.map(fmt);
  const step = Math.abs(ticks[1]! - ticks[0]!);
  if (step >= 1 || !(step > 0)) return ticks.map(fmt);
  let decimals = 0;  // the fewest that write every tick exactly
  while (decimals < 12 && ticks.some((t) => Math.abs(Number(t.toFixed(decimals)) - t) > step * 1e-6)) decimals++;
  return ticks.map((t) => t.toFixed(decimals));
}

/** Y axis with grid lines; returns the value → pixel map. */
function yAxis(out: string[], lo: number, hi: number, plot: { x: number; y: number; w: number; h: number }, label: string): (v: number) => number {
  const ticks = niceTicks(lo, hi);
  const top = Math.max(hi, ticks[ticks.length - 1]!), bottom = Math.min(lo, ticks[0]!);
  const y = (v: number) => plot.y + plot.h - ((v - bottom) / (top - bottom || 1)) * plot.h;
  const labels = tickLabels(ticks);
  ticks.forEach((t, i) => {
    out.push(`<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${plot.x - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" font-size="10">${escapeXml(labels[i]!)}</text>`);
  });
  out.push(`<line x1="${plot.x}" x2="${plot.x}" y1="${plot.y}" y2="${plot.y + plot.h}" stroke="#444"/>`);
  out.push(`<text transform="translate(16 ${plot.y + plot.h / 2}) rotate(-90)" text-anchor="middle" fill="#444">${escapeXml(label)}</text>`);
  return y;
}

function legend(out: string[], names: string[], x: number, y: number, dashed: boolean[] = [], colours: (string | undefined)[] = []): void {
  let cx = x;
  names.forEach((name, i) => {
    const c = colours[i] ?? colourOf(i);
    out.push(`<g class="legend-item"><line x1="${cx}" x2="${cx + 18}" y1="${y}" y2="${y}" stroke="${c}" stroke-width="3"${dashed[i] ? ' stroke-dasharray="4 3"' : ''}/>` +
      `<text x="${cx + 22}" y="${y + 4}" font-size="11">${escapeXml(name)}</text></g>`);
    cx += 30 + name.length * 6.5;
  });
}

function range(values: number[], includeZero: boolean): [number, number] {
  const finite = values.filter(Number.isFinite);
  let lo = finite.length ? Math.min(...finite) : 0, hi = finite.length ? Math.max(...finite) : 1;
  if (includeZero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
  if (hi === lo) { hi = lo + 1; }
  const pad = includeZero ? 0 : (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

/** Lines through each series' points, one <circle class="point"> per point. */
export function lineChart(spec: LineChartSpec): string {
  const width = spec.width ?? Math.max(640, MARGIN.left + spec.title.length * 7.8), height = spec.height ?? 340;
  const plot = { x: MARGIN.left, y: MARGIN.top + 10, w: width - MARGIN.left - MARGIN.right, h: height - MARGIN.top - 10 - MARGIN.bottom };
  const pts = spec.series.flatMap((s) => s.points.filter(([, v]) => Number.isFinite(v)));
  const [xlo, xhi] = range(pts.map(([x]) => x), false);
  const [ylo, yhi] = range(pts.map(([, v]) => v), false);
  const out = frame(width, height, spec.title);
  const y = yAxis(out, ylo, yhi, plot, spec.yLabel);
  const x = (v: number) => plot.x + ((v - xlo) / (xhi - xlo || 1)) * plot.w;
  out.push(`<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${plot.y + plot.h}" y2="${plot.y + plot.h}" stroke="#444"/>`);
  for (const t of niceTicks(xlo, xhi, 6).filter((t) => t >= xlo && t <= xhi))
    out.push(`<text x="${x(t).toFixed(1)}" y="${plot.y + plot.h + 16}" text-anchor="middle" font-size="10">${escapeXml(fmt(t))}</text>`);
  out.push(`<text x="${plot.x + plot.w / 2}" y="${plot.y + plot.h + 34}" text-anchor="middle" fill="#444">${escapeXml(spec.xLabel)}</text>`);
  spec.series.forEach((s, i) => {
    const c = s.colour ?? colourOf(i);
    const ok = s.points.filter(([, v]) => Number.isFinite(v));
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    if (ok.length > 1)
      out.push(`<polyline fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''} points="${ok.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>`);
    for (const [a, b] of ok)
      out.push(`<circle class="point" cx="${x(a).toFixed(1)}" cy="${y(b).toFixed(1)}" r="${s.dashed ? 3.5 : 2.5}" fill="${s.dashed ? '#ffffff' : c}" stroke="${c}"><title>${escapeXml(`${s.name}: ${fmt(a)} → ${b.toPrecision(4)}`)}</title></circle>`);
    out.push('</g>');
  });
  legend(out, spec.series.map((s) => s.name), plot.x, height - 10, spec.series.map((s) => !!s.dashed), spec.series.map((s) => s.colour));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Bars per category: the groups side by side, or stacked; one <rect class="bar"> per (category, group). */
export function barChart(spec: BarChartSpec): string {
  const n = spec.categories.length, g = spec.groups.length;
  const width = spec.width ?? Math.max(420, MARGIN.left + spec.title.length * 7.8, MARGIN.left + MARGIN.right + n * Math.max(28, (spec.stacked ? 1 : g) * 18 + 10));
  const height = spec.height ?? 340;
  const longest = Math.max(0, ...spec.categories.map((c) => c.length));
  const bottom = MARGIN.bottom + Math.max(0, longest - 4) * 4;
  const plot = { x: MARGIN.left, y: MARGIN.top + 10, w: width - MARGIN.left - MARGIN.right, h: height - MARGIN.top - 10 - bottom };
  const value = (k: number, c: number) => spec.groups[k]!.values[c] ?? 0;
  const tops = spec.categories.map((_, c) => (spec.stacked ? spec.groups.reduce((s, _g, k) => s + Math.max(0, value(k, c)), 0) : Math.max(0, ...spec.groups.map((_g, k) => value(k, c)))));
  const yMax = spec.yMax ?? Math.max(1e-12, ...tops) * 1.08;
  const show = spec.format ?? fmt;
  const out = frame(width, height, spec.title);
  const y = yAxis(out, 0, yMax, plot, spec.yLabel);
  const slot = plot.w / Math.max(1, n);
  const barW = spec.stacked ? slot * 0.7 : (slot * 0.8) / Math.max(1, g);
  out.push(`<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${y(0)}" y2="${y(0)}" stroke="#444"/>`);
  spec.categories.forEach((cat, c) => {
    const x0 = plot.x + c * slot + (slot - (spec.stacked ? barW : barW * g)) / 2;
    let base = 0;
    spec.groups.forEach((grp, k) => {
      const v = value(k, c);
      const h = Math.max(0, v);
      const x = spec.stacked ? x0 : x0 + k * barW;
      const yTop = y(spec.stacked ? base + h : h), yBottom = y(spec.stacked ? base : 0);
      out.push(`<rect class="bar" data-category="${escapeXml(cat)}" data-group="${escapeXml(grp.name)}" x="${x.toFixed(1)}" y="${yTop.toFixed(1)}" width="${Math.max(1, barW - 1).toFixed(1)}" height="${Math.max(0, yBottom - yTop).toFixed(1)}" fill="${colourOf(k)}">` +
        `<title>${escapeXml(`${cat}, ${grp.name}: ${show(v)}`)}</title></rect>`);
      if (spec.valueLabels && !spec.stacked)
        out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(yTop - 3).toFixed(1)}" text-anchor="middle" font-size="9">${escapeXml(show(v))}</text>`);
      if (spec.stacked) base += h;
    });
    const lx = plot.x + c * slot + slot / 2, ly = plot.y + plot.h + 14;
    out.push(longest > 4
      ? `<text transform="translate(${lx.toFixed(1)} ${ly}) rotate(-40)" text-anchor="end" font-size="10">${escapeXml(cat)}</text>`
      : `<text x="${lx.toFixed(1)}" y="${ly}" text-anchor="middle" font-size="10">${escapeXml(cat)}</text>`);
  });
  if (spec.xLabel) out.push(`<text x="${plot.x + plot.w / 2}" y="${height - 12}" text-anchor="middle" fill="#444">${escapeXml(spec.xLabel)}</text>`);
  if (g > 1 || spec.groups[0]?.name) legend(out, spec.groups.map((x) => x.name), plot.x, MARGIN.top);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** The diverging heatmap of src/steer/svg.ts, without its XML declaration, for inlining. */
export function heatmapChart(spec: HeatmapSpec): string {
  return inlineSvg(heatmapSvg(spec));
}

/** An SVG document as an inline element: the XML declaration dropped. */
export function inlineSvg(svg: string): string {
  return svg.replace(/^<\?xml[^>]*\?>\s*/, '');
}
