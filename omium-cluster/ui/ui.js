// Shared building blocks of the pages: element builders, formatting, status badges, the toast,
// the confirm dialog, permissions (whoami's `may`), JSON views and line diffs.

// ---- elements -------------------------------------------------------------------------------

// h('div', {class: 'x', 'data-test': 'y', onclick: fn}, child, 'text', [more]) -> Element
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVGNS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' || k === 'selected') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
export function replace(el, ...children) { clear(el); return append(el, children); }

// ---- formatting -----------------------------------------------------------------------------

const pad = (n, w = 2) => String(n).padStart(w, '0');
export const fmt = {
  time(ms) {
    if (ms === null || ms === undefined) return '—';
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  },
  clock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  },
  ago(ms) {
    if (!ms) return '—';
    const s = (Date.now() - ms) / 1000;
    if (s < 0) return 'just now';
    if (s < 60) return `${Math.floor(s)}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  },
  dur(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
    if (ms === 0) return '0';
    if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
    if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
    return `${(s / 86400).toFixed(1)} d`;
  },
  pct(x, digits = 1) { return x === null || x === undefined ? '—' : `${(x * 100).toFixed(digits)}%`; },
  usd(x) {
    if (x === null || x === undefined) return '—';
    if (Math.abs(x) >= 100) return `$${x.toFixed(0)}`;
    if (Math.abs(x) >= 1) return `$${x.toFixed(2)}`;
    return `$${x.toFixed(3)}`;
  },
  num(n) {
    if (n === null || n === undefined) return '—';
    if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
    if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
    return Number.isInteger(n) ? n.toLocaleString('en-US') : n.toFixed(2);
  },
  bytes(n) {
    if (n === null || n === undefined) return '—';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${u[i]}`;
  },
  short(id, n = 10) { return !id ? '—' : id.length > n + 2 ? `${id.slice(0, n)}…` : id; },
};

export function plural(n, one, many) {
  return `${fmt.num(n || 0)} ${(n || 0) === 1 ? one : many || `${one}s`}`;
}

export function tdTime(ms) {
  return h('td', { class: 'nowrap muted', title: ms ? new Date(ms).toISOString() : '' }, fmt.time(ms));
}

// ---- badges ---------------------------------------------------------------------------------

const STATUS_CLASS = {
  completed: 'ok', recovered: 'ok', resolved: 'ok', ok: 'ok', applied: 'ok', valid: 'ok',
  failed: 'bad', error: 'bad', firing: 'bad', escalated: 'bad', refused: 'bad', critical: 'bad',
  running: 'info', started: 'info', resumed: 'info', step: 'info', requested: 'info', leader: 'info',
  paused: 'warn', pending_alert: 'warn', pending: 'neutral', open: 'warn', rolled_back: 'warn', warning: 'warn', acknowledged: 'neutral',
  cancelled: 'dark', deleted: 'dark', unset: 'neutral', info: 'neutral',
};
export function badge(text, kind) {
  const t = String(text ?? '—');
  return h('span', { class: `badge badge-${kind || STATUS_CLASS[t] || 'neutral'}`, 'data-status': t }, t.replace(/_/g, ' '));
}

// ---- toast ----------------------------------------------------------------------------------

let toastTimer = null;
let toastCount = 0;
// One message at a time in [data-test=toast]: "<what>: applied ..." or the error's message.
export function toast(text, kind = 'ok', ms) {
  let el = document.querySelector('[data-test="toast"]');
  if (!el) {
    el = h('div', { class: 'toast', 'data-test': 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(el);
  }
  el.hidden = false;
  el.className = `toast toast-${kind} show`;
  el.dataset.kind = kind;
  el.dataset.toastId = String(++toastCount);
  replace(el, h('span', { class: 'toast-text' }, text), h('button', { class: 'toast-x', title: 'Dismiss', onclick: () => el.classList.remove('show') }, '×'));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), ms || (kind === 'error' ? 20000 : 10000));
}

// Hides the message (a new action's dialog opens: what shows next is that action's result).
export function hideToast() {
  const el = document.querySelector('[data-test="toast"]');
  if (el) { el.classList.remove('show'); el.hidden = true; replace(el); }
}

export function toastError(e, what) {
  const msg = (e && e.message) || String(e);
  toast(what ? `${what}: ${msg}` : msg, 'error');
}

// ---- confirm dialog -------------------------------------------------------------------------

