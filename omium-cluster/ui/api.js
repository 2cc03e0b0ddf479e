// The HTTP API of omium serve / omium ui: `POST /v1/<method>` with a JSON object of arguments,
// answers JSON; errors are 4xx/5xx with {code, message}. An API key (sessionStorage 'omium.key')
// goes in `Authorization: Bearer <key>`; a 401 (`unauthenticated`) asks the app for a key (login
// screen) and retries. The live feed is `GET /v1/events/stream` (Server-Sent Events) read with
// fetch + a stream reader, since it needs the Authorization header (EventSource cannot send it).

const KEY = 'omium.key';

export class ApiError extends Error {
  constructor(status, code, message, method) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
    this.method = method || '';
  }
  // The server does not know this method (an older binary): 400 invalid_argument "... is not a
  // method of this server", or a 404/405 from a front that does not route it.
  get unknownMethod() {
    return (this.status === 400 && /not a method/i.test(this.message)) || this.status === 404 && this.code === '' || this.status === 405;
  }
}

export function getKey() {
  try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; }
}
export function setKey(k) {
  try { k ? sessionStorage.setItem(KEY, k) : sessionStorage.removeItem(KEY); } catch { /* private mode */ }
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const k = getKey();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

// The app installs this: called on 401 unauthenticated, resolves once a new key is stored.
let authHandler = null;
let authPending = null;
export function setAuthHandler(fn) { authHandler = fn; }

async function needAuth(message) {
  if (!authHandler) throw new ApiError(401, 'unauthenticated', message);
  if (!authPending) {
    authPending = Promise.resolve(authHandler(message)).finally(() => { authPending = null; });
  }
  return authPending;
}

async function errorOf(res, method) {
  let code = '', message = '';
  const text = await res.text().catch(() => '');
  try {
    const j = JSON.parse(text);
    code = j.code || (j.error && j.error.code) || '';
    message = j.message || (j.error && j.error.message) || '';
  } catch {
    message = text.trim().slice(0, 300);
  }
  if (!message) message = `${method}: HTTP ${res.status} ${res.statusText || ''}`.trim();
  return new ApiError(res.status, code, message, method);
}

async function post(method, args) {
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(`/v1/${method}`, {
        method: 'POST',
        headers: headers({ 'Content-Type': 'application/json', Accept: 'application/json' }),
        body: JSON.stringify(args || {}),
        credentials: 'same-origin',
      });
    } catch (e) {
      throw new ApiError(0, 'unavailable', `the server did not answer (${e.message || e})`, method);
    }
    if (res.status === 401 && attempt < 5) {
      // `unauthenticated` (or `unauthorized` from older servers): no key, or one refused
      const err = await errorOf(res, method);
      await needAuth(getKey() ? `The key was refused: ${err.message}` : err.message);
      continue;
    }
    if (!res.ok) throw await errorOf(res, method);
    return res;
  }
}

// One method call: the JSON answer, or an ApiError.
export async function call(method, args = {}) {
  const res = await post(method, args);
  const text = await res.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

// A call whose absence is not an error: null when the server does not have the method (or the
// caller may not call it), the answer otherwise.
export async function optional(method, args = {}) {
  try { return await call(method, args); } catch (e) {
    if (e instanceof ApiError && (e.unknownMethod || e.status === 403 || e.status === 404)) return null;
    throw e;
  }
}

// A download (report in html/pdf/csv): a Blob and a file name. The answer is either the raw
// bytes with Content-Type and Content-Disposition, or JSON {content_type, filename, data(base64)}.
export async function download(method, args, fallbackName) {
  const res = await post(method, args);
  const type = res.headers.get('Content-Type') || 'application/octet-stream';
  const disp = res.headers.get('Content-Disposition') || '';
  let name = fallbackName;
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disp);
  if (m) name = decodeURIComponent(m[1]);
  if (/application\/json/i.test(type)) {
    const j = await res.json();
    if (j && typeof j.data === 'string') {
      return { blob: new Blob([b64bytes(j.data)], { type: j.content_type || 'application/octet-stream' }), name: j.filename || name };
    }
    return { blob: new Blob([JSON.stringify(j, null, 2)], { type: 'application/json' }), name };
  }
  return { blob: await res.blob(), name };
}

