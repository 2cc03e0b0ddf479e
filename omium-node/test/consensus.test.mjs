// omium.consensus on the store's embedded one-voter Raft group: broadcast, acknowledge, await,
// votes, schemas, subscribers, and steps recorded only once their hand-off is agreed.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

async function fresh(t) {
  await omium.init({ path: tempDir(t), durability: "buffered" });
  t.after(async () => {
    for (const a of ["reviewer", "qa", "auditor", "a", "b"]) omium.consensus.unsubscribe(a);
    await omium.shutdown();
  });
}

test("broadcast, acknowledge, await and status, in order", async (t) => {
  await fresh(t);
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await omium.consensus.broadcast("run-1", "planner", ["coder", "reviewer"], { step: i }));
  for (const id of ids) {
    assert.equal((await omium.consensus.acknowledge(id, "coder")).state, "pending");
    assert.equal((await omium.consensus.acknowledge(id, "reviewer")).state, "agreed");
    assert.equal((await omium.consensus.awaitAgreement(id, { timeoutMs: 2000 })).status.state, "agreed");
  }
  const listed = await omium.consensus.status("run-1");
  assert.deepEqual(listed.map((m) => m.id), ids);
  assert.deepEqual(listed.map((m) => m.seq), [1, 2, 3]);
  assert.deepEqual(listed[2].message, { step: 2 });
  assert.equal(listed[0].executionId, "run-1");
  assert.equal((await omium.consensus.message(ids[0])).sender, "planner");
});

test("schema violations name the field and append nothing; strangers and unknown ids are refused", async (t) => {
  await fresh(t);
  const schema = { type: "object", required: ["amount"], properties: { amount: { type: "number" } } };
  await assert.rejects(
    omium.consensus.broadcast("pay", "agent", ["checker"], { amount: "ten" }, { schema }),
    (e) => e instanceof omium.InvalidMessageError && /\/amount/.test(e.message) && /not appended/.test(e.message),
  );
  assert.deepEqual(await omium.consensus.status("pay"), []);
  // The user's keys are kept as they are (no camelCase).
  const id = await omium.consensus.broadcast("pay", "agent", ["checker"], { amount: 10, snake_key: { inner_key: 1 } }, { schema });
  assert.deepEqual((await omium.consensus.message(id)).message, { amount: 10, snake_key: { inner_key: 1 } });
  await assert.rejects(omium.consensus.acknowledge(id, "stranger"), omium.NotATargetError);
  await assert.rejects(omium.consensus.acknowledge("01J00000000000000000000000", "checker"), omium.MessageNotFoundError);
});

test("a split vote and a timeout throw ConsensusViolation and are recorded", async (t) => {
  await fresh(t);
  const id = await omium.consensus.broadcast("vote-run", "lead", ["a", "b"], "merge?");
  await omium.consensus.acknowledge(id, "a", "yes");
  assert.equal((await omium.consensus.acknowledge(id, "b", "no")).state, "violated");
  await assert.rejects(omium.consensus.awaitAgreement(id, { timeoutMs: 1000 }), (e) => e instanceof omium.ConsensusViolation && /split vote/.test(e.message));
  const silent = await omium.consensus.broadcast("vote-run", "lead", ["a"], "anyone?");
  await assert.rejects(omium.consensus.awaitAgreement(silent, { timeoutMs: 200 }), (e) => e instanceof omium.ConsensusViolation && /timeout/.test(e.message));
  const failures = (await omium.failures("vote-run")).filter((f) => f.kind === "consensus_violation");
  assert.deepEqual(failures.map((f) => f.key).sort(), [id, silent].sort());
});

