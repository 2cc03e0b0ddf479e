// Omium's onboarding demo in Node: three agents (KYC, credit scoring, offer) as async
// functions with simulated LLM latency and cost. The run starts in a child process that is
// killed with SIGKILL mid-run; run again with the same execution id it resumes, and the steps
// that had finished are not re-run (nor re-paid). Then the execution is rolled back to
// `kyc_doc_validated` and re-run from there.
//
//     node examples/node/onboarding.mjs [STORE_DIR]
//
// (after `make node`, which builds the package in omium-node/).
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

import * as omium from "../../omium-node/dist/index.mjs";

const EXECUTION = "cust-42";
const CUSTOMER = { id: "cust-42", name: "Ada Lovelace", income: 84_000, documents: ["passport", "utility_bill"] };
const spent = { usd: 0, calls: 0 };

async function llm(agent, prompt, ms, usd) {
  console.log(`    [${agent}] LLM call: ${prompt} (${ms} ms, $${usd.toFixed(3)})`);
  await sleep(ms);
  spent.usd += usd;
  spent.calls += 1;
}

const verifyKyc = omium.checkpoint(
  "kyc_doc_validated",
  async (customer) => {
    await llm("kyc_agent", `check ${customer.documents.join(", ")} of ${customer.name}`, 600, 0.012);
    return { verified: true, risk: "low" };
  },
  { agent: "kyc_agent", postconditions: ["result.verified == true"] },
);

const creditScore = omium.checkpoint(
  "credit_score",
  async (customer, kyc) => {
    await llm("credit_agent", `score income ${customer.income} with ${kyc.risk} KYC risk`, 800, 0.02);
    return { score: 742, band: "good" };
  },
  { agent: "credit_agent", postconditions: ["result.score >= 300 && result.score <= 850"] },
);

const makeOffer = omium.checkpoint(
  "offer",
  async (_customer, credit) => {
    await llm("offer_agent", `draft an offer for a ${credit.band} score`, 700, 0.018);
    return { product: "Platinum card", limit: credit.score * 20, apr: 18.9 };
  },
  { agent: "offer_agent" },
);

const onboard = omium.workflow("customer_onboarding", async (customer) => {
  const kyc = await verifyKyc(customer);
  const credit = await creditScore(customer, kyc);
  return makeOffer(customer, credit);
});

async function worker(store) {
  await omium.init({ path: store, project: "onboarding" });
  console.log(`  [worker pid ${process.pid}] running ${EXECUTION}`);
  const offer = await onboard.run(CUSTOMER, { executionId: EXECUTION });
  console.log(`  [worker pid ${process.pid}] done: ${offer.product}, limit £${offer.limit}`);
  console.log(`  [worker pid ${process.pid}] LLM spend of this run: $${spent.usd.toFixed(3)} in ${spent.calls} calls`);
  await omium.shutdown();
}

// Runs a worker process; `killOn` SIGKILLs it as soon as it prints a line containing that text.
function run(store, killOn) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--worker", store], { stdio: ["ignore", "pipe", "inherit"] });
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (text) => {
    process.stdout.write(text);
    if (killOn && text.includes(killOn)) child.kill("SIGKILL");
  });
  return new Promise((r) => child.on("exit", (code, signal) => r(signal ?? code)));
}

async function show(store, title) {
  await omium.init({ path: store, readOnly: true });
  const e = await omium.getExecution(EXECUTION);
  console.log(`\n${title}: ${EXECUTION} is ${e.status}`);
  for (const c of await omium.history(EXECUTION)) console.log(`    ${String(c.seq).padStart(2)}  ${c.name.padEnd(20)} ${c.agent.padEnd(13)} ${c.id}`);
  await omium.shutdown();
}

if (process.argv[2] === "--worker") {
  await worker(process.argv[3]);
} else {
  const store = process.argv[2] ?? join(mkdtempSync(join(tmpdir(), "omium-demo-")), "store");
  console.log(`Store: ${store}\n\n1. Start the run, and kill the process with SIGKILL during the credit check:`);
  console.log(`  (killed: ${await run(store, "[credit_agent]")})`);
  await show(store, "After the crash");

  console.log("\n2. Run again with the same execution id: the KYC step is not run again.");
  if ((await run(store)) !== 0) process.exit(1);
  await show(store, "After the resumed run");

  console.log("\n3. Roll back to kyc_doc_validated and run again: credit and offer run again.");
  await omium.init({ path: store });
  const marker = await omium.rollback(EXECUTION, { to: "kyc_doc_validated", reason: "re-score with the new model" });
  console.log(`    rollback marker ${marker.id}`);
  const offer = await onboard.run(CUSTOMER, { executionId: EXECUTION });
  console.log(`    re-run done: ${offer.product}; LLM spend $${spent.usd.toFixed(3)} in ${spent.calls} calls`);
  const report = await omium.verify();
  console.log(`\nverify: ${report.ok ? "ok" : report.problems.map((p) => p.error).join("; ")} (${report.checkpoints} checkpoints, ${report.audit.entries} audit entries)`);
  await omium.shutdown();
}
