// Recovery: open failures with their root cause and suggested fix, and what an operator does
// about them (apply the fix, resume, roll back, escalate); MTTR and failure patterns by type
// and agent.
// API: failures {} (every record; shown newest first, filtered here by outcome),
//      recovery_metrics {} (rate, MTTR mean/p50/p95, counts by type, outcome and action),
//      metrics {since: "30d", by: ["failure_type"]}, metrics {since: "30d", by: ["agent"]},
//      metrics {since: "30d", by: ["failure_type", "agent"]} (the pattern matrix),
//      history {execution_id} (rollback targets); actions: resume {execution_id, state_json?, by}
//      (apply fix: the edited state is the paused step's result), resume {execution_id, by},
//      rollback {execution_id, to?, reason} (control rollback as a fallback),
//      control {action: "escalate", execution_id, reason, by} (answers the channels told).

import { call } from '/ui/api.js';
import { h, replace, fmt, badge, errorBox, loading, panel, toast, toastError, confirmDialog, actionButton, select, query, setQuery, pretty, execLink } from '/ui/ui.js';
import { hbarChart, COLORS } from '/ui/charts.js';
import { rollbackTo, by, ROLLBACK } from '/ui/execution.js';
import { stateOf } from '/ui/state.js';

const OPEN = ['open', 'paused', 'resumed', 'rolled_back'];
const SHOW = 200;

