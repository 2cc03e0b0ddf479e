// Charts as inline SVG: bars (stacked or grouped), lines (with gaps for null), horizontal bars.
// Each chart is sized by a viewBox and scales to its container's width; every mark has a
// <title> for a native tooltip.

import { h, s, fmt } from '/ui/ui.js';

export const COLORS = {
  blue: '#3b6fd8', green: '#2f9e44', red: '#d9480f', crimson: '#c92a2a', amber: '#f08c00', teal: '#0c8599',
  violet: '#7048e8', gray: '#868e96', slate: '#495057', pink: '#c2255c', lime: '#66a80f', cyan: '#1098ad',
};
export const PALETTE = [COLORS.blue, COLORS.teal, COLORS.violet, COLORS.amber, COLORS.pink, COLORS.lime, COLORS.cyan, COLORS.slate, COLORS.red];

// The axis maximum: four gridline steps of a round size (1, 2, 2.5, 5 × 10^k).
function niceMax(v) {
  if (!(v > 0)) return 1;
  const raw = v / 4;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return 4 * m * p;
  return 40 * p;
}

function frame({ width, height, left, bottom, top, max, yFormat, labels, xEvery, test }) {
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'data-test': test, preserveAspectRatio: 'xMidYMid meet' });
  const plotH = height - top - bottom;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = top + plotH - (plotH * i) / 4;
    svg.appendChild(s('line', { x1: left, x2: width - 8, y1: y, y2: y, class: i ? 'grid' : 'axis' }));
    svg.appendChild(s('text', { x: left - 6, y: y + 3.5, class: 'tick', 'text-anchor': 'end' }, yFormat(v)));
  }
  const n = labels.length;
  const plotW = width - left - 8;
  const every = xEvery || Math.max(1, Math.ceil(n / 8));
  labels.forEach((l, i) => {
    if (i % every !== 0 && i !== n - 1) return;
    if (i === n - 1 && i % every !== 0 && (n - 1) % every < every / 2) return;
    const x = left + (plotW * (i + 0.5)) / n;
    svg.appendChild(s('text', { x, y: height - bottom + 14, class: 'tick', 'text-anchor': 'middle' }, l));
  });
  return { svg, plotH, plotW };
}

// Bars over time: series [{name, color, values}], stacked or side by side.
export function barChart({ labels, series, stacked = true, width = 640, height = 190, yFormat = fmt.num, titles, test }) {
  const left = 46, bottom = 22, top = 10;
  const n = labels.length;
  const totals = labels.map((_, i) => (stacked ? series.reduce((a, se) => a + (se.values[i] || 0), 0) : Math.max(0, ...series.map((se) => se.values[i] || 0))));
  const max = niceMax(Math.max(0, ...totals));
  const { svg, plotH, plotW } = frame({ width, height, left, bottom, top, max, yFormat, labels, test });
  const slot = plotW / Math.max(1, n);
  const bw = Math.max(1, Math.min(36, slot * 0.72));
  labels.forEach((label, i) => {
    let y0 = top + plotH;
    series.forEach((se, k) => {
      const v = se.values[i] || 0;
      if (!v) return;
      const bh = (plotH * v) / max;
      const w = stacked ? bw : bw / series.length;
      const x = left + slot * i + (slot - bw) / 2 + (stacked ? 0 : w * k);
      const y = stacked ? y0 - bh : top + plotH - bh;
      svg.appendChild(s('rect', { x, y, width: Math.max(1, w - (stacked ? 0 : 1)), height: Math.max(0.5, bh), fill: se.color, rx: 1.5, class: 'bar' },
        s('title', null, `${titles ? titles[i] : label} · ${se.name}: ${yFormat(v)}`)));
      if (stacked) y0 -= bh;
    });
  });
  return svg;
}

// Lines over time: values may be null (a gap).
export function lineChart({ labels, series, width = 640, height = 190, yFormat = fmt.num, max: fixedMax, titles, area = false, test }) {
  const left = 46, bottom = 22, top = 10;
  const n = labels.length;
  const all = series.flatMap((se) => se.values.filter((v) => v !== null && v !== undefined));
  const max = fixedMax || niceMax(Math.max(0, ...all));
  const { svg, plotH, plotW } = frame({ width, height, left, bottom, top, max, yFormat, labels, test });
  const X = (i) => left + (plotW * (i + 0.5)) / Math.max(1, n);
  const Y = (v) => top + plotH - (plotH * Math.min(v, max)) / max;
  series.forEach((se) => {
    let d = '', pen = false, runStart = null;
    const runs = [];
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) { if (pen) runs.push([runStart, i - 1]); pen = false; return; }
      d += `${pen ? 'L' : 'M'}${X(i).toFixed(1)},${Y(v).toFixed(1)}`;
      if (!pen) runStart = i;
      pen = true;
    });
    if (pen) runs.push([runStart, se.values.length - 1]);
    if (area) {
      for (const [a, b] of runs) {
        let p = `M${X(a).toFixed(1)},${Y(0)}`;
        for (let i = a; i <= b; i++) p += `L${X(i).toFixed(1)},${Y(se.values[i]).toFixed(1)}`;
        p += `L${X(b).toFixed(1)},${Y(0)}Z`;
        svg.appendChild(s('path', { d: p, fill: se.color, opacity: 0.12 }));
      }
    }
    if (d) svg.appendChild(s('path', { d, fill: 'none', stroke: se.color, 'stroke-width': 2, 'stroke-linejoin': 'round', class: 'line' }));
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      svg.appendChild(s('circle', { cx: X(i), cy: Y(v), r: n > 40 ? 1.8 : 3, fill: '#fff', stroke: se.color, 'stroke-width': 1.6, class: 'dot' },
        s('title', null, `${titles ? titles[i] : labels[i]} · ${se.name}: ${yFormat(v)}`)));
    });
  });
  return svg;
}

