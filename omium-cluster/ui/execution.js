// One execution: its header and operator actions, the checkpoint tree with every branch
// (rollbacks and forks), each checkpoint's state and its diff against the parent's, the trace
// waterfall and the agents' graph, failures with their recovery actions, consensus decisions
// and the execution's events. Refreshes on the execution's events.
// API: execution, checkpoints (all branches), history (the live branch), read_state
//      {checkpoint_id, view: true}, spans, agent_graph {execution_id}, failures {execution_id},
//      events {execution_id, since, limit}; actions: control {action: pause|cancel|resume|retry|recover|delete,
//      execution_id, reason, by}, resume {execution_id, state_json?, by}, rollback
//      {execution_id, to: checkpoint id, reason} (or control {action: "rollback", to} when the
//      dashboard reads a store another process writes), fork {execution_id, at, new_execution_id}.

import { call, ApiError } from '/ui/api.js';
import { h, s, replace, fmt, badge, errorBox, loading, panel, kv, jsonView, lineDiff, diffView, pretty, toast, toastError, confirmDialog, actionButton, perms, tdTime, query, setQuery } from '/ui/ui.js';
import { stateOf } from '/ui/state.js';

const ROW = 34;
const LANE = 16;
const KIND_COLOR = { step: '#3b6fd8', snapshot: '#0c8599', rollback: '#e8590c', fork: '#7048e8' };
const SPAN_COLOR = { workflow: '#495057', step: '#3b6fd8', checkpoint: '#0c8599', llm: '#7048e8', tool: '#f08c00', rollback: '#e8590c', recovery: '#c92a2a', agent: '#1098ad' };

export function by() { return `omium ui (${(perms.who && perms.who.identity) || 'unknown'})`; }

// Rollback: the rollback method (the worker role's), or the operator's control {action:
// "rollback"}, which is also how a dashboard that only reads the store (omium ui beside an
// application) asks the writer to roll back.
export const ROLLBACK = ['rollback', 'control'];
export async function rollbackTo(executionId, to, reason) {
  const viaControl = () => call('control', { action: 'rollback', execution_id: executionId, to: to || undefined, reason: reason || undefined, by: by() });
  if (!perms.can('rollback') || (perms.who && perms.who.read_only)) return viaControl();
  try {
    return await call('rollback', { execution_id: executionId, to: to || null, reason: reason || null });
  } catch (e) {
    if (e instanceof ApiError && perms.can('control') && (e.status === 403 || /read.?only|store_locked|locked/i.test(`${e.code} ${e.message}`))) return viaControl();
    throw e;
  }
}

