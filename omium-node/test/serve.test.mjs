// `omium serve` from Node: a real daemon process, real worker processes sharing its store through
// omium.init({ url }), a worker SIGKILLed and resumed by another, API keys, a daemon that is gone,
// and the calls only an embedded store has.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as omium from "omium";
import { omiumBin, tempDir } from "./helpers.mjs";

const worker = fileURLToPath(new URL("./fixtures/serve-worker.mjs", import.meta.url));
const KEY = "k3y-0123456789abcdef-node-test";
const POLICY = `
policies:
  - trigger: "timeout_error"
    action: "auto_retry"
    max_retries: 3
    backoff: exponential
`;

/** Starts `omium --store DIR serve ARGS...` and waits for the JSON line it prints once it listens. */
async function startDaemon(t, store, ...args) {
  // Keys never go on the command line: `--api-key K` here becomes OMIUM_API_KEYS.
  const env = { ...process.env };
  const i = args.indexOf("--api-key");
  if (i >= 0) {
    env.OMIUM_API_KEYS = args[i + 1];
    args.splice(i, 2);
  }
  const proc = spawn(omiumBin(), ["--store", store, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"], env });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => proc.on("exit", (code, signal) => r(signal ?? code)));
  const lines = createInterface({ input: proc.stdout });
  const first = await Promise.race([
    new Promise((r) => lines.once("line", r)),
    exited.then((how) => {
      throw new Error(`omium serve exited (${how}) before listening: ${stderr}`);
    }),
  ]);
  const info = JSON.parse(first);
  const daemon = {
    proc,
    info,
    exited,
    unixUrl: info.socket ? `unix://${info.socket}` : undefined,
    httpUrl: info.http ? `http://${info.http}` : undefined,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      const how = await exited;
      assert.equal(how, 0, `omium serve exited with ${how} on SIGTERM: ${stderr}`);
    },
  };
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      await exited;
    }
  });
  return daemon;
}

/** Runs the worker fixture to its end; its JSON report. */
function runWorker(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`worker ${args[0]} exited ${code}: ${err}`))));
  });
}

const logLines = (log) => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []);

async function shutdownQuietly() {
  await omium.shutdown().catch(() => undefined);
}

test("two worker processes run durable workflows through one daemon; each step runs once", async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon(t, join(dir, "store"), "--socket", join(dir, "omium.sock"));
  const log = join(dir, "steps.log");
  const ids = Array.from({ length: 6 }, (_, i) => `shared-${i}`);
  const [a, b] = await Promise.all([runWorker(["claim", daemon.unixUrl, log, ...ids]), runWorker(["claim", daemon.unixUrl, log, ...[...ids].reverse()])]);
  assert.notEqual(a.pid, b.pid);
  assert.deepEqual([...new Set([...a.done, ...b.done])].sort(), ids);
  for (const id of [...a.skipped, ...b.skipped]) assert.ok(a.done.includes(id) || b.done.includes(id), `${id} was skipped by both workers`);

  const ran = logLines(log).map((l) => l.split(" "));
  for (const id of ids) {
    for (let step = 0; step < 5; step++) {
      const n = ran.filter(([e, s]) => e === id && s === String(step)).length;
      assert.equal(n, 1, `step ${step} of ${id} ran ${n} times`);
    }
  }
  assert.equal(ran.length, ids.length * 5);

  // What the workers recorded is the daemon's: this process sees it through the daemon.
  await omium.init({ url: daemon.unixUrl });
  t.after(shutdownQuietly);
  assert.equal(omium.store().url, daemon.unixUrl);
  assert.equal(omium.store().durability, "sync");
  assert.equal(omium.store().readOnly, false);
  for (const id of ids) {
    const e = await omium.getExecution(id);
    assert.equal(e.status, "completed", `${id}: ${e.status}`);
    assert.equal(e.workflow, "pipeline");
    const h = await omium.history(id);
    assert.deepEqual(
      h.map((c) => c.name),
      ["work", "work", "work", "work", "work"],
    );
  }
  const stats = await omium.store().stats();
  assert.equal(stats.executions, ids.length);
  assert.equal(stats.checkpoints, ids.length * 5);
  assert.equal((await omium.verify()).ok, true);
  await omium.shutdown();
  await daemon.stop();
});

