// Recovery policies from Node: the core decides, the TS layer carries it out.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

async function fresh(t) {
  await omium.init({ path: tempDir(t), project: "acme" });
  t.after(async () => {
    omium.clearHooks();
    await omium.shutdown();
  });
}

const POLICY = `
policies:
  - trigger: "timeout_error"
    action: "auto_retry"
    max_retries: 3
    backoff: exponential
  - trigger: "hallucination_detected"
    action: "pause_and_notify"
    notify: ["reviewers"]
  - trigger: "consensus_violation"
    action: "rollback_and_inspect"
    notify: ["devops_team"]
`;

test("a timeout is retried by the policy until the step succeeds; the history says so", async (t) => {
  await fresh(t);
  const v = await omium.applyPolicy(POLICY, { author: "ops@acme", file: "policy.yaml" });
  assert.equal(v.version, 1);
  let n = 0;
  const llm = omium.checkpoint("llm_call", async () => {
    n++;
    if (n < 3) await new Promise((r) => setTimeout(r, 200));
    return "answer";
  }, { timeoutMs: 50 });
  const wf = omium.workflow("policy-retry", async () => llm());
  assert.equal(await wf.run(undefined, { executionId: "pr1" }), "answer");
  assert.equal(n, 3);
  const [f] = await omium.failures("pr1");
  assert.equal(f.kind, "timeout_error");
  assert.equal(f.outcome, "recovered");
  assert.ok(f.actions.filter((a) => a.action === "retry").length >= 2, JSON.stringify(f.actions));
  const m = await omium.recoveryMetrics("policy-retry");
  assert.equal(m.recovered, 1);
});

test("three timeouts escalate: notifiers and a real webhook receive the failure", async (t) => {
  await fresh(t);
  const bodies = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      bodies.push(JSON.parse(body));
      res.end("ok");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  // Webhooks reach loopback only when the operator allows it (as for an internal receiver).
  process.env.OMIUM_WEBHOOK_ALLOW = "127.0.0.1";
  t.after(() => delete process.env.OMIUM_WEBHOOK_ALLOW);
  const url = `http://127.0.0.1:${server.address().port}/hook`;
  await omium.applyPolicy(
    [
      "channels:",
      `  oncall: {webhook: "${url}"}`,
      "retries: {max_attempts: 3, initial_delay: 10ms, jitter: none}",
      "recovery:",
      "  on_timeout: [retry, then_escalate]",
      "",
    ].join("\n"),
  );
  const seen = [];
  omium.addNotifier((n) => seen.push(n), { channels: ["oncall"] });
  const stuck = omium.checkpoint("stuck", () => new Promise((r) => setTimeout(r, 300)), { timeoutMs: 10 });
  const wf = omium.workflow("escalating", async () => stuck());
  await assert.rejects(wf.run(undefined, { executionId: "es1" }), (e) => e instanceof omium.EscalatedError && e.code === "escalated" && /oncall/.test(e.message));
  assert.equal(seen.length, 1);
  assert.equal(seen[0].event, "omium.failure.escalation");
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].failure.execution_id, "es1");
  assert.equal(bodies[0].failure.type, "timeout_error");
  const [f] = await omium.failures("es1");
  assert.equal(f.outcome, "escalated");
  assert.deepEqual(f.actions.map((a) => a.action), ["retry", "retry", "escalate"]);
  assert.equal((await omium.getExecution("es1")).status, "failed");
});

test("a flagged result pauses the execution; a human resumes it with a corrected value", async (t) => {
  await fresh(t);
  await omium.applyPolicy(POLICY);
  omium.addValidator((r) => (r.includes("moon") ? "the moon is not made of cheese" : true), { steps: ["answer"] });
  const answer = omium.checkpoint("answer", async () => "the moon is cheese");
  const wf = omium.workflow("reviewed", async () => `final: ${await answer()}`);
  await assert.rejects(wf.run(undefined, { executionId: "h1" }), (e) => e instanceof omium.ExecutionPaused && e.executionId === "h1");
  assert.equal((await omium.getExecution("h1")).status, "paused");
  await assert.rejects(wf.run(undefined, { executionId: "h1" }), (e) => e instanceof omium.InvalidStateError || e instanceof omium.OmiumError);
  assert.equal(await omium.resume("h1", { state: "the moon is rock", by: "reviewer" }), "final: the moon is rock");
  assert.equal((await omium.getExecution("h1")).status, "completed");
});

