// Checkpoint states as JSON: the server's `view` (read_state {view: true}) when it gives one,
// else decoded here from the bytes: msgpack (Omium's default codec), JSON, or text.

import { call, b64bytes } from '/ui/api.js';

const cache = new Map(); // checkpoint id -> Promise<{view, codec, size, raw}>

// {view: JSON value | undefined, codec, size, note}
export function stateOf(checkpoint) {
  const id = typeof checkpoint === 'string' ? checkpoint : checkpoint.id;
  if (!cache.has(id)) {
    const p = call('read_state', { checkpoint_id: id, view: true }).then((r) => {
      const bytes = b64bytes(r && r.data);
      const codec = (r && r.codec) || (checkpoint.metadata && checkpoint.metadata['omium.codec']) || '';
      if (r && 'view' in r && r.view !== null && r.view !== undefined) return { view: r.view, codec: codec || 'server', size: bytes.length };
      return { ...decodeLocally(bytes, codec), size: bytes.length };
    });
    p.catch(() => cache.delete(id));
    cache.set(id, p);
    if (cache.size > 400) cache.delete(cache.keys().next().value);
  }
  return cache.get(id);
}

export function forget(id) { cache.delete(id); }

function decodeLocally(bytes, codec) {
  if (!bytes.length) return { view: null, codec: codec || 'empty' };
  if (codec === 'json' || (!codec && (bytes[0] === 0x7b || bytes[0] === 0x5b))) {
    try { return { view: JSON.parse(new TextDecoder().decode(bytes)), codec: 'json' }; } catch { /* not JSON */ }
  }
  if (codec === 'msgpack' || !codec) {
    try {
      const r = new MsgpackReader(bytes);
      const v = r.read();
      if (r.pos === bytes.length) return { view: v, codec: 'msgpack' };
    } catch { /* not msgpack */ }
  }
  if (codec === 'pickle') return { view: undefined, codec, note: 'pickle states are not decoded (they would run code)', hex: hex(bytes) };
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  // eslint-disable-next-line no-control-regex
  if (!/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text)) return { view: text, codec: codec || 'text' };
  return { view: undefined, codec: codec || 'bytes', note: `${bytes.length} bytes the dashboard cannot decode`, hex: hex(bytes) };
}

function hex(bytes) {
  const out = [];
  for (let i = 0; i < Math.min(bytes.length, 512); i += 16) {
    const row = Array.from(bytes.slice(i, i + 16));
    out.push(`${i.toString(16).padStart(6, '0')}  ${row.map((b) => b.toString(16).padStart(2, '0')).join(' ').padEnd(48)}  ${row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('')}`);
  }
  if (bytes.length > 512) out.push(`… ${bytes.length - 512} more bytes`);
  return out.join('\n');
}

// A msgpack reader to JSON-able values. Extension values (Omium's tags for datetimes, sets,
// dataclasses...) become {"$ext": type, "data": hex} unless they are msgpack timestamps.
class MsgpackReader {
  constructor(bytes) { this.b = bytes; this.pos = 0; this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength); this.depth = 0; }
  need(n) { if (this.pos + n > this.b.length) throw new Error('truncated'); }
  u8() { this.need(1); return this.b[this.pos++]; }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  i8() { this.need(1); const v = this.view.getInt8(this.pos); this.pos += 1; return v; }
  i16() { this.need(2); const v = this.view.getInt16(this.pos); this.pos += 2; return v; }
  i32() { this.need(4); const v = this.view.getInt32(this.pos); this.pos += 4; return v; }
  u64() { this.need(8); const v = this.view.getBigUint64(this.pos); this.pos += 8; return big(v); }
  i64() { this.need(8); const v = this.view.getBigInt64(this.pos); this.pos += 8; return big(v); }
  f32() { this.need(4); const v = this.view.getFloat32(this.pos); this.pos += 4; return v; }
  f64() { this.need(8); const v = this.view.getFloat64(this.pos); this.pos += 8; return v; }
  bytes(n) { this.need(n); const v = this.b.slice(this.pos, this.pos + n); this.pos += n; return v; }
  str(n) { return new TextDecoder().decode(this.bytes(n)); }
  arr(n) { if (++this.depth > 200) throw new Error('too deep'); const a = []; for (let i = 0; i < n; i++) a.push(this.read()); this.depth--; return a; }
  map(n) {
    if (++this.depth > 200) throw new Error('too deep');
    const o = {};
    for (let i = 0; i < n; i++) {
      const k = this.read();
      o[typeof k === 'string' ? k : JSON.stringify(k)] = this.read();
    }
    this.depth--;
    return o;
  }
  bin(n) { const v = this.bytes(n); return { $bytes: btoa(String.fromCharCode(...v.slice(0, 4096))) }; }
  ext(n) {
    const type = this.i8();
    const data = this.bytes(n);
    if (type === -1) {
      const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
      let sec, ns = 0;
      if (n === 4) sec = dv.getUint32(0);
      else if (n === 8) { const hi = dv.getUint32(0), lo = dv.getUint32(4); ns = hi >>> 2; sec = (hi & 3) * 2 ** 32 + lo; }
      else if (n === 12) { ns = dv.getUint32(0); sec = Number(dv.getBigInt64(4)); }
      if (sec !== undefined) return new Date(sec * 1000 + ns / 1e6).toISOString();
    }
    // Omium's own tags wrap a msgpack payload: show it decoded when it is.
    try {
      const inner = new MsgpackReader(data);
      const v = inner.read();
      if (inner.pos === data.length) return { $ext: type, value: v };
    } catch { /* raw */ }
    return { $ext: type, data: Array.from(data).map((b) => b.toString(16).padStart(2, '0')).join('') };
  }
  read() {
    const t = this.u8();
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 256;
    if ((t & 0xf0) === 0x80) return this.map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return this.arr(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return this.str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: return this.f32();
      case 0xcb: return this.f64();
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.u64();
      case 0xd0: return this.i8();
      case 0xd1: return this.i16();
      case 0xd2: return this.i32();
      case 0xd3: return this.i64();
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.arr(this.u16());
      case 0xdd: return this.arr(this.u32());
      case 0xde: return this.map(this.u16());
      case 0xdf: return this.map(this.u32());
      default: throw new Error(`msgpack: bad byte 0x${t.toString(16)}`);
    }
  }
}

function big(v) { return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString(); }