test("a worker SIGKILLed mid-run is resumed by another: recorded steps do not run again", async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon(t, join(dir, "store"), "--socket", join(dir, "omium.sock"));
  const log = join(dir, "steps.log");
  const child = spawn(process.execPath, [worker, "slow", daemon.unixUrl, log, "slow-1"], { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise((r) => child.on("exit", (code, signal) => r(signal ?? code)));
  const deadline = Date.now() + 60_000;
  while (logLines(log).length < 4) {
    if (child.exitCode !== null) throw new Error(`the slow worker exited early (${child.exitCode})`);
    assert.ok(Date.now() < deadline, "the slow worker did not start 4 steps in 60 s");
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  assert.equal(await exited, "SIGKILL");

  await omium.init({ url: daemon.unixUrl });
  t.after(shutdownQuietly);
  const recorded = (await omium.history("slow-1")).length;
  const started = logLines(log).length;
  assert.equal((await omium.getExecution("slow-1")).status, "running");
  assert.ok(recorded >= started - 1 && recorded <= started, `recorded ${recorded} steps of the ${started} started`);

  const r = await runWorker(["recover", daemon.unixUrl, log]);
  assert.deepEqual(r.done, ["slow-1"]);
  const ran = logLines(log).map((l) => l.split(" "));
  for (let step = 0; step < 10; step++) {
    const runs = ran.filter(([, s]) => s === String(step));
    if (step < recorded) {
      assert.equal(runs.length, 1, `recorded step ${step} ran ${runs.length} times`);
      assert.equal(runs[0][2], String(child.pid));
    } else {
      // The step the kill interrupted ran in both workers; the later ones only in the second.
      assert.ok(runs.length >= 1 && runs.length <= (step === recorded ? 2 : 1), `step ${step} ran ${runs.length} times`);
      assert.equal(runs.at(-1)[2], String(r.pid));
    }
  }
  const e = await omium.getExecution("slow-1");
  assert.equal(e.status, "completed");
  assert.equal((await omium.history("slow-1")).length, 10);
  const failures = await omium.failures("slow-1");
  assert.equal(failures[0].kind, "process_crashed");

  // A second run of the finished execution replays its output: nothing runs again.
  const before = logLines(log).length;
  const work = omium.checkpoint("work", async () => {
    throw new Error("a finished execution must not run its steps again");
  });
  const pipeline = omium.workflow("pipeline", async ({ steps }) => {
    let sum = 0;
    for (let i = 0; i < steps; i++) sum += await work(i);
    return sum;
  });
  assert.equal(await pipeline.run({ steps: 10 }, { executionId: "slow-1" }), 285);
  assert.equal(logLines(log).length, before);
  await omium.shutdown();
  await daemon.stop();
});

test("a worker SIGKILLed is recovered at once, 50 times: the daemon does not wait for a reaper tick", async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon(t, join(dir, "store"), "--socket", join(dir, "omium.sock"));
  const log = join(dir, "steps.log");
  await omium.init({ url: daemon.unixUrl });
  t.after(shutdownQuietly);
  const ran = [];
  const holdStep = omium.checkpoint("hold_step", async (execution, step) => {
    ran.push([execution, step]);
    return step;
  });
  omium.workflow("holder", async ({ execution }) => {
    const out = [];
    for (let i = 0; i < 5; i++) out.push(await holdStep(execution, i));
    return out;
  });
  for (let round = 0; round < 50; round++) {
    const id = `held-${round}`;
    const child = spawn(process.execPath, [worker, "hold", daemon.unixUrl, log, id], { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise((r) => child.on("exit", (code, signal) => r(signal ?? code)));
    const lines = createInterface({ input: child.stdout });
    const first = await Promise.race([new Promise((r) => lines.once("line", r)), exited.then((how) => `exited ${how}`)]);
    assert.equal(first, "READY", `round ${round}`);
    child.kill("SIGKILL");
    assert.equal(await exited, "SIGKILL");
    assert.deepEqual(await omium.recover(), { [id]: [0, 1, 2, 3, 4] }, `round ${round}`);
    // Steps 0-2 were recorded by the killed worker: only 3 (interrupted) and 4 run here.
    assert.deepEqual(ran, [[id, 3], [id, 4]], `round ${round}`);
    ran.length = 0;
  }
  assert.equal((await omium.verify()).ok, true);
  await omium.shutdown();
  await daemon.stop();
});

test("a run through the daemon: recorded steps replay in the next run, spans and policies are the daemon's", async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon(t, join(dir, "store"), "--socket", join(dir, "omium.sock"));
  await omium.init({ url: daemon.unixUrl });
  t.after(shutdownQuietly);
  const s = omium.store();

  // The native run: reserve and the journal lookup are synchronous calls, as for an embedded store.
  const run = await s.begin("manual-1", { workflow: "manual", input: Buffer.from("in") });
  assert.equal(run.reserve(), 1);
  assert.equal(run.isRecorded(1, "fetch"), false);
  const id = run.recordNow(1, "fetch", Buffer.from("first"));
  assert.equal(run.reserve(), 2);
  await run.record(2, "parse", Buffer.from("second"), { metadata: { k: "v" } });
  await run.heartbeat();
  assert.equal(run.execution().status, "running");
  run.close(); // not completed: the execution stays resumable

  const again = await s.begin("manual-1", { workflow: "manual" });
  assert.equal(again.reserve(), 1);
  assert.equal(again.isRecorded(1, "fetch"), true);
  const hit = await again.recorded(1, "fetch");
  assert.equal(hit.checkpoint.id, id);
  assert.equal(hit.state.toString(), "first");
  assert.equal((await again.recorded(2, "parse")).state.toString(), "second");
  assert.equal(await again.recorded(3, "later"), null);
  assert.throws(() => again.isRecorded(1, "other-step"), (e) => /^\[non_determinism\]/.test(e.message) && e.message.includes("fetch"));
  await again.complete(Buffer.from("out"));
  again.close();
  assert.equal((await s.executionOutput("manual-1")).toString(), "out");
  assert.equal((await s.executionInput("manual-1")).toString(), "in");
  assert.equal((await s.checkpoint(id)).name, "fetch");
  assert.equal((await s.readState(id)).toString(), "first");

  // The TS layer's workflow: a step whose body ran is not run again when the execution resumes.
  let calls = 0;
  const step = omium.checkpoint("count", async (n) => {
    calls += 1;
    return n + 1;
  });
  const wf = omium.workflow("counting", async (n) => (await step(n)) + (await step(n + 10)));
  assert.equal(await wf.run(1, { executionId: "count-1" }), 2 + 12);
  assert.equal(calls, 2);
  assert.equal(await wf.run(1, { executionId: "count-1" }), 14);
  assert.equal(calls, 2);
  const spans = await omium.spans("count-1");
  assert.ok(
    spans.some((sp) => sp.name === "counting" && sp.spanType === "workflow"),
    JSON.stringify(spans.map((sp) => sp.name)),
  );
  const checkpoint = spans.find((sp) => sp.name === "checkpoint count");
  assert.equal(typeof checkpoint.attributes["omium.checkpoint_id"], "string", JSON.stringify(checkpoint));
  for (const sp of spans) {
    assert.equal(typeof sp.startNs, "string");
    assert.match(sp.startNs, /^\d+$/);
    assert.equal(sp.executionId, "count-1");
  }

  // Rollback and fork run in the daemon.
  const marker = await omium.rollback("manual-1", { to: "fetch" });
  assert.equal(marker.executionId, "manual-1");
  const forked = await s.fork("manual-1", "fetch", { newExecutionId: "manual-fork" });
  assert.equal(forked.id, "manual-fork");

  // A policy applied through the daemon drives a recovery the daemon holds: a timeout is retried.
  const v = await omium.applyPolicy(POLICY, { author: "ops@acme" });
  assert.equal(v.version, 1);
  assert.equal((await omium.policyVersions()).length, 1);
  let n = 0;
  const llm = omium.checkpoint(
    "llm_call",
    async () => {
      n++;
      if (n < 3) await new Promise((r) => setTimeout(r, 200));
      return "answer";
    },
    { timeoutMs: 50 },
  );
  const retrying = omium.workflow("served-retry", async () => llm());
  assert.equal(await retrying.run(undefined, { executionId: "retry-1" }), "answer");
  assert.equal(n, 3);
  const [f] = await omium.failures("retry-1");
  assert.equal(f.kind, "timeout_error");
  assert.equal(f.outcome, "recovered");
  assert.ok(f.actions.filter((a) => a.action === "retry").length >= 2, JSON.stringify(f.actions));
  assert.equal((await omium.recoveryMetrics("served-retry")).recovered, 1);
  await omium.shutdown();
  await daemon.stop();
});

test("no daemon at the url, a daemon that went away, a bad url: clear coded errors", async (t) => {
  const dir = tempDir(t);
  await assert.rejects(
    omium.init({ url: `unix://${join(dir, "nobody.sock")}` }),
    (e) => e instanceof omium.ServerUnavailableError && e.code === "server_unavailable" && e.message.includes("nobody.sock"),
  );
  assert.equal(omium.isInitialized(), false);
  await assert.rejects(omium.init({ url: "ftp://example.com" }), (e) => e instanceof omium.InvalidArgumentError && e.message.includes("unix://"));
  await assert.rejects(omium.init({ url: "" }), (e) => e.code === "invalid_argument");
  await assert.rejects(omium.init({ url: "unix:///x.sock", path: dir }), (e) => e.code === "invalid_argument" && e.message.includes("not both"));
  await assert.rejects(omium.init({ url: "unix:///x.sock", durability: "none" }), (e) => e.code === "invalid_argument" && e.message.includes("daemon"));
  await assert.rejects(omium.init({ url: "unix:///x.sock", readOnly: true }), (e) => e.code === "invalid_argument" && e.message.includes("daemon"));

  const daemon = await startDaemon(t, join(dir, "store"), "--socket", join(dir, "omium.sock"));
  await omium.init({ url: daemon.unixUrl });
  t.after(shutdownQuietly);
  await assert.rejects(omium.getExecution("nope"), (e) => e.code === "execution_not_found");
  daemon.proc.kill("SIGKILL");
  await daemon.exited;
  await assert.rejects(omium.getExecution("nope"), (e) => e instanceof omium.ServerUnavailableError && e.code === "server_unavailable");
  const wf = omium.workflow("gone", async () => 1);
  await assert.rejects(wf.run(undefined, { executionId: "gone-1" }), (e) => e.code === "server_unavailable");
  await omium.shutdown().catch(() => undefined);
  assert.equal(omium.isInitialized(), false);
});

test("OMIUM_URL and OMIUM_API_KEY; a daemon with keys refuses calls without one", async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon(t, join(dir, "store"), "--http", "127.0.0.1:0", "--api-key", KEY);
  assert.match(daemon.httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  const saved = { url: process.env.OMIUM_URL, key: process.env.OMIUM_API_KEY };
  t.after(() => {
    for (const [k, v] of [["OMIUM_URL", saved.url], ["OMIUM_API_KEY", saved.key]]) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  t.after(shutdownQuietly);
  process.env.OMIUM_URL = daemon.httpUrl;
  delete process.env.OMIUM_API_KEY;
  await omium.init();
  assert.equal(omium.store().url, daemon.httpUrl);
  await assert.rejects(omium.getExecution("x"), (e) => e instanceof omium.UnauthorizedError && e.code === "unauthorized");
  await assert.rejects(omium.init({ apiKey: "wrong-key-0123456789" }).then(() => omium.getExecution("x")), (e) => e.code === "unauthorized");

  process.env.OMIUM_API_KEY = KEY;
  await omium.init();
  await assert.rejects(omium.getExecution("x"), (e) => e.code === "execution_not_found");
  const wf = omium.workflow("keyed", async (n) => n * 2);
  assert.equal(await wf.run(21, { executionId: "keyed-1" }), 42);
  assert.equal((await omium.getExecution("keyed-1")).status, "completed");
  await omium.shutdown();
  await daemon.stop();
});

test("calls only an embedded store has name themselves in a clear error through a daemon", async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon(t, join(dir, "store"), "--socket", join(dir, "omium.sock"));
  await omium.init({ url: daemon.unixUrl });
  t.after(shutdownQuietly);
  const says = (what, e) => e.message.includes(what) && e.message.includes("omium serve") && e.message.includes(daemon.unixUrl);
  // Through the TS layer: an InvalidStateError with the code.
  const local = (what) => (e) => e instanceof omium.InvalidStateError && e.code === "invalid_state" && says(what, e);
  await assert.rejects(omium.traceText("x"), local("traceText"));
  await assert.rejects(omium.traceHtml("x"), local("traceHtml"));
  // The native store's own methods: the code leads the message.
  const native = (what) => (e) => e.message.startsWith("[invalid_state] ") && says(what, e);
  await assert.rejects(omium.store().gc(), native("gc"));
  await assert.rejects(omium.store().diffExecutions("a", "b"), native("diffExecutions"));
  assert.throws(() => omium.store().threads(), native("threads"));
  assert.throws(() => omium.store().enableOtlpExport(), native("enableOtlpExport"));
  await assert.rejects(omium.store().begin("p-1", { resumePaused: true }), native("resumePaused"));
  // The handle still works for everything else.
  assert.deepEqual(await omium.store().executions(), []);
  await omium.shutdown();
  await daemon.stop();
});
