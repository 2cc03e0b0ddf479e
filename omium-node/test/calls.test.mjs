// LLM and tool calls: recorded and resumed, replayed offline, forked at a position with a
// changed input, and diffed (the same semantics as the Python package's, from the same core).
import assert from "node:assert/strict";
import { test } from "node:test";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

class FakeLLM {
  calls = [];
  chat = async (params) => {
    this.calls.push(params);
    const last = params.messages.at(-1).content;
    return { content: `answer to ${last}`, model: `${params.model}-2025`, usage: { prompt_tokens: 7, completion_tokens: 3 } };
  };
}

test("replay answers from the recording, never runs a side-effect tool, and reports divergence", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  omium.setPricing("gpt-4o", { inputPer1k: 1, outputPer1k: 2 });
  const llm = new FakeLLM();
  const sent = [];
  const email = omium.tool("email", async (to, body) => {
    sent.push(to);
    return `sent ${body.length}`;
  }, { sideEffect: true });
  let suffix = "";
  const draft = omium.checkpoint("draft", async (q) => (await omium.llmCall(llm.chat, { model: "gpt-4o", messages: [{ role: "user", content: q + suffix }], temperature: 0 }, { provider: "openai" })).content);
  const deliver = omium.checkpoint("deliver", async (text) => email("a@example.com", text));
  omium.workflow("mailer", async (q) => deliver(await draft(q)));
  const mailer = omium.registeredWorkflows().get("mailer");

  assert.equal(await mailer.run("hello", { executionId: "m-1" }), "sent 15");
  assert.deepEqual([llm.calls.length, sent], [1, ["a@example.com"]]);
  const h = await omium.history("m-1");
  const call = h.find((c) => c.name === "llm:chat gpt-4o");
  assert.equal(call.metadata["omium.call"], "llm");
  assert.match(call.metadata["omium.request_hash"], /^[0-9a-f]{64}$/);
  assert.equal(call.key, "1/0", "nested in the step at position 1");
  assert.deepEqual((await call.load()).response.content, "answer to hello");
  assert.equal(h.find((c) => c.name === "tool:execute_tool email").metadata["omium.side_effect"], "true");
  const spans = await omium.spans("m-1");
  const llmSpan = spans.find((s) => s.name === "chat gpt-4o");
  assert.equal(llmSpan.kind, "client");
  assert.equal(llmSpan.attributes["gen_ai.provider.name"], "openai");
  assert.equal(llmSpan.attributes["gen_ai.usage.input_tokens"], 7);
  assert.equal(llmSpan.attributes["gen_ai.response.model"], "gpt-4o-2025");
  assert.equal(llmSpan.attributes["omium.cost_usd"], 0.013);
  assert.equal(llmSpan.parent, spans.find((s) => s.name === "draft").spanId);

  // A run resumed after a call was recorded does not make it again: back to the tool call,
  // the step around it runs again and gets the recorded result.
  await omium.rollback("m-1", { to: "tool:execute_tool email" });
  assert.equal(await mailer.run("hello", { executionId: "m-1" }), "sent 15");
  assert.deepEqual([llm.calls.length, sent.length], [1, 1], "the recorded tool call is not made again");

  const r = await omium.replay("m-1", { newExecutionId: "m-1-replay" });
  assert.deepEqual(r, { executionId: "m-1-replay", output: "sent 15", sourceExecutionId: "m-1" });
  assert.deepEqual([llm.calls.length, sent.length], [1, 1], "no live call, the side-effect tool did not run");
  const rows = await omium.diff("m-1", r.executionId);
  assert.deepEqual(rows.map((d) => [d.position, d.differs]), [["1/0", false], ["1", false], ["2/0", false], ["2", false]]);
  assert.equal(rows[0].nameA, "llm:chat gpt-4o");
  assert.equal(rows[0].tokensA, 10);
  assert.ok((await omium.spans("m-1-replay")).some((s) => s.attributes["omium.replayed"] === true));

  // The code changed: the prompt differs from the recording.
  suffix = "!";
  const e = await omium.replay("m-1").then(() => null, (err) => err);
  assert.ok(e instanceof omium.ReplayDivergence, `${e}`);
  assert.equal(e.code, "replay_divergence");
  assert.equal(e.index, 0);
  assert.equal(e.recorded.messages[0].content, "hello");
  assert.equal(e.actual.messages[0].content, "hello!");
  assert.match(e.message, /diverged at call 0: llm:chat gpt-4o: the request differs from the recording\n {2}recorded: .*\n {2}actual: /);
  assert.equal(llm.calls.length, 1);

  // One call fewer than recorded.
  suffix = "";
  omium.workflow("mailer", async (q) => draft(q));
  const fewer = await omium.replay("m-1").then(() => null, (err) => err);
  assert.ok(fewer instanceof omium.ReplayDivergence && fewer.index === 1 && fewer.actual === null, `${fewer}`);
  assert.match(fewer.message, /ended without making the recorded request tool:execute_tool email/);
});

