// One store, three readers: a state Python records decodes in Node and in the `omium` CLI, and
// a state Node records decodes in Python and in the CLI. Every binding records its codec's name
// with each checkpoint (metadata `omium.codec`) and with each execution (label `omium.codec`);
// msgpack is the default of both. Real processes: the repository's Python with the omium
// package, the `omium` binary, this Node process. Also: an execution written the way Node wrote
// them before codecs were recorded (JSON, no name) still resumes and completes.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as omium from "omium";
import { omiumBin, pythonBin, tempDir } from "./helpers.mjs";

const script = fileURLToPath(new URL("./fixtures/crosslang.py", import.meta.url));

const python = (...args) => execFileSync(pythonBin(), [script, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const cli = (store, ...args) => execFileSync(omiumBin(), ["--store", store, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

async function states(executionId) {
  const out = {};
  for (const c of await omium.history(executionId)) out[c.name] = { id: c.id, codec: c.metadata[omium.CODEC_KEY], value: await c.load() };
  return out;
}

test("a state Python records decodes in Node and in the CLI", async (t) => {
  const store = join(tempDir(t), "store");
  python("write", store);

  await omium.init({ path: store });
  t.after(() => omium.shutdown());
  const got = await states("from-py");
  assert.deepEqual(Object.keys(got), ["plain", "typed", "as_json", "snap"]);
  assert.deepEqual(got.plain.value, { n: 3, f: 1.5, s: "é", l: [1, null, true], big: 2 ** 40, neg: -7 });
  assert.equal(got.plain.codec, "msgpack");
  const typed = got.typed.value;
  assert.ok(typed.when instanceof Date);
  assert.equal(typed.when.toISOString(), "2026-12-03T10:00:00.250Z");
  assert.equal(typed.naive.toISOString(), "2026-12-03T10:00:00.000Z", "a naive datetime is read as UTC");
  assert.equal(typed.day, "2026-12-03");
  assert.equal(typed.id, "12345678-1234-5678-1234-567812345678");
  assert.equal(typed.amount, "12.50");
  assert.deepEqual(typed.tags, new Set(["a"]));
  assert.deepEqual(typed.pair, [1, 2]);
  assert.deepEqual([...typed.raw], [0, 1]);
  assert.equal(typed.wait, 90.5);
  assert.equal(got.as_json.codec, "json");
  assert.deepEqual(got.as_json.value, { j: 1 });
  assert.deepEqual(got.snap.value, { k: "v", k2: "v2" });
  const execution = await omium.getExecution("from-py");
  assert.equal(execution.labels[omium.CODEC_KEY], "msgpack");
  await omium.shutdown();

  // The CLI: the tagged types as the Python JSON codec writes them.
  const shown = JSON.parse(cli(store, "checkpoint", got.typed.id, "--value"));
  assert.deepEqual(shown.when, { __omium__: "datetime", v: "2026-12-03T10:00:00.250000+00:00" });
  assert.deepEqual(shown.tags, { __omium__: "set", v: ["a"] });
  assert.deepEqual(shown.raw, { __omium__: "bytes", v: "AAE=" });
  assert.deepEqual(shown.amount, { __omium__: "decimal", v: "12.50" });
  assert.deepEqual(JSON.parse(cli(store, "checkpoint", got.as_json.id, "--value")), { j: 1 });
  const show = JSON.parse(cli(store, "--json", "show", "from-py"));
  assert.deepEqual(show.head_state, { k: "v", k2: "v2" });
  assert.match(cli(store, "show", "from-py"), /^state\s+\{"k":"v","k2":"v2"\}$/m);
});

test("a state Node records decodes in Python and in the CLI", async (t) => {
  const store = join(tempDir(t), "store");
  await omium.init({ path: store });
  const when = new Date("2026-12-03T10:00:00.250Z");
  const rich = omium.checkpoint("rich", async () => ({ when, tags: new Set(["x", "y"]), bytes: Buffer.from([1, 2]), nested: { a: [1, { b: null }] }, big: 2 ** 40, neg: -7, f: 0.25 }));
  const nothing = omium.checkpoint("nothing", async () => undefined);
  const asJson = omium.checkpoint("as_json", async () => ({ j: 2 }), { codec: omium.jsonCodec });
  const wf = omium.workflow("xlang-node", async () => {
    await rich();
    await nothing();
    await asJson();
    return "done";
  });
  assert.equal(await wf.run(undefined, { executionId: "from-node" }), "done");
  const ids = Object.fromEntries((await omium.history("from-node")).map((c) => [c.name, c.id]));
  await omium.shutdown();

  const got = JSON.parse(python("read", store, "from-node"));
  const rich_ = got.rich.items;
  assert.deepEqual(rich_.when, { type: "datetime", value: "2026-12-03T10:00:00.250000+00:00" });
  assert.deepEqual(rich_.tags, { type: "set", items: [{ type: "str", value: "x" }, { type: "str", value: "y" }] });
  assert.deepEqual(rich_.bytes, { type: "bytes", value: [1, 2] });
  assert.deepEqual(rich_.nested, {
    type: "dict",
    items: { a: { type: "list", items: [{ type: "int", value: 1 }, { type: "dict", items: { b: { type: "NoneType", value: null } } }] } },
  });
  assert.deepEqual(rich_.big, { type: "int", value: 2 ** 40 });
  assert.deepEqual(rich_.neg, { type: "int", value: -7 });
  assert.deepEqual(rich_.f, { type: "float", value: 0.25 });
  assert.deepEqual(got.nothing, { type: "NoneType", value: null });
  assert.deepEqual(got.as_json, { type: "dict", items: { j: { type: "int", value: 2 } } });

  const shown = JSON.parse(cli(store, "checkpoint", ids.rich, "--value"));
  assert.deepEqual(shown.when, { __omium__: "datetime", v: "2026-12-03T10:00:00.250Z" });
  assert.deepEqual(shown.tags, { __omium__: "set", v: ["x", "y"] });
  assert.deepEqual(shown.bytes, { __omium__: "bytes", v: "AQI=" });
  assert.equal(cli(store, "checkpoint", ids.nothing, "--value").trim(), "null");
  assert.deepEqual(JSON.parse(cli(store, "checkpoint", ids.as_json, "--value")), { j: 2 });
});

test("an execution Node wrote before codecs were recorded (JSON, unnamed) resumes and completes", async (t) => {
  await omium.init({ path: tempDir(t) });
  t.after(() => omium.shutdown());
  // What the TypeScript layer wrote then: JSON bytes, no codec in metadata or labels.
  const s = omium.store();
  const run = await s.begin("legacy-1", { workflow: "legacy-wf", input: Buffer.from(JSON.stringify({ input: 5 })) });
  await run.record(run.reserve(), "double", Buffer.from(JSON.stringify({ v: 10 })));
  run.close();

  const calls = [];
  const double = omium.checkpoint("double", async (n) => {
    calls.push("double");
    return { v: n * 2 };
  });
  const inc = omium.checkpoint("inc", async (n) => {
    calls.push("inc");
    return n + 1;
  });
  const wf = omium.workflow("legacy-wf", async (n) => inc((await double(n)).v));
  const recovered = await omium.recover();
  assert.deepEqual(recovered, { "legacy-1": 11 });
  assert.deepEqual(calls, ["inc"], "the recorded JSON step replayed; only the new step ran");
  assert.equal(await wf.run(5, { executionId: "legacy-1" }), 11, "the completed output decodes");
  const [doubleCp, incCp] = await omium.history("legacy-1");
  assert.equal(doubleCp.metadata[omium.CODEC_KEY], undefined);
  assert.equal(incCp.metadata[omium.CODEC_KEY], "msgpack", "new steps record their codec");
  assert.equal((await omium.verify("legacy-1")).ok, true);
});