// Horizontal bars: [{label, value, color?, title?}].
export function hbarChart(items, { valueFormat = fmt.num, width = 360, rowH = 22, labelW = 140, test } = {}) {
  const height = Math.max(rowH, items.length * rowH) + 4;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart hbar', role: 'img', 'data-test': test, style: `max-width:${Math.round(width * 1.25)}px` });
  const max = Math.max(0, ...items.map((i) => i.value || 0)) || 1;
  const barMax = width - labelW - 60;
  items.forEach((it, k) => {
    const y = k * rowH + 2;
    const w = Math.max(it.value ? 2 : 0, (barMax * (it.value || 0)) / max);
    svg.appendChild(s('text', { x: labelW - 8, y: y + rowH / 2 + 4, class: 'tick label', 'text-anchor': 'end' }, clip(it.label, 24)));
    svg.appendChild(s('rect', { x: labelW, y: y + 4, width: w, height: rowH - 8, rx: 2, fill: it.color || PALETTE[k % PALETTE.length] },
      s('title', null, it.title || `${it.label}: ${valueFormat(it.value)}`)));
    svg.appendChild(s('text', { x: labelW + w + 6, y: y + rowH / 2 + 4, class: 'tick value' }, valueFormat(it.value)));
  });
  return svg;
}

function clip(t, n) { t = String(t ?? ''); return t.length > n ? `${t.slice(0, n - 1)}…` : t; }

export function legend(series) {
  return h('div', { class: 'legend' }, series.map((se) => h('span', { class: 'legend-item' }, h('i', { style: `background:${se.color}` }), se.name)));
}

// A small ring showing a fraction (success rate, recovery rate).
export function ring(fraction, { size = 44, color = COLORS.green, test } = {}) {
  const r = size / 2 - 4, c = 2 * Math.PI * r;
  const f = fraction === null || fraction === undefined ? 0 : Math.max(0, Math.min(1, fraction));
  return s('svg', { viewBox: `0 0 ${size} ${size}`, width: size, height: size, class: 'ring', 'data-test': test },
    s('circle', { cx: size / 2, cy: size / 2, r, fill: 'none', stroke: '#e9ecef', 'stroke-width': 5 }),
    s('circle', { cx: size / 2, cy: size / 2, r, fill: 'none', stroke: fraction === null || fraction === undefined ? '#e9ecef' : color, 'stroke-width': 5,
      'stroke-dasharray': `${(c * f).toFixed(2)} ${c.toFixed(2)}`, transform: `rotate(-90 ${size / 2} ${size / 2})`, 'stroke-linecap': 'round' }));
}

// Time buckets of a metrics answer grouped by hour or day: every bucket of the window, with
// the group's figures or null (the API answers only the buckets that have data).
export function timeBuckets(answer, unit) {
  const since = answer.since_ms ?? Date.parse(answer.since);
  const until = answer.until_ms ?? Date.parse(answer.until);
  const byKey = new Map((answer.groups || []).map((g) => [g.key[unit], g.figures]));
  const out = [];
  const step = unit === 'hour' ? 3600e3 : 86400e3;
  let t = Math.floor(since / step) * step;
  for (let guard = 0; t < until && guard < 1000; t += step, guard++) {
    const d = new Date(t);
    const iso = d.toISOString();
    const key = unit === 'hour' ? `${iso.slice(0, 13)}:00Z` : iso.slice(0, 10);
    const alt = unit === 'hour' ? `${iso.slice(0, 13)}:00:00Z` : key;
    const label = unit === 'hour' ? `${String(d.getHours()).padStart(2, '0')}:00` : `${d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' })} ${d.getUTCDate()}`;
    const title = unit === 'hour' ? `${key.slice(0, 10)} ${String(d.getUTCHours()).padStart(2, '0')}:00 UTC` : `${key} (UTC)`;
    out.push({ key, label, title, figures: byKey.get(key) || byKey.get(alt) || null });
  }
  // groups whose key format we did not predict still show up (appended in order)
  const known = new Set(out.map((b) => b.key));
  for (const g of answer.groups || []) {
    const k = g.key[unit];
    if (!known.has(k) && !out.some((b) => b.figures === g.figures)) out.push({ key: k, label: k, title: k, figures: g.figures });
  }
  return out;
}
