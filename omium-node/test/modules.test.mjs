// The package loads the same way from ESM and CommonJS (one module instance either way).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function node(args) {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test("require('omium') and require('omium/langgraph') work from CommonJS", () => {
  const out = node(["-e", "const o = require('omium'); const lg = require('omium/langgraph'); console.log(typeof o.checkpoint, typeof o.workflow, typeof lg.OmiumSaver, o.FORMAT_VERSION > 0)"]);
  assert.equal(out, "function function function true");
});

test("ESM named and default imports see the CommonJS module itself", () => {
  const code = "import * as o from 'omium'; import d from 'omium'; import { createRequire } from 'node:module'; const r = createRequire(import.meta.url)('omium'); console.log(o.OmiumError === r.OmiumError, d === r, typeof o.init)";
  assert.equal(node(["--input-type=module", "-e", code]), "true true function");
});

test("wrong argument types from JavaScript are InvalidArgumentErrors, not crashes", async () => {
  const omium = await import("omium");
  assert.throws(() => omium.workflow(42, async () => 1), (e) => e instanceof omium.InvalidArgumentError && e.code === "invalid_argument");
  await assert.rejects(omium.init({ path: 42 }), (e) => e instanceof omium.InvalidArgumentError && /path/.test(e.message));
  await assert.rejects(omium.init("not-an-object"), omium.InvalidArgumentError);
  await assert.rejects(omium.getExecution("x"), (e) => e instanceof omium.OmiumError && e.code === "not_initialized");
});

test("every core error code has an exported class of its own", async () => {
  // The codes come from the core's error enum: a code added there without a class here fails.
  const omium = await import("omium");
  assert.equal(new Set(omium.ERROR_CODES).size, omium.ERROR_CODES.length);
  assert.ok(omium.ERROR_CODES.length >= 35);
  for (const code of omium.ERROR_CODES) {
    const Cls = omium.ERROR_CLASSES[code];
    assert.ok(Cls && Cls !== omium.OmiumError, `no error class for ${code}`);
    assert.equal(omium[Cls.name], Cls, `${Cls.name} is not exported`);
    const err = new Error(`[${code}] boom`);
    const mapped = createRequire(import.meta.url)("../dist/errors.js").fromNative(err);
    assert.ok(mapped instanceof Cls, `${code} maps to ${mapped.constructor.name}`);
    assert.equal(mapped.code, code);
    assert.equal(mapped.message, "boom");
  }
});
