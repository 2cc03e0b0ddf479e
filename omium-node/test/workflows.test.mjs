// Workflow specs from Node: JS functions as agents, the core's durable parallel executor.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

const SPEC = `
name: "fanout"
agents:
  - id: "split"
  - id: "left"
  - id: "right"
  - id: "join"
flow:
  - step: 1
    agent: "split"
    inputs: [text]
    outputs: [words]
  - step: 2
    agent: "left"
    inputs: [words]
    outputs: [upper]
  - step: 3
    agent: "right"
    inputs: [words]
    outputs: [count]
  - step: 4
    agent: "join"
    inputs: [upper, count]
    outputs: [summary]
`;

test("JS agents run a spec durably: parallel branches, a failure, a resume that replays finished steps", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const spans = {};
  const calls = [];
  let joinFails = true;
  const timed = (name, fn) => async (inputs, call) => {
    calls.push(name);
    const start = Date.now();
    await new Promise((r) => setTimeout(r, 150));
    const out = await fn(inputs, call);
    spans[name] = [start, Date.now()];
    return out;
  };
  const wf = omium.workflows.parse(SPEC, "fanout.yaml").bind({
    split: timed("split", ({ text }) => ({ words: text.split(" ") })),
    left: timed("left", ({ words }) => ({ upper: words.map((w) => w.toUpperCase()) })),
    right: timed("right", ({ words }) => ({ count: words.length })),
    join: timed("join", ({ upper, count }) => {
      if (joinFails) {
        joinFails = false;
        throw new RangeError("join is flaky");
      }
      return { summary: `${count}: ${upper.join(" ")}` };
    }),
  });
  assert.deepEqual(wf.agents, ["split", "left", "right", "join"]);
  assert.match(wf.planText(), /left/);
  await assert.rejects(wf.run({ text: "hello durable world" }, { executionId: "wf-1" }), (e) => e instanceof omium.OmiumError && /join is flaky/.test(e.message));
  // left and right ran at once.
  assert.ok(spans.left[0] < spans.right[1] && spans.right[0] < spans.left[1], JSON.stringify(spans));
  calls.length = 0;
  const report = await wf.run({ text: "hello durable world" }, { executionId: "wf-1" });
  assert.equal(report.data.summary, "3: HELLO DURABLE WORLD");
  assert.deepEqual(calls, ["join"], "finished steps are replayed, not run again");
  const outcomes = Object.fromEntries(report.steps.map((s) => [s.agent, s.outcome]));
  assert.deepEqual(outcomes, { split: "replayed", left: "replayed", right: "replayed", join: "ran" });
});

test("bad specs and bindings get clear errors", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  assert.throws(() => omium.workflows.parse("name: x\nagents: [{id: a}]\nflow:\n  - step: 1\n    agent: b\n", "bad.yaml"), (e) => e.code === "invalid_workflow" && /bad\.yaml:5/.test(e.message));
  const wf = omium.workflows.parse(SPEC);
  assert.throws(() => wf.bind({ nobody: () => ({}) }), (e) => e instanceof omium.InvalidArgumentError && /no agent "nobody"/.test(e.message));
  assert.throws(() => wf.bind({ split: 42 }), /expected a function/);
  const bad = wf.bind({ split: () => "not an object", left: () => ({}), right: () => ({}), join: () => ({}) });
  await assert.rejects(bad.run({ text: "a" }, { executionId: "wf-bad" }), /must return an object of outputs/);
  assert.ok(omium.workflows.templates().some((tpl) => tpl.name === "kyc"));
});

test("the issue's document runs with JS agents; its consensus hand-off is agreed on the store's Raft group", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const doc = new URL("../../tests/workflows/customer_onboarding.yaml", import.meta.url).pathname;
  const wf = omium.workflows.load(doc).bind({
    kyc_agent: ({ customer_data }) => ({ kyc_verified: customer_data.document === "P123", kyc_score: 91 }),
    credit_agent: ({ kyc_verified, kyc_score }) => ({ credit_score: kyc_verified ? 300 + kyc_score * 5 : 300 }),
  });
  const report = await wf.run({ customer_data: { document: "P123" } }, { executionId: "cust-7" });
  assert.equal(report.data.credit_score, 755);
  const history = await omium.history("cust-7");
  assert.deepEqual(history.map((c) => c.name), ["kyc_doc_validated", "step 2"]);
  const agreement = JSON.parse(history[1].metadata.agreement);
  assert.deepEqual(agreement.targets, ["credit_agent"]);
  assert.deepEqual(agreement.acks, [{ agent: "credit_agent", vote: null }]);
  assert.match(agreement.message_id, /^[0-9A-Z]{26}$/);
});
