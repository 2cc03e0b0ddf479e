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
  // The checkpoint's span (timed natively, on the spans' clock) sits inside its step's.
  assert.ok(BigInt(by.search.startNs) <= BigInt(by["checkpoint search"].startNs));
  assert.ok(BigInt(by["checkpoint search"].endNs) <= BigInt(by.search.endNs));
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
  // Its ids are the ones the step began with: a child of the workflow's span, in its trace.
  const root = spans.find((s) => s.name === "traced-fail");
  assert.equal(step.parent, root.spanId);
  assert.equal(step.traceId, root.traceId);
  assert.equal(step.spanType, "step");
  assert.equal(step.attributes["omium.seq"], 1);
  assert.ok(BigInt(root.startNs) <= BigInt(step.startNs) && BigInt(step.endNs) <= BigInt(root.endNs));
  assert.equal(spans.find((s) => s.name === "checkpoint bad"), undefined);
});

test("enableOtlpExport sends the store's analytics to a metrics endpoint", async (t) => {
  const http = await import("node:http");
  const bodies = [];
  let arrived = () => {};
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/v1/metrics") {
        assert.equal(req.headers["content-type"], "application/x-protobuf");
        bodies.push(Buffer.concat(chunks));
        arrived();
      }
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${server.address().port}`;
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  omium.enableOtlpExport({ endpoint: `${base}/v1/traces`, serviceName: "node-metrics", metricsEndpoint: `${base}/v1/metrics`, metricsIntervalMs: 100 });
  const step = omium.checkpoint("double", async (x) => x * 2);
  const wf = omium.workflow("otlp-metrics", async (x) => step(x));
  assert.equal(await wf.run(21, { executionId: "om1" }), 42);
  // Cumulative sums: wait for an export made after the run (it names the workflow).
  const deadline = Date.now() + 30_000;
  while (!bodies.some((b) => b.includes("otlp-metrics"))) {
    assert.ok(Date.now() < deadline, `no export named the workflow among ${bodies.length}`);
    await new Promise((ok) => { arrived = ok; setTimeout(ok, 1000); });
  }
  const body = bodies.find((b) => b.includes("otlp-metrics"));
  for (const name of ["omium_executions_started", "omium_steps", "omium_execution_duration_seconds", "node-metrics"]) {
    assert.ok(body.includes(name), `${name} is not in the export`);
  }
});
