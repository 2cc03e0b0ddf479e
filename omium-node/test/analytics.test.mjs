// Execution analytics from Node: figures after real runs, the LLM cost recorded with each call,
// cost saved by a resumed run, groups, and errors that name the bad field.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

test("metrics count runs, priced LLM calls, and the cost a resumed run saves", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  omium.setPricing("test-model", { inputPer1k: 0.01, outputPer1k: 0.03 });
  let fail = true;
  const ask = (params) => ({ model: params.model, usage: { input_tokens: 1000, output_tokens: 100 }, text: "hi" });
  const wf = omium.workflow("node-report", async () => {
    const answer = await omium.llmCall(ask, { model: "test-model", messages: ["q"] });
    if (fail) throw new Error("the writer is down");
    return answer.text;
  });
  await assert.rejects(wf.run(undefined, { executionId: "r1" }));
  fail = false;
  assert.equal(await wf.run(undefined, { executionId: "r1" }), "hi");

  const { totals, groups } = await omium.metrics({ since: "1h", by: ["workflow"] });
  assert.deepEqual([totals.started, totals.failed, totals.completed, totals.retries], [1, 1, 1, 1]);
  assert.equal(totals.success_rate, 0.5);
  assert.equal(totals.replayed_steps, 1);
  assert.deepEqual([totals.tokens_in, totals.tokens_out, totals.tokens_saved], [1000, 100, 1100]);
  assert.ok(Math.abs(totals.llm_cost_usd - 0.013) < 1e-9, String(totals.llm_cost_usd));
  assert.ok(Math.abs(totals.cost_saved_usd - 0.013) < 1e-9, String(totals.cost_saved_usd));
  assert.deepEqual(groups.map((g) => g.key.workflow), ["node-report"]);

  const past = await omium.metrics({ since: new Date("2020-01-01T00:00:00Z"), until: "2020-02-01" });
  assert.equal(past.totals.started, 0);
  await assert.rejects(omium.metrics({ since: "last week" }), (e) => e.code === "invalid_argument" && /30m, 24h, 7d/.test(e.message));
  await assert.rejects(omium.metrics({ by: "colour" }), (e) => e.code === "invalid_argument");
});

test("recordSpend records a step's own spend, counted as saved when the step is replayed", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const plan = omium.checkpoint("plan", async () => {
    omium.recordSpend({ costUsd: 0.25, tokensIn: 2000 });
    omium.recordSpend({ tokensOut: 300 });
    return "plan";
  });
  const act = omium.checkpoint("act", async (p) => p + "!");
  const wf = omium.workflow("node-spend", async () => act(await plan()));
  await wf.run(undefined, { executionId: "s1" });
  await omium.rollback("s1", { to: "plan", reason: "redo the action" });
  await wf.run(undefined, { executionId: "s1" });
  const { totals } = await omium.metrics({ since: "1h", workflow: "node-spend" });
  assert.deepEqual([totals.rollbacks, totals.replayed_steps, totals.tokens_saved], [1, 1, 2300]);
  assert.equal(totals.cost_saved_usd, 0.25);
  assert.equal(totals.llm_cost_usd, 0.25);
  assert.throws(() => omium.recordSpend({ costUsd: 1 }), /inside the body/);
  await assert.rejects(
    omium.workflow("node-spend-bad", async () => omium.checkpoint("x", async () => omium.recordSpend({ costUsd: -1 }))()).run(undefined, { executionId: "s2" }),
    (e) => e.code === "invalid_argument",
  );
});

test("a long-running process evaluates its own alert rules: fire once, acknowledge, resolve", async (t) => {
  const { createServer } = await import("node:http");
  const got = [];
  let wake = () => {};
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      got.push(JSON.parse(body));
      res.end("ok");
      wake();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const waitFor = async (pred) => {
    for (let i = 0; i < 600 && !pred(); i++) await new Promise((r) => ((wake = r), setTimeout(r, 100)));
    assert.ok(pred(), JSON.stringify(got));
  };
  process.env.OMIUM_WEBHOOK_ALLOW = "127.0.0.1";
  t.after(() => delete process.env.OMIUM_WEBHOOK_ALLOW);
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const rules = [
    "evaluate_every: 100ms",
    "channels:",
    `  hook: {webhook: {url: "http://127.0.0.1:${server.address().port}/hook"}}`,
    "rules:",
    "  - {name: node-failing, metric: failed, where: {workflow: node-alerts}, op: '>=', threshold: 1, channels: [hook]}",
  ].join("\n");
  assert.throws(() => omium.startAlerts(rules.replace("op: '>='", "op: '=>'")), (e) => e.code === "invalid_argument" && /<alerts>:5:\d+: rules\[0\]\.op/.test(e.message));

  let fail = true;
  const wf = omium.workflow("node-alerts", async () => {
    if (fail) throw new Error("upstream down");
    return "ok";
  });
  const ev = omium.startAlerts(rules);
  t.after(() => ev.stop());
  assert.equal(ev.running, true);
  await assert.rejects(wf.run(undefined, { executionId: "n1" }));
  await waitFor(() => got.length === 1);
  assert.deepEqual([got[0].status, got[0].value, got[0].rule], ["firing", 1, "node-failing"]);
  // The notice goes out before the state is committed: wait for the commit.
  for (let i = 0; i < 300 && !(await omium.alerts()).state.alerts["node-failing"]; i++) await new Promise((r) => setTimeout(r, 20));
  const [ack] = await omium.acknowledgeAlert("node-failing", { by: "carol" });
  assert.deepEqual([ack.status, ack.delivered.hook], ["acknowledged", "ok"]);
  await ev.stop();
  assert.equal(ev.running, false);
  // A window with no failure in it resolves it, evaluated once (a cron job's way).
  const [resolved] = await omium.evaluateAlerts(rules.replace("workflow: node-alerts", "workflow: nothing-here"));
  assert.deepEqual([resolved.status, resolved.delivered.hook], ["resolved", "ok"]);
  await waitFor(() => got.length === 3);
  assert.deepEqual(
    got.map((m) => m.status),
    ["firing", "acknowledged", "resolved"],
  );
  assert.equal(got[2].by, "carol");
});

test("shutdown stops the alert evaluators of this process", async (t) => {
  const dir = tempDir(t);
  await omium.init({ path: dir });
  const ev = omium.startAlerts("rules: []\n");
  assert.equal(ev.running, true);
  await omium.shutdown();
  assert.equal(ev.running, false);
  await omium.init({ path: dir }); // a leftover evaluator would still hold the store
  await omium.shutdown();
});