export async function render(root, ctx) {
  const id = ctx.params.join('/');
  if (!id) { location.hash = '#/executions'; return undefined; }
  let tab = ['checkpoints', 'trace', 'failures', 'activity'].includes(query().get('tab')) ? query().get('tab') : 'checkpoints';
  let selected = null; // checkpoint id
  let data = null; // {execution, checkpoints, history, failures}
  let spans = null;
  let graph = null;
  let token = 0;

  const head = h('div', { class: 'panel', 'data-test': 'execution-header', 'data-execution': id });
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const body = h('div');
  root.append(
    h('div', { class: 'page-head' },
      h('a', { href: '#/executions', class: 'small' }, '← Executions'),
      h('h1', { 'data-test': 'page-title', class: 'visually-hidden', style: 'display:none' }, id)),
    head, tabs, body);
  replace(head, loading());

  async function load(quiet) {
    const my = ++token;
    try {
      const [execution, checkpoints, history, failures] = await Promise.all([
        call('execution', { execution_id: id }),
        call('checkpoints', { execution_id: id }),
        call('history', { execution_id: id }).catch(() => []),
        call('failures', { execution_id: id }).catch(() => []),
      ]);
      if (my !== token || !ctx.isCurrent()) return;
      data = { execution, checkpoints, history, failures };
      if (!selected || !checkpoints.some((c) => c.id === selected)) selected = execution.head || (checkpoints.length ? checkpoints[checkpoints.length - 1].id : null);
      drawHead();
      drawTabs();
      if (tab === 'trace' && quiet) spans = null;
      drawBody(quiet);
    } catch (e) {
      if (my !== token) return;
      if (e instanceof ApiError && e.status === 404) {
        replace(head, h('div', { class: 'panel-body' }, h('div', { class: 'exec-title' }, id), errorBox(e, 'Not found')));
        replace(tabs); replace(body);
      } else if (!quiet) replace(head, h('div', { class: 'panel-body' }, errorBox(e, 'execution')));
    }
  }

  // ---- header and actions ----

  function drawHead() {
    const e = data.execution;
    head.dataset.status = e.status;
    const labels = Object.entries(e.labels || {});
    const forked = (e.labels || {}).forked_from;
    const st = e.status;
    const not = (ok, why) => (ok ? '' : why);
    const actions = h('div', { class: 'actions-bar' },
      actionButton({ test: 'action-pause', label: 'Pause', method: 'control', onclick: () => control('pause'), disabledReason: not(['running', 'pending'].includes(st), `Only a running or pending execution pauses (it is ${st})`) }),
      actionButton({ test: 'action-resume', label: 'Resume…', method: 'resume', kind: 'btn-primary', onclick: resume, disabledReason: not(st === 'paused', `Only a paused execution resumes (it is ${st})`) }),
      actionButton({ test: 'action-retry', label: 'Retry', method: 'control', onclick: () => control('retry'), disabledReason: not(['failed', 'cancelled'].includes(st), `Only a failed or cancelled execution is retried (it is ${st})`) }),
      actionButton({ test: 'action-recover', label: 'Recover', method: 'control', onclick: () => control('recover'), disabledReason: not(!['completed', 'pending'].includes(st), st === 'completed' ? 'A completed execution has nothing to recover' : 'It is already resumable (pending)') }),
      actionButton({ test: 'action-cancel', label: 'Cancel', method: 'control', kind: 'btn-danger', onclick: () => control('cancel'), disabledReason: not(['running', 'pending', 'paused'].includes(st), `A ${st} execution cannot be cancelled`) }),
      actionButton({ test: 'action-delete', label: 'Delete…', method: 'control.delete', kind: 'btn-danger', onclick: () => control('delete') }));
    replace(head, h('div', { class: 'panel-body' },
      h('div', { class: 'exec-head' },
        h('div', { class: 'grow', style: 'min-width:300px' },
          h('div', { class: 'row' }, h('span', { class: 'exec-title' }, e.id), h('span', { 'data-test': 'execution-status' }, badge(e.status))),
          h('div', { class: 'exec-meta' },
            h('span', null, 'workflow ', h('b', null, h('a', { href: `#/executions?workflow=${encodeURIComponent(e.workflow)}` }, e.workflow))),
            h('span', null, 'tenant ', h('b', null, e.tenant)),
            h('span', null, 'attempts ', h('b', null, e.attempts)),
            h('span', null, 'checkpoints ', h('b', null, e.checkpoint_count)),
            h('span', { title: fmt.time(e.created_at_ms) }, 'created ', h('b', null, fmt.time(e.created_at_ms))),
            h('span', { title: fmt.time(e.updated_at_ms) }, 'updated ', h('b', null, fmt.ago(e.updated_at_ms))),
            e.lease ? h('span', { title: `token ${e.lease.token}` }, 'lease ', h('b', null, `${e.lease.owner} @ ${e.lease.host} pid ${e.lease.pid}`), ` until ${fmt.time(e.lease.expires_at_ms)}`) : null,
            forked ? h('span', null, 'forked from ', h('a', { class: 'mono', href: `#/execution/${encodeURIComponent(forked.split('@')[0])}` }, forked)) : null),
          labels.length ? h('div', { style: 'margin-top:6px' }, labels.map(([k, v]) => h('span', { class: 'tag', title: `${k}=${v}` }, `${k}=${v}`))) : null,
          e.error ? h('div', { class: 'error-box exec-error', 'data-test': 'execution-error' }, e.error) : null),
        actions)));
  }

  async function control(action) {
    const e = data.execution;
    const texts = {
      pause: ['Pause this execution?', 'A run that holds it stops at its next step boundary; an execution nobody runs pauses at once.'],
      cancel: ['Cancel this execution?', 'It stops at its next step boundary for good (status cancelled) until somebody retries it. Its open failures are settled as failed.'],
      retry: ['Retry this execution?', 'It becomes resumable (pending): the application’s next recover() or run of it continues from its last checkpoint.'],
      recover: ['Recover this execution?', 'It becomes resumable again whatever stopped it (a dead run, a failure, a cancel, a pause).'],
      delete: ['Delete this execution?', 'Its record, checkpoints, input and output and the chunks no other checkpoint uses are erased. This cannot be undone; the audit log keeps who erased what and why.'],
      resume: ['Resume this execution?', ''],
    };
    const [title, text] = texts[action];
    const ok = await confirmDialog({ title, body: [h('p', null, text), h('p', { class: 'muted' }, 'Execution ', h('code', null, e.id), ` (${e.status}).`)], confirmLabel: action[0].toUpperCase() + action.slice(1), danger: action === 'cancel' || action === 'delete' });
    if (!ok) return;
    try {
      const r = await call('control', { action, execution_id: e.id, reason: ok.reason || undefined, by: by() });
      toast(`${action}: ${r.result || 'applied'}${r.status ? ` (status ${r.status})` : ''}${r.erased ? ` — erased ${r.erased.checkpoints} checkpoints` : ''}`, 'ok');
      if (action === 'delete') { location.hash = '#/executions'; return; }
      load(true);
    } catch (err) { toastError(err, action); }
  }

  async function resume() {
    const e = data.execution;
    const area = h('textarea', { class: 'input', rows: 8, 'data-test': 'resume-state', placeholder: 'Leave empty to resume as it is, or write the paused step’s result as JSON, e.g. {"answer": "…"}', spellcheck: 'false' });
    const paused = (data.failures || []).find((f) => f.outcome === 'paused');
    const useSel = selected ? h('button', { class: 'btn btn-sm', type: 'button', onclick: async () => {
      try { const st = await stateOf(data.checkpoints.find((c) => c.id === selected)); area.value = pretty(st.view); } catch (err) { toastError(err, 'read_state'); }
    } }, 'Insert the selected checkpoint’s state') : null;
    const ok = await confirmDialog({
      title: 'Resume this paused execution?',
      body: [
        h('p', null, 'It becomes resumable; its next run continues it. With a state, that value is recorded as the paused step’s result (a human’s correction).'),
        paused ? h('p', { class: 'muted' }, `Paused by a ${paused.kind} failure in step “${paused.step ?? '?'}”${paused.suggested_fix ? `; suggested fix: ${paused.suggested_fix}` : ''}.`) : null,
      ],
      extra: h('div', null, h('label', { class: 'field' }, h('span', null, 'Edited state (JSON, optional)'), area), useSel),
      confirmLabel: 'Resume', reason: false,
      validate: () => { if (!area.value.trim()) return null; try { JSON.parse(area.value); return null; } catch (err) { return `Not JSON: ${err.message}`; } },
    });
    if (!ok) return;
    const args = { execution_id: e.id, by: by() };
    if (area.value.trim()) args.state_json = JSON.parse(area.value);
    try {
      const r = await call('resume', args);
      toast(`resume: applied${args.state_json !== undefined ? ' with the edited state' : ''}${r && r.id ? ` (failure ${r.kind} ${r.outcome})` : ''}`, 'ok');
      load(true);
    } catch (err) { toastError(err, 'resume'); }
  }

  async function rollback(cp) {
    const ok = await confirmDialog({
      title: `Roll back to “${cp.name}”?`,
      body: [h('p', null, 'The live branch returns to this checkpoint (seq ', h('b', null, cp.seq), '): the steps after it run again when the execution resumes. The current branch stays readable.'),
        h('p', { class: 'muted' }, 'Checkpoint ', h('code', null, cp.id))],
      confirmLabel: 'Roll back', danger: true,
    });
    if (!ok) return;
    try {
      const r = await rollbackTo(id, cp.id, ok.reason);
      const marker = r && (r.checkpoint || r.id);
      toast(`rollback: applied — head is now ${marker ? fmt.short(marker, 14) : cp.name}`, 'ok');
      selected = null;
      load(true);
    } catch (err) { toastError(err, 'rollback'); }
  }

  async function fork(cp) {
    const input = h('input', { class: 'input wide mono', 'data-test': 'fork-new-id', placeholder: 'new execution id (optional: generated)' });
    const ok = await confirmDialog({
      title: `Fork at “${cp.name}”?`,
      body: [h('p', null, 'A new execution starts from this checkpoint (its branch up to seq ', h('b', null, cp.seq), ' is copied); this one is kept as it is.')],
      extra: h('label', { class: 'field' }, h('span', null, 'New execution id'), input), reason: false, confirmLabel: 'Fork',
    });
    if (!ok) return;
    try {
      const args = { execution_id: id, at: cp.id };
      if (input.value.trim()) args.new_execution_id = input.value.trim();
      const r = await call('fork', args);
      const nid = r && r.id;
      toast(h('span', null, 'fork: applied — new execution ', nid ? h('a', { href: `#/execution/${encodeURIComponent(nid)}`, style: 'color:#9cc0ff', 'data-test': 'fork-link' }, nid) : '?'), 'ok');
      load(true);
    } catch (err) { toastError(err, 'fork'); }
  }

  // ---- tabs ----

  function drawTabs() {
    const open = (data.failures || []).filter((f) => !['recovered', 'failed', 'escalated'].includes(f.outcome)).length;
    const t = (name, label, count, bad) => h('button', { class: `tab ${tab === name ? 'active' : ''}`, role: 'tab', 'data-test': `tab-${name}`, onclick: () => { tab = name; setQuery({ tab: name === 'checkpoints' ? '' : name }); drawTabs(); drawBody(); } },
      label, count !== undefined ? h('span', { class: `count ${bad ? 'bad' : ''}` }, count) : null);
    replace(tabs,
      t('checkpoints', 'Checkpoints', data.checkpoints.length),
      t('trace', 'Trace', spans ? spans.length : undefined),
      t('failures', 'Failures', data.failures.length, open > 0),
      t('activity', 'Activity'));
  }

  function drawBody(quiet) {
    if (tab === 'checkpoints') return drawCheckpoints(quiet);
    if (tab === 'trace') return drawTrace(quiet);
    if (tab === 'failures') return drawFailures();
    return drawActivity(quiet);
  }

  // ---- checkpoints ----

  function layout(cps) {
    const order = cps.slice().sort((a, b) => (a.global_seq - b.global_seq) || (a.created_at_ms - b.created_at_ms));
    const lane = new Map();
    const continued = new Set();
    let lanes = 0;
    for (const c of order) {
      if (c.parent && lane.has(c.parent) && !continued.has(c.parent)) { lane.set(c.id, lane.get(c.parent)); continued.add(c.parent); }
      else lane.set(c.id, lanes++);
    }
    return { order, lane, lanes: Math.max(1, lanes) };
  }

  function drawCheckpoints() {
    const cps = data.checkpoints;
    if (!cps.length) { replace(body, panel('Checkpoints', h('div', { class: 'empty' }, 'No checkpoint recorded yet.'))); return; }
    const live = new Set(data.history.map((c) => c.id));
    const { order, lane, lanes } = layout(cps);
    const row = new Map(order.map((c, i) => [c.id, i]));
    const gw = lanes * LANE + 12;
    const X = (c) => 10 + lane.get(c.id) * LANE;
    const Y = (c) => row.get(c.id) * ROW + ROW / 2;
    const byId = new Map(cps.map((c) => [c.id, c]));
    const svg = s('svg', { class: 'cp-graph-svg', width: gw, height: order.length * ROW, 'aria-hidden': 'true' });
    for (const c of order) {
      const p = c.parent && byId.get(c.parent);
      if (!p) continue;
      const [px, py, cx, cy] = [X(p), Y(p), X(c), Y(c)];
      const color = live.has(c.id) ? (KIND_COLOR[c.kind] || '#3b6fd8') : '#c3cad5';
      // a branch leaves its parent at once and runs down its own lane (lanes are never reused,
      // so nothing else is drawn there above the branch's first checkpoint)
      const d = px === cx ? `M${px},${py} L${cx},${cy}` : `M${px},${py} C${px},${py + ROW * 0.6} ${cx},${py + ROW * 0.4} ${cx},${py + ROW} L${cx},${cy}`;
      svg.appendChild(s('path', { d, class: 'edge', stroke: color, opacity: live.has(c.id) ? 0.9 : 0.8, 'stroke-dasharray': c.kind === 'rollback' ? '4 3' : null }));
    }
    for (const c of order) {
      const color = KIND_COLOR[c.kind] || '#3b6fd8';
      const isLive = live.has(c.id);
      const isHead = c.id === data.execution.head;
      svg.appendChild(s('circle', { cx: X(c), cy: Y(c), r: isHead ? 6 : 5, fill: isLive ? color : '#fff', stroke: isLive ? color : '#adb5bd', 'stroke-width': 2 }));
      if (isHead) svg.appendChild(s('circle', { cx: X(c), cy: Y(c), r: 9, fill: 'none', stroke: color, 'stroke-width': 1.2, opacity: 0.5 }));
    }
    const tree = h('div', { class: 'cp-tree', 'data-test': 'checkpoint-tree', style: `min-height:${order.length * ROW}px` }, svg,
      order.map((c) => {
        const isLive = live.has(c.id);
        const sel = c.id === selected;
        return h('div', {
          class: 'cp-row', style: `padding-left:${gw}px`, 'data-test': 'checkpoint', 'data-checkpoint': c.id, 'data-seq': c.seq, 'data-kind': c.kind,
          'data-live': isLive ? 'true' : 'false', 'data-selected': sel ? 'true' : 'false', tabindex: 0, role: 'button',
          title: `${c.name} · ${c.kind} · seq ${c.seq} · global ${c.global_seq}${isLive ? '' : ' · not on the live branch'}`,
          onclick: () => { selected = c.id; drawCheckpoints(); },
          onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); selected = c.id; drawCheckpoints(); } },
        },
        h('span', { class: 'cp-seq' }, c.seq),
        h('span', { class: 'cp-name' }, c.name, c.agent ? h('span', { class: 'cp-agent' }, c.agent) : null),
        h('span', { class: 'cp-side' },
          c.kind !== 'step' ? badge(c.kind, 'kind') : null,
          c.id === data.execution.head ? badge('head', 'info') : null,
          !isLive ? h('span', { title: 'on an abandoned branch' }, 'abandoned') : null,
          h('span', { title: fmt.time(c.created_at_ms) }, fmt.clock(c.created_at_ms))));
      }));
    const legendEl = h('div', { class: 'legend', style: 'padding:8px 12px;border-top:1px solid var(--border)' },
      Object.entries(KIND_COLOR).map(([k, c]) => h('span', { class: 'legend-item' }, h('i', { style: `background:${c};border-radius:50%` }), k)),
      h('span', { class: 'legend-item' }, h('i', { style: 'background:#fff;border:2px solid #adb5bd;border-radius:50%' }), 'abandoned branch'));
    const detail = h('div');
    replace(body, h('div', { class: 'cp-layout' },
      panel(`Checkpoint tree · ${cps.length} on ${lanes} branch${lanes > 1 ? 'es' : ''}`, [tree, legendEl], { class: 'flush' }),
      detail));
    const cp = byId.get(selected);
    if (cp) drawDetail(detail, cp, byId.get(cp.parent), live.has(cp.id));
  }

  async function drawDetail(box, cp, parent, isLive) {
    const actions = h('div', { class: 'actions-bar' },
      actionButton({ test: 'action-rollback', label: 'Roll back here…', method: ROLLBACK, kind: 'btn-danger', onclick: () => rollback(cp), disabledReason: cp.id === data.execution.head ? 'This is already the head of the live branch' : '' }),
      actionButton({ test: 'action-fork', label: 'Fork here…', method: 'fork', onclick: () => fork(cp) }));
    const meta = Object.entries(cp.metadata || {});
    const checks = [...((cp.checks && cp.checks.preconditions) || []).map((c) => ['pre', c]), ...((cp.checks && cp.checks.postconditions) || []).map((c) => ['post', c])];
    const stateBox = h('div', null, loading('Reading the state…'));
    const checksum = String(cp.checksum || '');
    replace(box, panel(h('span', null, cp.name, ' ', badge(cp.kind, cp.kind === 'step' ? 'info' : 'kind'), ' ', isLive ? null : badge('abandoned', 'neutral')), [
      kv([
        ['id', h('code', null, cp.id)],
        ['agent', cp.agent || '—'],
        ['seq', `${cp.seq} (global ${cp.global_seq})`],
        ['parent', parent ? h('a', { href: '#', onclick: (e) => { e.preventDefault(); selected = parent.id; drawCheckpoints(); } }, `${parent.name} (seq ${parent.seq})`) : '—'],
        cp.key ? ['key', h('code', null, cp.key)] : null,
        ['created', fmt.time(cp.created_at_ms)],
        ['size', `${fmt.bytes(cp.raw_size)} raw · ${fmt.bytes(cp.stored_size)} stored${cp.storage === 'chunked' ? ` · ${cp.chunks} chunks` : ''}`],
        ['checksum', h('code', { title: checksum }, `${checksum.slice(0, 16)}…`)],
      ]),
      meta.length ? [h('div', { class: 'section-title' }, 'Metadata'), h('div', null, meta.map(([k, v]) => h('span', { class: 'tag', title: v }, `${k}=${v.length > 60 ? `${v.slice(0, 60)}…` : v}`)))] : null,
      checks.length ? [h('div', { class: 'section-title' }, 'Conditions'), h('div', null, checks.map(([w, c]) => h('div', { class: 'small' }, badge(c.passed ? 'passed' : 'failed', c.passed ? 'ok' : 'bad'), ` ${w}: `, h('code', null, c.expression))))] : null,
      h('div', { class: 'section-title' }, 'Actions'), actions,
      stateBox,
    ], { test: 'checkpoint-detail' }));
    try {
      const [mine, theirs] = await Promise.all([stateOf(cp), parent ? stateOf(parent).catch(() => null) : Promise.resolve(null)]);
      if (!box.isConnected) return;
      const views = [];
      views.push(h('div', { class: 'section-title' }, `State${mine.codec ? ` (${mine.codec})` : ''}`));
      if (mine.view === undefined) views.push(h('div', { class: 'note' }, mine.note || 'not decodable'), mine.hex ? h('pre', { class: 'json', 'data-test': 'state-view' }, mine.hex) : null);
      else views.push(jsonView(mine.view, 'state-view'));
      if (parent) {
        views.push(h('div', { class: 'section-title' }, `Diff against the parent “${parent.name}” (seq ${parent.seq})`));
        if (!theirs || theirs.view === undefined || mine.view === undefined) views.push(h('div', { class: 'note' }, 'One of the two states cannot be shown as JSON.'));
        else views.push(diffView(lineDiff(pretty(theirs.view), pretty(mine.view)), { test: 'state-diff' }));
      } else {
        views.push(h('div', { class: 'section-title' }, 'Diff'), h('div', { class: 'note', 'data-test': 'state-diff' }, 'The first checkpoint of its branch: no parent to compare with.'));
      }
      replace(stateBox, views);
    } catch (e) {
      if (box.isConnected) replace(stateBox, errorBox(e, 'read_state'));
    }
  }

  // ---- trace ----

  async function drawTrace(quiet) {
    if (!spans) {
      if (!quiet) replace(body, loading('Loading spans…'));
      try {
        [spans, graph] = await Promise.all([call('spans', { execution_id: id }), call('agent_graph', { execution_id: id })]);
      } catch (e) { replace(body, errorBox(e, 'spans')); return; }
      drawTabs();
    }
    if (tab !== 'trace') return;
    if (!spans.length) { replace(body, panel('Trace', h('div', { class: 'empty' }, 'No spans recorded (tracing off, or nothing ran yet).'))); return; }
    const byId = new Map(spans.map((x) => [x.span_id, x]));
    const kids = new Map();
    const roots = [];
    for (const x of spans) {
      if (x.parent && byId.has(x.parent)) { if (!kids.has(x.parent)) kids.set(x.parent, []); kids.get(x.parent).push(x); } else roots.push(x);
    }
    const start = Math.min(...spans.map((x) => x.start_ns));
    const end = Math.max(...spans.map((x) => x.end_ns || x.start_ns));
    const total = Math.max(1, end - start);
    const rows = [];
    const walk = (x, depth) => {
      rows.push([x, depth]);
      (kids.get(x.span_id) || []).sort((a, b) => a.start_ns - b.start_ns).forEach((k) => walk(k, depth + 1));
    };
    roots.sort((a, b) => a.start_ns - b.start_ns).forEach((r) => walk(r, 0));
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => h('span', { style: `left:${f * 100}%` }, fmt.dur((total * f) / 1e6)));
    const list = h('div', { class: 'wf', 'data-test': 'waterfall' },
      h('div', { class: 'wf-axis' }, h('span', null, 'span'), h('div', { class: 'ticks' }, ticks), h('span', { class: 'right' }, 'duration')),
      rows.map(([x, depth]) => {
        const left = ((x.start_ns - start) / total) * 100;
        const width = Math.max(0.15, (((x.end_ns || x.start_ns) - x.start_ns) / total) * 100);
        const color = x.status === 'error' ? '#e03131' : SPAN_COLOR[x.span_type] || '#868e96';
        const dur = ((x.end_ns || x.start_ns) - x.start_ns) / 1e6;
        const r = h('div', { class: 'wf-row', 'data-test': 'span', 'data-span': x.span_id, 'data-status': x.status, title: `${x.name}${x.status_message ? `: ${x.status_message}` : ''}`, style: 'cursor:pointer' },
          h('div', { class: 'wf-name', style: `padding-left:${6 + depth * 14}px` }, x.status === 'error' ? h('span', { style: 'color:#e03131' }, '● ') : null, x.name, h('span', { class: 'wf-type' }, x.span_type || x.kind || ''), x.agent ? h('span', { class: 'wf-type' }, x.agent) : null),
          h('div', { class: 'wf-track' }, h('div', { class: 'wf-bar', style: `left:${left}%;width:${width}%;background:${color}` })),
          h('div', { class: 'wf-dur' }, fmt.dur(dur)));
        r.addEventListener('click', () => {
          const open = r.nextSibling && r.nextSibling.classList && r.nextSibling.classList.contains('wf-detail');
          if (open) { r.nextSibling.remove(); return; }
          r.after(h('div', { class: 'wf-detail' }, kv([
            ['span', h('code', null, `${x.span_id} (trace ${x.trace_id})`)],
            ['status', [badge(x.status), x.status_message ? ` ${x.status_message}` : '']],
            ['start', `${fmt.time(x.start_ns / 1e6)} (+${fmt.dur((x.start_ns - start) / 1e6)})`],
            ['kind', `${x.kind || ''} ${x.span_type || ''}`],
          ]), x.attributes && Object.keys(x.attributes).length ? jsonView(x.attributes) : null, x.events && x.events.length ? jsonView(x.events) : null));
        });
        return r;
      }));
    const types = [...new Set(spans.map((x) => x.span_type).filter(Boolean))];
    replace(body, panel(`Trace · ${spans.length} spans · ${fmt.dur(total / 1e6)}`, [list,
      h('div', { class: 'legend', style: 'margin-top:8px' }, types.map((t) => h('span', { class: 'legend-item' }, h('i', { style: `background:${SPAN_COLOR[t] || '#868e96'}` }), t)), h('span', { class: 'legend-item' }, h('i', { style: 'background:#e03131' }), 'error'))]),
    graph && graph.agents.length ? panel(`Agents · ${graph.agents.length} · ${graph.edges.length} hand-off${graph.edges.length === 1 ? '' : 's'}`, agentGraph(graph)) : null);
  }

  // Agents left to right in the order they first started; a hand-off A → B is an arc above
  // the row when B started later than A, below it when it goes back, labelled with its count.
  function agentGraph(g) {
    const W = 136, GAP = 64, BOX = 34, MID = 90;
    const width = g.agents.length * W + (g.agents.length - 1) * GAP + 20;
    const at = new Map(g.agents.map((a, i) => [a, 10 + i * (W + GAP)]));
    const arcs = g.edges.map((e) => {
      const x1 = at.get(e.from) + W / 2, x2 = at.get(e.to) + W / 2;
      const fwd = x2 > x1;
      const bend = Math.min(70, 18 + Math.abs(x2 - x1) / 6);
      const y = fwd ? MID - BOX / 2 : MID + BOX / 2;
      const cy = fwd ? y - bend : y + bend;
      return s('g', { 'data-test': 'agent-edge', 'data-from': e.from, 'data-to': e.to },
        s('path', { d: `M${x1},${y} Q${(x1 + x2) / 2},${cy} ${x2},${y}`, fill: 'none', stroke: '#868e96', 'stroke-width': 1.5, 'marker-end': 'url(#agent-arrow)' }),
        s('text', { x: (x1 + x2) / 2, y: (y + cy) / 2 + (fwd ? -2 : 10), 'text-anchor': 'middle', 'font-size': 11, fill: '#495057' }, `×${e.count}`));
    });
    const boxes = g.agents.map((a) => s('g', { 'data-test': 'agent-node', 'data-agent': a },
      s('rect', { x: at.get(a), y: MID - BOX / 2, width: W, height: BOX, rx: 6, fill: '#e7f5ff', stroke: SPAN_COLOR.agent }),
      s('text', { x: at.get(a) + W / 2, y: MID + 4, 'text-anchor': 'middle', 'font-size': 12, fill: '#1c7ed6' }, a.length > 18 ? `${a.slice(0, 17)}…` : a)));
    return h('div', { class: 'table-wrap' }, s('svg', { viewBox: `0 0 ${width} ${2 * MID}`, width, height: 2 * MID, 'data-test': 'agent-graph', role: 'img', 'aria-label': 'Agents and their hand-offs' },
      s('defs', null, s('marker', { id: 'agent-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#868e96' }))),
      arcs, boxes));
  }

  // ---- failures ----

  function drawFailures() {
    const fs = data.failures;
    if (!fs.length) { replace(body, panel('Failures', h('div', { class: 'empty' }, 'No failure recorded for this execution.'))); return; }
    replace(body, panel(`Failures · ${fs.length}`, fs.slice().reverse().map((f) => failureCard(f)), { tools: h('a', { href: '#/recovery', class: 'small' }, 'recovery →') }));
  }

  // ---- activity ----

  async function drawActivity(quiet) {
    if (!quiet) replace(body, loading('Loading events…'));
    const since = Math.max(0, ctx.head() - 50000);
    let page;
    try { page = await call('events', { execution_id: id, since, limit: 1000 }); } catch (e) { replace(body, errorBox(e, 'events')); return; }
    if (tab !== 'activity') return;
    const evs = (page.events || []).slice().reverse();
    // Consensus decisions of the execution's agents: one event per decision batch, each
    // message with its sender, acknowledgements and agreed value (or why it failed).
    const decided = evs.filter((e) => /consensus\.(reached|violated)$/.test(e.type)).flatMap((e) =>
      ((e.data && e.data.messages) || []).map((m) => ({ ...m, agreed: e.type.endsWith('reached'), time: Date.parse(e.time) })));
    const decisions = decided.length ? panel(`Consensus decisions · ${decided.length}`, h('div', { class: 'table-wrap' }, h('table', { class: 'table', 'data-test': 'consensus-decisions' },
      h('thead', null, h('tr', null, ['Seq', 'Time', 'Sender', 'Outcome', 'Acks', 'Value or reason'].map((c) => h('th', null, c)))),
      h('tbody', null, decided.map((m) => h('tr', { 'data-test': 'consensus-row', 'data-message': m.message_id, 'data-outcome': m.agreed ? 'agreed' : 'violated' },
        h('td', { class: 'num muted' }, m.seq),
        tdTime(m.time),
        h('td', null, m.sender || '—'),
        h('td', null, badge(m.agreed ? 'agreed' : 'violated', m.agreed ? 'ok' : 'bad')),
        h('td', { class: 'num' }, `${m.acks ?? '?'} / ${m.quorum ?? '?'}`),
        h('td', { class: 'mono small ellipsis', title: JSON.stringify(m.agreed ? m.value : m.detail) }, m.agreed ? JSON.stringify(m.value ?? null) : `${m.reason || ''}${m.detail ? `: ${m.detail}` : ''}`)))))),
    { class: 'flush' }) : null;
    replace(body, decisions, panel(`Events · ${evs.length}`, evs.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Seq', 'Time', 'Event', 'Actor', 'Data'].map((c) => h('th', null, c)))),
      h('tbody', null, evs.map((e) => h('tr', { 'data-test': 'activity-row', 'data-seq': e.omiumseq },
        h('td', { class: 'num muted' }, e.omiumseq),
        tdTime(Date.parse(e.time)),
        h('td', { class: 'mono nowrap' }, String(e.type).replace(/^io\.omium\./, '')),
        h('td', { class: 'muted nowrap' }, e.omiumactor || ''),
        h('td', { class: 'mono small ellipsis', title: JSON.stringify(e.data) }, JSON.stringify(e.data))))))) : h('div', { class: 'empty' }, since ? 'No recent events.' : 'No events.'),
    { class: 'flush', tools: since ? h('span', { class: 'muted small' }, `events after seq ${since}`) : null }));
  }

  // refresh on this execution's events
  let pending = null;
  const off = ctx.feed.on(({ event }) => {
    const d = (event && event.data) || {};
    if (!event || (event.subject !== id && d.execution !== id && d.source !== id)) return;
    if (!pending) pending = setTimeout(() => { pending = null; if (tab === 'trace') spans = null; load(true); }, 400);
  });

  await load(false);
  return () => { off(); clearTimeout(pending); };
}

