// Omium dashboard (`omium ui`): the shell, the router, authentication and the live event feed.
//
// Plain ES modules, no build step; served at / (index.html) and /ui/<file>. Hash routes:
//   #/overview  #/feed  #/executions  #/execution/<id>  #/recovery  #/policies  #/compliance  #/cluster
//
// Stable `data-test` attributes for browser tests (buttons a caller may not use are disabled,
// with a title naming the role needed; data-method names the API method they call):
//   shell       app, nav-overview, nav-feed, nav-executions, nav-recovery, nav-policies,
//               nav-compliance, nav-cluster, whoami (identity · roles; data-identity,
//               data-roles "a,b", data-tenant, data-read-only), live (event stream; data-state
//               live | reconnecting | idle | forbidden), signout, page (the current page's
//               root, data-page=<route>), page-title, loading (present while loading), error
//   login       login (the screen), login-key (API key input), login-submit, login-error
//   feedback    toast (one message at a time; data-kind ok | error, data-toast-id; a success
//               says "<action>: applied ...", an error shows the server's message), dialog
//               (the confirm dialog), confirm, cancel, confirm-reason, confirm-error
//   overview    period (select: today | 7d | 30d), updated, kpis, kpi-success-rate,
//               kpi-executions, kpi-failures, kpi-mttr, kpi-p95-latency, kpi-llm-spend,
//               kpi-cost-saved, kpi-running, kpi-paused (each KPI has data-value, the raw
//               number), chart-executions, chart-started, chart-success, chart-latency,
//               chart-cost, chart-failure-types, workflow-row (data-workflow)
//   feed        feed-table, feed-row (data-execution, data-type, data-seq, data-status:
//               started | step | failed | recovering | recovered | paused | completed |
//               cancelled | deleted | other), filter-workflow, filter-agent, filter-tenant,
//               filter-status, feed-pause (stop / continue following), feed-clear, feed-count
//   executions  executions-table, execution-row (data-execution, data-status), filter-status,
//               filter-workflow, filter-tenant, filter-apply, goto-execution, page-next,
//               page-prev, page-info, execution-link (data-execution; also on other pages)
//   execution   execution-header (data-execution, data-status), execution-status,
//               execution-error, action-pause, action-resume (dialog field resume-state: the
//               edited state as JSON, optional), action-retry, action-recover, action-cancel,
//               action-delete, tab-checkpoints, tab-trace, tab-failures, tab-activity (also
//               ?tab= in the route), checkpoint-tree, checkpoint (data-checkpoint, data-seq,
//               data-kind, data-live "true"|"false", data-selected), checkpoint-detail (of
//               the selected checkpoint: the head at first), action-rollback and action-fork
//               (act on the selected checkpoint; fork's dialog field fork-new-id; its toast
//               links fork-link), state-view, state-diff, waterfall, span (data-span,
//               data-status), failure (data-failure, data-outcome), activity-row (data-seq)
//   recovery    kpi-open-failures, kpi-failures, kpi-recovery-rate, kpi-mttr,
//               kpi-retries-per-success, filter-outcome, failure-row (data-failure,
//               data-execution, data-outcome, data-type) with action-apply-fix (dialog:
//               fix-state JSON textarea, fix-insert-last), action-resume, action-rollback
//               (dialog: rollback-target select), action-escalate; no-failures,
//               chart-failure-types, chart-failure-agents, chart-mttr-types, chart-outcomes,
//               failure-patterns
//   policies    policy-versions, policy-version (data-tenant, data-scope, data-version),
//               diff-from, diff-to, policy-source-mode, policy-diff, defaults-tenant,
//               defaults-workflow, defaults-step, defaults-lookup, defaults-result,
//               policy-text, policy-validate, policy-result, policy-valid, policy-errors,
//               policy-error (data-line, data-column), apply-tenant, apply-scope,
//               action-apply-policy, alert-rule (data-rule), alerts-state, alert (data-rule,
//               data-phase, data-group), action-ack (per firing alert), alert-history-row
//   compliance  audit-head, verify-expect, action-verify, verify-result (data-ok),
//               report-period (month input), report-pdf, report-html, report-csv,
//               report-preview, report-summary, erase-id, action-delete, audit-table,
//               audit-row (data-seq), audit-filter-action, audit-filter-actor,
//               audit-filter-resource, audit-apply, audit-older, audit-newest, audit-csv,
//               audit-json
//   cluster     kpis, kpi-nodes, kpi-leader, kpi-executions, kpi-disk, kpi-runs,
//               cluster-info (data-configured), cluster-node (data-node, data-role),
//               status-info, stats-info, cluster-refresh
//
// API methods by page: see each page module's header comment.

