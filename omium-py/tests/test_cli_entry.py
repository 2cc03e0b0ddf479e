"""The `omium` command that comes with the Python package (`pip install omium` puts it on the
PATH): the Rust CLI carried by the extension module, run as the console script and as
`python -m omium`, on a store this package wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import omium


def script() -> str:
    """The console script the package installed beside this interpreter."""
    path = Path(sys.executable).parent / "omium"
    assert path.exists(), f"{path}: the package's `omium` console script is not installed"
    return str(path)


def run(*args: str, cmd: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMIUM_")}
    return subprocess.run([*(cmd or [script()]), *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_console_script_is_the_rust_cli_on_this_packages_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    omium.init(path=store, durability="none")
    try:

        @omium.checkpoint
        def double(x: int) -> int:
            return x * 2

        @omium.workflow("entry")
        def flow(x: int) -> int:
            return double(double(x))

        assert flow.run(5, execution_id="e-1") == 20
        expected = [c.id for c in omium.history("e-1")]
    finally:
        omium.shutdown()

    r = run("--store", str(store), "--json", "history", "e-1")
    assert r.returncode == 0, r.stderr
    history = json.loads(r.stdout)
    assert [c["id"] for c in history] == expected
    assert [c["name"].rsplit(".", 1)[-1] for c in history] == ["double", "double"]

    # The same through `python -m omium`, and the state decoded by the CLI as Python wrote it.
    r = run("--store", str(store), "--json", "show", "e-1", cmd=[sys.executable, "-m", "omium"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["head_state"] == 20

    # Exit codes as the binary's: 2 for a command line that does not parse, 1 for an error.
    r = run("--store", str(store), "histroy", "e-1")
    assert r.returncode == 2 and "unrecognized subcommand 'histroy'" in r.stderr, r.stderr
    r = run("--store", str(store), "--json", "show", "nope")
    assert r.returncode == 1, r
    assert json.loads(r.stdout)["error"]["code"] == "execution_not_found"
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"omium {omium.__version__}", r
