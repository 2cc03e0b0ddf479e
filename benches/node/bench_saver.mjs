// LangGraph.js checkpointer per step against its SQLite peer, in one run: `OmiumSaver` (the
// `omium/langgraph` export) and `SqliteSaver` of `@langchain/langgraph-checkpoint-sqlite`
// (better-sqlite3), each step being what the Pregel loop calls: `putWrites` with the node's
// writes, then `put` with the next checkpoint. Like is compared with like: Omium `buffered`
// against SQLite with `PRAGMA synchronous=OFF` (both survive a crash of the process, not of the
// machine), Omium `sync` against SQLite with `synchronous=FULL` (an fsync per commit; the
// saver's own setting, WAL with `synchronous=NORMAL`, does not fsync a commit at all).
// The state is a window of chat messages of about 1 KiB or 100 KiB that changes every step,
// as in benches/python/bench_integrations.py. Systems run in interleaved rounds, each round in
// a fresh store; the figure is the median over rounds of each round's p50 (and p99). LangGraph's
// own `MemorySaver`, which writes nothing, runs beside them: the floor its serializer and
// bookkeeping leave any saver.
//
//     benches/node/run.sh [--quick] [--rounds N] [--json FILE]
//
// run.sh builds the release addon and installs the SQLite peer into benches/node/node_modules.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";

import { OmiumSaver } from "../../omium-node/dist/langgraph.mjs";

const require = createRequire(import.meta.url);
const { SqliteSaver } = require("@langchain/langgraph-checkpoint-sqlite");
const { MemorySaver, uuid6 } = require("@langchain/langgraph-checkpoint");
const Database = require("better-sqlite3");

const argv = process.argv.slice(2);
const flag = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv.splice(i, 2)[1] : undefined;
};
const jsonFile = flag("--json");
const quick = argv.includes("--quick");
const ROUNDS = Number(flag("--rounds") ?? (quick ? 1 : 5));
const KIB = 1024;
const PLAN = quick ? [[KIB, 200], [100 * KIB, 50]] : [[KIB, 3000], [100 * KIB, 600]];
const SYSTEMS = ["omium-buffered", "sqlite-off", "omium-sync", "sqlite-full", "memory"];
const PEER = { "omium-buffered": "sqlite-off", "omium-sync": "sqlite-full" };

// A fixed vocabulary: messages read like text and differ every step.
const WORDS = (
  "the agent tool call result user asked for a summary of report data customer order invoice shipping status update please " +
  "check whether this account has been verified and then send an email with the details of next steps we found three issues " +
  "in document review approved rejected pending escalate to human operator thanks for waiting here is what I know about your " +
  "request it seems that payment failed because card expired"
).split(" ");