// Resolves to {reason} when confirmed ([data-test=confirm]), null when cancelled
// ([data-test=cancel], Escape, a click outside). `body` may be a Node; `reason` shows an
// optional reason field ([data-test=confirm-reason]).
export function confirmDialog({ title, body, confirmLabel = 'Confirm', danger = false, reason = true, extra = null, validate = null }) {
  hideToast();
  return new Promise((resolve) => {
    const prev = document.activeElement;
    const reasonInput = reason ? h('input', { type: 'text', class: 'input wide', placeholder: 'Reason (optional, recorded in the audit log)', 'data-test': 'confirm-reason' }) : null;
    const errLine = h('div', { class: 'form-error', 'data-test': 'confirm-error' });
    const done = (v) => { overlay.remove(); document.removeEventListener('keydown', onKey, true); if (prev && prev.focus) prev.focus(); resolve(v); };
    const ok = async () => {
      if (validate) {
        const problem = await validate();
        if (problem) { errLine.textContent = problem; return; }
      }
      done({ reason: reasonInput ? reasonInput.value.trim() : '' });
    };
    const onKey = (e) => {
      if (e.key === 'Escape') { e.preventDefault(); done(null); }
      if (e.key === 'Enter' && e.target === reasonInput) { e.preventDefault(); ok(); }
    };
    const confirmBtn = h('button', { class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, 'data-test': 'confirm', onclick: ok }, confirmLabel);
    const overlay = h('div', { class: 'overlay', 'data-test': 'dialog', onmousedown: (e) => { if (e.target === overlay) done(null); } },
      h('div', { class: 'dialog', role: 'dialog', 'aria-modal': 'true', 'aria-label': title },
        h('h3', null, title),
        body ? h('div', { class: 'dialog-body' }, body) : null,
        extra,
        reasonInput ? h('label', { class: 'field' }, h('span', null, 'Reason'), reasonInput) : null,
        errLine,
        h('div', { class: 'dialog-actions' },
          h('button', { class: 'btn', 'data-test': 'cancel', onclick: () => done(null) }, 'Cancel'),
          confirmBtn)));
    document.body.appendChild(overlay);
    document.addEventListener('keydown', onKey, true);
    (reasonInput || confirmBtn).focus();
  });
}

// ---- permissions ----------------------------------------------------------------------------

// The role groups of docs/security.md, used when the server has no whoami (older binaries).
const GROUPS = {
  read: ['reader', 'worker', 'operator', 'admin'],
  work: ['worker', 'admin'],
  operate: ['operator', 'admin'],
  admin: ['admin'],
};
const METHOD_GROUP = {
  rollback: 'work', control: 'operate', resume: 'operate', fork: 'operate', 'alerts.ack': 'operate',
  apply_policy: 'operate', delete_execution: 'admin', 'control.delete': 'admin', escalate: 'operate',
};

export const perms = {
  who: null,
  set(who) { this.who = who; },
  roles() { return (this.who && this.who.roles) || []; },
  // Whether this caller may call `method` (whoami's `may`; else derived from the roles).
  can(method) {
    const who = this.who;
    if (!who) return true;
    if (who.may && typeof who.may === 'object' && Object.keys(who.may).length) {
      if (method in who.may) return who.may[method] === true;
      if (method === 'control.delete') return who.may.delete_execution === true || (who.may.control === true && this.roles().includes('admin'));
      if (method === 'escalate') return who.may.control === true || who.may.resume === true;
      return false;
    }
    if (who.read_only) return false;
    const group = METHOD_GROUP[method] || 'read';
    return this.roles().some((r) => GROUPS[group].includes(r));
  },
  // Why a button is disabled: the roles that may call the method (any of a list of methods).
  why(method) {
    const methods = Array.isArray(method) ? method : [method];
    const roles = [...new Set(methods.flatMap((m) => GROUPS[METHOD_GROUP[m] || 'read']))];
    const order = ['reader', 'worker', 'operator', 'admin'].filter((r) => roles.includes(r));
    const need = order.length > 1 ? `${order.slice(0, -1).join(', ')} or ${order[order.length - 1]}` : order[0];
    const have = this.roles().join(', ') || 'none';
    if (this.who && this.who.read_only && !(this.who.may && Object.keys(this.who.may).length)) return `Read-only: this dashboard cannot change the store (${methods.join(', ')})`;
    return `Needs the ${need} role to call ${methods.join(' or ')} (your roles: ${have})`;
  },
};

// An action button: disabled (with a title saying why) when the caller may not call `method`,
// or when `disabledReason` is given.
// `method` may be a list: the button works when any of them is allowed.
export function actionButton({ test, label, method, onclick, kind = '', disabledReason = '', title = '', extra = {} }) {
  const methods = Array.isArray(method) ? method : [method];
  const allowed = methods.some((m) => perms.can(m));
  const reason = !allowed ? perms.why(methods) : disabledReason;
  const b = h('button', Object.assign({
    class: `btn ${kind}`.trim(), 'data-test': test, 'data-method': methods.join(' '),
    title: reason || title || label, disabled: !!reason,
    onclick: (e) => { if (!b.disabled) onclick(e); },
  }, extra), label);
  if (!allowed) b.dataset.denied = 'true';
  return b;
}

// ---- views ----------------------------------------------------------------------------------

export function loading(text = 'Loading…') { return h('div', { class: 'loading', 'data-test': 'loading' }, h('span', { class: 'spinner' }), text); }
export function empty(text) { return h('div', { class: 'empty' }, text); }
export function errorBox(e, what) {
  const msg = (e && e.message) || String(e);
  return h('div', { class: 'error-box', 'data-test': 'error' }, what ? h('b', null, `${what}: `) : null, msg);
}

