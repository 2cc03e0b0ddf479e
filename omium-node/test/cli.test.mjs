// The `omium` command of the npm package (`bin/omium.js`, what `npx omium` runs): the Rust CLI
// carried by the native addon, on a store this package wrote.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import * as omium from "../dist/index.js";
import { tempDir } from "./helpers.mjs";

const bin = fileURLToPath(new URL("../bin/omium.js", import.meta.url));

function run(...args) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OMIUM_")));
  return spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", env, timeout: 60_000 });
}

test("npx omium is the Rust CLI, on a store the package wrote", async (t) => {
  const store = join(tempDir(t), "store");
  await omium.init({ path: store, durability: "none" });
  let expected;
  try {
    const double = omium.checkpoint("double", async (x) => x * 2);
    const flow = omium.workflow("entry", async (x) => double(await double(x)));
    assert.equal(await flow.run(5, { executionId: "e-1" }), 20);
    expected = (await omium.history("e-1")).map((c) => c.id);
  } finally {
    await omium.shutdown();
  }

  let r = run("--store", store, "--json", "history", "e-1");
  assert.equal(r.status, 0, r.stderr);
  const history = JSON.parse(r.stdout);
  assert.deepEqual(history.map((c) => c.id), expected);
  assert.deepEqual(history.map((c) => c.name), ["double", "double"]);

  // The head's state decoded by the CLI as Node wrote it (msgpack, named in the checkpoint).
  r = run("--store", store, "--json", "show", "e-1");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).head_state, 20);

  // Exit codes as the binary's: 2 for a command line that does not parse, 1 for an error.
  r = run("--store", store, "histroy", "e-1");
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /unrecognized subcommand 'histroy'/);
  r = run("--store", store, "--json", "show", "nope");
  assert.equal(r.status, 1);
  assert.equal(JSON.parse(r.stdout).error.code, "execution_not_found");
  r = run("--version");
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), `omium ${omium.nativeVersion}`);
});