export async function render(root, ctx) {
  let outcome = query().get('outcome') || 'open';
  const outcomeSel = select({ 'data-test': 'filter-outcome', 'aria-label': 'Outcome' },
    [['open', 'open (needs attention)'], ['paused', 'paused'], ['all', 'all'], ['recovered', 'recovered'], ['failed', 'failed'], ['escalated', 'escalated'], ['rolled_back', 'rolled back'], ['resumed', 'resumed']], outcome);
  const kpis = h('div', { class: 'kpis' });
  const list = h('div');
  const charts = h('div');
  const listTitle = h('h2');
  root.append(
    h('div', { class: 'page-head' }, h('h1', { 'data-test': 'page-title' }, 'Recovery'), h('span', { class: 'sub' }, 'failures, fixes and time to recover')),
    kpis,
    h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, listTitle, h('div', { class: 'panel-tools' }, outcomeSel)), h('div', { class: 'panel-body' }, list)),
    charts);
  outcomeSel.addEventListener('change', () => { outcome = outcomeSel.value; setQuery({ outcome: outcome === 'open' ? '' : outcome }); drawList(); });

  let failures = [];
  let token = 0;

  async function load(quiet) {
    const my = ++token;
    if (!quiet) replace(list, loading());
    try {
      const [fs, rm] = await Promise.all([call('failures', {}), call('recovery_metrics', {}).catch(() => null)]);
      if (my !== token || !ctx.isCurrent()) return;
      failures = (fs || []).slice().sort((a, b) => (b.created_at_ms || 0) - (a.created_at_ms || 0));
      drawKpis(rm);
      drawList();
    } catch (e) {
      if (my === token) replace(list, errorBox(e, 'failures'));
    }
  }

  function drawKpis(rm) {
    const open = failures.filter((f) => OPEN.includes(f.outcome)).length;
    const paused = failures.filter((f) => f.outcome === 'paused').length;
    const k = (name, label, value, raw, note, tone) => h('div', { class: `kpi ${tone || ''}`, 'data-test': `kpi-${name}`, 'data-value': raw ?? '' },
      h('div', { class: 'kpi-label' }, label), h('div', { class: 'kpi-value' }, value), note ? h('div', { class: 'kpi-note' }, note) : null);
    replace(kpis,
      k('open-failures', 'Open failures', fmt.num(open), open, `${paused} waiting for a human`, open ? 'warn' : 'good'),
      k('failures', 'Failures (all time)', fmt.num(rm ? rm.failures : failures.length), rm ? rm.failures : failures.length, rm ? `${fmt.num(rm.recovered)} recovered · ${fmt.num(rm.failed)} failed · ${fmt.num(rm.escalated)} escalated` : ''),
      k('recovery-rate', 'Recovery rate', fmt.pct(rm && rm.recovery_rate), rm && rm.recovery_rate, 'recovered ÷ settled', rm && rm.recovery_rate !== null && rm.recovery_rate !== undefined ? (rm.recovery_rate >= 0.9 ? 'good' : 'bad') : ''),
      k('mttr', 'MTTR', fmt.dur(rm && rm.mttr_ms), rm && rm.mttr_ms, rm ? `p50 ${fmt.dur(rm.mttr_p50_ms)} · p95 ${fmt.dur(rm.mttr_p95_ms)}` : ''),
      k('retries-per-success', 'Retries per success', rm && rm.retries_per_success !== null && rm.retries_per_success !== undefined ? rm.retries_per_success.toFixed(2) : '—', rm && rm.retries_per_success, ''));
    drawCharts(rm);
  }

  function drawList() {
    const shown = failures.filter((f) => (outcome === 'all' ? true : outcome === 'open' ? OPEN.includes(f.outcome) : f.outcome === outcome));
    listTitle.textContent = `${outcome === 'open' ? 'Open failures' : outcome === 'all' ? 'All failures' : `Failures ${outcome.replace('_', ' ')}`} · ${shown.length}`;
    if (!shown.length) { replace(list, h('div', { class: 'empty', 'data-test': 'no-failures' }, outcome === 'open' ? 'No open failure. Everything that failed has been settled.' : 'No failure matches.')); return; }
    replace(list, shown.slice(0, SHOW).map(row), shown.length > SHOW ? h('div', { class: 'muted small' }, `${shown.length - SHOW} more not shown`) : null);
  }

  function row(f) {
    const paused = f.outcome === 'paused';
    const settled = ['recovered', 'failed', 'escalated'].includes(f.outcome);
    const needPaused = paused ? '' : `The execution is not waiting for a human (the failure is ${f.outcome.replace('_', ' ')})`;
    const actions = h('div', { class: 'fc-actions' },
      actionButton({ test: 'action-apply-fix', label: 'Apply fix…', method: 'resume', kind: 'btn-primary', onclick: () => applyFix(f), disabledReason: needPaused }),
      actionButton({ test: 'action-resume', label: 'Resume', method: 'resume', onclick: () => resume(f), disabledReason: needPaused }),
      actionButton({ test: 'action-rollback', label: 'Roll back…', method: ROLLBACK, onclick: () => rollback(f) }),
      actionButton({ test: 'action-escalate', label: 'Escalate…', method: 'control', onclick: () => escalate(f), disabledReason: settled ? `The failure is settled (${f.outcome})` : '' }));
    const open = !settled ? ` · open for ${fmt.dur(Date.now() - f.created_at_ms)}` : f.resolved_at_ms ? ` · settled after ${fmt.dur(f.resolved_at_ms - f.created_at_ms)}` : '';
    return h('div', { class: 'failure-row failure-card compact', 'data-test': 'failure-row', 'data-failure': f.id, 'data-execution': f.execution_id, 'data-outcome': f.outcome, 'data-type': f.kind },
      h('div', { class: 'fc-head' },
        badge(f.kind, 'bad'), badge(f.outcome), execLink(f.execution_id),
        h('span', { class: 'muted' }, [f.workflow, f.tenant].filter(Boolean).join(' · ')),
        h('span', null, 'step ', h('b', null, f.step ?? '—'), f.agent ? h('span', { class: 'muted' }, ` · ${f.agent}`) : null),
        h('span', { class: 'spacer' }),
        h('span', { class: 'muted small', title: fmt.time(f.created_at_ms) }, `${fmt.ago(f.created_at_ms)}${open}`)),
      h('div', { class: 'fc-msg ellipsis', title: `${f.error_class ? `${f.error_class}: ` : ''}${f.message}` }, f.error_class ? `${f.error_class}: ` : '', f.message),
      h('div', { class: 'fc-grid' },
        h('div', { class: 'cause' }, h('b', null, 'Root cause: '), f.root_cause || h('span', { class: 'muted' }, 'not analysed')),
        h('div', { class: 'fix' }, h('b', null, 'Suggested fix: '), f.suggested_fix || h('span', { class: 'muted' }, 'none'))),
      h('div', { class: 'fc-actions' },
        h('span', { class: 'fc-trail' }, (f.actions || []).map((a, i) => [i ? h('span', { class: 'faint' }, ' → ') : null,
          h('span', { class: `trail trail-${a.outcome}`, title: `${a.action} ${a.outcome} at ${fmt.time(a.started_at_ms)}${a.detail && a.detail !== '{}' ? `\n${a.detail}` : ''}` }, a.action)])),
        h('span', { class: 'spacer' }),
        actions.childNodes.length ? [...actions.childNodes] : null));
  }

  // The suggested fix as a state: JSON when it parses as an object or a list (a state change),
  // otherwise a named fix (a fixer of the application) the resumed run applies.
  function fixState(f) {
    const t = (f.suggested_fix || '').trim();
    if (!/^[[{]/.test(t)) return null;
    try { return JSON.parse(t); } catch { return null; }
  }

  async function applyFix(f) {
    const st = fixState(f);
    const area = h('textarea', { class: 'input', rows: 8, 'data-test': 'fix-state', spellcheck: 'false', placeholder: `The corrected result of step “${f.step ?? '?'}” as JSON (optional)` });
    if (st !== null) area.value = pretty(st);
    const ok = await confirmDialog({
      title: 'Apply the suggested fix?',
      body: [
        f.suggested_fix ? h('div', { class: 'fix' }, h('b', null, 'Suggested fix: '), f.suggested_fix) : h('p', { class: 'muted' }, 'No fix was suggested for this failure.'),
        f.root_cause ? h('div', { class: 'cause' }, h('b', null, 'Root cause: '), f.root_cause) : null,
        h('p', null, st !== null
          ? 'The fix is a state change: the state below is recorded as the result of the paused step, and the execution resumes.'
          : 'The execution resumes; give the corrected result of the paused step below to record it instead of running the step again, or leave it empty to let the resumed run apply the fix.'),
      ],
      extra: h('div', null,
        h('label', { class: 'field' }, h('span', null, `Result of step “${f.step ?? '?'}” (JSON)`), area),
        h('button', { class: 'btn btn-sm', type: 'button', 'data-test': 'fix-insert-last', title: 'Start from the state recorded before the failed step', onclick: async () => {
          try {
            const hs = await call('history', { execution_id: f.execution_id });
            const last = hs.filter((c) => c.kind === 'step' || c.kind === 'snapshot').pop();
            if (!last) { toast('No checkpoint recorded before the failure.', 'error'); return; }
            const st = await stateOf(last);
            area.value = pretty(st.view);
          } catch (e) { toastError(e, 'read_state'); }
        } }, 'Insert the last checkpoint’s state')),
      confirmLabel: 'Apply and resume', reason: false,
      validate: () => { if (!area.value.trim()) return null; try { JSON.parse(area.value); return null; } catch (e) { return `Not JSON: ${e.message}`; } },
    });
    if (!ok) return;
    const args = { execution_id: f.execution_id, by: by() };
    if (area.value.trim()) args.state_json = JSON.parse(area.value);
    try {
      await call('resume', args);
      toast(`apply fix: applied — ${f.execution_id} resumed${args.state_json !== undefined ? ' with the corrected state' : ''}`, 'ok');
      load(true);
    } catch (e) { toastError(e, 'apply fix'); }
  }

  async function resume(f) {
    const ok = await confirmDialog({ title: `Resume ${f.execution_id}?`, body: h('p', null, 'The execution becomes resumable; its next run continues it from the paused step.'), confirmLabel: 'Resume', reason: false });
    if (!ok) return;
    try {
      await call('resume', { execution_id: f.execution_id, by: by() });
      toast(`resume: applied — ${f.execution_id} is resumable`, 'ok');
      load(true);
    } catch (e) { toastError(e, 'resume'); }
  }

  async function rollback(f) {
    const sel = select({ 'data-test': 'rollback-target', class: 'input wide' }, [['', 'the last consistent checkpoint']], '');
    call('history', { execution_id: f.execution_id }).then((hs) => {
      for (const c of hs) sel.appendChild(h('option', { value: c.id }, `seq ${c.seq} · ${c.name}${c.kind !== 'step' ? ` (${c.kind})` : ''}`));
    }).catch(() => {});
    const ok = await confirmDialog({
      title: `Roll back ${f.execution_id}?`,
      body: h('p', null, 'The live branch returns to the checkpoint you choose; the steps after it run again when the execution resumes.'),
      extra: h('label', { class: 'field' }, h('span', null, 'Roll back to'), sel), confirmLabel: 'Roll back', danger: true,
    });
    if (!ok) return;
    try {
      await rollbackTo(f.execution_id, sel.value || undefined, ok.reason || `recovery of ${f.kind} in ${f.step ?? '?'}`);
      toast(`rollback: applied — ${f.execution_id} rolled back to ${sel.value ? sel.options[sel.selectedIndex].text : 'its last consistent checkpoint'}`, 'ok');
      load(true);
    } catch (e) { toastError(e, 'rollback'); }
  }

  async function escalate(f) {
    const ok = await confirmDialog({
      title: `Escalate ${f.execution_id}?`,
      body: h('p', null, 'The failure is handed to people: it is settled as escalated, the channels of its policy are told, and the execution keeps its status for whoever takes it over.'),
      confirmLabel: 'Escalate', danger: true,
    });
    if (!ok) return;
    try {
      const r = await call('control', { action: 'escalate', execution_id: f.execution_id, reason: ok.reason || undefined, by: by() });
      const told = Object.entries(r.notified || {});
      const summary = told.length ? told.map(([c, o]) => `${c}: ${o}`).join(', ') : 'no channel has a webhook';
      toast(`escalate: applied — ${f.execution_id} escalated (${summary})`, told.every(([, o]) => o === 'delivered') ? 'ok' : 'error');
      load(true);
    } catch (e) { toastError(e, 'escalate'); }
  }

  async function drawCharts(rm) {
    if (!charts.firstChild) replace(charts, loading('Loading failure patterns…'));
    let byType, byAgent, matrix;
    try {
      [byType, byAgent, matrix] = await Promise.all([
        call('metrics', { since: '30d', by: ['failure_type'] }),
        call('metrics', { since: '30d', by: ['agent'] }),
        call('metrics', { since: '30d', by: ['failure_type', 'agent'] }),
      ]);
    } catch (e) { replace(charts, errorBox(e, 'metrics')); return; }
    if (!ctx.isCurrent()) return;
    const types = (byType.groups || []).filter((g) => g.figures.failures).sort((a, b) => b.figures.failures - a.figures.failures);
    const agents = (byAgent.groups || []).filter((g) => g.figures.failures).sort((a, b) => b.figures.failures - a.figures.failures);
    const mttr = types.filter((g) => g.figures.mttr_ms !== null && g.figures.mttr_ms !== undefined);
    const none = (t, test) => h('div', { class: 'chart-empty', 'data-test': test }, t);
    const outcomes = rm ? Object.entries(rm.by_outcome || {}).sort((a, b) => b[1] - a[1]) : [];
    replace(charts,
      h('div', { class: 'grid grid-3' },
        panel('Failures by type · 30 days', types.length ? hbarChart(types.map((g) => ({ label: g.key.failure_type, value: g.figures.failures, color: COLORS.crimson, title: `${g.key.failure_type}: ${g.figures.failures} failures, ${g.figures.recovered} recovered` })), { test: 'chart-failure-types' }) : none('No failures in 30 days.', 'chart-failure-types')),
        panel('Failures by agent · 30 days', agents.length ? hbarChart(agents.map((g) => ({ label: g.key.agent || '(none)', value: g.figures.failures, color: COLORS.amber })), { test: 'chart-failure-agents' }) : none('No failures in 30 days.', 'chart-failure-agents')),
        panel('MTTR by type · 30 days', mttr.length ? hbarChart(mttr.map((g) => ({ label: g.key.failure_type, value: g.figures.mttr_ms, color: COLORS.teal })), { valueFormat: fmt.dur, test: 'chart-mttr-types' }) : none('Nothing recovered in 30 days.', 'chart-mttr-types'))),
      h('div', { class: 'grid grid-2' },
        panel('Failure patterns · type × agent · 30 days', patternTable(matrix), { class: 'flush' }),
        panel('Outcomes and actions · all time', rm ? [
          outcomes.length ? hbarChart(outcomes.map(([k, v]) => ({ label: k.replace('_', ' '), value: v, color: ['recovered'].includes(k) ? COLORS.green : ['failed', 'escalated'].includes(k) ? COLORS.crimson : COLORS.amber })), { test: 'chart-outcomes' }) : none('No failures.'),
          h('div', { class: 'section-title', style: 'margin-top:12px' }, 'Recovery actions taken'),
          h('div', null, Object.entries(rm.actions || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => h('span', { class: 'tag' }, `${k} ${v}`))),
        ] : none('recovery_metrics is not available.'))));
  }

  function patternTable(m) {
    const groups = (m.groups || []).filter((g) => g.figures.failures);
    if (!groups.length) return h('div', { class: 'empty' }, 'No failures in 30 days.');
    const types = [...new Set(groups.map((g) => g.key.failure_type))];
    const agents = [...new Set(groups.map((g) => g.key.agent || '(none)'))];
    const cell = new Map(groups.map((g) => [`${g.key.failure_type}\u001f${g.key.agent || '(none)'}`, g.figures.failures]));
    const max = Math.max(...groups.map((g) => g.figures.failures));
    return h('div', { class: 'table-wrap' }, h('table', { class: 'table matrix', 'data-test': 'failure-patterns' },
      h('thead', null, h('tr', null, h('th', null, 'type \\ agent'), agents.map((a) => h('th', { class: 'num' }, a)))),
      h('tbody', null, types.map((t) => h('tr', null, h('td', null, badge(t, 'bad')), agents.map((a) => {
        const v = cell.get(`${t}\u001f${a}`) || 0;
        return h('td', { class: 'cell', style: v ? `background:rgba(201,42,42,${(0.08 + 0.5 * (v / max)).toFixed(2)})` : '' }, v || '');
      }))))));
  }

  let pending = null;
  const off = ctx.feed.on(({ type }) => {
    if (!/^(failure|recovery|execution)\./.test(type) || pending) return;
    pending = setTimeout(() => { pending = null; load(true); }, 1500);
  });

  await load(false);
  return () => { off(); clearTimeout(pending); };
}
