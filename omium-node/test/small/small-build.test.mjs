// The addon built without the cluster (`npm run build:small`: `--no-default-features`): the
// package works as ever for steps, and consensus and remote sync say that this build has no
// cluster instead of failing with a TypeError. Run by `make test-node` after that build
// (OMIUM_NODE_SMALL names the small addon); the package is copied around it, so the normal
// addon in native/ stays as it is.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { tempDir } from "../helpers.mjs";

const pkg = fileURLToPath(new URL("../..", import.meta.url));

test("an addon without the cluster runs steps and names what it lacks", { skip: !process.env.OMIUM_NODE_SMALL }, async (t) => {
  const small = process.env.OMIUM_NODE_SMALL;
  assert.ok(existsSync(small), `OMIUM_NODE_SMALL=${small} does not exist`);
  const dir = tempDir(t, "omium-small-");
  const copy = join(dir, "omium");
  cpSync(join(pkg, "dist"), join(copy, "dist"), { recursive: true });
  cpSync(join(pkg, "package.json"), join(copy, "package.json"));
  cpSync(join(pkg, "bin"), join(copy, "bin"), { recursive: true });
  mkdirSync(join(copy, "native"));
  cpSync(join(pkg, "native", "index.js"), join(copy, "native", "index.js"));
  cpSync(small, join(copy, "native", "omium.linux-x64-gnu.node"));
  // The copy resolves its dependencies from the package's node_modules.
  symlinkSync(join(pkg, "node_modules"), join(copy, "node_modules"));
  const require = createRequire(join(copy, "package.json"));
  const omium = require(join(copy, "dist", "index.js"));
  const native = require(join(copy, "native", "index.js"));
  assert.equal(native.hasCluster(), false, "the small addon must be built without the cluster");
  assert.equal(omium.HAS_CLUSTER, false);

  await omium.init({ path: join(dir, "store"), durability: "none" });
  t.after(() => omium.shutdown());
  const double = omium.checkpoint("double", async (x) => x * 2);
  const flow = omium.workflow("small", async (x) => double(x));
  assert.equal(await flow.run(21, { executionId: "s1" }), 42);
  assert.equal((await omium.history("s1")).length, 1);

  await assert.rejects(omium.consensus.broadcast("s1", "a", ["b"], { x: 1 }), (e) => {
    assert.equal(e.code, "consensus_unavailable");
    assert.match(e.message, /no cluster \(consensus and remote sync\)/);
    return true;
  });
  await assert.rejects(omium.pull("s1"), (e) => e.code === "invalid_state" && /no cluster/.test(e.message));
  await assert.rejects(
    omium.init({ path: join(dir, "store2"), remote: "127.0.0.1:1" }),
    (e) => e.code === "invalid_state" && /omium\.init\(\{ remote \}\)/.test(e.message),
  );
  // The command line needs the cluster (serve, node): the bin says so.
  const r = spawnSync(process.execPath, [join(copy, "bin", "omium.js"), "--version"], { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no command line \(it was built without the cluster\)/);
});
