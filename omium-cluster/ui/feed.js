// Live feed: every change as it happens, newest on top, filterable by workflow, agent, tenant
// and status; a row opens its execution.
// API: events {since: head-400, limit: 400} (the recent past), the event stream (live),
//      execution {execution_id} (workflow and tenant of the executions the events name; cached).

import { call } from '/ui/api.js';
import { h, replace, fmt, errorBox, select, query, setQuery, badge } from '/ui/ui.js';

const MAX_ROWS = 1000;
const BACKLOG = 400;
// Events name their execution, not its tenant (nor, mostly, its workflow): the feed asks for
// at most this many executions per visit (the CloudEvent extensions omiumtenant and
// omiumworkflow are used instead when the server adds them).
const MAX_LOOKUPS = 300;

// Workflow and tenant of executions, shared by the feed's visits: id -> {workflow, tenant} or
// {missing: true}.
const info = new Map();
const waiting = new Set();
let inflight = 0;
const queue = [];

function lookup(id, done) {
  if (!id) return;
  if (info.has(id)) return;
  if (waiting.has(id)) return;
  waiting.add(id);
  queue.push([id, done]);
  pump();
}
function pump() {
  while (inflight < 4 && queue.length) {
    const [id, done] = queue.shift();
    inflight++;
    call('execution', { execution_id: id })
      .then((e) => info.set(id, { workflow: e.workflow, tenant: e.tenant, status: e.status }))
      .catch(() => info.set(id, { missing: true }))
      .finally(() => { inflight--; waiting.delete(id); done(id); pump(); });
  }
}

// What a change means for its execution, for the status filter and the dot's colour.
export function statusOf(type) {
  if (type === 'execution.started') return 'started';
  if (type === 'checkpoint.created' || type === 'execution.resumed' || type === 'lease.taken_over') return 'step';
  if (type === 'execution.failed' || type === 'failure.detected' || type === 'consensus.violated') return 'failed';
  if (type === 'recovery.action_taken' || type === 'execution.rolled_back') return 'recovering';
  if (['recovery.resumed', 'execution.recovered', 'execution.released', 'execution.retried'].includes(type)) return 'recovered';
  if (type === 'execution.paused' || type === 'control.pause_requested') return 'paused';
  if (type === 'execution.completed') return 'completed';
  if (type === 'execution.cancelled' || type === 'control.cancel_requested') return 'cancelled';
  if (type === 'execution.deleted') return 'deleted';
  if (type === 'execution.forked' || type === 'execution.suspended' || type === 'execution.pulled') return 'step';
  return 'other';
}
const DOT = { started: '#3b6fd8', step: '#74c0fc', failed: '#e03131', recovering: '#f08c00', recovered: '#0c8599', paused: '#f59f00', completed: '#2f9e44', cancelled: '#868e96', deleted: '#495057', other: '#ced4da' };
const STATUS_BADGE = { started: 'info', step: 'neutral', failed: 'bad', recovering: 'warn', recovered: 'ok', paused: 'warn', completed: 'ok', cancelled: 'dark', deleted: 'dark', other: 'neutral' };

export function detailOf(type, d) {
  d = d || {};
  switch (type) {
    case 'checkpoint.created': return `${d.name ?? ''}${d.seq !== undefined ? ` #${d.seq}` : ''}`;
    case 'execution.started': case 'execution.resumed': return `${d.workflow ?? ''}${d.attempt ? ` · attempt ${d.attempt}` : ''}`;
    case 'execution.failed': case 'execution.paused': return d.error || '';
    case 'failure.detected': case 'recovery.action_taken': return `${d.type ?? ''} in ${d.step ?? '?'} · ${d.outcome ?? ''}${d.actions ? ` · ${d.actions} action${d.actions > 1 ? 's' : ''}` : ''}`;
    case 'execution.rolled_back': return `to ${d.name || fmt.short(d.to)}${d.reason ? ` — ${d.reason}` : ''}`;
    case 'execution.forked': return `from ${d.source} at ${fmt.short(d.at)}${d.edited ? ' (edited)' : ''}`;
    case 'policy.applied': return `v${d.version} by ${d.author ?? '?'}`;
    case 'alert.firing': case 'alert.resolved': case 'alert.repeated': case 'alert.acknowledged':
      return `${d.rule}${d.group && Object.keys(d.group).length ? ` [${Object.entries(d.group).map(([k, v]) => `${k}=${v}`).join(',')}]` : ''} value ${d.value ?? '—'}`;
    default: {
      const parts = [];
      for (const [k, v] of Object.entries(d)) { if (k !== 'execution' && (typeof v !== 'object' || v === null)) parts.push(`${k}=${v}`); }
      return parts.join(' ').slice(0, 200);
    }
  }
}

