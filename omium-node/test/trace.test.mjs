// Spans of workflows, steps, checkpoints and user code, one trace per execution.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

test("a workflow's spans form one tree: workflow > step > checkpoint, user spans inside steps", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const tool = omium.checkpoint("search", async (q) =>
    omium.trace("execute_tool search", async (span) => {
      span.setAttribute("gen_ai.tool.name", "search");
      return `results for ${q}`;
    }, { spanType: "tool" }),
  );
  const wf = omium.workflow("traced", async (q) => {
    const tp = omium.getTraceparent();
    assert.match(tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    return tool(q);
  });
  assert.equal(await wf.run("omium", { executionId: "tr1" }), "results for omium");
  const spans = await omium.spans("tr1");
  const by = Object.fromEntries(spans.map((s) => [s.name, s]));
  assert.ok(by.traced && by.search && by["checkpoint search"] && by["execute_tool search"], spans.map((s) => s.name).join(","));
  assert.equal(new Set(spans.map((s) => s.traceId)).size, 1);
  assert.equal(by.traced.parent, null);
  assert.equal(by.search.parent, by.traced.spanId);
  assert.equal(by["checkpoint search"].parent, by.search.spanId);
  assert.equal(by["execute_tool search"].parent, by.search.spanId);
  assert.equal(by["execute_tool search"].spanType, "tool");
  assert.equal(by["execute_tool search"].attributes["gen_ai.tool.name"], "search");
  assert.ok(BigInt(by.traced.startNs) <= BigInt(by.search.startNs));
  assert.ok(BigInt(by.search.endNs) <= BigInt(by.traced.endNs));
  const text = await omium.traceText("tr1");
  assert.match(text, /traced/);
  assert.match(await omium.traceHtml("tr1"), /<html/i);
});

test("a failing step's span records the exception", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  const bad = omium.checkpoint("bad", async () => {
    throw new TypeError("nope");
  });
  const wf = omium.workflow("traced-fail", async () => bad());
  await assert.rejects(wf.run(undefined, { executionId: "tf1" }), /nope/);
  const spans = await omium.spans("tf1");
  const step = spans.find((s) => s.name === "bad");
  assert.equal(step.status, "error");
  assert.match(step.statusMessage, /TypeError: nope/);
  assert.equal(step.events[0].name, "exception");
});
