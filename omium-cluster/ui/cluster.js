// Cluster: the Raft group this store belongs to (leader, term, nodes and how far each lags),
// what the server serves, and the space the store uses.
// API: cluster {} -> {configured: false} | {configured: true, leader, term, nodes: [{id, addr,
//      role, matched, lag}], executions: [{id, tenant, workflow, status, owner, owner_host,
//      head, checkpoints, lease_left_ms, updated_at_ms, here}], synced_total, sync_error}; GET /v1/status (store, durability, version, runs, caller);
//      stats {} (space used; store-wide callers only).

import { call, status, ApiError } from '/ui/api.js';
import { h, replace, fmt, badge, errorBox, panel, kv, loading, execLink, tdTime } from '/ui/ui.js';

export async function render(root, ctx) {
  const kpis = h('div', { class: 'kpis', 'data-test': 'kpis' });
  const clusterBox = h('div', null, panel('Cluster', loading()));
  const statusBox = h('div');
  const statsBox = h('div');
  root.append(
    h('div', { class: 'page-head' }, h('h1', { 'data-test': 'page-title' }, 'Cluster'), h('span', { class: 'sub' }, 'consensus group, server and store'),
      h('div', { class: 'tools' }, h('button', { class: 'btn btn-sm', 'data-test': 'cluster-refresh', onclick: () => load() }, 'Refresh'))),
    kpis,
    clusterBox,
    h('div', { class: 'grid grid-2' }, statusBox, statsBox));

  async function load() {
    const [c, st, sts] = await Promise.allSettled([call('cluster', {}), status(), call('stats', {})]);
    if (!ctx.isCurrent()) return;
    drawKpis(c, st, sts);
    drawCluster(c);
    drawStatus(st);
    drawStats(sts);
  }

  function drawKpis(c, st, sts) {
    const cl = c.status === 'fulfilled' ? c.value || {} : null;
    const stats = sts.status === 'fulfilled' ? sts.value || {} : null;
    const status = st.status === 'fulfilled' ? st.value || {} : null;
    const k = (name, label, value, raw, note, tone) => h('div', { class: `kpi ${tone || ''}`, 'data-test': `kpi-${name}`, 'data-value': raw ?? '' },
      h('div', { class: 'kpi-label' }, label), h('div', { class: 'kpi-value' }, value), note ? h('div', { class: 'kpi-note' }, note) : null);
    const nodes = cl && cl.configured ? (cl.nodes || []).length : 1;
    const lagging = cl && cl.configured ? (cl.nodes || []).filter((n) => n.lag).length : 0;
    replace(kpis,
      k('nodes', 'Nodes', fmt.num(nodes), nodes, cl && cl.configured ? `${lagging} lagging` : 'standalone store'),
      k('leader', 'Leader', cl && cl.configured ? String(cl.leader ?? 'none') : '—', cl && cl.configured ? cl.leader : '', cl && cl.configured ? `term ${fmt.num(cl.term)}` : 'no consensus group', cl && cl.configured && (cl.leader === null || cl.leader === undefined) ? 'bad' : ''),
      k('executions', 'Executions', stats ? fmt.num(stats.executions) : '—', stats ? stats.executions : '', stats ? `${fmt.num(stats.checkpoints)} checkpoints` : 'store-wide figure'),
      k('disk', 'On disk', stats ? fmt.bytes(stats.disk_bytes) : '—', stats ? stats.disk_bytes : '', stats ? `${fmt.bytes(stats.raw_state_bytes)} of state` : ''),
      k('runs', 'Open runs', status ? fmt.num(status.runs) : '—', status ? status.runs : '', status ? `durability ${status.durability}` : ''));
  }

  function drawCluster(res) {
    if (res.status === 'rejected') {
      const e = res.reason;
      const unknown = e instanceof ApiError && e.unknownMethod;
      replace(clusterBox, panel('Cluster', h('div', { 'data-test': 'cluster-info', 'data-configured': 'unknown' },
        unknown ? h('div', { class: 'note' }, 'This server does not report cluster membership (no cluster method). A store that syncs to a cluster of omium nodes shows its nodes here.') : errorBox(e, 'cluster'))));
      return;
    }
    const c = res.value || {};
    if (!c.configured) {
      replace(clusterBox, panel('Cluster', h('div', { 'data-test': 'cluster-info', 'data-configured': 'false' },
        h('div', { class: 'row' }, badge('standalone', 'neutral'), h('span', { class: 'muted' }, 'This store is not part of a cluster: it runs alone (one writer, its embedded one-voter consensus group).')),
        c.note || c.message ? h('p', { class: 'muted small' }, c.note || c.message) : null)));
      return;
    }
    const nodes = c.nodes || [];
    const maxMatched = Math.max(0, ...nodes.map((n) => n.matched || 0));
    replace(clusterBox, panel(`Cluster · ${nodes.length} node${nodes.length === 1 ? '' : 's'}`, [
      h('div', { 'data-test': 'cluster-info', 'data-configured': 'true' }, kv([
        ['leader', c.leader !== null && c.leader !== undefined ? h('b', null, String(c.leader)) : badge('no leader', 'bad')],
        ['term', fmt.num(c.term)],
        c.committed !== undefined ? ['committed', fmt.num(c.committed)] : null,
      ])),
      h('div', { class: 'table-wrap', style: 'margin-top:10px' }, h('table', { class: 'table' },
        h('thead', null, h('tr', null, ['Node', 'Address', 'Role', 'Matched index', 'Lag', ''].map((x, i) => h('th', { class: i === 3 || i === 4 ? 'num' : '' }, x)))),
        h('tbody', null, nodes.map((n) => {
          const lag = n.lag ?? (maxMatched - (n.matched || 0));
          const isLeader = String(n.id) === String(c.leader) || n.role === 'leader';
          return h('tr', { 'data-test': 'cluster-node', 'data-node': n.id, 'data-role': n.role || (isLeader ? 'leader' : '') },
            h('td', null, h('b', null, String(n.id))),
            h('td', { class: 'mono' }, n.addr || '—'),
            h('td', null, badge(n.role || (isLeader ? 'leader' : 'follower'), isLeader ? 'info' : n.role === 'learner' ? 'neutral' : 'ok')),
            h('td', { class: 'num' }, n.matched === null || n.matched === undefined ? '—' : fmt.num(n.matched)),
            h('td', { class: 'num' }, lag ? badge(fmt.num(lag), lag > 100 ? 'bad' : 'warn') : '0'),
            h('td', { style: 'width:30%' }, lagBar(n.matched, maxMatched)));
        })))),
    ]), synced(c));
  }

  // The sync state of executions: what the cluster holds, who owns it, and how this store's
  // copy compares (same head, ahead with a push to come, behind, or not here).
  const HERE = { in_sync: ['in sync', 'ok'], ahead: ['ahead: push to come', 'warn'], behind: ['behind: pull to update', 'warn'], not_here: ['not in this store', 'neutral'] };
  function synced(c) {
    if (c.sync_error) return panel('Synced executions', h('div', { class: 'note', 'data-test': 'synced-error' }, `The cluster did not list its executions: ${c.sync_error}`));
    const xs = c.executions || [];
    const title = `Synced executions · ${fmt.num(c.synced_total ?? xs.length)}${(c.synced_total ?? 0) > xs.length ? ` (newest ${xs.length} shown)` : ''}`;
    if (!xs.length) return panel(title, h('div', { class: 'empty', 'data-test': 'synced-none' }, 'No store has pushed an execution to this cluster yet.'));
    return panel(title, h('div', { class: 'table-wrap' }, h('table', { class: 'table', 'data-test': 'synced-executions' },
      h('thead', null, h('tr', null, ['Execution', 'Workflow', 'Status', 'Owner', 'Checkpoints', 'Lease', 'Updated', 'This store'].map((x, i) => h('th', { class: i === 4 ? 'num' : '' }, x)))),
      h('tbody', null, xs.map((x) => h('tr', { 'data-test': 'synced-row', 'data-execution': x.id, 'data-here': x.here },
        h('td', null, x.here === 'not_here' ? h('span', { class: 'mono' }, x.id) : execLink(x.id)),
        h('td', null, x.workflow, x.tenant && x.tenant !== 'default' ? h('span', { class: 'muted' }, ` · ${x.tenant}`) : null),
        h('td', null, badge(x.status)),
        h('td', { class: 'muted' }, `${x.owner}${x.owner_host ? ` @ ${x.owner_host}` : ''}`),
        h('td', { class: 'num' }, fmt.num(x.checkpoints)),
        h('td', null, x.lease_left_ms ? `held ${fmt.dur(x.lease_left_ms)} more` : h('span', { class: 'muted' }, 'free')),
        tdTime(x.updated_at_ms),
        h('td', null, badge(...(HERE[x.here] || [x.here, 'neutral'])))))))), { class: 'flush' });
  }

  function lagBar(matched, max) {
    if (!max || matched === null || matched === undefined) return null;
    const pct = Math.max(2, Math.round((100 * matched) / max));
    return h('div', { style: 'background:#eef0f3;border-radius:3px;height:8px;width:100%' }, h('div', { style: `background:${pct >= 99 ? '#2f9e44' : '#f08c00'};height:8px;border-radius:3px;width:${pct}%` }));
  }

  function drawStatus(res) {
    if (res.status === 'rejected') { replace(statusBox, panel('Server', errorBox(res.reason, 'status'))); return; }
    const s = res.value || {};
    const c = s.caller || {};
    replace(statusBox, panel('Server', h('div', { 'data-test': 'status-info' }, kv([
      ['version', s.version],
      ['store', s.store ? h('code', null, s.store) : h('span', { class: 'muted' }, 'hidden from tenant keys')],
      ['durability', s.durability],
      ['open runs', fmt.num(s.runs)],
      ['you', `${c.actor || '?'} · tenant ${c.tenant || '?'} · ${(c.roles || []).join(', ') || 'no role'}`],
      ctx.who && ctx.who.mode ? ['dashboard mode', ctx.who.mode] : null,
      ...Object.entries(s).filter(([k, v]) => !['version', 'store', 'durability', 'runs', 'caller'].includes(k) && (typeof v !== 'object' || v === null)).map(([k, v]) => [k.replace(/_/g, ' '), String(v)]),
    ]))));
  }

  function drawStats(res) {
    if (res.status === 'rejected') {
      const e = res.reason;
      replace(statsBox, panel('Store', e instanceof ApiError && e.status === 403 ? h('div', { class: 'muted' }, 'Space figures are store-wide: a key of one tenant does not see them.') : errorBox(e, 'stats')));
      return;
    }
    const s = res.value || {};
    const saved = s.raw_state_bytes ? 1 - (s.inline_bytes + s.chunk_bytes) / s.raw_state_bytes : null;
    replace(statsBox, panel('Store', h('div', { 'data-test': 'stats-info' }, kv([
      ['executions', fmt.num(s.executions)],
      ['checkpoints', fmt.num(s.checkpoints)],
      ['state bytes (raw)', fmt.bytes(s.raw_state_bytes)],
      ['stored inline', fmt.bytes(s.inline_bytes)],
      ['chunks', `${fmt.num(s.chunks)} · ${fmt.bytes(s.chunk_bytes)}`],
      saved !== null && saved > 0 ? ['saved by dedup', fmt.pct(saved)] : null,
      ['on disk', fmt.bytes(s.disk_bytes)],
    ]))));
  }

  await load();
  const timer = setInterval(() => { if (document.visibilityState === 'visible') load(); }, 10000);
  return () => clearInterval(timer);
}
