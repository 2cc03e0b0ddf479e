// Real LangGraph.js graphs (no LLM) on OmiumSaver: interrupts resumed with Command, time
// travel through the state history, forks with updateState.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Annotation, Command, END, START, StateGraph, interrupt } from "@langchain/langgraph";
import { OmiumSaver } from "omium/langgraph";
import { tempDir } from "./helpers.mjs";

const State = Annotation.Root({
  messages: Annotation({ reducer: (a, b) => a.concat(b), default: () => [] }),
  approved: Annotation({ reducer: (_a, b) => b, default: () => false }),
});

function build(saver, calls) {
  return new StateGraph(State)
    .addNode("draft", async () => {
      calls.push("draft");
      return { messages: ["draft"] };
    })
    .addNode("review", async () => {
      calls.push("review");
      const answer = interrupt({ question: "approve?" });
      return { approved: answer === "yes", messages: [`review:${answer}`] };
    })
    .addNode("send", async (s) => {
      calls.push("send");
      return { messages: [s.approved ? "sent" : "dropped"] };
    })
    .addEdge(START, "draft")
    .addEdge("draft", "review")
    .addEdge("review", "send")
    .addEdge("send", END)
    .compile({ checkpointer: saver });
}

test("an interrupted graph resumes with Command({ resume }) from a new saver on the same store", async (t) => {
  const dir = tempDir(t);
  const cfg = { configurable: { thread_id: "t1" } };
  const calls = [];
  let saver = await OmiumSaver.open(dir);
  const first = await build(saver, calls).invoke({ messages: ["hi"] }, cfg);
  assert.deepEqual(first.messages, ["hi", "draft"]);
  assert.equal(first.__interrupt__?.[0]?.value?.question, "approve?");
  saver.close();

  saver = await OmiumSaver.open(dir); // a new process would do the same
  t.after(() => saver.close());
  const graph = build(saver, calls);
  const done = await graph.invoke(new Command({ resume: "yes" }), cfg);
  assert.deepEqual(done.messages, ["hi", "draft", "review:yes", "sent"]);
  assert.deepEqual(calls, ["draft", "review", "review", "send"], "draft ran once");

  const history = [];
  for await (const s of graph.getStateHistory(cfg)) history.push(s);
  assert.ok(history.length >= 4);
  assert.deepEqual(history[0].values.messages, ["hi", "draft", "review:yes", "sent"]);

  // Time travel: fork from the checkpoint before "send" with an edited state and replay.
  const beforeSend = history.find((s) => s.next.includes("send"));
  const forked = await graph.updateState(beforeSend.config, { approved: false });
  const replay = await graph.invoke(null, forked);
  assert.equal(replay.messages.at(-1), "dropped");
  const latest = await graph.getState(cfg);
  assert.equal(latest.values.messages.at(-1), "dropped");
  // The original branch is still there.
  const all = [];
  for await (const s of graph.getStateHistory(cfg)) all.push(s.values.messages.at(-1));
  assert.ok(all.includes("sent") && all.includes("dropped"));
});

test("threads are isolated, listed with filters and deleted", async (t) => {
  const saver = await OmiumSaver.open(tempDir(t), { durability: "buffered" });
  t.after(() => saver.close());
  const graph = build(saver, []);
  await graph.invoke({ messages: ["a"] }, { configurable: { thread_id: "a" } });
  await graph.invoke({ messages: ["b"] }, { configurable: { thread_id: "b" } });
  const inputs = [];
  for await (const c of saver.list({ configurable: { thread_id: "a" } }, { filter: { source: "input" } })) inputs.push(c);
  assert.equal(inputs.length, 1);
  assert.equal(inputs[0].config.configurable.thread_id, "a");
  await saver.deleteThread("a");
  assert.equal(await saver.getTuple({ configurable: { thread_id: "a" } }), undefined);
  assert.ok(await saver.getTuple({ configurable: { thread_id: "b" } }));
});