import * as api from '/ui/api.js';
import { h, replace, toast, perms, errorBox, loading, fmt } from '/ui/ui.js';

const ROUTES = [
  { name: 'overview', title: 'Overview', icon: '◔', module: '/ui/overview.js' },
  { name: 'feed', title: 'Live feed', icon: '≋', module: '/ui/feed.js' },
  { name: 'executions', title: 'Executions', icon: '☰', module: '/ui/executions.js' },
  { name: 'execution', title: 'Execution', module: '/ui/execution.js', hidden: true, parent: 'executions' },
  { name: 'recovery', title: 'Recovery', icon: '↺', module: '/ui/recovery.js' },
  { name: 'policies', title: 'Policies & alerts', icon: '§', module: '/ui/policies.js' },
  { name: 'compliance', title: 'Compliance', icon: '✓', module: '/ui/compliance.js' },
  { name: 'cluster', title: 'Cluster', icon: '⬡', module: '/ui/cluster.js' },
];

const state = {
  who: null,
  status: null,
  feed: new api.EventFeed(),
  cleanup: null,
  routeToken: 0,
  head: 0,
};

// ---- login ----------------------------------------------------------------------------------

function showLogin(message) {
  return new Promise((resolve) => {
    document.querySelectorAll('.login-screen').forEach((e) => e.remove());
    const input = h('input', { type: 'password', class: 'input wide', 'data-test': 'login-key', placeholder: 'omk_…', autocomplete: 'current-password', spellcheck: 'false' });
    const err = h('div', { class: 'form-error', 'data-test': 'login-error' }, api.getKey() && message ? message : '');
    const submit = (e) => {
      e.preventDefault();
      const k = input.value.trim();
      if (!k) { err.textContent = 'Enter an API key.'; return; }
      api.setKey(k);
      screen.remove();
      resolve();
    };
    const screen = h('div', { class: 'login-screen', 'data-test': 'login' },
      h('form', { class: 'login-card', onsubmit: submit },
        h('div', { class: 'brand big' }, logo(), h('span', null, 'omium')),
        h('h1', null, 'Sign in'),
        h('p', { class: 'muted' }, 'This Omium server needs an API key (', h('code', null, 'omium keys create'), '). It is kept in this browser tab only.'),
        h('label', { class: 'field' }, h('span', null, 'API key'), input),
        err,
        h('button', { type: 'submit', class: 'btn btn-primary wide', 'data-test': 'login-submit' }, 'Sign in')));
    document.body.appendChild(screen);
    input.focus();
  });
}

function logo() {
  return h('img', { src: '/ui/favicon.svg', alt: '', width: 22, height: 22, class: 'logo' });
}

// ---- shell ----------------------------------------------------------------------------------

function shell() {
  const app = document.getElementById('app');
  const nav = h('nav', { class: 'sidebar', 'aria-label': 'Pages' },
    ROUTES.filter((r) => !r.hidden).map((r) => h('a', { href: `#/${r.name}`, class: 'nav-link', 'data-test': `nav-${r.name}`, 'data-route': r.name },
      h('span', { class: 'nav-icon', 'aria-hidden': 'true' }, r.icon), h('span', null, r.title))),
    h('div', { class: 'sidebar-foot', id: 'sidebar-foot' }));
  const live = h('span', { class: 'live', 'data-test': 'live', 'data-state': 'idle', title: 'Event stream' }, h('i'), h('span', { class: 'live-text' }, 'idle'));
  state.feed.onState((st) => {
    live.dataset.state = st;
    live.querySelector('.live-text').textContent = st === 'live' ? 'live' : st;
    live.title = st === 'live' ? 'Following the event stream' : st === 'forbidden' ? 'This key may not read events' : `Event stream: ${st}`;
  });
  const who = h('span', { class: 'whoami', 'data-test': 'whoami' }, '…');
  const signout = h('button', { class: 'btn btn-ghost btn-sm', 'data-test': 'signout', title: 'Forget the API key of this tab', hidden: true, onclick: () => { api.setKey(''); location.reload(); } }, 'Sign out');
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/overview' }, logo(), h('span', null, 'omium')),
    h('span', { class: 'topbar-sub', id: 'topbar-sub' }),
    h('span', { class: 'spacer' }),
    live, who, signout);
  const main = h('main', { class: 'main', id: 'main' });
  replace(app, header, h('div', { class: 'layout' }, nav, main));
  return { who, signout, main };
}