// A failure record with its recovery actions (shared with the recovery page).
export function failureCard(f, extra) {
  return h('div', { class: 'failure-card', 'data-test': 'failure', 'data-failure': f.id, 'data-outcome': f.outcome },
    h('div', { class: 'fc-head' },
      badge(f.kind, 'bad'), badge(f.outcome),
      h('span', null, 'step ', h('b', null, f.step ?? '—'), f.seq !== undefined && f.seq !== null ? ` (seq ${f.seq})` : '', f.agent ? ` · agent ${f.agent}` : ''),
      f.rule ? h('span', { class: 'muted small' }, `rule ${f.rule} (${f.scope || '?'})`) : null,
      h('span', { class: 'spacer' }),
      h('span', { class: 'muted small', title: fmt.time(f.created_at_ms) }, fmt.time(f.created_at_ms)),
      f.resolved_at_ms ? h('span', { class: 'muted small' }, `resolved after ${fmt.dur(f.resolved_at_ms - f.created_at_ms)}`) : null),
    h('div', { class: 'fc-msg' }, f.error_class ? `${f.error_class}: ` : '', f.message),
    f.root_cause ? h('div', { class: 'cause' }, h('b', null, 'Root cause: '), f.root_cause) : null,
    f.suggested_fix ? h('div', { class: 'fix' }, h('b', null, 'Suggested fix: '), f.suggested_fix) : null,
    f.actions && f.actions.length ? h('ul', { class: 'timeline' }, f.actions.map((a) => h('li', { class: a.outcome },
      h('b', null, a.action), ' ', badge(a.outcome), ' ', h('span', { class: 'muted small' }, fmt.time(a.started_at_ms)),
      a.detail && a.detail !== '{}' ? h('div', { class: 'fx-detail' }, a.detail) : null))) : null,
    extra || null);
}