export async function render(root, ctx) {
  const q = query();
  const f = {
    workflow: q.get('workflow') || '', agent: q.get('agent') || '', tenant: q.get('tenant') || '', status: q.get('status') || '',
  };
  const lists = { workflow: new Set(), agent: new Set(), tenant: new Set() };
  const dl = {};
  const input = (name, ph) => {
    dl[name] = h('datalist', { id: `feed-${name}-list` });
    const el = h('input', { class: 'input', 'data-test': `filter-${name}`, placeholder: ph, value: f[name], list: `feed-${name}-list`, style: 'width:150px' });
    el.addEventListener('input', () => { f[name] = el.value.trim(); applyFilters(); });
    return [el, dl[name]];
  };
  const statusSel = select({ 'data-test': 'filter-status', 'aria-label': 'Status' },
    [['', 'any status'], ['started', 'started'], ['step', 'step'], ['failed', 'failed'], ['recovering', 'recovering'], ['recovered', 'recovered'], ['paused', 'paused'], ['completed', 'completed'], ['cancelled', 'cancelled'], ['other', 'other']], f.status);
  statusSel.addEventListener('change', () => { f.status = statusSel.value; applyFilters(); });
  let following = true;
  const pauseBtn = h('button', { class: 'btn btn-sm', 'data-test': 'feed-pause', onclick: () => { following = !following; pauseBtn.textContent = following ? 'Pause' : `Continue (${held.length})`; if (following) flushHeld(); } }, 'Pause');
  const clearBtn = h('button', { class: 'btn btn-sm', 'data-test': 'feed-clear', onclick: () => { rows.length = 0; replace(tbody); count(); } }, 'Clear');
  const counter = h('span', { class: 'muted small', 'data-test': 'feed-count' });
  const tbody = h('tbody');
  const table = h('table', { class: 'table fixed', 'data-test': 'feed-table' },
    h('colgroup', null, [96, 250, 190, 160, 90, 110, null].map((w) => h('col', { style: w ? `width:${w}px` : '' }))),
    h('thead', null, h('tr', null, ['Time', 'Event', 'Execution', 'Workflow', 'Tenant', 'Agent', 'Detail'].map((c) => h('th', null, c)))),
    tbody);
  const emptyRow = h('div', { class: 'empty', hidden: true }, 'No events match.');
  root.append(
    h('div', { class: 'page-head' },
      h('h1', { 'data-test': 'page-title' }, 'Live feed'),
      h('span', { class: 'sub' }, 'executions as they start, step, fail, recover and finish'),
      h('div', { class: 'tools' }, counter, pauseBtn, clearBtn)),
    h('section', { class: 'panel flush' },
      h('div', { class: 'toolbar' }, input('workflow', 'workflow'), input('agent', 'agent'), input('tenant', 'tenant'), statusSel,
        h('span', { class: 'muted small' }, 'newest on top')),
      h('div', { class: 'table-wrap' }, table, emptyRow)));

  const rows = []; // {ev, el}
  const looked = new Set(); // executions whose workflow and tenant this visit asked for
  const held = [];

  function execOf(ev) {
    const e = ev.event || {};
    const d = e.data || {};
    if (e.subject) return e.subject;
    if (d.execution) return d.execution;
    const r = e.omiumresource || '';
    return r.startsWith('execution/') ? r.slice(10) : '';
  }

  function fieldsOf(ev) {
    const e = ev.event || {};
    const d = e.data || {};
    const id = execOf(ev);
    const i = (id && info.get(id)) || {};
    return {
      id,
      workflow: e.omiumworkflow || d.workflow || i.workflow || '',
      tenant: e.omiumtenant || i.tenant || '',
      agent: d.agent || '',
      status: statusOf(ev.type),
    };
  }

  function matches(fl) {
    if (f.status && fl.status !== f.status) return false;
    if (f.workflow && !fl.workflow.toLowerCase().includes(f.workflow.toLowerCase())) return false;
    if (f.agent && !fl.agent.toLowerCase().includes(f.agent.toLowerCase())) return false;
    if (f.tenant && !fl.tenant.toLowerCase().includes(f.tenant.toLowerCase())) return false;
    return true;
  }

  function note(kind, v) {
    if (!v || lists[kind].has(v)) return;
    lists[kind].add(v);
    dl[kind].appendChild(h('option', { value: v }));
  }

  function rowEl(ev, fresh) {
    const e = ev.event || {};
    const fl = fieldsOf(ev);
    note('workflow', fl.workflow); note('agent', fl.agent); note('tenant', fl.tenant);
    const t = e.time ? Date.parse(e.time) : Date.now();
    const tr = h('tr', {
      class: `${fl.id ? 'clickable' : ''} ${fresh ? 'new' : ''}`.trim(), 'data-test': 'feed-row', 'data-execution': fl.id, 'data-type': ev.type, 'data-seq': ev.seq, 'data-status': fl.status,
      onclick: (x) => { if (fl.id && !x.target.closest('a')) location.hash = `#/execution/${encodeURIComponent(fl.id)}`; },
    },
    h('td', { class: 'nowrap muted mono', title: e.time || '' }, fmt.clock(t)),
    h('td', { class: 'nowrap' }, h('span', { class: 'dot', style: `background:${DOT[fl.status]}` }), h('span', { class: 'feed-type' }, ev.type), ' ', fl.status !== 'other' && fl.status !== 'step' ? badge(fl.status, STATUS_BADGE[fl.status]) : null),
    h('td', { class: 'mono nowrap' }, fl.id ? h('a', { href: `#/execution/${encodeURIComponent(fl.id)}` }, fl.id) : h('span', { class: 'muted' }, e.omiumresource || '—')),
    h('td', { class: 'wf' }, fl.workflow || h('span', { class: 'faint' }, fl.id ? '…' : '')),
    h('td', { class: 'tn' }, fl.tenant || h('span', { class: 'faint' }, fl.id ? '…' : '')),
    h('td', null, fl.agent),
    h('td', { class: 'ellipsis', title: detailOf(ev.type, e.data) }, detailOf(ev.type, e.data)));
    tr.hidden = !matches(fl);
    if (fl.id && !fl.tenant && looked.size < MAX_LOOKUPS) { looked.add(fl.id); lookup(fl.id, refreshExec); }
    return tr;
  }

  // When an execution's workflow and tenant arrive, fill its rows and re-filter them.
  function refreshExec(id) {
    const i = info.get(id) || {};
    for (const r of rows) {
      if (execOf(r.ev) !== id) continue;
      const wf = r.el.querySelector('.wf'), tn = r.el.querySelector('.tn');
      const fl = fieldsOf(r.ev);
      if (wf) replace(wf, fl.workflow || (i.missing ? h('span', { class: 'faint' }, 'deleted') : ''));
      if (tn) replace(tn, fl.tenant || (i.missing ? h('span', { class: 'faint' }, '—') : ''));
      note('workflow', fl.workflow); note('tenant', fl.tenant);
      r.el.hidden = !matches(fl);
    }
    count();
  }

  function applyFilters() {
    setQuery(f);
    for (const r of rows) r.el.hidden = !matches(fieldsOf(r.ev));
    count();
  }

  function count() {
    const shown = rows.filter((r) => !r.el.hidden).length;
    counter.textContent = `${shown} of ${rows.length} events`;
    emptyRow.hidden = shown > 0;
  }

  function add(ev, fresh) {
    if (rows.length && rows.some((r) => r.ev.seq === ev.seq && ev.seq)) return;
    const el = rowEl(ev, fresh);
    rows.unshift({ ev, el });
    tbody.insertBefore(el, tbody.firstChild);
    while (rows.length > MAX_ROWS) { const r = rows.pop(); r.el.remove(); }
  }

  function flushHeld() {
    held.sort((a, b) => a.seq - b.seq).forEach((ev) => add(ev, true));
    held.length = 0;
    count();
  }

  function live(ev) {
    if (!following) { held.push(ev); pauseBtn.textContent = `Continue (${held.length})`; return; }
    add(ev, true);
    count();
  }

  // Follow first, then ask for the recent past: what the live feed brings while that call is
  // in flight is kept and shown after it (`add` skips a seq already shown), never dropped.
  let early = [];
  const off = ctx.feed.on((ev) => (early ? early.push(ev) : live(ev)));
  const head = ctx.head();
  try {
    const page = await call('events', { since: Math.max(0, head - BACKLOG), limit: BACKLOG });
    for (const e of page.events || []) add({ seq: e.omiumseq || Number(e.id), type: String(e.type).replace(/^io\.omium\./, ''), event: e }, false);
  } catch (e) {
    root.append(errorBox(e, 'events'));
  }
  const arrived = early;
  early = null;
  arrived.forEach(live);
  count();
  return () => off();
}
