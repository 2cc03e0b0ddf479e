// What a durable step costs from Node: per-step latency of `omium.checkpoint` inside a
// workflow (buffered and sync durability, 1 KiB result) against the same async function called
// plainly, in one run. Prints p50/p99 and the ratio.
//
//     cd omium-node && npm run build:release && cd .. && node benches/node/bench_steps.mjs [STEPS] [--json FILE]
//
// (`make node` builds the debug addon: for tests, not for figures.)
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as omium from "../../omium-node/dist/index.mjs";

const argv = process.argv.slice(2);
const jsonAt = argv.indexOf("--json");
const jsonFile = jsonAt >= 0 ? argv.splice(jsonAt, 2)[1] : undefined;
const STEPS = Number(argv[0] ?? 5000);
const payload = { text: "x".repeat(1000) };

function stats(ns) {
  const s = [...ns].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const q = (p) => Number(s[Math.min(s.length - 1, Math.floor(p * s.length))]) / 1000;
  return { p50: q(0.5), p99: q(0.99) };
}

async function measure(call, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await call(i);
    out.push(process.hrtime.bigint() - t);
  }
  return stats(out);
}

const work = async (i) => ({ ...payload, i });

async function durable(durability, n, tracing = false) {
  const dir = mkdtempSync(join(tmpdir(), "omium-bench-"));
  await omium.init({ path: dir, durability, tracing });
  const step = omium.checkpoint("step", work);
  let result;
  const wf = omium.workflow(`bench-${durability}`, async () => {
    result = await measure(step, n);
  });
  await wf.run(undefined, { executionId: `bench-${durability}` });
  await omium.shutdown();
  rmSync(dir, { recursive: true, force: true });
  return result;
}

const baseline = await measure(work, STEPS);
const buffered = await durable("buffered", STEPS);
const traced = await durable("buffered", STEPS, true);
const sync = await durable("sync", Math.min(STEPS, 1000));
const row = (name, r) => `${name.padEnd(34)} p50 ${r.p50.toFixed(1).padStart(8)} µs   p99 ${r.p99.toFixed(1).padStart(8)} µs`;
console.log(`node ${process.version}, ${STEPS} steps, 1 KiB result`);
console.log(row("plain async call (baseline)", baseline));
console.log(row("omium.checkpoint, buffered", buffered) + `   overhead p50 ${(buffered.p50 - baseline.p50).toFixed(1)} µs`);
console.log(row("omium.checkpoint, buffered, traced", traced) + `   overhead p50 ${(traced.p50 - baseline.p50).toFixed(1)} µs`);
console.log(row("omium.checkpoint, sync (fsync)", sync) + `   overhead p50 ${(sync.p50 - baseline.p50).toFixed(1)} µs`);
if (jsonFile !== undefined) {
  const overhead = (r) => ({ ...r, overhead_p50: r.p50 - baseline.p50 });
  writeFileSync(jsonFile, JSON.stringify({ node: process.version, steps: STEPS, baseline, buffered: overhead(buffered), buffered_traced: overhead(traced), sync: overhead(sync) }, null, 1));
}
