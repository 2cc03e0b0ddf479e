"""One run or operation of a conformance scenario (tests/conformance), in a process of its own:
``conformance_worker.py SCENARIO INDEX STORE``. Prints a JSON line per step body it enters
(``{"ran": name}``) and one with the outcome (``{"result": ...}``); SIGKILLs itself where the
scenario says."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import omium

_errors: dict[str, type[Exception]] = {}


def error_class(name: str) -> type[Exception]:
    """A user exception class with this name (recovery policies classify failures by it)."""
    if name not in _errors:
        _errors[name] = type(name, (Exception,), {})
    return _errors[name]


def expand(v: Any) -> Any:
    """Values of the scenario with ``{"$repeat": [text, n]}`` expanded."""
    if isinstance(v, dict):
        if list(v) == ["$repeat"]:
            text, n = v["$repeat"]
            return text * n
        return {k: expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [expand(x) for x in v]
    return v


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def error_of(e: BaseException) -> str:
    return getattr(e, "code", None) or type(e).__name__


def make_step(name: str, spec: dict[str, Any], item: dict[str, Any], calls: dict[str, int]) -> Any:
    def body(x: Any) -> Any:
        emit({"ran": name})
        if item.get("kill_before") == name:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[name] = n = calls.get(name, 0) + 1
        if spec.get("fail_always") or n <= spec.get("fail_first", 0) or ("fail_below" in spec and x < spec["fail_below"]):
            raise error_class(spec.get("error", "StepError"))(f"{name} failed (attempt {n})")
        sleep_ms = spec.get("sleep_ms", spec.get("sleep_first_ms") if n == 1 else None)
        if sleep_ms is not None:
            time.sleep(sleep_ms / 1000)
        if "spend_usd" in spec:
            omium.record_spend(cost_usd=spec["spend_usd"])
        v = expand(spec["returns"]) if "returns" in spec else x + spec["add"] if "add" in spec else x
        if "tool" not in spec:
            return v

        # A recorded tool call with the step's input; the tool returns what the step would.
        def tool(_arg: Any) -> Any:
            emit({"ran": f"tool:{spec['tool']}"})
            return v

        return omium.tool(spec["tool"], side_effect=spec.get("side_effect", False))(tool)(x)

    handoff = spec.get("consensus")
    options: dict[str, Any] = {}
    if handoff is not None:
        timeout = handoff.get("timeout_ms", 5000) / 1000
        options = {"consensus_required": True, "consensus_targets": handoff["targets"], "consensus_timeout": timeout}
    if "timeout_ms" in spec:
        options["timeout"] = spec["timeout_ms"] / 1000
    return omium.checkpoint(
        name, retries=spec.get("retries", 0), preconditions=spec.get("pre", []), postconditions=spec.get("post", []), **options
    )(body)


def register_hooks(hooks: dict[str, Any]) -> None:
    """A fallback returns its value; a fixer gives the step its value as the only argument;
    consensus targets answer as listed."""
    for name, v in hooks.get("fallbacks", {}).items():
        omium.register_fallback(name, lambda *a, v=v, **k: expand(v))
    for name, v in hooks.get("fixers", {}).items():
        omium.register_fix(name, lambda failure, args, kwargs, v=v: ([expand(v)], {}))
    # A consensus target answers with its next answer (False: silent, True: acknowledge,
    # another value: a vote), and acknowledges once none are left.
    for agent, answers in hooks.get("answers", {}).items():
        left = list(answers)
        omium.consensus.subscribe(agent, lambda msg, left=left: left.pop(0) if left else True)


def define(scenario: dict[str, Any], item: dict[str, Any]) -> Any:
    """The scenario's workflow as the item calls it (its flow and steps)."""
    calls: dict[str, int] = {}
    specs = {**scenario["steps"], **item.get("steps", {})}
    steps = {name: make_step(name, spec, item, calls) for name, spec in specs.items()}
    flow = item.get("flow", scenario["flow"])

    @omium.workflow("conformance")
    def conformance(x: Any) -> Any:
        for name in flow:
            x = steps[name](x)
        return x

    return conformance


def outcome(f: Any) -> dict[str, Any]:
    """A run's outcome: what the workflow returned, or the error's code or class."""
    try:
        out = f()
    except Exception as e:
        return {"outcome": "error", "error": error_of(e)}
    return {"outcome": "completed", "output": out}


def run(scenario: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    wf = define(scenario, item)
    return outcome(lambda: wf.run(item.get("input", scenario.get("input")), execution_id=item.get("execution", "e1")))


def operate(scenario: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    execution = item.get("execution", "e1")
    op = item["op"]
    # A replay and a fork at a position run the workflow (as the item calls it) again.
    if op == "replay":
        define(scenario, item)
        return outcome(lambda: omium.replay(execution, new_execution_id=item["new_id"]).output)
    if op == "fork_at":
        define(scenario, item)
        mutate = (lambda args, kwargs: ((item["input"],), kwargs)) if "input" in item else None
        return outcome(lambda: omium.fork(execution, at_step=item["at_step"], mutate=mutate, new_execution_id=item["new_id"]).output)
    try:
        if op == "rollback":
            omium.rollback(execution, to=item.get("to"))
        elif op == "fork":
            kw = {"state": item["state"]} if "state" in item else {}
            execution = item["new_id"]
            omium.fork(item.get("execution", "e1"), item["at"], new_execution_id=execution, **kw)
        elif op == "resume":
            kw = {"state": item["state"]} if "state" in item else {}
            omium.resume(execution, run=False, **kw)
        elif op == "escalate":
            omium.escalate(execution, reason=item.get("reason"))
        elif op == "delete":
            reply = omium.delete_execution(execution, reason=item.get("reason"))
            return {"outcome": "done", "erased": reply["erased"]}  # no status: what was erased
        else:
            raise ValueError(f"unknown op {op!r}")
    except Exception as e:
        return {"outcome": "error", "error": error_of(e)}
    return {"outcome": "done", "status": omium.get_execution(execution).status}


def main() -> None:
    path, index, store = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(path) as f:
        scenario = json.load(f)
    item = scenario["runs"][index]
    omium.init(path=store)
    if index == 0 and scenario.get("policy"):
        omium.policy.apply(scenario["policy"])
    register_hooks(scenario.get("hooks", {}))
    result = operate(scenario, item) if "op" in item else run(scenario, item)
    emit({"result": result})
    omium.shutdown()


if __name__ == "__main__":
    main()
