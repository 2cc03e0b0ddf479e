// Where a Node step's time goes, together and apart: the native `recordNow` (the buffered
// record a step makes) alone, the step's JavaScript encoding of its result alone, and the two in
// one loop; then the same with a loop of pure arithmetic in place of the encoding. Each piece
// runs in executions of 1,000 calls, alternated, 15 rounds; the minimum and median
// per-execution mean are printed.
//
//     cd omium-node && npm run build:release && cd .. && node benches/node/step_parts.mjs
//
// It calls the native layer directly (internal API): what it measures is the record alone.
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { msgpackCodec } from "../../omium-node/dist/index.mjs";

const native = createRequire(import.meta.url)("../../omium-node/native/index.js");
const ROUNDS = 15;
const CALLS = 1000;
const payload = { text: "x".repeat(1000) };
const encode = (i) => msgpackCodec.encode({ ...payload, i });

function spin(i) {
  let x = 0;
  for (let j = 0; j < 3000; j++) x += j ^ i;
  return x;
}

// Each piece: (run) => nanoseconds for CALLS calls.
function timed(run, body) {
  const t = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) body(run, i);
  return Number(process.hrtime.bigint() - t);
}
const data = Array.from({ length: CALLS }, (_, i) => encode(i));
const record = (run, bytes) => run.recordNow(run.reserve(), "step", bytes, undefined, "msgpack");
const pieces = {
  "recordNow alone": (run) => timed(run, (r, i) => record(r, data[i])),
  "encode alone": (run) => timed(run, (r, i) => encode(i)),
  "recordNow after encode, same loop": (run) => timed(run, (r, i) => record(r, encode(i))),
  "arithmetic loop alone": (run) => timed(run, (r, i) => spin(i)),
  "recordNow after the arithmetic loop, same loop": (run) => timed(run, (r, i) => (spin(i), record(r, data[i]))),
};

const dir = mkdtempSync(join(tmpdir(), "omium-step-parts-"));
const store = await native.openStore(dir, { durability: "buffered", readOnly: false });
const times = Object.fromEntries(Object.keys(pieces).map((k) => [k, []]));
let n = 0;
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, piece] of Object.entries(pieces)) {
    const run = await store.begin(`parts-${n++}`, { workflow: "parts", tenant: "default" });
    times[name].push(piece(run) / CALLS / 1000);
    await run.complete(undefined);
  }
}
store.close();
rmSync(dir, { recursive: true, force: true });

const min = (k) => Math.min(...times[k]);
console.log(`node ${process.version}, ${ROUNDS} rounds of ${CALLS} calls per piece, 1 KiB result, buffered`);
for (const [name, v] of Object.entries(times)) {
  const s = [...v].sort((a, b) => a - b);
  console.log(`  ${name.padEnd(48)} min ${s[0].toFixed(2).padStart(6)} µs   median ${s[s.length >> 1].toFixed(2).padStart(6)} µs`);
}
const more = (together, apart) => (min(together) - apart.reduce((a, k) => a + min(k), 0)).toFixed(2);
console.log(`  after encode: the record costs more than the two apart by ${more("recordNow after encode, same loop", ["recordNow alone", "encode alone"])} µs (minimums)`);
console.log(
  `  after arithmetic: the record costs more than the two apart by ${more("recordNow after the arithmetic loop, same loop", ["recordNow alone", "arithmetic loop alone"])} µs (minimums)`,
);
