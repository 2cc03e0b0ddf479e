// AI SDK (Vercel) tool loops on omium/vercel-ai, with the SDK's MockLanguageModelV4 (no
// network): model calls and tool calls are steps of the Omium execution; a worker SIGKILLed
// inside a tool call resumes without repeating the calls that finished, for generateText and for
// streamText; outside an execution nothing is recorded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { generateText, tool, wrapLanguageModel } from "ai";
import { MockLanguageModelV4 } from "ai/test";
import { z } from "zod";
import * as omium from "../dist/index.js";
import { durableMiddleware, durableTools } from "../dist/vercel-ai.js";
import { tempDir } from "./helpers.mjs";

const worker = fileURLToPath(new URL("./fixtures/vercel-ai-worker.mjs", import.meta.url));

const calls = (log) => readFileSync(log, "utf8").trim().split("\n").map((l) => l.split(" ")[0]);

for (const mode of ["generate", "stream"]) {
  test(`a SIGKILLed ${mode} tool loop resumes without repeating finished calls`, async (t) => {
    const dir = tempDir(t);
    const [store, log] = [join(dir, "store"), join(dir, "log")];
    const flags = mode === "stream" ? ["stream"] : [];
    const first = spawnSync(process.execPath, [worker, store, log, "kill", ...flags], { encoding: "utf8", timeout: 120_000 });
    assert.equal(first.signal, "SIGKILL", first.stderr);
    assert.deepEqual(calls(log), ["model1", "charge", "model2", "ship"]);

    const second = spawnSync(process.execPath, [worker, store, log, ...flags], { encoding: "utf8", timeout: 120_000 });
    assert.equal(second.status, 0, second.stderr);
    assert.equal(second.stdout.trim(), "done: charge, ship");
    // Only the tool call in flight at the kill runs again, then the last model call.
    assert.deepEqual(calls(log).slice(4), ["ship", "model3"]);

    await omium.init({ path: store });
    try {
      const suffix = mode === "stream" ? ":stream" : "";
      assert.deepEqual(
        (await omium.history("order-o-7")).map((c) => c.name),
        [`vercel_ai.model:mock:scripted${suffix}`, "vercel_ai.tool:charge", `vercel_ai.model:mock:scripted${suffix}`, "vercel_ai.tool:ship", `vercel_ai.model:mock:scripted${suffix}`],
      );
      assert.equal((await omium.getExecution("order-o-7")).status, "completed");
    } finally {
      await omium.shutdown();
    }
  });
}

test("outside an execution the model and the tools run as the SDK's own", async (t) => {
  await omium.init({ path: join(tempDir(t), "store"), durability: "none" });
  t.after(() => omium.shutdown());
  let ran = 0;
  const tools = durableTools({
    echo: tool({ inputSchema: z.object({ text: z.string() }), execute: async ({ text }) => (ran++, text) }),
    client: tool({ inputSchema: z.object({}) }), // no execute: answered by the client, left as it is
  });
  assert.equal(durableTools(tools).echo.execute, tools.echo.execute, "durableTools is idempotent");
  assert.equal(tools.client.execute, undefined);
  const model = wrapLanguageModel({
    model: new MockLanguageModelV4({
      doGenerate: async () => ({ content: [{ type: "text", text: "hi" }], finishReason: { unified: "stop", raw: undefined }, usage: { inputTokens: { total: 1 }, outputTokens: { total: 1 } }, warnings: [] }),
    }),
    middleware: durableMiddleware({ name: "plain" }),
  });
  assert.equal((await generateText({ model, tools, prompt: "x" })).text, "hi");
  assert.equal(await tools.echo.execute({ text: "a" }, {}), "a");
  assert.equal(ran, 1);
  assert.deepEqual(await omium.executions(), []);
  assert.throws(() => durableMiddleware({ name: "" }), (e) => e.code === "invalid_argument");
});
