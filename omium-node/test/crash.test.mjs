// A real process SIGKILLed mid-workflow; another process recovers the execution: every step
// recorded before the kill is not run again, and the run finishes with the right result.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as omium from "omium";
import { tempDir } from "./helpers.mjs";

const worker = fileURLToPath(new URL("./fixtures/crash-worker.mjs", import.meta.url));
const lines = (log) => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []);

async function killAfter(dir, log, n) {
  // The n-th step waits in its body until it is killed: the kill lands inside it however late
  // this process sees its log line.
  const child = spawn(process.execPath, [worker, dir, log, "run", String(n)], { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise((r) => child.on("exit", (code, signal) => r(signal ?? code)));
  const deadline = Date.now() + 60_000;
  while (lines(log).length < n) {
    if (child.exitCode !== null) throw new Error(`worker exited early (${child.exitCode})`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`step ${n} did not start within 60 s; the log: ${lines(log).join(", ")}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  assert.equal(await exited, "SIGKILL");
}

for (const n of [1, 5, 11]) {
  test(`SIGKILL after ${n} step(s) started, then recover() in a new process`, async (t) => {
    const dir = tempDir(t);
    const log = join(dir, "..", `${dir.split("/").pop()}.log`);
    t.after(() => spawnSync("rm", ["-f", log]));
    await killAfter(dir, log, n);

    await omium.init({ path: dir, readOnly: true });
    const recorded = (await omium.history("crash-1")).map((c) => c.name);
    const e = await omium.getExecution("crash-1");
    await omium.shutdown();
    assert.equal(e.status, "running");
    assert.ok(recorded.length >= n - 1 && recorded.length <= n, `recorded ${recorded.length} of ${n} started`);

    const r = spawnSync(process.execPath, [worker, dir, log, "recover"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { "crash-1": 100 + 66 });

    const ran = lines(log);
    for (const name of recorded) assert.equal(ran.filter((l) => l === name).length, 1, `${name} ran again after the crash`);
    for (let i = 0; i < 12; i++) assert.ok(ran.includes(`step-${i}`));
    await omium.init({ path: dir, readOnly: true });
    t.after(() => omium.shutdown());
    assert.equal((await omium.getExecution("crash-1")).status, "completed");
    assert.equal((await omium.history("crash-1")).length, 12);
    assert.equal((await omium.verify()).ok, true);
    const failures = await omium.failures("crash-1");
    assert.equal(failures[0].kind, "process_crashed");
  });
}
