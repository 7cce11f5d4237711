// The report's SVG charts on hand-made data: well-formed XML (fast-xml-parser), one element per datum, labels
// escaped, bars as tall as their values.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';

import { barChart, heatmapChart, inlineSvg, lineChart, niceTicks } from '../src/report/svg-charts.js';

type Node = Record<string, unknown>;
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', textNodeName: '#text' });

/** Parses an SVG (after checking it is well-formed) and returns its root <svg> element. */
function parseSvg(svg: string): Node {
  expect(XMLValidator.validate(svg)).toBe(true);
  const doc = parser.parse(svg) as Node;
  expect(doc['svg']).toBeDefined();
  return doc['svg'] as Node;
}

/** Every element named `tag` (with class `cls`, when given) anywhere below `node`. */
function elements(node: unknown, tag: string, cls?: string): Node[] {
  const out: Node[] = [];
  const walk = (n: unknown) => {
    if (Array.isArray(n)) { n.forEach(walk); return; }
    if (typeof n !== 'object' || n === null) return;
    for (const [k, v] of Object.entries(n as Node)) {
      if (k.startsWith('@_')) continue;
      if (k === tag) for (const e of Array.isArray(v) ? v : [v]) if (typeof e === 'object' && e !== null && (cls === undefined || (e as Node)['@_class'] === cls)) out.push(e as Node);
      walk(v);
    }
  };
  walk(node);
  return out;
}

describe('lineChart', () => {
  const svg = lineChart({
    title: 'Loss <by> method & step', xLabel: 'step', yLabel: 'loss',
    series: [
      { name: 'neurons', points: [[1, 5], [2, 4.5], [3, 4.2]] },
      { name: 'full', points: [[0, 5.1], [5, 4], [10, 3.5], [15, NaN], [20, 3.1]], dashed: true },
    ],
  });
  const root = parseSvg(svg);

  it('draws one point per finite value and one line per series', () => {
    expect(elements(root, 'circle', 'point')).toHaveLength(3 + 4);
    expect(elements(root, 'polyline')).toHaveLength(2);
    expect(elements(root, 'g', 'legend-item')).toHaveLength(2);
  });

  it('escapes the title and keeps points inside the drawing', () => {
    expect(svg).toContain('Loss &lt;by&gt; method &amp; step');
    const w = Number(root['@_width']), h = Number(root['@_height']);
    for (const c of elements(root, 'circle', 'point')) {
      expect(Number(c['@_cx'])).toBeGreaterThan(0);
      expect(Number(c['@_cx'])).toBeLessThan(w);
      expect(Number(c['@_cy'])).toBeGreaterThan(0);
      expect(Number(c['@_cy'])).toBeLessThan(h);
    }
  });

  it('draws a falling loss as a falling line (larger y on the page)', () => {
    const ys = elements(root, 'circle', 'point').slice(0, 3).map((c) => Number(c['@_cy']));
    expect(ys[0]).toBeLessThan(ys[1]!);
    expect(ys[1]).toBeLessThan(ys[2]!);
  });
});

describe('barChart', () => {
  const categories = ['en', 'ru', 'zh'];
  const groups = [{ name: 'layer 0', values: [1, 2, 3] }, { name: 'layer 1', values: [4, 0, 2] }];

  it('grouped: one bar per (category, group), heights proportional to the values', () => {
    const root = parseSvg(barChart({ title: 'grouped', categories, groups, yLabel: 'n', yMax: 10 }));
    const bars = elements(root, 'rect', 'bar');
    expect(bars).toHaveLength(6);
    const height = (cat: string, grp: string) => Number(bars.find((b) => b['@_data-category'] === cat && b['@_data-group'] === grp)!['@_height']);
    expect(height('en', 'layer 1') / height('en', 'layer 0')).toBeCloseTo(4, 1);
    expect(height('ru', 'layer 1')).toBe(0);
  });

  it('stacked: segments of a category add up, one above the other', () => {
    const root = parseSvg(barChart({ title: 'stacked', categories, groups, stacked: true, yLabel: 'n', yMax: 10 }));
    const bars = elements(root, 'rect', 'bar');
    expect(bars).toHaveLength(6);
    const en = bars.filter((b) => b['@_data-category'] === 'en');
    const [lower, upper] = en.map((b) => ({ y: Number(b['@_y']), h: Number(b['@_height']) }));
    expect(upper!.y + upper!.h).toBeCloseTo(lower!.y, 0); // the layer-1 segment sits on the layer-0 one
    expect(upper!.h / lower!.h).toBeCloseTo(4, 1);
  });

  it('value labels and tooltips use the given format', () => {
    const svg = barChart({ title: 'shares', categories: ['→ ru'], groups: [{ name: 'none', values: [12.5] }], yLabel: '%', valueLabels: true, format: (v) => `${v.toFixed(0)}%` });
    parseSvg(svg);
    expect(svg).toContain('→ ru, none: 13%');
  });

  it('an xLabel titles the category axis below its labels; none without it', () => {
    const withLabel = barChart({ title: 'per layer', categories: ['0', '1'], groups, stacked: true, xLabel: 'layer', yLabel: 'neurons', height: 300 });
    parseSvg(withLabel);
    const title = /<text x="[\d.]+" y="([\d.]+)"[^>]*>layer<\/text>/.exec(withLabel);
    expect(title).not.toBeNull();
    const categoryY = Math.max(...[...withLabel.matchAll(/<text x="[\d.]+" y="([\d.]+)" text-anchor="middle" font-size="10">[01]<\/text>/g)].map((m) => Number(m[1])));
    expect(Number(title![1])).toBeGreaterThan(categoryY);
    expect(Number(title![1])).toBeLessThan(300);
    expect(barChart({ title: 'per layer', categories: ['0', '1'], groups, yLabel: 'neurons' })).not.toMatch(/>layer<\/text>/);
  });
});

describe('heatmapChart', () => {
  it('one cell per value, no XML declaration, diagonal outlined', () => {
    const svg = heatmapChart({ title: 'ΔNLL', rowLabels: ['a', 'b', 'c'], columnLabels: ['a', 'b', 'c', 'd'], values: [[1, 0, 0, 0], [0, 2, -1, 0], [0, 0, 3, NaN]] });
    expect(svg.startsWith('<svg')).toBe(true);
    const root = parseSvg(svg);
    expect(elements(root, 'rect', 'cell')).toHaveLength(12);
    expect(elements(root, 'rect', 'diagonal')).toHaveLength(3);
    expect(inlineSvg('<?xml version="1.0"?>\n<svg/>')).toBe('<svg/>');
  });
});

describe('niceTicks', () => {
  it('gives round steps covering the range', () => {
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(3.1, 5.4)).toEqual([3.5, 4, 4.5, 5]);
    expect(niceTicks(1, 1)).toEqual([1]);
  });
});