test("forkAt re-runs from a position with a changed input and goes live from there", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const llm = new FakeLLM();
  const research = omium.checkpoint("research", async (topic) => `notes on ${topic}`);
  const write = omium.checkpoint("write", async (notes) => (await omium.llmCall(llm.chat, { model: "gpt-4o", messages: [{ role: "user", content: notes }] })).content);
  const writer = omium.workflow("writer", async (topic) => write(await research(topic)));

  assert.equal(await writer.run("tides", { executionId: "w-1" }), "answer to notes on tides");
  const r = await omium.forkAt("w-1", { atStep: 2, mutate: () => ["notes on the moon"] });
  assert.equal(r.output, "answer to notes on the moon");
  assert.equal(llm.calls.length, 2, "live from the forked step on");
  assert.equal((await omium.getExecution("w-1")).status, "completed", "the original is kept");
  const diffed = await omium.diff("w-1", r.executionId);
  assert.deepEqual(diffed.map((d) => d.position), ["1", "2/0", "2"], "research, the LLM call inside write, write");
  const rows = Object.fromEntries(diffed.map((d) => [d.position, d]));
  assert.equal(rows["1"].differs, false);
  assert.ok(rows["2/0"].inputDiffers && rows["2/0"].outputDiffers);
  assert.ok(rows["2"].outputDiffers);

  // At the first position: a new execution with the same input; nothing is replayed.
  const first = await omium.forkAt("w-1", { atStep: 1, mutate: () => ["the sea"], newExecutionId: "w-2" });
  assert.deepEqual(first, { executionId: "w-2", output: "answer to notes on the sea", sourceExecutionId: "w-1" });
  assert.equal((await omium.getExecution("w-2")).labels["omium.forked_from"], "w-1");

  await assert.rejects(omium.forkAt("w-1", { atStep: 9 }), (e) => e instanceof omium.InvalidArgumentError && /positions 1 to 2, not 9/.test(e.message));
  await assert.rejects(omium.forkAt("w-1", { atStep: 0 }), omium.InvalidArgumentError);
  await assert.rejects(omium.forkAt("w-1", { atStep: 2, mutate: () => "x" }), /must return the new arguments as an array/);
});

test("tool calls outside a workflow run plainly; bad arguments get clear errors", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  assert.equal(await omium.callTool("add", async (a, b) => a + b, 2, 3), 5);
  const llm = new FakeLLM();
  assert.equal((await omium.llmCall(llm.chat, { model: "m", messages: [{ role: "user", content: "x" }] })).content, "answer to x");
  assert.throws(() => omium.llmCall(llm.chat, "hello"), /params must be the request object/);
  assert.throws(() => omium.llm({ provider: 3 }, llm.chat), /provider must be a string/);
  assert.throws(() => omium.tool("t", () => 1, { sideEffect: "yes" }), /sideEffect must be a boolean/);
  await assert.rejects(omium.replay("nope"), omium.ExecutionNotFoundError);
  omium.workflow("gone", async () => 1);
  await omium.registeredWorkflows().get("gone").run(undefined, { executionId: "g-1" });
  // A workflow that is not defined in this process cannot be re-run.
  const store = omium.store();
  await store.begin("orphan", { workflow: "elsewhere", tenant: "default" }).then((r) => r.close());
  await assert.rejects(omium.replay("orphan"), omium.WorkflowNotRegisteredError);
});
