// Overview: the period's KPIs and charts over time, with live counters.
// API: metrics {since, by: ["hour"] | ["day"]} (totals + one group per bucket),
//      metrics {since, by: ["workflow"]}, executions.page {status: "running"|"paused", limit: 500}
//      (optional: counts of what runs and waits now), the event stream (live counters).

import { call, optional } from '/ui/api.js';
import { h, replace, fmt, panel, errorBox, loading, query, setQuery, badge, select, plural } from '/ui/ui.js';
import { barChart, lineChart, hbarChart, legend, timeBuckets, COLORS } from '/ui/charts.js';

const PERIODS = [
  ['today', 'Today'],
  ['7d', 'Last 7 days'],
  ['30d', 'Last 30 days'],
];

function windowOf(period) {
  if (period === 'today') {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return { since: d.getTime(), by: 'hour' };
  }
  const days = period === '30d' ? 30 : 7;
  const d = new Date(Date.now() - (days - 1) * 86400e3);
  return { since: d.toISOString().slice(0, 10), by: 'day' };
}

export async function render(root, ctx) {
  let period = query().get('period') || '7d';
  if (!PERIODS.some(([p]) => p === period)) period = '7d';
  const periodSel = select({ 'data-test': 'period', 'aria-label': 'Period' }, PERIODS, period);
  const updated = h('span', { class: 'muted small', 'data-test': 'updated' });
  root.append(h('div', { class: 'page-head' },
    h('h1', { 'data-test': 'page-title' }, 'Overview'),
    h('span', { class: 'sub' }, 'executions, reliability and spend'),
    h('div', { class: 'tools' }, updated, periodSel)));
  const kpis = h('div', { class: 'kpis', 'data-test': 'kpis' });
  const body = h('div');
  root.append(kpis, body);

  const live = { started: 0, failures: 0, completed: 0, failed: 0 };
  let last = null;
  let seq = 0;

  async function load() {
    const my = ++seq;
    const w = windowOf(period);
    if (!last) replace(body, loading());
    try {
      const [series, byWf, running, paused] = await Promise.all([
        call('metrics', { since: w.since, by: [w.by] }),
        call('metrics', { since: w.since, by: ['workflow'] }),
        optional('executions.page', { status: 'running', limit: 500 }).catch(() => null),
        optional('executions.page', { status: 'paused', limit: 500 }).catch(() => null),
      ]);
      if (my !== seq || !ctx.isCurrent()) return;
      last = { series, byWf, running, paused, by: w.by };
      live.started = live.failures = live.completed = live.failed = 0;
      draw();
      updated.textContent = `updated ${fmt.clock(Date.now())}`;
    } catch (e) {
      if (my === seq) replace(body, errorBox(e, 'metrics'));
    }
  }

  function tile(name, label, value, raw, opts = {}) {
    return h('div', { class: `kpi ${opts.tone || ''}`, 'data-test': `kpi-${name}`, 'data-value': raw ?? '' , title: opts.title || '' },
      h('div', { class: 'kpi-label' }, label),
      h('div', { class: 'kpi-value' }, value),
      opts.note ? h('div', { class: 'kpi-note' }, opts.note) : null,
      opts.ring || null);
  }

  function liveNote(n, what) {
    return n ? h('span', { class: 'up' }, `+${n} ${what} live`) : null;
  }

  function draw() { drawKpis(); drawCharts(); }

  function drawKpis() {
    const { series, running, paused } = last;
    const t = series.totals || {};
    const sr = t.success_rate;
    const count = (p) => (p ? `${p.executions.length}${p.next ? '+' : ''}` : '—');
    replace(kpis,
      tile('success-rate', 'Success rate', fmt.pct(sr), sr, {
        tone: sr === null || sr === undefined ? '' : sr >= 0.95 ? 'good' : sr >= 0.8 ? 'warn' : 'bad',
        note: `${fmt.num(t.completed)} completed · ${fmt.num(t.failed)} failed`,
        ring: sr === null || sr === undefined ? null : h('div', { class: 'kpi-meter' }, h('i', { style: `width:${(sr * 100).toFixed(1)}%;background:${sr >= 0.95 ? COLORS.green : sr >= 0.8 ? COLORS.amber : COLORS.crimson}` })),
      }),
      tile('executions', 'Executions', fmt.num((t.started || 0) + live.started), (t.started || 0) + live.started, { note: liveNote(live.started, 'started') || `${plural(t.retries, 'retry', 'retries')} · ${plural(t.rollbacks, 'rollback')}` }),
      tile('failures', 'Failures', fmt.num((t.failures || 0) + live.failures), (t.failures || 0) + live.failures, {
        tone: (t.failures || 0) + live.failures ? 'bad' : '', note: liveNote(live.failures, 'detected') || `${fmt.num(t.recovered)} recovered`,
      }),
      tile('mttr', 'MTTR', fmt.dur(t.mttr_ms), t.mttr_ms, { note: 'mean time to recover', title: 'mean time from a failure’s detection to its recovery' }),
      tile('p95-latency', 'p95 latency', fmt.dur(t.execution_p95_ms), t.execution_p95_ms, { note: `p50 ${fmt.dur(t.execution_p50_ms)} · step p95 ${fmt.dur(t.step_p95_ms)}` }),
      tile('llm-spend', 'LLM spend', fmt.usd(t.llm_cost_usd || 0), t.llm_cost_usd || 0, { note: `${fmt.num((t.tokens_in || 0) + (t.tokens_out || 0))} tokens · ${fmt.usd(t.cost_per_execution_usd)}/exec` }),
      tile('cost-saved', 'Cost saved', fmt.usd(t.cost_saved_usd || 0), t.cost_saved_usd || 0, { tone: t.cost_saved_usd ? 'good' : '', note: `${plural(t.replayed_steps, 'step')} replayed` }),
      tile('running', 'Running', count(running), running ? running.executions.length : '', { note: h('a', { href: '#/executions?status=running' }, 'show') }),
      tile('paused', 'Paused', count(paused), paused ? paused.executions.length : '', { tone: paused && paused.executions.length ? 'warn' : '', note: h('a', { href: '#/recovery' }, 'recovery') }),
    );
  }

  function drawCharts() {
    const { series, byWf } = last;
    const t = series.totals || {};

    const buckets = timeBuckets(series, last.by);
    const labels = buckets.map((b) => b.label);
    const titles = buckets.map((b) => b.title);
    const f = (k) => buckets.map((b) => (b.figures ? b.figures[k] ?? null : null));
    const z = (k) => buckets.map((b) => (b.figures ? b.figures[k] || 0 : 0));
    const unit = last.by === 'hour' ? 'per hour' : 'per day';

    const exSeries = [
      { name: 'completed', color: COLORS.green, values: z('completed') },
      { name: 'failed', color: COLORS.crimson, values: z('failed') },
      { name: 'cancelled', color: COLORS.gray, values: z('cancelled') },
      { name: 'paused', color: COLORS.amber, values: z('paused') },
    ];
    const startSeries = [{ name: 'started', color: COLORS.blue, values: z('started') }];
    const srSeries = [{ name: 'success rate', color: COLORS.green, values: f('success_rate') }];
    const latSeries = [
      { name: 'execution p95', color: COLORS.violet, values: f('execution_p95_ms') },
      { name: 'execution p50', color: COLORS.blue, values: f('execution_p50_ms') },
      { name: 'step p95', color: COLORS.teal, values: f('step_p95_ms') },
    ];
    const costSeries = [
      { name: 'LLM spend', color: COLORS.blue, values: z('llm_cost_usd') },
      { name: 'cost saved', color: COLORS.green, values: z('cost_saved_usd') },
    ];
    const types = Object.entries(t.failures_by_type || {}).sort((a, b) => b[1] - a[1]);
    const wfs = (byWf.groups || []).slice().sort((a, b) => (b.figures.started || 0) - (a.figures.started || 0));

    replace(body,
      h('div', { class: 'grid grid-2' },
        panel(`Run endings ${unit}`, [barChart({ labels, titles, series: exSeries, test: 'chart-executions' }), legend(exSeries)], { tools: h('span', { class: 'muted small' }, `${fmt.num(t.started)} started`) }),
        panel(`Executions started ${unit}`, [barChart({ labels, titles, series: startSeries, test: 'chart-started' }), legend(startSeries)]),
        panel('Success rate', [lineChart({ labels, titles, series: srSeries, max: 1, yFormat: (v) => fmt.pct(v, 0), area: true, test: 'chart-success' }), legend(srSeries)]),
        panel('Latency', [lineChart({ labels, titles, series: latSeries, yFormat: fmt.dur, test: 'chart-latency' }), legend(latSeries)]),
        panel('LLM spend and cost saved', [barChart({ labels, titles, series: costSeries, stacked: false, yFormat: fmt.usd, test: 'chart-cost' }), legend(costSeries)],
          { tools: h('span', { class: 'muted small' }, `${fmt.usd(t.llm_cost_usd || 0)} spent · ${fmt.usd(t.cost_saved_usd || 0)} saved`) }),
        panel('Failures by type', types.length
          ? hbarChart(types.map(([k, v]) => ({ label: k, value: v, color: COLORS.crimson, title: `${k}: ${v} (${fmt.pct((t.failure_rate_by_type || {})[k])} of executions)` })), { test: 'chart-failure-types' })
          : h('div', { class: 'chart-empty', 'data-test': 'chart-failure-types' }, 'No failures in this period.'),
          { tools: h('a', { href: '#/recovery', class: 'small' }, 'recovery →') })),
      panel('Workflows', workflowTable(wfs), { class: 'flush', tools: h('a', { href: '#/executions', class: 'small' }, 'all executions →') }));
  }

  function workflowTable(groups) {
    if (!groups.length) return h('div', { class: 'empty' }, 'No executions in this period.');
    return h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Workflow', 'Started', 'Completed', 'Failed', 'Success', 'p95', 'Failures', 'MTTR', 'LLM spend', 'Saved'].map((c, i) => h('th', { class: i ? 'num' : '' }, c)))),
      h('tbody', null, groups.map((g) => {
        const x = g.figures;
        const name = g.key.workflow;
        return h('tr', { class: 'clickable', 'data-test': 'workflow-row', 'data-workflow': name, onclick: () => { location.hash = `#/executions?workflow=${encodeURIComponent(name)}`; } },
          h('td', null, h('b', null, name)),
          h('td', { class: 'num' }, fmt.num(x.started)),
          h('td', { class: 'num' }, fmt.num(x.completed)),
          h('td', { class: 'num' }, x.failed ? badge(fmt.num(x.failed), 'bad') : '0'),
          h('td', { class: 'num' }, fmt.pct(x.success_rate)),
          h('td', { class: 'num' }, fmt.dur(x.execution_p95_ms)),
          h('td', { class: 'num' }, fmt.num(x.failures)),
          h('td', { class: 'num' }, fmt.dur(x.mttr_ms)),
          h('td', { class: 'num' }, fmt.usd(x.llm_cost_usd || 0)),
          h('td', { class: 'num' }, fmt.usd(x.cost_saved_usd || 0)));
      }))));
  }

  // at most one reload every 4 s while events arrive
  let pending = null;
  const refresh = () => { if (!pending) pending = setTimeout(() => { pending = null; load(); }, 4000); };
  refresh.cancel = () => clearTimeout(pending);
  const off = ctx.feed.on(({ type }) => {
    if (!last) return;
    let bump = null;
    if (type === 'execution.started') { live.started++; bump = 'executions'; }
    else if (type === 'failure.detected') { live.failures++; bump = 'failures'; }
    if (bump) {
      drawKpis();
      const el = kpis.querySelector(`[data-test="kpi-${bump}"]`);
      if (el) el.classList.add('flash');
    }
    if (/^(execution|failure|recovery|checkpoint)\./.test(type)) refresh();
  });

  periodSel.addEventListener('change', () => { period = periodSel.value; setQuery({ period }); last = null; load(); });
  const timer = setInterval(() => { if (document.visibilityState === 'visible') load(); }, 60000);
  await load();
  return () => { off(); refresh.cancel(); clearInterval(timer); };
}
