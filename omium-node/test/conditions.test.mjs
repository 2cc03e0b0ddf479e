// CEL conditions see a step's parameters by name (`customer.verified == true`), besides `args`
// and `result`: names read from the function's source (arrows, functions, defaults, rest
// parameters), destructured parameters unnamed, `params` overriding.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";

import * as omium from "../dist/index.js";
import { parameterNames } from "../dist/steps.js";
import { tempDir } from "./helpers.mjs";

test("parameter names come from the function's source", () => {
  assert.deepEqual(parameterNames((customer, amount = 1) => customer + amount), ["customer", "amount"]);
  assert.deepEqual(parameterNames(async (x) => x), ["x"]);
  assert.deepEqual(parameterNames(async x => x), ["x"]); // prettier-ignore
  assert.deepEqual(parameterNames(function named(a, /* note */ b = f(1, [2]), ...rest) { return [a, b, rest]; }), ["a", "b", "...rest"]);
  assert.deepEqual(parameterNames(({ id }, [first], last) => [id, first, last]), [undefined, undefined, "last"]);
  assert.deepEqual(parameterNames(() => 1), []);
  const o = { method(p, q) { return p + q; } };
  assert.deepEqual(parameterNames(o.method), ["p", "q"]);
  function f(...a) { return a; }
});

test("conditions name the parameters, with defaults of the call and a params override", async (t) => {
  await omium.init({ path: join(tempDir(t), "store"), durability: "none" });
  t.after(() => omium.shutdown());

  const charge = omium.checkpoint(
    "charge",
    async (customer, amount, ...tags) => ({ charged: amount, to: customer.name, tags }),
    {
      preconditions: ["customer.verified == true", "amount > 0", "size(tags) <= 2"],
      postconditions: ["result.charged == amount && result.to == customer.name"],
    },
  );
  const billing = omium.workflow("billing", async ({ verified, amount }) => charge({ name: "ada", verified }, amount, "vip"));
  assert.deepEqual(await billing.run({ verified: true, amount: 5 }, { executionId: "ok" }), { charged: 5, to: "ada", tags: ["vip"] });
  await assert.rejects(billing.run({ verified: false, amount: 5 }, { executionId: "unverified" }), (e) => {
    assert.equal(e.code, "condition_failed");
    assert.match(e.message, /precondition "customer.verified == true" does not hold/);
    return true;
  });
  assert.deepEqual(await omium.history("unverified"), []);

  // Destructured parameters have no name: `params` names them (and `args` always works).
  const ship = omium.checkpoint("ship", async ({ city }) => city, { params: ["order"], preconditions: ["order.city != '' && args[0].city == order.city"] });
  const shipping = omium.workflow("shipping", async (city) => ship({ city }));
  assert.equal(await shipping.run("Paris", { executionId: "s1" }), "Paris");
  await assert.rejects(shipping.run("", { executionId: "s2" }), (e) => e.code === "condition_failed");
  assert.throws(() => omium.checkpoint("bad", async (x) => x, { params: [""] }), (e) => e.code === "invalid_argument");
});

test("a step called outside any execution runs, and warns once", async (t) => {
  await omium.init({ path: join(tempDir(t), "store"), durability: "none" });
  t.after(() => omium.shutdown());
  const seen = [];
  const listen = (w) => {
    if (w.code === "OMIUM_OUTSIDE_EXECUTION") seen.push(w.message);
  };
  process.on("warning", listen);
  t.after(() => process.off("warning", listen));
  const lookup = omium.checkpoint("lookup", async (x) => x + 1);
  assert.equal(await lookup(1), 2);
  assert.equal(await lookup(2), 3);
  // Warnings are emitted on the next tick.
  await new Promise((r) => setImmediate(r));
  assert.equal(seen.length, 1);
  assert.match(seen[0], /step "lookup" ran outside any execution/);
});