test("a consensus violation rolls back and the workflow runs again from the target", async (t) => {
  await fresh(t);
  await omium.applyPolicy(POLICY);
  let votes = 0;
  const plan = omium.checkpoint("plan", async () => "plan-a");
  const agree = omium.checkpoint("agree", async () => {
    if (++votes === 1) throw new omium.ConsensusViolation("agents split 1:1", "consensus_violation");
    return "agreed";
  });
  const wf = omium.workflow("consensus-wf", async () => [await plan(), await agree()]);
  assert.deepEqual(await wf.run(undefined, { executionId: "cv1" }), ["plan-a", "agreed"]);
  const [f] = await omium.failures("cv1");
  assert.equal(f.kind, "consensus_violation");
  assert.deepEqual(f.actions.map((a) => a.action), ["inspect", "notify", "rollback"]);
  // The run after the rollback completed: the failure counts as recovered.
  assert.equal(f.outcome, "recovered");
  assert.ok((await omium.history("cv1", { allBranches: true })).some((c) => c.kind === "rollback"));
});

test("hostile policy documents (billion laughs, deep nesting) are refused with a clear error", async (t) => {
  await fresh(t);
  const broken = fileURLToPath(new URL("../../omium-py/tests/policies/broken/", import.meta.url));
  for (const [file, want] of [
    ["billion_laughs.yaml", /billion_laughs\.yaml:6:\d+: .*more than 100000 nodes once its aliases are expanded/],
    ["nested.yaml", /nest deeper than 64 levels/],
  ]) {
    await assert.rejects(omium.applyPolicy(readFileSync(join(broken, file), "utf8"), { file }), (e) => e instanceof omium.PolicyError && want.test(e.message));
  }
  assert.deepEqual(await omium.policyVersions({ tenant: "acme" }), []);
});

test("an invalid policy names line, column, the bad value and the choices", async (t) => {
  await fresh(t);
  await assert.rejects(
    omium.applyPolicy("policies:\n  - trigger: timeout_eror\n    action: auto_retry\n", { file: "bad.yaml" }),
    (e) =>
      e instanceof omium.PolicyError &&
      e.code === "invalid_policy" &&
      e.details.line === 2 &&
      e.details.file === "bad.yaml" &&
      e.details.suggestion === "timeout_error" &&
      /bad\.yaml:2/.test(e.message),
  );
  assert.deepEqual(await omium.policyVersions({ tenant: "acme" }), []);
});

test("the policy's step timeout applies to steps without their own, and its tool allowlist to omium.tool calls", async (t) => {
  await fresh(t);
  await omium.applyPolicy("defaults:\n  step_timeout: 50ms\n  tool_allowlist: [search]\n");
  const search = omium.tool("search", async (q) => `results for ${q}`);
  const shell = omium.tool("shell", async () => "rm -rf");
  let slowCalls = 0;
  const slow = omium.checkpoint("slow", () => {
    slowCalls++;
    return new Promise(() => {}); // never settles: only the policy's timeout ends it
  });
  const act = omium.checkpoint("act", async () => [await search("omium"), await shell()]);
  const wf = omium.workflow("tools", async (which) => (which === "slow" ? slow() : act()));
  await assert.rejects(wf.run("slow", { executionId: "t-slow" }), (e) => e instanceof omium.StepTimeoutError && /within 50 ms/.test(e.message));
  assert.equal(slowCalls, 1);
  await assert.rejects(
    wf.run("act", { executionId: "t-act" }),
    (e) => e instanceof omium.ToolDeniedError && e.code === "tool_denied" && e.message.startsWith('tool "shell" is not allowed in step "act": the policy\'s tool_whitelist allows search'),
  );
  const [f] = await omium.failures("t-act");
  assert.equal(f.kind, "tool_denied");
  // Outside a step the denial is recorded by the core as a settled failure of the execution.
  const outside = omium.workflow("outside", async () => shell());
  await assert.rejects(outside.run(undefined, { executionId: "t-out" }), omium.ToolDeniedError);
  const [g] = await omium.failures("t-out");
  assert.deepEqual([g.kind, g.outcome, g.step], ["tool_denied", "failed", null]);
  // Outside an execution nothing is checked.
  assert.equal(await shell(), "rm -rf");
});
