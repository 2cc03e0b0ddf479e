// Remote sync from Node with real processes: a 3-node cluster of `omium node` processes on
// 127.0.0.1, store A in a worker process, store B here. An execution that failed on A is
// pulled and finished on B; one A rolled back is taken over by B's recover().
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as omium from "omium";
import { defineJob } from "./fixtures/sync-job.mjs";
import { omiumBin, tempDir } from "./helpers.mjs";

const WORKER = fileURLToPath(new URL("./fixtures/sync-worker.mjs", import.meta.url));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts a node and resolves once it says it listens. */
function startNode(dir, id, listen, join_) {
  const args = ["--store", join(dir, `node${id}`), "node", "--id", String(id), "--insecure-loopback", "--listen", listen];
  if (join_) args.push("--join", join_);
  const p = spawn(omiumBin(), args, { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
      if (out.includes("listening")) resolve(p);
    });
    p.on("exit", (code) => reject(new Error(`node ${id} exited (${code}) before listening: ${out}`)));
  });
}

function cli(...args) {
  return execFileSync(omiumBin(), args, { encoding: "utf8", timeout: 60_000 });
}

async function cluster(t, dir) {
  const addrs = [];
  for (let i = 0; i < 3; i++) addrs.push(`127.0.0.1:${await freePort()}`);
  const procs = [await startNode(dir, 1, addrs[0])];
  t.after(() => procs.forEach((p) => p.kill("SIGKILL")));
  cli("cluster", "--node", addrs[0], "init");
  for (let i = 1; i < 3; i++) procs.push(await startNode(dir, i + 1, addrs[i], addrs[0]));
  // Until every node is a voter and there is a leader (each status is a process of its own).
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = JSON.parse(cli("--json", "cluster", "--node", addrs[0], "status"));
    if (s.voters.length === 3 && s.leader !== null) break;
    assert.ok(Date.now() < deadline, JSON.stringify(s));
    await new Promise((r) => setImmediate(r));
  }
  return addrs.join(",");
}

function worker(...args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [WORKER, ...args], { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, OMIUM_TEST_FAIL_AT: args[3] === "fail" ? "s2" : "" } });
    p.on("exit", (code) => (code === 0 ? resolve(p.pid) : reject(new Error(`worker exited with ${code}`))));
  });
}

const lines = (log) =>
  readFileSync(log, "utf8")
    .trim()
    .split("\n")
    .map((l) => l.split(" ").map((v, i) => (i === 1 ? Number(v) : v)));

test("an execution that failed on one store is pulled and finished on another; recover() takes over what another store left", async (t) => {
  const dir = tempDir(t);
  const nodes = await cluster(t, dir);
  const log = join(dir, "steps.log");
  const a = await worker(join(dir, "a"), nodes, log, "fail");
  const a2 = await worker(join(dir, "a"), nodes, log, "rollback");

  await omium.init({ path: join(dir, "b"), remote: nodes });
  t.after(() => omium.shutdown());
  const job = defineJob(log);
  const info = await omium.pull("job-1");
  assert.equal(info.status, "failed");
  assert.equal(await job.run(0, { executionId: "job-1" }), 111);
  // s0 and s1 ran once, on A; s2 failed on A and ran again here.
  const me = process.pid;
  assert.deepEqual(lines(log).slice(0, 4), [["s0", a], ["s1", a], ["s2", a], ["s0", a2]]);
  assert.deepEqual(
    lines(log).filter(([, pid]) => pid === me),
    [["s2", me]],
  );

  // job-2 was rolled back to s0 on A and left: recover() pulls it and runs s1 and s2 here.
  const results = await omium.recover();
  assert.equal(results["job-2"], 111);
  assert.deepEqual(
    lines(log).filter(([, pid]) => pid === me),
    [["s2", me], ["s1", me], ["s2", me]],
  );
  await omium.push();
  assert.equal(omium.syncStatus().executions_pulled, 2);
  assert.deepEqual(omium.syncStatus().conflicts, {});
  assert.ok((await omium.verify()).ok);
  // Not syncing: the calls say how to start it.
  await omium.init({ path: join(dir, "c") });
  await assert.rejects(omium.pull("job-1"), (e) => e instanceof omium.InvalidStateError && /syncs to no cluster/.test(e.message));
});
