// Property tests of the state codecs (msgpack, the default, and JSON) with fast-check: whatever
// bytes a store holds decode to plain data or a DecodeError, and nothing leaks into prototypes. `make fuzz` runs them long
// (OMIUM_FUZZ_EXAMPLES); `npm test` briefly.
import assert from "node:assert/strict";
import { test } from "node:test";

import fc from "fast-check";
import * as omium from "omium";

const numRuns = Number(process.env.OMIUM_FUZZ_EXAMPLES ?? 300);

// Keys and shapes that would matter if decoding revived classes or merged into prototypes.
const hostileKey = fc.constantFrom("__proto__", "constructor", "prototype", "__omium__", "toString", "then");
const hostileJson = fc
  .tuple(hostileKey, fc.jsonValue({ maxDepth: 3 }), fc.nat({ max: 2 }))
  .map(([key, value, depth]) => {
    let text = `{${JSON.stringify(key)}: {"polluted": true, "v": ${JSON.stringify(value) ?? "null"}}}`;
    for (let i = 0; i < depth; i++) text = `[${text}, {"constructor": {"prototype": ${text}}}]`;
    return Buffer.from(text, "utf8");
  });
const storedJson = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 200 }).map((s) => Buffer.from(s, "utf8")),
  hostileJson,
  fc.integer({ min: 1, max: 5000 }).map((n) => Buffer.from("[".repeat(n) + "]".repeat(n))),
);
// msgpack: a map whose key is a hostile name, deep arrays, the tagged extension (type 1) and
// the timestamp extension (-1) around arbitrary bytes, and arbitrary bytes.
const str8 = (s) => Buffer.concat([Buffer.from([0xd9, Buffer.byteLength(s)]), Buffer.from(s)]);
const storedMsgpack = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
  hostileKey.map((k) => Buffer.concat([Buffer.from([0x81]), str8(k), Buffer.from([0x81]), str8("polluted"), Buffer.from([0xc3])])),
  fc.integer({ min: 1, max: 5000 }).map((n) => Buffer.concat([Buffer.alloc(n, 0x91), Buffer.from([0xc0])])),
  fc.tuple(fc.constantFrom(1, 0xff), fc.uint8Array({ maxLength: 200 })).map(([type, b]) => Buffer.concat([Buffer.from([0xc7, b.length, type]), Buffer.from(b)])),
  // (msgpack refuses to encode a "__proto__" key, so generated values leave it out.)
  fc.jsonValue({ maxDepth: 3 }).filter((v) => !JSON.stringify(v ?? null).includes('"__proto__"')).map((v) => Buffer.concat([Buffer.from([0xc7, 0, 1]), omium.msgpackCodec.encode(["set", v])]).subarray(0, 400)),
);
// What the codecs build: plain objects and arrays, and (msgpack) bytes, dates and sets.
const plainPrototypes = new Set([Object.prototype, Array.prototype, Uint8Array.prototype, Date.prototype, Set.prototype]);

for (const [codec, stored] of [
  [omium.jsonCodec, storedJson],
  [omium.msgpackCodec, storedMsgpack],
]) {
  test(`${codec.name}: stored bytes decode to plain data or a DecodeError, and pollute no prototype`, () => {
    fc.assert(
      fc.property(stored, (data) => {
        try {
          const v = codec.decode(data);
          const walk = (x) => {
            if (x === null || typeof x !== "object") return;
            assert.ok(plainPrototypes.has(Object.getPrototypeOf(x)), "plain data only");
            if (x instanceof Set) for (const i of x) walk(i);
            else if (!(x instanceof Uint8Array) && !(x instanceof Date)) for (const k of Object.keys(x)) walk(x[k]);
          };
          walk(v);
        } catch (e) {
          assert.ok(e instanceof omium.DecodeError, `${e}`);
          assert.equal(e.code, "decode");
          assert.match(e.message, new RegExp(`^(the ${codec.name} codec cannot decode stored state: |malformed |unknown tagged value)`));
        }
        assert.equal({}.polluted, undefined);
        assert.equal(Object.prototype.polluted, undefined);
        assert.equal([].polluted, undefined);
      }),
      { numRuns },
    );
  });

  test(`${codec.name}: JSON values round-trip`, () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        let data;
        try {
          data = codec.encode(value);
        } catch (e) {
          // msgpack cannot hold a "__proto__" key: refused when recorded, never stored.
          assert.ok(codec.name === "msgpack" && e instanceof omium.InvalidArgumentError && /__proto__/.test(e.message), `${e}`);
          return;
        }
        assert.equal(JSON.stringify(codec.decode(data)), JSON.stringify(value));
      }),
      { numRuns },
    );
  });
}

// The msgpack codec reuses one encoder and writes long strings with Buffer.write: its bytes are
// the library's own encoding of the same value, for any value, one after another (a large state
// followed by small ones, strings of every length and script, sets through the extension). (msgpack
// writes -0 as the integer 0, so the values are generated with 0 for it.)
test("msgpack: the reused encoder writes the library's bytes for every value", async () => {
  const { encode } = await import("@msgpack/msgpack");
  const text = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: "binary", maxLength: 300 }), fc.string({ unit: "grapheme", minLength: 60, maxLength: 200 }));
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: "small" }, text, fc.integer(), fc.double({ noNaN: true }).map((d) => (d === 0 ? 0 : d)), fc.boolean(), fc.constant(null), fc.array(tie("v"), { maxLength: 4 }), fc.dictionary(text, tie("v"), { maxKeys: 4, noNullPrototype: true })),
  })).v.filter((v) => !JSON.stringify(v).includes('"__proto__"'));
  fc.assert(
    fc.property(fc.array(value, { minLength: 1, maxLength: 4 }), fc.nat({ max: 3 }), (values, big) => {
      if (big === 0) values.unshift({ big: "é".repeat(700_000) }); // over the kept buffer
      for (const v of values) {
        const ours = omium.msgpackCodec.encode(v);
        assert.ok(ours.equals(Buffer.from(encode(v, { ignoreUndefined: true }))), "the library's bytes");
        assert.deepEqual(omium.msgpackCodec.decode(ours), v);
      }
    }),
    { numRuns: Math.min(numRuns, 200) },
  );
  const withSet = { s: new Set(["x".repeat(100), 1]) };
  assert.deepEqual(omium.msgpackCodec.decode(omium.msgpackCodec.encode(withSet)), withSet);
});