export function panel(title, body, opts = {}) {
  return h('section', { class: `panel ${opts.class || ''}`.trim(), 'data-test': opts.test },
    title || opts.tools ? h('div', { class: 'panel-head' }, h('h2', null, title), opts.tools ? h('div', { class: 'panel-tools' }, opts.tools) : null) : null,
    h('div', { class: 'panel-body' }, body));
}

export function kv(rows) {
  return h('dl', { class: 'kv' }, rows.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '—')]));
}

export function pretty(v) {
  if (v === undefined) return '';
  try { return JSON.stringify(v, null, 2); } catch { return String(v); }
}

// A JSON value with light syntax colouring.
export function jsonView(v, test) {
  const pre = h('pre', { class: 'json', 'data-test': test });
  const text = typeof v === 'string' ? v : pretty(v);
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (m.index > last) pre.appendChild(document.createTextNode(text.slice(last, m.index)));
    const cls = m[1] ? (m[2] ? 'j-key' : 'j-str') : m[3] ? 'j-lit' : 'j-num';
    pre.appendChild(h('span', { class: cls }, m[1] || m[0]));
    if (m[2]) pre.appendChild(document.createTextNode(m[2]));
    last = re.lastIndex;
  }
  if (last < text.length) pre.appendChild(document.createTextNode(text.slice(last)));
  return pre;
}

// Line diff (LCS; falls back to a plain replace for very large inputs).
export function lineDiff(a, b) {
  const A = (a || '').split('\n'), B = (b || '').split('\n');
  if (A.length * B.length > 4e6) return [...A.map((t) => ({ op: '-', text: t })), ...B.map((t) => ({ op: '+', text: t }))];
  const n = A.length, m = B.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = A[i] === B[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (A[i] === B[j]) { out.push({ op: ' ', text: A[i], a: i + 1, b: j + 1 }); i++; j++; }
    else if (L[i + 1][j] >= L[i][j + 1]) { out.push({ op: '-', text: A[i], a: i + 1 }); i++; }
    else { out.push({ op: '+', text: B[j], b: j + 1 }); j++; }
  }
  while (i < n) { out.push({ op: '-', text: A[i], a: i + 1 }); i++; }
  while (j < m) { out.push({ op: '+', text: B[j], b: j + 1 }); j++; }
  return out;
}

// A rendered diff; unchanged runs longer than 2*context lines fold.
export function diffView(ops, { context = 3, test = 'diff' } = {}) {
  const box = h('div', { class: 'diff', 'data-test': test });
  const changed = ops.some((o) => o.op !== ' ');
  if (!changed) { box.appendChild(h('div', { class: 'diff-same' }, 'No differences.')); return box; }
  const keep = new Array(ops.length).fill(false);
  ops.forEach((o, k) => { if (o.op !== ' ') for (let d = -context; d <= context; d++) if (ops[k + d]) keep[k + d] = true; });
  let k = 0;
  while (k < ops.length) {
    if (!keep[k] && changed) {
      let e = k;
      while (e < ops.length && !keep[e]) e++;
      const hidden = ops.slice(k, e);
      const fold = h('div', { class: 'diff-fold', title: 'Show the unchanged lines' }, `⋯ ${hidden.length} unchanged line${hidden.length === 1 ? '' : 's'}`);
      fold.addEventListener('click', () => { const frag = document.createDocumentFragment(); hidden.forEach((o) => frag.appendChild(diffLine(o))); fold.replaceWith(frag); });
      box.appendChild(fold);
      k = e;
      continue;
    }
    box.appendChild(diffLine(ops[k]));
    k++;
  }
  return box;
}

function diffLine(o) {
  const cls = o.op === '+' ? 'add' : o.op === '-' ? 'del' : 'same';
  return h('div', { class: `diff-line diff-${cls}`, 'data-op': o.op },
    h('span', { class: 'ln' }, o.a ?? ''), h('span', { class: 'ln' }, o.b ?? ''),
    h('span', { class: 'sign' }, o.op), h('span', { class: 'code' }, o.text));
}

// Debounce
export function debounce(fn, ms) {
  let t = null;
  const d = (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}

// Save a Blob as a file through a temporary <a download>.
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, style: 'display:none' });
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 30000);
}

// Select element from [value, label] pairs.
export function select(attrs, options, value) {
  return h('select', Object.assign({ class: 'input' }, attrs), options.map(([v, l]) => h('option', { value: v, selected: v === value }, l ?? v)));
}

// The route's query (#/executions?status=failed) and setting it without reloading the page.
export function query() {
  const hash = location.hash || '';
  const i = hash.indexOf('?');
  return new URLSearchParams(i >= 0 ? hash.slice(i + 1) : '');
}
export function setQuery(params) {
  const hash = location.hash || '#/';
  const base = hash.split('?')[0];
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const next = q.toString() ? `${base}?${q}` : base;
  if (next !== hash) history.replaceState(null, '', next);
}

export function link(href, text, attrs = {}) { return h('a', Object.assign({ href }, attrs), text); }
export function execLink(id) { return link(`#/execution/${encodeURIComponent(id)}`, id, { class: 'mono', 'data-test': 'execution-link', 'data-execution': id }); }
