// Property tests of the JSON state codec with fast-check: whatever bytes a store holds decode
// to plain data or a DecodeError, and nothing leaks into prototypes. `make fuzz` runs them long
// (OMIUM_FUZZ_EXAMPLES); `npm test` briefly.
import assert from "node:assert/strict";
import { test } from "node:test";

import fc from "fast-check";
import * as omium from "omium";

const numRuns = Number(process.env.OMIUM_FUZZ_EXAMPLES ?? 300);
const codec = omium.jsonCodec;

// Keys and shapes that would matter if decoding revived classes or merged into prototypes.
const hostileKey = fc.constantFrom("__proto__", "constructor", "prototype", "__omium__", "toString", "then");
const hostileJson = fc
  .tuple(hostileKey, fc.jsonValue({ maxDepth: 3 }), fc.nat({ max: 2 }))
  .map(([key, value, depth]) => {
    let text = `{${JSON.stringify(key)}: {"polluted": true, "v": ${JSON.stringify(value) ?? "null"}}}`;
    for (let i = 0; i < depth; i++) text = `[${text}, {"constructor": {"prototype": ${text}}}]`;
    return Buffer.from(text, "utf8");
  });
const stored = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 200 }).map((s) => Buffer.from(s, "utf8")),
  hostileJson,
  fc.integer({ min: 1, max: 5000 }).map((n) => Buffer.from("[".repeat(n) + "]".repeat(n))),
);

test("stored bytes decode to plain data or a DecodeError, and pollute no prototype", () => {
  fc.assert(
    fc.property(stored, (data) => {
      try {
        const v = codec.decode(data);
        // Plain data only: every object is an Object or an Array.
        const walk = (x) => {
          if (x === null || typeof x !== "object") return;
          const proto = Object.getPrototypeOf(x);
          assert.ok(proto === Object.prototype || proto === Array.prototype, "plain objects only");
          for (const k of Object.keys(x)) walk(x[k]);
        };
        walk(v);
      } catch (e) {
        assert.ok(e instanceof omium.DecodeError, `${e}`);
        assert.equal(e.code, "decode");
        assert.match(e.message, /^the json codec cannot decode stored state: /);
      }
      assert.equal({}.polluted, undefined);
      assert.equal(Object.prototype.polluted, undefined);
      assert.equal([].polluted, undefined);
    }),
    { numRuns },
  );
});

test("JSON values round-trip through the codec", () => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      assert.equal(JSON.stringify(codec.decode(codec.encode(value))), JSON.stringify(value));
    }),
    { numRuns },
  );
});
