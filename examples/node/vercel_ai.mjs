// An AI SDK (Vercel) tool loop made durable with Omium (no API key needed: the SDK's mock model,
// scripted, stands in for the LLM — put your own model in its place). The run's process dies
// inside a tool call; the same execution, run again, answers the model calls and tool calls that
// finished from their checkpoints and only does the rest.
//
//   node examples/node/vercel_ai.mjs [STORE_DIR]
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import * as omium from "../../omium-node/dist/index.mjs";
import { durableMiddleware, durableTools } from "../../omium-node/dist/vercel-ai.mjs";

// In your project: import { generateText, ... } from "ai"; here, the copies omium-node's tests use.
const fromPackage = (name) => import(pathToFileURL(createRequire(new URL("../../omium-node/package.json", import.meta.url)).resolve(name)).href);
const { generateText, isStepCount, tool, wrapLanguageModel } = await fromPackage("ai");
const { MockLanguageModelV4 } = await fromPackage("ai/test");
const { z } = await fromPackage("zod");

const CRASH = "--crash-in-ship";
const crash = process.argv.includes(CRASH);
const usage = { inputTokens: { total: 1 }, outputTokens: { total: 1 } };

// The stand-in LLM: charge, then ship, then answer.
const standIn = new MockLanguageModelV4({
  provider: "stand-in",
  modelId: "orders",
  doGenerate: async ({ prompt }) => {
    const done = prompt.flatMap((m) => (m.role === "tool" ? m.content : [])).length;
    console.log(`   model call ${done + 1} (live)`);
    const content = [
      [{ type: "tool-call", toolCallId: "c1", toolName: "charge", input: JSON.stringify({ order: "o-7", amount: 120 }) }],
      [{ type: "tool-call", toolCallId: "c2", toolName: "ship", input: JSON.stringify({ order: "o-7" }) }],
      [{ type: "text", text: "order o-7 charged and shipped" }],
    ][done];
    return { content, finishReason: { unified: done < 2 ? "tool-calls" : "stop", raw: undefined }, usage, warnings: [] };
  },
});

const model = wrapLanguageModel({ model: standIn, middleware: durableMiddleware() });
const tools = durableTools({
  charge: tool({
    inputSchema: z.object({ order: z.string(), amount: z.number() }),
    execute: async ({ order, amount }) => (console.log(`   charge ${order} ${amount} EUR (live)`), `charged ${amount}`),
  }),
  ship: tool({
    inputSchema: z.object({ order: z.string() }),
    execute: async ({ order }) => {
      console.log(`   ship ${order} (live)`);
      if (crash) process.kill(process.pid, "SIGKILL"); // the machine dies mid-call
      return "shipped";
    },
  }),
});

const orders = omium.workflow("orders", async (request) => {
  const result = await generateText({ model, tools, prompt: request, stopWhen: isStepCount(5) });
  return result.text;
});

async function run(store) {
  await omium.init({ path: store });
  try {
    return await orders.run("handle order o-7", { executionId: "order-o-7" });
  } finally {
    await omium.shutdown();
  }
}

const store = process.argv[2] && !process.argv[2].startsWith("--") ? process.argv[2] : mkdtempSync(join(tmpdir(), "omium-vercel-ai-"));
if (crash) {
  await run(store);
} else {
  console.log("1. a worker runs the tool loop and dies inside the `ship` tool call:");
  const worker = spawnSync(process.execPath, [fileURLToPath(import.meta.url), store, CRASH], { stdio: "inherit" });
  console.log(`   worker ended by ${worker.signal}`);
  console.log("2. the same execution, run again (only what did not finish runs):");
  console.log(`   output: ${await run(store)}`);
  await omium.init({ path: store });
  console.log(`3. its steps: ${(await omium.history("order-o-7")).map((c) => c.name).join(", ")}`);
  await omium.shutdown();
}
