// Policies and alerts: policy versions with a line diff between two versions, what applies
// where (the defaults in force for a tenant, workflow and step), validating (and applying) a
// pasted document with every error's line and column; alert rules, their state, acknowledging,
// and their firing history.
// API: policy_versions {} (every tenant's versions, with source and canonical form),
//      policy_defaults {tenant, workflow, step}, policy.validate {text} -> {valid, errors:
//      [{line, column, path, message}]}, apply_policy {tenant, scope, text, author},
//      alerts {} -> {state: {alerts, evaluated_ms}, rules}, alerts.ack {rule, group, by},
//      audit {action: "alert.", limit: 50} (history; falls back to events {types: ["alert.*"]}).

import { call, ApiError } from '/ui/api.js';
import { h, replace, fmt, badge, errorBox, loading, panel, kv, jsonView, lineDiff, diffView, toast, toastError, confirmDialog, actionButton, select, perms } from '/ui/ui.js';

export async function render(root, ctx) {
  const versionsBox = h('div');
  const whereBox = h('div');
  const validateBox = h('div');
  const alertsBox = h('div');
  root.append(
    h('div', { class: 'page-head' }, h('h1', { 'data-test': 'page-title' }, 'Policies & alerts'), h('span', { class: 'sub' }, 'recovery policies, their versions, and alert rules')),
    versionsBox,
    h('div', { class: 'grid grid-2' }, whereBox, validateBox),
    alertsBox);

  let versions = [];
  try {
    versions = await call('policy_versions', {});
  } catch (e) {
    replace(versionsBox, errorBox(e, 'policy_versions'));
  }
  if (!ctx.isCurrent()) return undefined;
  const tenants = [...new Set(versions.map((v) => v.tenant))].sort();
  drawVersions();
  drawWhere();
  drawValidate();
  loadAlerts();

  // ---- versions and diff ----

  function drawVersions() {
    if (!versions.length) {
      replace(versionsBox, panel('Policy versions', h('div', { class: 'empty' }, 'No policy has been applied yet (omium policy apply, or below).')));
      return;
    }
    const groups = new Map();
    for (const v of versions) {
      const k = `${v.tenant}\u001f${v.scope}`;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(v);
    }
    for (const g of groups.values()) g.sort((a, b) => a.version - b.version);
    let cur = null; // [tenant, scope]
    let fromV = null, toV = null;
    let mode = 'source';
    const listEl = h('div', { class: 'version-list', 'data-test': 'policy-versions' });
    const fromSel = h('select', { class: 'input', 'data-test': 'diff-from', 'aria-label': 'From version' });
    const toSel = h('select', { class: 'input', 'data-test': 'diff-to', 'aria-label': 'To version' });
    const modeSel = select({ 'data-test': 'policy-source-mode', 'aria-label': 'Compare' }, [['source', 'as written'], ['canonical', 'canonical form']], mode);
    const diffBox = h('div');
    const info = h('div');
    const pick = (tenant, scope, version) => {
      cur = [tenant, scope];
      const g = groups.get(`${tenant}\u001f${scope}`);
      toV = version ?? g[g.length - 1].version;
      const prev = g.filter((v) => v.version < toV);
      fromV = prev.length ? prev[prev.length - 1].version : toV;
      fill();
    };
    const fill = () => {
      const g = groups.get(`${cur[0]}\u001f${cur[1]}`);
      replace(fromSel, g.map((v) => h('option', { value: v.version, selected: v.version === fromV }, `v${v.version}`)));
      replace(toSel, g.map((v) => h('option', { value: v.version, selected: v.version === toV }, `v${v.version}`)));
      listEl.querySelectorAll('.version-item').forEach((el) => el.classList.toggle('selected', el.dataset.tenant === cur[0] && el.dataset.scope === cur[1] && Number(el.dataset.version) === toV));
      const a = g.find((v) => v.version === fromV), b = g.find((v) => v.version === toV);
      const text = (v) => (mode === 'canonical' ? canonicalText(v.canonical) : v.source || '');
      replace(info, kv([
        ['tenant · scope', h('span', null, h('b', null, cur[0]), ' · ', h('code', null, cur[1]))],
        ['version', `v${b.version} by ${b.author || 'unknown'} at ${fmt.time(b.created_at_ms)}`],
        ['digest', h('code', { title: b.digest }, `${(b.digest || '').slice(0, 16)}…`)],
        b.file ? ['file', h('code', null, b.file)] : null,
      ]));
      replace(diffBox,
        h('div', { class: 'section-title' }, fromV === toV ? `v${toV} (the first version: nothing to compare with)` : `v${fromV} → v${toV}`),
        fromV === toV ? jsonView(text(b), 'policy-diff') : diffView(lineDiff(text(a), text(b)), { test: 'policy-diff', context: 4 }));
    };
    fromSel.addEventListener('change', () => { fromV = Number(fromSel.value); fill(); });
    toSel.addEventListener('change', () => { toV = Number(toSel.value); fill(); });
    modeSel.addEventListener('change', () => { mode = modeSel.value; fill(); });
    for (const [k, g] of [...groups.entries()].sort()) {
      const [tenant, scope] = k.split('\u001f');
      listEl.appendChild(h('div', { class: 'vgroup' }, `${tenant} · ${scope}`));
      for (const v of g.slice().reverse()) {
        listEl.appendChild(h('div', {
          class: 'version-item', 'data-test': 'policy-version', 'data-tenant': tenant, 'data-scope': scope, 'data-version': v.version,
          onclick: () => pick(tenant, scope, v.version),
        }, h('span', { class: 'v' }, `v${v.version}`), h('span', { class: 'grow' }, v.author || 'unknown'), h('span', { class: 'muted small', title: fmt.time(v.created_at_ms) }, fmt.ago(v.created_at_ms)), h('code', { class: 'faint small' }, (v.digest || '').slice(0, 8))));
      }
    }
    replace(versionsBox, h('div', { class: 'grid', style: 'grid-template-columns: minmax(260px, 1fr) minmax(0, 3fr)' },
      panel(`Versions · ${versions.length}`, listEl, { class: 'flush' }),
      panel('Compare versions', [info, diffBox], { tools: [h('span', { class: 'muted small' }, 'from'), fromSel, h('span', { class: 'muted small' }, 'to'), toSel, modeSel] })));
    const first = [...groups.keys()].sort()[0].split('\u001f');
    pick(first[0], first[1]);
  }

  // The message without its "<file>:line:column: " prefix (shown apart); the path stays.
  function cleanMessage(e) {
    const m = String(e.message || '').replace(/^[^\n:]*:\d+:\d+:\s*/, '');
    return e.path && !m.startsWith(e.path) ? [h('code', null, `${e.path}: `), m] : m;
  }

  function canonicalText(c) {
    if (typeof c !== 'string') return JSON.stringify(c, null, 2);
    try { return JSON.stringify(JSON.parse(c), null, 2); } catch { return c; }
  }

  // ---- what applies where ----

  function drawWhere() {
    const myTenant = perms.who && perms.who.tenant && perms.who.tenant !== '*' ? perms.who.tenant : '';
    const tIn = h('input', { class: 'input', 'data-test': 'defaults-tenant', placeholder: 'tenant', value: myTenant || tenants[0] || 'default', list: 'policy-tenants', style: 'width:120px' });
    const wIn = h('input', { class: 'input', 'data-test': 'defaults-workflow', placeholder: 'workflow (optional)', style: 'width:170px' });
    const sIn = h('input', { class: 'input', 'data-test': 'defaults-step', placeholder: 'step (optional)', style: 'width:130px' });
    const out = h('div', { 'data-test': 'defaults-result' }, h('div', { class: 'muted small' }, 'The defaults in force for a step, and the scopes they come from, most specific first.'));
    const form = h('form', { class: 'row', onsubmit: async (e) => {
      e.preventDefault();
      replace(out, loading());
      try {
        const args = { tenant: tIn.value.trim() || 'default' };
        if (wIn.value.trim()) args.workflow = wIn.value.trim();
        if (sIn.value.trim()) args.step = sIn.value.trim();
        const r = await call('policy_defaults', args);
        const layerRules = (r.layers || []).map((l) => {
          const m = /^(.*) v(\d+)$/.exec(l);
          const v = m && versions.find((x) => x.tenant === args.tenant && x.scope === m[1] && x.version === Number(m[2]));
          let rules = [];
          try { rules = v ? (JSON.parse(v.canonical).rules || []) : []; } catch { rules = []; }
          return h('li', null, h('code', null, l), rules.length ? h('div', { class: 'small muted' }, rules.map((ru) => `${ru.trigger} → ${(ru.actions || []).map((a) => (typeof a === 'string' ? a : Object.keys(a)[0])).join(', ')}`).join(' · ')) : null);
        });
        replace(out,
          h('div', { class: 'section-title' }, 'Scopes in force (most specific first)'),
          layerRules.length ? h('ol', { style: 'margin:0;padding-left:20px' }, layerRules) : h('div', { class: 'muted' }, 'No policy applies: built-in behaviour only.'),
          h('div', { class: 'section-title' }, 'Defaults'),
          jsonView(r.defaults || {}));
      } catch (err) { replace(out, errorBox(err, 'policy_defaults')); }
    } }, tIn, h('datalist', { id: 'policy-tenants' }, tenants.map((t) => h('option', { value: t }))), wIn, sIn, h('button', { class: 'btn btn-primary btn-sm', 'data-test': 'defaults-lookup', type: 'submit' }, 'Look up'));
    replace(whereBox, panel('What applies where', [form, h('div', { style: 'margin-top:10px' }, out)]));
  }

  // ---- validate and apply ----

  function drawValidate() {
    const area = h('textarea', { class: 'input', rows: 14, 'data-test': 'policy-text', spellcheck: 'false', placeholder: 'Paste a policy document (YAML or JSON), e.g.\npolicies:\n  - trigger: timeout_error\n    action: auto_retry\n    max_retries: 3' });
    const result = h('div', { 'data-test': 'policy-result' });
    const tenantIn = h('input', { class: 'input', 'data-test': 'apply-tenant', placeholder: 'tenant', value: (perms.who && perms.who.tenant !== '*' && perms.who.tenant) || tenants[0] || 'default', style: 'width:110px' });
    const scopeIn = h('input', { class: 'input', 'data-test': 'apply-scope', placeholder: 'global | workflow:NAME | step:W/S', value: 'global', style: 'width:190px' });
    const gotoLine = (line, col) => {
      const lines = area.value.split('\n');
      let pos = 0;
      for (let i = 0; i < Math.min(line - 1, lines.length); i++) pos += lines[i].length + 1;
      pos += Math.max(0, (col || 1) - 1);
      area.focus();
      area.setSelectionRange(pos, Math.min(area.value.length, pos + Math.max(1, (lines[line - 1] || '').length - (col || 1) + 1)));
      const lh = parseFloat(getComputedStyle(area).lineHeight) || 17;
      area.scrollTop = Math.max(0, (line - 3) * lh);
    };
    const validate = async () => {
      replace(result, loading('Validating…'));
      try {
        const r = await call('policy.validate', { text: area.value });
        if (r.valid) { replace(result, h('div', { class: 'ok-line', 'data-test': 'policy-valid' }, '✓ Valid policy document.')); return true; }
        replace(result, h('ul', { class: 'err-list', 'data-test': 'policy-errors' }, (r.errors || []).map((e) => h('li', {
          'data-test': 'policy-error', 'data-line': e.line ?? '', 'data-column': e.column ?? '', title: e.line ? 'Show in the document' : '',
          onclick: () => { if (e.line) gotoLine(e.line, e.column); },
        }, e.line ? h('span', { class: 'pos' }, `${e.line}:${e.column ?? 1}`) : null, cleanMessage(e)))));
        return false;
      } catch (err) {
        if (err instanceof ApiError && err.unknownMethod) replace(result, errorBox(err, 'This server cannot validate policies (policy.validate)'));
        else replace(result, errorBox(err, 'policy.validate'));
        return false;
      }
    };
    const apply = async () => {
      const scope = scopeIn.value.trim() || 'global';
      const tenant = tenantIn.value.trim() || 'default';
      const ok = await confirmDialog({ title: `Apply this policy to ${tenant} · ${scope}?`, body: h('p', null, 'It is stored as the next version of the scope (the old versions stay readable) and applies to failures from now on.'), confirmLabel: 'Apply', reason: false });
      if (!ok) return;
      try {
        const r = await call('apply_policy', { tenant, scope, text: area.value, author: (perms.who && perms.who.identity) || null });
        toast(`apply policy: applied — ${tenant} · ${scope} v${(r && r.version) ?? '?'}`, 'ok');
        versions = await call('policy_versions', {});
        drawVersions();
      } catch (e) { toastError(e, 'apply_policy'); }
    };
    let t = null;
    area.addEventListener('input', () => { clearTimeout(t); if (area.value.trim()) t = setTimeout(validate, 700); else replace(result); });
    replace(validateBox, panel('Validate a policy document', [
      area,
      h('div', { class: 'row', style: 'margin-top:8px' },
        h('button', { class: 'btn btn-primary btn-sm', 'data-test': 'policy-validate', onclick: validate }, 'Validate'),
        h('span', { class: 'spacer' }),
        tenantIn, scopeIn,
        actionButton({ test: 'action-apply-policy', label: 'Apply…', method: 'apply_policy', kind: 'btn-sm', onclick: apply })),
      h('div', { style: 'margin-top:8px' }, result)]));
  }

  // ---- alerts ----

  async function loadAlerts() {
    if (!alertsBox.firstChild) replace(alertsBox, panel('Alerts', loading()));
    let a;
    try { a = await call('alerts', {}); } catch (e) { replace(alertsBox, panel('Alerts', errorBox(e, 'alerts'))); return; }
    let history = [];
    try {
      const r = await call('audit', { action: 'alert.', limit: 50 });
      history = (r.entries || []).map((e) => ({ seq: e.seq, at: e.at_ms, action: e.action, actor: e.actor, resource: e.resource, detail: parse(e.detail) }));
    } catch {
      try {
        const since = Math.max(0, ctx.head() - 20000);
        const r = await call('events', { since, types: ['alert.*'], limit: 1000 });
        history = (r.events || []).slice(-50).reverse().map((e) => ({ seq: e.omiumseq, at: Date.parse(e.time), action: String(e.type).replace(/^io\.omium\./, ''), actor: e.omiumactor, resource: e.omiumresource, detail: e.data }));
      } catch { history = []; }
    }
    if (!ctx.isCurrent()) return;
    drawAlerts(a, history);
  }

  function parse(t) { try { return JSON.parse(t); } catch { return t; } }

  function drawAlerts(a, history) {
    const rules = (a.rules && a.rules.rules) || [];
    const states = Object.values((a.state && a.state.alerts) || {});
    const groupText = (g) => (g && Object.keys(g).length ? Object.entries(g).map(([k, v]) => `${k}=${v}`).join(', ') : '—');
    const rulesTable = rules.length ? h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Rule', 'Condition', 'By', 'For', 'Repeat', 'Severity', 'Channels', 'Labels', 'State'].map((c) => h('th', null, c)))),
      h('tbody', null, rules.map((r) => {
        const mine = states.filter((s) => s.rule === r.name);
        const firing = mine.filter((s) => s.phase === 'firing').length;
        const pending = mine.filter((s) => s.phase === 'pending').length;
        return h('tr', { 'data-test': 'alert-rule', 'data-rule': r.name },
          h('td', null, h('b', null, r.name)),
          h('td', null, h('code', null, r.condition)),
          h('td', null, (r.by || []).join(', ') || '—'),
          h('td', { class: 'nowrap' }, fmt.dur(r.for_ms)),
          h('td', { class: 'nowrap' }, r.repeat_ms ? fmt.dur(r.repeat_ms) : 'never'),
          h('td', null, badge(r.severity, r.severity === 'critical' || r.severity === 'error' ? 'bad' : r.severity === 'warning' ? 'warn' : 'neutral')),
          h('td', null, (r.channels || []).map((c) => h('span', { class: 'tag' }, `${c}${a.rules.channels && a.rules.channels[c] ? ` (${a.rules.channels[c]})` : ''}`))),
          h('td', null, Object.entries(r.labels || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))),
          h('td', null, firing ? badge(`${firing} firing`, 'bad') : pending ? badge(`${pending} pending`, 'warn') : badge('ok', 'ok')));
      }))) : h('div', { class: 'empty' }, 'No alert rules are evaluated here (omium serve --alerts FILE).');
    const stateTable = states.length ? h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Rule', 'Group', 'Phase', 'Value', 'Since', 'Fired', 'Last notice', 'Acknowledged', ''].map((c) => h('th', null, c)))),
      h('tbody', null, states.sort((x, y) => (x.phase === 'firing' ? 0 : 1) - (y.phase === 'firing' ? 0 : 1) || x.rule.localeCompare(y.rule)).map((s) => {
        const ackable = s.phase === 'firing' && !s.acknowledged_by;
        return h('tr', { 'data-test': 'alert', 'data-rule': s.rule, 'data-phase': s.phase, 'data-group': groupText(s.group) },
          h('td', null, h('b', null, s.rule)),
          h('td', null, h('code', null, groupText(s.group))),
          h('td', null, badge(s.acknowledged_by && s.phase === 'firing' ? 'acknowledged' : s.phase, s.phase === 'pending' ? 'warn' : undefined)),
          h('td', { class: 'num' }, s.value === null || s.value === undefined ? '—' : Number.isInteger(s.value) ? s.value : s.value.toFixed(4)),
          h('td', { class: 'nowrap muted' }, fmt.ago(s.since_ms)),
          h('td', { class: 'nowrap muted' }, s.fired_ms ? fmt.time(s.fired_ms) : '—'),
          h('td', { class: 'nowrap muted' }, s.last_sent_ms ? fmt.ago(s.last_sent_ms) : '—'),
          h('td', null, s.acknowledged_by || '—'),
          h('td', { class: 'actions' }, ackable ? actionButton({ test: 'action-ack', label: 'Acknowledge', method: 'alerts.ack', kind: 'btn-sm', onclick: () => ack(s) }) : null));
      }))) : h('div', { class: 'empty' }, 'Nothing is pending or firing.');
    const histTable = history.length ? h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Seq', 'Time', 'Transition', 'Rule', 'Group', 'Value', 'Delivered', 'By'].map((c) => h('th', null, c)))),
      h('tbody', null, history.map((e) => {
        const d = e.detail && typeof e.detail === 'object' ? e.detail : {};
        const action = e.action.replace(/^alert\./, '');
        const verb = { fire: 'firing', firing: 'firing', resolve: 'resolved', resolved: 'resolved', ack: 'acknowledged', acknowledged: 'acknowledged', repeat: 'repeated', repeated: 'repeated' }[action] || action;
        return h('tr', { 'data-test': 'alert-history-row', 'data-seq': e.seq },
          h('td', { class: 'num muted' }, e.seq),
          h('td', { class: 'nowrap muted' }, fmt.time(e.at)),
          h('td', null, badge(verb, verb === 'firing' || verb === 'repeated' ? 'bad' : verb === 'resolved' ? 'ok' : 'neutral')),
          h('td', null, d.rule || (e.resource || '').replace(/^alert\//, '')),
          h('td', null, h('code', null, groupText(d.group))),
          h('td', { class: 'num' }, d.value === null || d.value === undefined ? '—' : Number.isInteger(d.value) ? d.value : Number(d.value).toFixed(4)),
          h('td', { class: 'small' }, Object.entries(d.delivered || {}).map(([c, r]) => h('div', { title: r }, h('b', null, c), ': ', String(r).length > 60 ? `${String(r).slice(0, 60)}…` : r))),
          h('td', { class: 'muted small' }, d.by || e.actor || ''));
      }))) : h('div', { class: 'empty' }, 'No alert has fired yet.');
    replace(alertsBox,
      panel(`Alert rules${a.rules ? ` · evaluated every ${fmt.dur(a.rules.evaluate_every_ms)}` : ''}`, h('div', { class: 'table-wrap' }, rulesTable), { class: 'flush', tools: a.state && a.state.evaluated_ms ? h('span', { class: 'muted small' }, `last evaluated ${fmt.ago(a.state.evaluated_ms)}`) : null }),
      panel('Pending and firing', h('div', { class: 'table-wrap' }, stateTable), { class: 'flush', test: 'alerts-state' }),
      panel('Firing history', h('div', { class: 'table-wrap' }, histTable), { class: 'flush' }));
  }

  async function ack(s) {
    const ok = await confirmDialog({ title: `Acknowledge ${s.rule}?`, body: h('p', null, 'No more repeats of this alert; every channel hears that it is acknowledged.'), confirmLabel: 'Acknowledge', reason: false });
    if (!ok) return;
    try {
      const args = { rule: s.rule, by: (perms.who && perms.who.identity) || 'omium ui' };
      if (s.group && Object.keys(s.group).length) args.group = s.group;
      const r = await call('alerts.ack', args);
      toast(`acknowledge: applied — ${(r || []).length} alert${(r || []).length === 1 ? '' : 's'} acknowledged`, 'ok');
      loadAlerts();
    } catch (e) { toastError(e, 'alerts.ack'); }
  }

  let pending = null;
  const off = ctx.feed.on(({ type }) => {
    if (!/^alert\./.test(type) || pending) return;
    pending = setTimeout(() => { pending = null; loadAlerts(); }, 1000);
  });
  const timer = setInterval(() => { if (document.visibilityState === 'visible') loadAlerts(); }, 30000);
  return () => { off(); clearTimeout(pending); clearInterval(timer); };
}
