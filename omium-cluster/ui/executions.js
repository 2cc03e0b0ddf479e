// Executions: a paged list, newest first, filtered by status, workflow and tenant.
// API: executions.page {limit: 50, after, status, workflow, tenant} -> {executions, next}.
//      Without executions.page (an older server) it falls back to `executions` (all of them,
//      paged here) and says so.

import { call, ApiError } from '/ui/api.js';
import { h, replace, fmt, badge, errorBox, loading, select, query, setQuery, tdTime } from '/ui/ui.js';

const LIMIT = 50;
const STATUSES = ['pending', 'running', 'paused', 'completed', 'failed', 'cancelled'];

export async function render(root, ctx) {
  const q = query();
  const f = { status: q.get('status') || '', workflow: q.get('workflow') || '', tenant: q.get('tenant') || '' };
  const statusSel = select({ 'data-test': 'filter-status', 'aria-label': 'Status' }, [['', 'any status'], ...STATUSES.map((x) => [x, x])], f.status);
  const wf = h('input', { class: 'input', 'data-test': 'filter-workflow', placeholder: 'workflow (exact)', value: f.workflow, style: 'width:180px' });
  const tn = h('input', { class: 'input', 'data-test': 'filter-tenant', placeholder: 'tenant (exact)', value: f.tenant, style: 'width:140px' });
  const goto = h('input', { class: 'input mono', 'data-test': 'goto-execution', placeholder: 'open execution id…', style: 'width:220px' });
  const apply = h('button', { class: 'btn btn-primary btn-sm', 'data-test': 'filter-apply', type: 'submit' }, 'Apply');
  const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); f.status = statusSel.value; f.workflow = wf.value.trim(); f.tenant = tn.value.trim(); cursors = [null]; load(); } },
    statusSel, wf, tn, apply,
    h('span', { class: 'spacer' }),
    goto);
  statusSel.addEventListener('change', () => form.requestSubmit());
  goto.addEventListener('keydown', (e) => { if (e.key === 'Enter' && goto.value.trim()) { e.preventDefault(); location.hash = `#/execution/${encodeURIComponent(goto.value.trim())}`; } });
  const list = h('div', { class: 'table-wrap' });
  const prev = h('button', { class: 'btn btn-sm', 'data-test': 'page-prev', onclick: () => { if (cursors.length > 1) { cursors.pop(); load(); } } }, '← Newer');
  const next = h('button', { class: 'btn btn-sm', 'data-test': 'page-next', onclick: () => { if (nextCursor) { cursors.push(nextCursor); load(); } } }, 'Older →');
  const info = h('span', { class: 'muted small', 'data-test': 'page-info' });
  const note = h('div');
  root.append(
    h('div', { class: 'page-head' }, h('h1', { 'data-test': 'page-title' }, 'Executions'), h('span', { class: 'sub', title: 'executions.page walks the store in its own order (by the hash of the id); each page is shown last updated first' }, 'paged through the store · each page by last update')),
    note,
    h('section', { class: 'panel flush' }, form, list, h('div', { class: 'pager' }, prev, next, info)));

  let cursors = [null]; // the `after` of each page shown so far
  let nextCursor = null;
  let fallback = null; // the whole list, when the server has no executions.page
  let token = 0;

  async function page(after) {
    if (!fallback) {
      try {
        const args = { limit: LIMIT, after };
        if (f.status) args.status = f.status;
        if (f.workflow) args.workflow = f.workflow;
        if (f.tenant) args.tenant = f.tenant;
        return await call('executions.page', args);
      } catch (e) {
        if (!(e instanceof ApiError && e.unknownMethod)) throw e;
        fallback = await call('executions');
        replace(note, h('div', { class: 'note warn', style: 'margin-bottom:10px' }, 'This server has no executions.page: the whole list was loaded once and is paged here.'));
      }
    }
    const all = fallback.filter((e) => (!f.status || e.status === f.status) && (!f.workflow || e.workflow === f.workflow) && (!f.tenant || e.tenant === f.tenant));
    const start = after ? all.findIndex((e) => e.id === after) + 1 : 0;
    const slice = all.slice(start, start + LIMIT);
    return { executions: slice, next: start + LIMIT < all.length ? slice[slice.length - 1].id : null };
  }

  async function load() {
    const my = ++token;
    setQuery(f);
    replace(list, loading());
    try {
      const res = await page(cursors[cursors.length - 1]);
      if (my !== token) return;
      nextCursor = res.next || null;
      prev.disabled = cursors.length <= 1;
      next.disabled = !nextCursor;
      const from = (cursors.length - 1) * LIMIT;
      info.textContent = res.executions.length ? `${from + 1}–${from + res.executions.length}${nextCursor ? '' : ' (end)'}` : '';
      replace(list, res.executions.length ? table(res.executions) : h('div', { class: 'empty' }, nextCursor ? 'No execution matches in this part of the store: look further with Older.' : 'No executions match.'));
    } catch (e) {
      if (my === token) replace(list, errorBox(e, 'executions'));
    }
  }

  function table(execs) {
    execs = execs.slice().sort((a, b) => (b.updated_at_ms || 0) - (a.updated_at_ms || 0));
    return h('table', { class: 'table', 'data-test': 'executions-table' },
      h('thead', null, h('tr', null, ['Execution', 'Workflow', 'Tenant', 'Status', 'Checkpoints', 'Attempts', 'Labels', 'Created', 'Updated'].map((c, i) => h('th', { class: i === 4 || i === 5 ? 'num' : '' }, c)))),
      h('tbody', null, execs.map((e) => h('tr', {
        class: 'clickable', 'data-test': 'execution-row', 'data-execution': e.id, 'data-status': e.status,
        onclick: (x) => { if (!x.target.closest('a')) location.hash = `#/execution/${encodeURIComponent(e.id)}`; },
      },
      h('td', { class: 'mono nowrap' }, h('a', { href: `#/execution/${encodeURIComponent(e.id)}` }, e.id)),
      h('td', null, e.workflow),
      h('td', null, e.tenant),
      h('td', null, badge(e.status), e.error ? h('div', { class: 'small muted ellipsis', title: e.error, style: 'max-width:260px' }, e.error) : null),
      h('td', { class: 'num' }, fmt.num(e.checkpoint_count)),
      h('td', { class: 'num' }, fmt.num(e.attempts)),
      h('td', null, Object.entries(e.labels || {}).filter(([k]) => !k.startsWith('omium.')).map(([k, v]) => h('span', { class: 'tag', title: `${k}=${v}` }, `${k}=${v.length > 24 ? `${v.slice(0, 24)}…` : v}`))),
      tdTime(e.created_at_ms),
      h('td', { class: 'nowrap muted', title: fmt.time(e.updated_at_ms) }, fmt.ago(e.updated_at_ms))))));
  }

  // refresh the first page when executions change (at most every 3 s)
  let pending = null;
  const off = ctx.feed.on(({ type }) => {
    if (cursors.length !== 1 || !/^execution\./.test(type) || pending) return;
    pending = setTimeout(() => { pending = null; quietReload(); }, 3000);
  });
  async function quietReload() {
    const my = ++token;
    try {
      const res = await page(null);
      if (my !== token || cursors.length !== 1) return;
      nextCursor = res.next || null;
      next.disabled = !nextCursor;
      replace(list, res.executions.length ? table(res.executions) : h('div', { class: 'empty' }, 'No executions match.'));
    } catch { /* the next event tries again */ }
  }

  await load();
  return () => { off(); clearTimeout(pending); };
}