function showWho(el, signout) {
  const w = state.who;
  const roles = (w.roles || []).join(', ') || 'no role';
  el.dataset.identity = w.identity || '';
  el.dataset.roles = (w.roles || []).join(',');
  el.dataset.tenant = w.tenant || '';
  el.dataset.readOnly = w.read_only ? 'true' : 'false';
  const may = w.may ? Object.entries(w.may).filter(([, v]) => v).map(([k]) => k).join(', ') : '';
  el.title = `identity ${w.identity}\ntenant ${w.tenant}\nroles ${roles}${w.read_only ? '\nread-only' : ''}${may ? `\nmay call: ${may}` : ''}`;
  replace(el,
    h('span', { class: 'who-id' }, w.identity || 'unknown'),
    h('span', { class: 'who-sep' }, '·'),
    h('span', { class: 'who-roles' }, roles),
    w.tenant && w.tenant !== '*' ? h('span', { class: 'who-tenant' }, `tenant ${w.tenant}`) : null);
  signout.hidden = !api.getKey();
  const st = state.status;
  const sub = document.getElementById('topbar-sub');
  if (sub) {
    replace(sub,
      w.mode ? h('span', { class: 'chip' }, w.mode) : null,
      (st && st.store) || w.store ? h('span', { class: 'chip mono', title: 'store' }, (st && st.store) || w.store) : null,
      w.read_only ? h('span', { class: 'chip', title: 'This dashboard reads the store beside the process that writes it; controls are carried out by that process.' }, 'read-only handle') : null,
      st && st.version ? h('span', { class: 'chip' }, `v${st.version}`) : null);
  }
}

// ---- router ---------------------------------------------------------------------------------

function parseHash() {
  const raw = (location.hash || '').replace(/^#\/?/, '');
  const path = raw.split('?')[0];
  const parts = path.split('/').filter((p) => p !== '').map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  return { name: parts[0] || 'overview', params: parts.slice(1) };
}

async function route(main) {
  const { name, params } = parseHash();
  const r = ROUTES.find((x) => x.name === name);
  if (!r) { location.hash = '#/overview'; return; }
  const token = ++state.routeToken;
  if (state.cleanup) { try { state.cleanup(); } catch (e) { console.error(e); } state.cleanup = null; }
  document.querySelectorAll('.nav-link').forEach((a) => a.classList.toggle('active', a.dataset.route === (r.parent || r.name)));
  document.querySelectorAll('.overlay').forEach((o) => o.remove());
  const root = h('div', { class: `page page-${r.name}`, 'data-test': 'page', 'data-page': r.name });
  replace(main, root);
  root.appendChild(loading());
  main.scrollTop = 0;
  document.title = `${r.title}${params[0] ? ` ${params[0]}` : ''} · Omium`;
  try {
    const mod = await import(r.module);
    if (token !== state.routeToken) return;
    root.textContent = '';
    const cleanup = await mod.render(root, { params, feed: state.feed, who: state.who, status: state.status, head: () => state.feed.last || state.head, isCurrent: () => token === state.routeToken });
    if (token !== state.routeToken) { if (typeof cleanup === 'function') cleanup(); return; }
    state.cleanup = typeof cleanup === 'function' ? cleanup : null;
  } catch (e) {
    console.error(e);
    if (token === state.routeToken) replace(root, errorBox(e, `Could not show ${r.title}`));
  }
}

// ---- start ----------------------------------------------------------------------------------

async function identify() {
  let who = null;
  try { who = await api.optional('whoami'); } catch (e) { if (e.status !== 400) throw e; }
  let st = null;
  try { st = await api.status(); } catch (e) { if (!who) throw e; }
  state.status = st;
  if (!who) {
    const c = (st && st.caller) || {};
    who = { identity: c.actor || 'unknown', tenant: c.tenant || '*', roles: c.roles || [], read_only: false, mode: 'daemon', may: null, derived: true };
  }
  state.who = who;
  perms.set(who);
}

async function start() {
  api.setAuthHandler(showLogin);
  const { who, signout, main } = shell();
  try {
    await identify();
  } catch (e) {
    replace(main, errorBox(e, 'Could not reach the Omium server'));
    return;
  }
  showWho(who, signout);
  try { state.head = await api.headSeq(); } catch (e) { console.warn('head seq', e); state.head = 0; }
  state.feed.start(state.head);
  window.addEventListener('hashchange', () => route(main));
  if (!location.hash || location.hash === '#' || location.hash === '#/') history.replaceState(null, '', '#/overview');
  route(main);
  const foot = document.getElementById('sidebar-foot');
  const tick = () => { if (foot) foot.textContent = `events seen: ${fmt.num(state.feed.received)} · seq ${state.feed.last || state.head}`; };
  state.feed.on(tick);
  tick();
}

window.addEventListener('unhandledrejection', (e) => {
  console.error('unhandled', e.reason);
  if (e.reason && e.reason.message) toast(e.reason.message, 'error');
});

start();
