// The event feed from Node: CloudEvents with a cursor, filters, and a follower that sees
// writes made while it waits.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

async function fresh(t) {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
}

function pipeline(name) {
  const step = omium.checkpoint("step", async (i) => i * i);
  return omium.workflow(name, async (n) => {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += await step(i);
    return sum;
  });
}

async function all(iterable) {
  const out = [];
  for await (const e of iterable) out.push(e);
  return out;
}

test("every change is a CloudEvent in order, read from a cursor", async (t) => {
  await fresh(t);
  const wf = pipeline("events-wf");
  await wf.run(2, { executionId: "e1" });
  const events = await all(omium.events());
  assert.deepEqual(
    events.map((e) => e.type),
    ["io.omium.execution.started", "io.omium.checkpoint.created", "io.omium.checkpoint.created", "io.omium.execution.completed"],
  );
  assert.deepEqual(events.map((e) => e.omiumseq), [1, 2, 3, 4]);
  assert.equal(events[0].specversion, "1.0");
  assert.equal(events[0].subject, "e1");
  assert.equal(events[1].data.execution, "e1");
  assert.deepEqual((await all(omium.events({ since: 2 }))).map((e) => e.omiumseq), [3, 4]);
  assert.deepEqual((await all(omium.events({ limit: 1 }))).map((e) => e.omiumseq), [1]);
  assert.equal((await all(omium.events({ types: ["execution.*"] }))).length, 2);
  await assert.rejects(all(omium.events({ types: ["execution.exploded"] })), (e) => e.code === "invalid_argument");
});

test("a follower sees executions written while it waits, and a quiet feed times out", async (t) => {
  await fresh(t);
  const wf = pipeline("events-follow");
  const got = [];
  const follower = (async () => {
    for await (const e of omium.events({ follow: true, timeoutMs: 30_000, types: ["execution.completed"] })) {
      got.push(e.subject);
      if (got.length === 2) return;
    }
  })();
  await wf.run(1, { executionId: "f1" });
  await wf.run(1, { executionId: "f2" });
  await follower;
  assert.deepEqual(got, ["f1", "f2"]);
  const last = (await all(omium.events())).at(-1).omiumseq;
  assert.deepEqual(await all(omium.events({ since: last, follow: true, timeoutMs: 200 })), []);
});

test("operator controls reach a run of this process at its next step and are events", async (t) => {
  await fresh(t);
  const step = omium.checkpoint("step", async (i) => {
    if (i === 1) assert.equal((await omium.pause("n1", { reason: "from the inside", by: "ops" })).result, "requested");
    return i;
  });
  const wf = omium.workflow("self-paused", async () => {
    let sum = 0;
    for (let i = 0; i < 3; i++) sum += await step(i);
    return sum;
  });
  await assert.rejects(wf.run(undefined, { executionId: "n1" }), (e) => e instanceof omium.ExecutionPaused && /from the inside/.test(e.message));
  assert.equal((await omium.getExecution("n1")).status, "paused");
  assert.equal((await omium.history("n1")).length, 2, "step 2 did not run");
  assert.equal((await omium.cancel("n1")).status, "cancelled");
  await assert.rejects(omium.cancel("n1"), (e) => e.code === "invalid_state");
  assert.equal((await omium.retry("n1")).status, "pending");
  const erased = await omium.deleteExecution("n1", { reason: "test" });
  assert.equal(erased.erased.checkpoints, 2);
  const types = [];
  for await (const e of omium.events({ executionId: "n1" })) types.push(e.type.replace("io.omium.", ""));
  assert.deepEqual(types.slice(-4), ["execution.paused", "execution.cancelled", "execution.retried", "execution.deleted"]);
  assert.ok(types.includes("control.pause_requested"), types.join(","));
});

test("a cancel or a pause interrupts a step that awaits", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const entered = new Set();
  const forEver = omium.checkpoint("waitForEver", async (tag) => {
    entered.add(tag);
    await new Promise(() => {});
  });
  const wf = omium.workflow("awaiting", async (tag) => forEver(tag));
  for (const [id, control, name] of [
    ["aw-cancel", omium.cancel, "ExecutionCancelled"],
    ["aw-pause", omium.pause, "ExecutionPaused"],
  ]) {
    const run = wf.run(id, { executionId: id });
    while (!entered.has(id)) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await control(id, { reason: "stuck for too long" })).result, "requested");
    await assert.rejects(run, (e) => e.name === name && /stuck for too long/.test(e.message));
  }
  assert.equal((await omium.getExecution("aw-cancel")).status, "cancelled");
  assert.equal((await omium.getExecution("aw-pause")).status, "paused");
  assert.deepEqual(await omium.history("aw-cancel"), []);
});
