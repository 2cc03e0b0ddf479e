// Shared helpers of the Node tests: a fresh store directory per test, the `omium` binary and
// the Python of the repository's virtualenv.
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

export function tempDir(t, prefix = "omium-node-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function firstExecutable(candidates, missing) {
  for (const c of candidates) {
    if (!c) continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next candidate
    }
  }
  throw new Error(`${missing} (looked at ${candidates.filter(Boolean).join(", ")})`);
}

/** The `omium` binary (`make test-node` builds it with `cargo build -p omium-cli` and sets OMIUM_BIN). */
export function omiumBin() {
  const target = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache", "omium-target");
  return firstExecutable(
    [process.env.OMIUM_BIN, join(target, "debug", "omium"), join(root, "target", "debug", "omium")],
    "the omium binary is not built: run `cargo build -p omium-cli` (or `make cli`), or set OMIUM_BIN",
  );
}

/** The Python with the omium package (`make python` builds it into the repository's .venv). */
export function pythonBin() {
  return firstExecutable(
    [process.env.OMIUM_PYTHON, join(root, ".venv", "bin", "python")],
    "no Python with the omium package: run `make python`, or set OMIUM_PYTHON",
  );
}

/** Values of a conformance scenario with {"$repeat": [text, n]} expanded (tests/conformance). */
export function expand(v) {
  if (Array.isArray(v)) return v.map(expand);
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$repeat") return v.$repeat[0].repeat(v.$repeat[1]);
    return Object.fromEntries(keys.map((k) => [k, expand(v[k])]));
  }
  return v;
}
