"""The cross-binding conformance scenarios (tests/conformance/README.md) run through the Python
package: every run and operation in a process of its own, runs SIGKILLed where the scenario
says, then the store checked in this process. Node runs the same files
(omium-node/test/scenarios.test.mjs)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import omium
import pytest
from conformance_worker import expand

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "conformance"
SCENARIOS = sorted((ROOT / "scenarios").glob("*.json"))
WORKER = pathlib.Path(__file__).with_name("conformance_worker.py")
FEATURES = {
    "kill",
    "retries",
    "conditions",
    "rollback",
    "fork",
    "resume",
    "policy",
    "recovery",
    "calls",
    "consensus",
    "timeouts",
    "events",
    "metrics",
    "alerts",
    "delete",
}


def test_the_suite_is_there():
    assert len(SCENARIOS) >= 20, f"only {len(SCENARIOS)} scenarios in {ROOT / 'scenarios'}"


def step(path: pathlib.Path, index: int, store: pathlib.Path) -> tuple[list[str], dict[str, Any] | None, int]:
    """Runs one item of the scenario in a worker process: (bodies entered, result, exit code)."""
    p = subprocess.run([sys.executable, str(WORKER), str(path), str(index), str(store)], capture_output=True, text=True, timeout=120)
    ran, result = [], None
    for line in p.stdout.splitlines():
        msg = json.loads(line)
        if "ran" in msg:
            ran.append(msg["ran"])
        else:
            result = msg["result"]
    if result is None and p.returncode != -9:
        raise AssertionError(f"worker of item {index} exited {p.returncode} without a result:\n{p.stderr}")
    return ran, result, p.returncode


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    scenario = json.loads(path.read_text())
    missing = set(scenario.get("requires", [])) - FEATURES
    assert not missing, f"the Python runner lacks {missing}"
    store = tmp_path / "store"
    for i, item in enumerate(scenario["runs"]):
        ran, result, code = step(path, i, store)
        where = f"{path.name} item {i} ({item})"
        if "op" in item:
            assert result is not None and result["outcome"] == item.get("outcome", "done"), f"{where}: {result}"
            if "status" in item:
                assert result["status"] == item["status"], f"{where}: {result}"
            for key, n in item.get("erased", {}).items():
                assert result["erased"][key] == n, f"{where}: erased {key}: {result}"
        elif item["outcome"] == "killed":
            assert code == -9 and result is None, f"{where}: expected a SIGKILL, got exit {code} and {result}"
        else:
            assert result is not None and result["outcome"] == item["outcome"], f"{where}: {result}"
        # Runs, replays and forks at a position say what they returned.
        if result is not None and "output" in item:
            assert result["output"] == expand(item["output"]), f"{where}: {result}"
        if result is not None and "error" in item:
            assert result["error"] == item["error"], f"{where}: {result}"
        if "ran" in item:
            assert ran == item["ran"], f"{where}: ran {ran}"
    check_final(scenario.get("final", {}), store)


def check_final(final: dict[str, Any], store: pathlib.Path) -> None:
    omium.init(path=str(store))
    try:
        for execution, status in final.get("status", {}).items():
            assert omium.get_execution(execution).status == status, execution
        for execution in final.get("erased", []):
            with pytest.raises(omium.ExecutionNotFoundError):
                omium.get_execution(execution)
            assert omium.failures(execution) == [], f"failures of {execution}"
            assert omium.spans(execution) == [], f"spans of {execution}"
        for execution, expected in final.get("history", {}).items():
            got = [[c.name, c.kind, c.load() if c.kind in ("step", "snapshot") else None] for c in omium.history(execution)]
            want = [[n, k, got[i][2] if s == "*" and i < len(got) else expand(s)] for i, (n, k, s) in enumerate(expected)]
            assert got == want, f"history of {execution}"
        for execution, expected in final.get("failures", {}).items():
            got = [[f.type, f.outcome, [[a["action"], a["outcome"]] for a in f.actions]] for f in omium.failures(execution)]
            assert got == expected, f"failures of {execution}"
        for execution, expected in final.get("consensus", {}).items():
            assert [m["status"]["state"] for m in omium.consensus.status(execution)] == expected, f"consensus of {execution}"
        for execution, expected in final.get("events", {}).items():
            got = [e["type"].removeprefix("io.omium.") for e in omium.events(execution_id=execution)]
            assert got == expected, f"events of {execution}"
        if "metrics" in final:
            totals = omium.metrics(since="1h")["totals"]
            assert {k: totals[k] for k in final["metrics"]} == final["metrics"], totals
        if "alerts" in final:
            for i, expected in enumerate(final["alerts"]["evaluations"]):
                assert omium.evaluate_alerts(final["alerts"]["rules"]) == expected, f"alert evaluation {i}"
        for a, b, expected in final.get("diff", []):
            assert [[d.position, d.differs] for d in omium.diff(a, b)] == expected, f"diff of {a} and {b}"
        report = omium.verify()
        assert report.ok, report
    finally:
        omium.shutdown()