test("withConsensus broadcasts the result, subscribers answer, and disagreement throws", async (t) => {
  await fresh(t);
  const seen = [];
  omium.consensus.subscribe("reviewer", (msg) => {
    seen.push(msg.message);
    return "approve";
  });
  omium.consensus.subscribe("qa", () => "approve");
  const plan = omium.consensus.withConsensus(["reviewer", "qa"], async (task) => ({ task, steps: 3 }), { timeoutMs: 2000, sender: "planner" });
  const flow = omium.workflow("planning", async () => plan("ship"));
  assert.deepEqual(await flow.run(undefined, { executionId: "plan-1" }), { task: "ship", steps: 3 });
  assert.deepEqual(seen, [{ task: "ship", steps: 3 }]);
  const [m] = await omium.consensus.status("plan-1");
  assert.equal(m.sender, "planner");
  assert.equal(m.status.state, "agreed");
  assert.equal(m.status.value, "approve");

  omium.consensus.subscribe("a", () => "yes");
  omium.consensus.subscribe("b", () => "no");
  const propose = omium.consensus.withConsensus(["a", "b"], async () => "deploy", { timeoutMs: 1000 });
  const split = omium.workflow("split", async () => propose());
  await assert.rejects(split.run(undefined, { executionId: "split-1" }), (e) => e instanceof omium.ConsensusViolation && /split vote/.test(e.message));
});

test("a step with a consensus hand-off is recorded only once agreed; its policy retries a violation", async (t) => {
  await fresh(t);
  const answers = [false, undefined]; // first attempt: nobody acknowledges; second: acknowledged
  omium.consensus.subscribe("auditor", () => answers.shift());
  await omium.applyPolicy("rules: [{trigger: consensus_violation, actions: [{retry: {max_attempts: 2, initial_delay: 10ms}}]}]");
  let calls = 0;
  const approve = omium.checkpoint("approve_loan", async (amount) => (calls++, { approved: amount < 1000 }), { consensus: { targets: ["auditor"], timeoutMs: 300 } });
  const flow = omium.workflow("loans", async (amount) => approve(amount));
  assert.deepEqual(await flow.run(500, { executionId: "loan-1" }), { approved: true });
  assert.equal(calls, 2, "the step ran again after the violation");
  assert.deepEqual((await omium.consensus.status("loan-1")).map((m) => m.status.state), ["violated", "agreed"]);
  const failures = (await omium.failures("loan-1")).filter((f) => f.kind === "consensus_violation");
  assert.equal(failures.length, 1);
  assert.equal(failures[0].step, "approve_loan");
  // Running the completed execution again returns the recorded result without a new broadcast.
  assert.deepEqual(await flow.run(500, { executionId: "loan-1" }), { approved: true });
  assert.equal((await omium.consensus.status("loan-1")).length, 2);
});

test("bad arguments are named; messages survive a reopen", async (t) => {
  const dir = tempDir(t);
  await omium.init({ path: dir, durability: "buffered" });
  t.after(() => omium.shutdown());
  await assert.rejects(omium.consensus.broadcast("x", "a", [], 1), /targets must be a non-empty list/);
  await assert.rejects(omium.consensus.broadcast("x", "a", ["b"], 1, { quorum: 0 }), /quorum must be a positive integer/);
  await assert.rejects(omium.consensus.status(), /no execution/);
  await assert.rejects(omium.consensus.awaitAgreement("m", { timeoutMs: -1 }), /timeoutMs must be a number >= 0/);
  assert.throws(() => omium.checkpoint("x", async () => 1, { consensus: { targets: [] } }), /consensus.targets must be a non-empty list/);
  assert.throws(() => omium.consensus.withConsensus([], async () => 1), /targets must be a non-empty list/);
  await assert.rejects(omium.consensus.connect("localhost"), omium.InvalidArgumentError);
  await omium.consensus.connect(null);
  const id = await omium.consensus.broadcast("keep", "a", ["b"], "hello");
  await omium.init({ path: dir, durability: "buffered" }); // closes and reopens
  assert.equal((await omium.consensus.message(id)).message, "hello");
  assert.equal((await omium.consensus.status("keep")).length, 1);
});
