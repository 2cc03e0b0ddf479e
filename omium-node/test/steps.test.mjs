// Durable steps and workflows: record, resume without re-running, rollback, fork, history.
import assert from "node:assert/strict";
import { cpSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

async function fresh(t, options = {}) {
  await omium.init({ path: tempDir(t), ...options });
  t.after(() => omium.shutdown());
}

test("a workflow records each step once and a re-run returns the recorded output", async (t) => {
  await fresh(t);
  const calls = [];
  const kyc = omium.checkpoint("kyc", async (c) => {
    calls.push("kyc");
    return { verified: true, name: c.name };
  });
  const score = omium.checkpoint("score", async (k) => {
    calls.push("score");
    return k.verified ? 712 : 0;
  });
  const wf = omium.workflow("onboarding-basic", async (c) => ({ score: await score(await kyc(c)) }));
  assert.deepEqual(await wf.run({ name: "Ada" }, { executionId: "cust-1" }), { score: 712 });
  assert.deepEqual(calls, ["kyc", "score"]);
  // Completed: the recorded output, nothing runs.
  assert.deepEqual(await wf.run({ name: "Ada" }, { executionId: "cust-1" }), { score: 712 });
  assert.deepEqual(calls, ["kyc", "score"]);
  const h = await omium.history("cust-1");
  assert.deepEqual(h.map((c) => c.name), ["kyc", "score"]);
  assert.deepEqual(await h[0].load(), { verified: true, name: "Ada" });
  assert.ok(h[0].createdAt instanceof Date);
  const e = await omium.getExecution("cust-1");
  assert.equal(e.status, "completed");
  assert.equal(e.workflow, "onboarding-basic");
  assert.equal((await omium.verify()).ok, true);
});

test("a failed run resumes from the first unrecorded step", async (t) => {
  await fresh(t);
  const calls = [];
  let failOnce = true;
  const a = omium.checkpoint("a", async () => (calls.push("a"), 1));
  const b = omium.checkpoint("b", async (x) => {
    calls.push("b");
    if (failOnce) {
      failOnce = false;
      throw new Error("flaky");
    }
    return x + 1;
  });
  const wf = omium.workflow("resume-wf", async () => b(await a()));
  await assert.rejects(wf.run(undefined, { executionId: "r1" }), /flaky/);
  assert.equal((await omium.getExecution("r1")).status, "failed");
  assert.equal(await wf.run(undefined, { executionId: "r1" }), 2);
  assert.deepEqual(calls, ["a", "b", "b"]);
});

test("concurrent steps keep call order, nested steps are keyed under their parent", async (t) => {
  await fresh(t);
  let runs = 0;
  const slow = omium.checkpoint("slow", async (ms, v) => {
    runs++;
    await new Promise((r) => setTimeout(r, ms));
    return v;
  });
  const inner = omium.checkpoint("inner", async (v) => (runs++, v * 10));
  const outer = omium.checkpoint("outer", async (v) => (runs++, (await inner(v)) + (await inner(v + 1))));
  const wf = omium.workflow("concurrent-wf", async () => {
    const [x, y] = await Promise.all([slow(30, "x"), slow(1, "y")]);
    return [x, y, await outer(1)];
  });
  assert.deepEqual(await wf.run(undefined, { executionId: "c1" }), ["x", "y", 30]);
  const names = (await omium.history("c1")).map((c) => `${c.name}@${c.key ?? c.seq}`);
  assert.ok(names.includes("inner@3/0") && names.includes("inner@3/1"), names.join(","));
  assert.deepEqual(names.slice(0, 2).sort(), ["slow@1", "slow@2"]);
  // Replaying from a rollback to the first step re-runs only what follows it.
  await omium.rollback("c1", { to: (await omium.history("c1"))[0].id });
  runs = 0;
  assert.deepEqual(await wf.run(undefined, { executionId: "c1" }), ["x", "y", 30]);
  assert.ok(runs >= 1 && runs < 5, `re-ran ${runs} steps`);
});

test("rollback to a named step re-runs the steps after it; fork keeps the original", async (t) => {
  await fresh(t);
  let offer = 0;
  const kyc = omium.checkpoint("kyc_doc_validated", async () => ({ verified: true }));
  const makeOffer = omium.checkpoint("offer", async () => ++offer);
  const wf = omium.workflow("offer-wf", async () => {
    await kyc();
    return makeOffer();
  });
  assert.equal(await wf.run(undefined, { executionId: "o1" }), 1);
  const marker = await omium.rollback("o1", { to: "kyc_doc_validated", reason: "bad offer" });
  assert.equal(marker.kind, "rollback");
  assert.deepEqual((await omium.resumable()).map((e) => e.id), ["o1"]);
  assert.equal(await wf.run(undefined, { executionId: "o1" }), 2);
  const all = await omium.history("o1", { allBranches: true });
  assert.equal(all.filter((c) => c.name === "offer").length, 2);

  const forked = await omium.fork("o1", { at: "kyc_doc_validated", state: { verified: true, edited: true }, newExecutionId: "o1-fork" });
  assert.equal(forked.id, "o1-fork");
  const seen = [];
  const kyc2 = omium.checkpoint("kyc_doc_validated", async () => ({ verified: false }));
  const offer2 = omium.checkpoint("offer", async () => 99);
  const wf2 = omium.workflow("offer-wf", async () => {
    seen.push(await kyc2());
    return offer2();
  });
  assert.equal(await wf2.run(undefined, { executionId: "o1-fork" }), 99);
  assert.deepEqual(seen, [{ verified: true, edited: true }]);
  assert.equal(await wf.run(undefined, { executionId: "o1" }), 2);
});

test("postconditions gate recording; a different step at a recorded position is non-determinism", async (t) => {
  await fresh(t);
  const step = omium.checkpoint("checked", async (x) => ({ verified: x > 0 }), { postconditions: ["result.verified == true"] });
  const wf = omium.workflow("post-wf", async (x) => step(x));
  await assert.rejects(wf.run(-1, { executionId: "p1" }), (e) => e instanceof omium.ConditionFailed && /does not hold/.test(e.message));
  assert.equal((await omium.history("p1")).length, 0);
  assert.deepEqual(await wf.run(1, { executionId: "p2" }), { verified: true });

  const other = omium.checkpoint("other", async () => 1);
  const wf2 = omium.workflow("post-wf", async () => other());
  await omium.rollback("p2", { to: "checked" }).catch(() => undefined);
  const e = await omium.getExecution("p2");
  if (e.status !== "completed") {
    await assert.rejects(wf2.run(1, { executionId: "p2" }), (err) => err instanceof omium.NonDeterminismError && err.code === "non_determinism");
  }
});

test("steps outside a workflow just run; timeouts and retries apply", async (t) => {
  await fresh(t);
  let n = 0;
  const flaky = omium.checkpoint("flaky", async () => {
    if (++n < 3) throw new Error(`attempt ${n}`);
    return n;
  }, { retries: 3 });
  const wf = omium.workflow("retry-wf", async () => flaky());
  assert.equal(await wf.run(undefined, { executionId: "t1" }), 3);
  const slow = omium.checkpoint("slow", () => new Promise((r) => setTimeout(() => r(1), 500)), { timeoutMs: 20 });
  const wf2 = omium.workflow("timeout-wf", async () => slow());
  await assert.rejects(wf2.run(undefined, { executionId: "t2" }), (e) => e instanceof omium.StepTimeoutError && e.code === "step_timeout");
  const plain = omium.checkpoint("plain", async (x) => x * 2);
  assert.equal(await plain(21), 42);
});

test("bad input gets clear errors and loses nothing", async (t) => {
  await fresh(t);
  assert.throws(() => omium.checkpoint("", async () => 1), (e) => e instanceof omium.InvalidArgumentError && /name must be a non-empty string/.test(e.message));
  assert.throws(() => omium.checkpoint("x", 42), /fn must be a function/);
  assert.throws(() => omium.checkpoint("x", async () => 1, { retries: -1 }), /retries must be a non-negative integer/);
  assert.throws(() => omium.checkpoint("x", async () => 1, { postconditions: ["result ==="] }), (e) => e instanceof omium.ConditionSyntaxError);
  const wf = omium.workflow("bad-wf", async () => 1);
  await assert.rejects(wf.run(undefined, { executionId: "" }), /expected a non-empty string/);
  await assert.rejects(omium.getExecution("nope"), (e) => e instanceof omium.ExecutionNotFoundError && e.code === "execution_not_found" && /nope/.test(e.message));
  await assert.rejects(omium.rollback("nope"), omium.ExecutionNotFoundError);
  await assert.rejects(omium.history(42), (e) => e instanceof omium.InvalidArgumentError && /omium.history\(executionId\): expected a non-empty string, not number/.test(e.message));
  await assert.rejects(omium.init({ path: "/tmp/x", durability: "fast" }), (e) => e instanceof omium.InvalidArgumentError && /fast/.test(e.message));
  const bigint = omium.checkpoint("bigint", async () => 1n);
  const wf2 = omium.workflow("codec-wf", async () => bigint());
  await assert.rejects(wf2.run(undefined, { executionId: "b1" }), (e) => e instanceof omium.InvalidArgumentError && /the msgpack codec cannot encode this value/.test(e.message));
  assert.equal((await omium.verify()).ok, true);
});

test("a second writer on the same store is refused with store_locked", async (t) => {
  const dir = tempDir(t);
  await omium.init({ path: dir });
  t.after(() => omium.shutdown());
  const { OmiumSaver } = await import("omium/langgraph");
  await assert.rejects(OmiumSaver.open(dir), (e) => e instanceof omium.StoreLockedError && e.code === "store_locked");
});

test("a store restored from an older copy fails against a recorded audit head", async (t) => {
  const root = tempDir(t);
  const path = join(root, "store");
  const backup = join(root, "backup");
  const s = omium.checkpoint("s", async (x) => x);
  const wf = omium.workflow("audited", async (x) => s(x));
  await omium.init({ path });
  assert.equal(await omium.auditHead(), null);
  await wf.run(1, { executionId: "a" });
  await omium.shutdown();
  cpSync(path, backup, { recursive: true });
  await omium.init({ path });
  await wf.run(2, { executionId: "b" });
  const head = await omium.auditHead();
  const [seq, digest] = head.split(":");
  assert.equal(digest.length, 64);
  const report = await omium.verify(undefined, { expectHead: head });
  assert.equal(report.ok, true);
  assert.deepEqual(report.audit.head, { seq: Number(seq), hash: digest });
  await omium.shutdown();

  rmSync(path, { recursive: true });
  cpSync(backup, path, { recursive: true });
  await omium.init({ path });
  t.after(() => omium.shutdown());
  assert.equal((await omium.verify()).ok, true, "alone, the older copy is a consistent store");
  const cut = await omium.verify(undefined, { expectHead: head });
  assert.equal(cut.ok, false);
  assert.ok(cut.audit.problems.some((p) => p.startsWith(`audit head ${head}: entry #${seq} is missing`)), cut.audit.problems);
  await assert.rejects(omium.verify(undefined, { expectHead: "nonsense" }), (e) => {
    assert.ok(e instanceof omium.InvalidArgumentError, e);
    assert.match(e.message, /invalid audit head: "nonsense" has no ':'/);
    return true;
  });
});
