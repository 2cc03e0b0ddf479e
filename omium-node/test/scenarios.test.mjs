// The cross-binding conformance scenarios (tests/conformance/README.md) run through the Node
// package: every run and operation in a process of its own, runs SIGKILLed where the scenario
// says, then the store checked in this process. Python runs the same files
// (omium-py/tests/test_conformance.py).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as omium from "omium";
import { expand, tempDir } from "./helpers.mjs";

const root = fileURLToPath(new URL("../../tests/conformance/scenarios/", import.meta.url));
const worker = fileURLToPath(new URL("./fixtures/scenario-worker.mjs", import.meta.url));
const scenarios = readdirSync(root).filter((f) => f.endsWith(".json")).sort();
const FEATURES = new Set(["kill", "retries", "conditions", "rollback", "fork", "resume", "policy", "recovery", "calls", "consensus", "timeouts", "events", "metrics", "alerts", "delete"]);

test("the suite is there", () => {
  assert.ok(scenarios.length >= 20, `only ${scenarios.length} scenarios in ${root}`);
});

function step(path, index, store) {
  const p = spawnSync(process.execPath, [worker, path, String(index), store], { encoding: "utf8", timeout: 120_000 });
  const ran = [];
  let result = null;
  for (const line of p.stdout.split("\n").filter(Boolean)) {
    const msg = JSON.parse(line);
    if ("ran" in msg) ran.push(msg.ran);
    else result = msg.result;
  }
  if (result === null && p.signal !== "SIGKILL") throw new Error(`worker of item ${index} exited ${p.status} (${p.signal}) without a result:\n${p.stderr}`);
  return { ran, result, signal: p.signal };
}

for (const file of scenarios) {
  test(file.replace(/\.json$/, ""), async (t) => {
    const path = join(root, file);
    const scenario = JSON.parse(readFileSync(path, "utf8"));
    const missing = (scenario.requires ?? []).filter((f) => !FEATURES.has(f));
    assert.deepEqual(missing, [], "the Node runner lacks these features");
    const store = join(tempDir(t), "store");
    scenario.runs.forEach((item, i) => {
      const { ran, result, signal } = step(path, i, store);
      const where = `${file} item ${i} (${JSON.stringify(item)})`;
      if ("op" in item) {
        assert.equal(result?.outcome, item.outcome ?? "done", `${where}: ${JSON.stringify(result)}`);
        if ("status" in item) assert.equal(result.status, item.status, `${where}: ${JSON.stringify(result)}`);
        for (const [key, n] of Object.entries(item.erased ?? {})) assert.equal(result.erased?.[key], n, `${where}: erased ${key}: ${JSON.stringify(result)}`);
      } else if (item.outcome === "killed") assert.ok(signal === "SIGKILL" && result === null, `${where}: expected a SIGKILL, got ${signal} and ${JSON.stringify(result)}`);
      else assert.equal(result?.outcome, item.outcome, `${where}: ${JSON.stringify(result)}`);
      // Runs, replays and forks at a position say what they returned.
      if (result !== null && "output" in item) assert.deepEqual(result.output, expand(item.output), where);
      if (result !== null && "error" in item) assert.equal(result.error, item.error, where);
      if ("ran" in item) assert.deepEqual(ran, item.ran, where);
    });
    await omium.init({ path: store });
    try {
      const final = scenario.final ?? {};
      for (const [execution, status] of Object.entries(final.status ?? {})) assert.equal((await omium.getExecution(execution)).status, status, execution);
      for (const execution of final.erased ?? []) {
        await assert.rejects(omium.getExecution(execution), omium.ExecutionNotFoundError, `${execution} erased`);
        assert.deepEqual(await omium.failures(execution), [], `failures of ${execution}`);
        assert.deepEqual(await omium.spans(execution), [], `spans of ${execution}`);
      }
      for (const [execution, expected] of Object.entries(final.history ?? {})) {
        const got = [];
        for (const c of await omium.history(execution)) got.push([c.name, c.kind, c.kind === "step" || c.kind === "snapshot" ? await c.load() : null]);
        const want = expected.map(([n, k, s], i) => [n, k, s === "*" && i < got.length ? got[i][2] : expand(s)]);
        assert.deepEqual(got, want, `history of ${execution}`);
      }
      for (const [execution, expected] of Object.entries(final.failures ?? {})) {
        const got = (await omium.failures(execution)).map((f) => [f.kind, f.outcome, f.actions.map((a) => [a.action, a.outcome])]);
        assert.deepEqual(got, expected, `failures of ${execution}`);
      }
      for (const [execution, expected] of Object.entries(final.consensus ?? {})) {
        assert.deepEqual((await omium.consensus.status(execution)).map((m) => m.status.state), expected, `consensus of ${execution}`);
      }
      for (const [execution, expected] of Object.entries(final.events ?? {})) {
        const got = [];
        for await (const e of omium.events({ executionId: execution })) got.push(e.type.replace(/^io\.omium\./, ""));
        assert.deepEqual(got, expected, `events of ${execution}`);
      }
      if (final.metrics !== undefined) {
        const { totals } = await omium.metrics({ since: "1h" });
        assert.deepEqual(Object.fromEntries(Object.keys(final.metrics).map((k) => [k, totals[k]])), final.metrics, JSON.stringify(totals));
      }
      for (const [i, expected] of (final.alerts?.evaluations ?? []).entries()) {
        assert.deepEqual(await omium.evaluateAlerts(final.alerts.rules), expected, `alert evaluation ${i}`);
      }
      for (const [a, b, expected] of final.diff ?? []) {
        assert.deepEqual((await omium.diff(a, b)).map((d) => [d.position, d.differs]), expected, `diff of ${a} and ${b}`);
      }
      const report = await omium.verify();
      assert.ok(report.ok, JSON.stringify(report));
    } finally {
      await omium.shutdown();
    }
  });
}