function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function message(rand, i) {
  const words = Array.from({ length: 36 }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(" ");
  return { role: i % 2 ? "assistant" : "user", content: `(${i}) ${words}` };
}

class Workload {
  constructor(saver, size) {
    this.saver = saver;
    this.rand = rng(size);
    this.i = 0;
    this.messages = [];
    while (JSON.stringify(this.messages).length < size) this.messages.push(message(this.rand, this.i++));
    this.versions = { messages: undefined, step: undefined };
    this.config = { configurable: { thread_id: "bench", checkpoint_ns: "" } };
  }

  next() {
    const added = message(this.rand, this.i++);
    const writes = [
      ["messages", [added]],
      ["step", this.i],
    ];
    this.messages = [...this.messages.slice(1), added];
    for (const ch of Object.keys(this.versions)) this.versions[ch] = this.saver.getNextVersion(this.versions[ch]);
    const checkpoint = {
      v: 4,
      id: uuid6(this.i),
      ts: "2026-12-05T08:00:00.000Z",
      channel_values: { messages: [...this.messages], step: this.i },
      channel_versions: { ...this.versions },
      versions_seen: { agent: { ...this.versions } },
    };
    const metadata = { source: "loop", step: this.i, parents: {} };
    return { writes, checkpoint, metadata, versions: { ...this.versions } };
  }
}

async function open(system, dir) {
  if (system === "memory") return { saver: new MemorySaver(), facts: "LangGraph's MemorySaver: process memory, nothing written", close: () => {} };
  if (system.startsWith("omium")) {
    const saver = await OmiumSaver.open(join(dir, "store"), { durability: system.split("-")[1] });
    return { saver, facts: system.split("-")[1], close: () => saver.close() };
  }
  const db = new Database(join(dir, "lg.sqlite"));
  const saver = new SqliteSaver(db);
  await saver.getTuple({ configurable: { thread_id: "none" } }); // runs its setup (schema, WAL)
  // LangGraph.js's SqliteSaver leaves WAL mode at synchronous=NORMAL (no fsync per commit):
  // the durable peer of Omium's `sync` is FULL, the crash-safe peer of `buffered` is OFF.
  db.pragma(system === "sqlite-off" ? "synchronous = OFF" : "synchronous = FULL");
  const facts = `journal_mode=${db.pragma("journal_mode", { simple: true })}, synchronous=${["OFF", "NORMAL", "FULL", "EXTRA"][db.pragma("synchronous", { simple: true })]}`;
  return { saver, facts, close: () => db.close() };
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function steps(system, size, n) {
  const dir = mkdtempSync(join(tmpdir(), "omium-saver-bench-"));
  const { saver, facts, close } = await open(system, dir);
  try {
    const w = new Workload(saver, size);
    const first = w.next();
    let config = await saver.put(w.config, first.checkpoint, first.metadata, first.versions);
    const warm = Math.max(10, Math.floor(n / 10));
    const lat = [];
    for (let k = 0; k < warm + n; k++) {
      const { writes, checkpoint, metadata, versions } = w.next();
      const t0 = process.hrtime.bigint();
      await saver.putWrites(config, writes, `task-${k}`);
      config = await saver.put(config, checkpoint, metadata, versions);
      const t1 = process.hrtime.bigint();
      if (k >= warm) lat.push(Number(t1 - t0) / 1000);
    }
    lat.sort((a, b) => a - b);
    return { p50: pct(lat, 50), p99: pct(lat, 99), facts };
  } finally {
    close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {}; // system -> size -> [{p50, p99}]
const facts = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const system of SYSTEMS) {
    for (const [size, n] of PLAN) {
      const x = await steps(system, size, n);
      facts[system] = x.facts;
      ((results[system] ??= {})[size] ??= []).push(x);
    }
  }
}

console.log(`# LangGraph.js checkpointer: one step = putWrites + put (node ${process.version}, ${ROUNDS} rounds)\n`);
for (const s of SYSTEMS) console.log(`- ${s}: ${facts[s]}`);
console.log("\n| Omium | SQLite | state | Omium p50 µs | SQLite p50 µs | SQLite/Omium p50 | Omium p99 µs | SQLite p99 µs | SQLite/Omium p99 |");
console.log("|---|---|---|---:|---:|---:|---:|---:|---:|");
const summary = [];
for (const [mine, peer] of Object.entries(PEER)) {
  for (const [size] of PLAN) {
    const m50 = median(results[mine][size].map((x) => x.p50));
    const p50 = median(results[peer][size].map((x) => x.p50));
    const m99 = median(results[mine][size].map((x) => x.p99));
    const p99 = median(results[peer][size].map((x) => x.p99));
    summary.push({ omium: mine, sqlite: peer, size, omium_p50: m50, sqlite_p50: p50, ratio_p50: p50 / m50, omium_p99: m99, sqlite_p99: p99, ratio_p99: p99 / m99 });
    console.log(
      `| ${mine} | ${peer} | ${size / KIB} KiB | ${m50.toFixed(0)} | ${p50.toFixed(0)} | **${(p50 / m50).toFixed(2)}×** | ${m99.toFixed(0)} | ${p99.toFixed(0)} | ${(p99 / m99).toFixed(2)}× |`,
    );
  }
}
const floor = Object.fromEntries(PLAN.map(([size]) => [size, median(results.memory[size].map((x) => x.p50))]));
console.log(`\nThe floor (MemorySaver, writes nothing), p50: ${PLAN.map(([size]) => `${size / KIB} KiB ${floor[size].toFixed(0)} µs`).join(", ")}`);
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ node: process.version, rounds: ROUNDS, facts, summary, floor_p50: floor }, null, 1));