// GET endpoints (status is GET in the OpenAPI document; POST is tried too).
export async function getJson(path) {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(path, { headers: headers({ Accept: 'application/json' }), credentials: 'same-origin' });
    if (res.status === 401 && attempt < 5) { await needAuth((await errorOf(res, path)).message); continue; }
    if (!res.ok) throw await errorOf(res, path);
    return res.json();
  }
}

export async function status() {
  try { return await getJson('/v1/status'); } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return call('status');
    throw e;
  }
}

export function b64bytes(s) {
  const bin = atob(s || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// ---- the event feed -------------------------------------------------------------------------

// Follows /v1/events/stream from a cursor, reconnecting after the last id it saw; falls back
// to long polls of POST /v1/events when the stream is not served. Listeners get
// {seq, type, event} where type has no `io.omium.` prefix and event is the CloudEvent.
export class EventFeed {
  constructor() {
    this.last = 0;
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.state = 'idle';
    this.stopped = true;
    this.ctrl = null;
    this.received = 0;
  }
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  onState(fn) { this.stateListeners.add(fn); fn(this.state); return () => this.stateListeners.delete(fn); }
  setState(s) { if (s !== this.state) { this.state = s; for (const f of this.stateListeners) f(s); } }
  start(since) {
    this.last = since || 0;
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }
  stop() { this.stopped = true; if (this.ctrl) this.ctrl.abort(); this.setState('idle'); }
  emit(seq, type, data) {
    let event = data;
    if (typeof data === 'string') { try { event = JSON.parse(data); } catch { event = { data }; } }
    type = String(type || (event && event.type) || '').replace(/^io\.omium\./, '');
    if (seq) this.last = Math.max(this.last, seq);
    this.received++;
    for (const f of this.listeners) { try { f({ seq, type, event }); } catch (e) { console.error(e); } }
  }
  async loop() {
    let backoff = 500, mode = 'stream';
    while (!this.stopped) {
      this.ctrl = new AbortController();
      try {
        if (mode === 'stream') {
          const res = await fetch(`/v1/events/stream?since=${this.last}`, {
            headers: headers({ Accept: 'text/event-stream' }), signal: this.ctrl.signal, cache: 'no-store',
          });
          if (res.status === 401) { await needAuth((await errorOf(res, 'events/stream')).message); continue; }
          if (res.status === 404 || res.status === 405) { mode = 'poll'; continue; }
          if (!res.ok || !res.body) throw await errorOf(res, 'events/stream');
          this.setState('live');
          backoff = 500;
          await this.read(res.body.getReader());
        } else {
          this.setState('live');
          const page = await call('events', { since: this.last, limit: 500, wait_ms: 25000 });
          for (const ev of page.events || []) this.emit(ev.omiumseq || Number(ev.id), ev.type, ev);
          if (page.cursor) this.last = Math.max(this.last, page.cursor);
          backoff = 500;
          continue;
        }
      } catch (e) {
        if (this.stopped) break;
        if (e instanceof ApiError && e.status === 403) { this.setState('forbidden'); return; }
      }
      if (this.stopped) break;
      this.setState('reconnecting');
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 15000);
    }
  }
  async read(reader) {
    const dec = new TextDecoder();
    let buf = '';
    let id = null, type = null, data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\n|\r/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (data.length) this.emit(id ? Number(id) : 0, type, data.join('\n'));
          id = null; type = null; data = [];
          continue;
        }
        if (line[0] === ':') continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let v = i < 0 ? '' : line.slice(i + 1);
        if (v[0] === ' ') v = v.slice(1);
        if (field === 'id') id = v;
        else if (field === 'event') type = v;
        else if (field === 'data') data.push(v);
      }
    }
  }
}

// The seq of the newest event this caller can see: the audit head (store-wide callers), else
// found by bisection over the (tenant-filtered) feed: a few calls, never a scan.
export async function headSeq() {
  try {
    const h = await call('audit_head');
    return h ? h.seq : 0;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status === 401) throw e;
  }
  let lo = 0, hi = 1;
  // grow until a page after `hi` is empty
  for (let i = 0; i < 40; i++) {
    const p = await call('events', { since: hi, limit: 1 });
    if (!p.events || !p.events.length) break;
    lo = p.events[0].omiumseq; hi = hi * 4 + lo;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    const p = await call('events', { since: mid, limit: 1 });
    if (p.events && p.events.length) lo = p.events[0].omiumseq; else hi = mid;
  }
  return lo;
}
