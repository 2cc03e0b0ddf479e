"""Workflows from YAML or JSON documents, run durably by the core's parallel DAG executor::

    import omium
    omium.init(path=".omium")
    flow = omium.workflows.load("onboarding.yaml").bind(kyc_agent=verify_kyc, credit_agent=graph)
    result = flow.run({"customer_data": {...}}, execution_id="cust-42")   # same id: resumes
    result.data["credit_score"]

An agent id is bound to a Python callable (called with the step's inputs as keyword
arguments; sync or async), a compiled LangGraph graph (``invoke(inputs)``), a CrewAI ``Crew``
(``kickoff(inputs=...)``) or ``Flow`` (a class or an instance; ``kickoff(inputs=...)``). Agents
left unbound run their ``command:`` (JSON on stdin and stdout) or their ``image:`` through
docker or podman. Values cross as JSON. ``docs/workflows.md`` describes the document.

A ``consensus_required`` step's outputs are broadcast through :mod:`omium.consensus` (the
store's embedded Raft group, or the cluster given to :func:`omium.consensus.connect`) to the
agents that consume them, and flow on once a majority of them agreed; handlers registered with
:func:`omium.consensus.subscribe` answer for their agents (an agent without one acknowledges).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _omium, _recovery, _runtime
from .errors import ExecutionPaused, OmiumError

__all__ = ["RunReport", "Spec", "StepReport", "Template", "load", "parse", "templates"]


@dataclass(frozen=True)
class Template:
    """A workflow shipped with Omium: ``text`` is its YAML, to clone and edit."""

    name: str
    description: str
    text: str

    def write(self, path: str | os.PathLike[str]) -> str:
        """Writes the template to ``path`` (refuses to overwrite) and returns the path."""
        p = os.fspath(path)
        with open(p, "x", encoding="utf-8") as f:
            f.write(self.text)
        return p


def templates() -> list[Template]:
    """The templates shipped with Omium (KYC, credit scoring, offer generation)."""
    return [Template(n, d, t) for n, d, t in _omium.workflow_templates()]


@dataclass(frozen=True)
class StepReport:
    id: str
    agent: str
    outcome: str  # "ran", "replayed" (recorded by an earlier run) or "skipped"
    attempts: int
    started_at_ms: int | None
    ended_at_ms: int | None
    reason: str | None = None


@dataclass(frozen=True)
class RunReport:
    """A completed run: ``data`` holds the workflow inputs and every output, by name."""

    execution_id: str
    workflow: str
    data: dict[str, Any]
    steps: list[StepReport] = field(default_factory=list)

    def step(self, id: str | int) -> StepReport:
        for s in self.steps:
            if s.id == str(id):
                return s
        raise KeyError(f"no step {id!r} in workflow {self.workflow!r}")


def load(path: str | os.PathLike[str]) -> Spec:
    """Reads and validates a workflow file; :class:`omium.errors.WorkflowError` lists every
    problem with its line and column."""
    p = os.fspath(path)
    with open(p, encoding="utf-8") as f:
        text = f.read()
    return Spec(_omium.WorkflowSpec.parse(text, p), {}, os.path.dirname(os.path.abspath(p)))


def parse(text: str, file: str | None = None) -> Spec:
    """Validates a workflow document given as text (YAML or JSON)."""
    return Spec(_omium.WorkflowSpec.parse(text, file), {}, None)


class Spec:
    """A validated workflow and the agents bound to it. :meth:`bind` returns a new ``Spec``."""

    def __init__(self, native: _omium.WorkflowSpec, bindings: Mapping[str, Any], dir: str | None) -> None:
        self._native = native
        self._bindings = dict(bindings)
        self._dir = dir

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def inputs(self) -> list[str]:
        """The workflow inputs a run needs."""
        return list(self._native.inputs)

    @property
    def agents(self) -> list[str]:
        return [a[0] for a in self._native.agents]

    def plan(self) -> dict[str, Any]:
        """Levels (steps of one level run in parallel), order and steps."""
        return json.loads(self._native.plan_json())

    def plan_text(self) -> str:
        """The DAG and the order of execution, as ``omium workflow plan`` prints them."""
        return self._native.plan_text()

    def bind(self, **agents: Any) -> Spec:
        """Binds agent ids to callables, LangGraph graphs, CrewAI crews or flows."""
        known = set(self.agents)
        for name, obj in agents.items():
            if name not in known:
                raise ValueError(f"workflow {self.name!r} has no agent {name!r}; its agents: {', '.join(sorted(known))}")
            _adapter(name, obj)  # checks the kind of object now, not at run time
        return Spec(self._native, {**self._bindings, **agents}, self._dir)

    def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        tenant: str | None = None,
        agree: Callable[[dict[str, Any]], Any] | None = None,
        durability: str | None = None,
        consensus_timeout: float = 30.0,
    ) -> RunReport:
        """Runs the workflow (or resumes it: the same ``execution_id`` again).

        The outputs of each ``consensus_required`` step are agreed before they flow on: by
        default through :mod:`omium.consensus`, broadcast to the consuming agents (the step's
        own agent when none consumes them) and awaited at most ``consensus_timeout`` seconds.
        ``agree`` replaces that: it is called with the hand-off (``step``, ``agent``,
        ``outputs``, ``consumers``); return True or a str (recorded as the agreement), or False
        / raise :class:`omium.ConsensusViolation` to reject."""
        if isinstance(consensus_timeout, bool) or not isinstance(consensus_timeout, (int, float)) or consensus_timeout <= 0:
            raise ValueError(f"workflow {self.name!r}: consensus_timeout must be a positive number of seconds, not {consensus_timeout!r}")
        store = _runtime.store()
        _recovery.ensure_policies(store, tenant or "default")
        try:
            text = json.dumps(dict(inputs or {}))
        except TypeError as e:
            raise TypeError(f"workflow {self.name!r}: inputs must be JSON values ({e})") from None
        adapters = {name: _adapter(name, obj) for name, obj in self._bindings.items()}
        fallbacks = {name: _adapter(name, fn) for name, fn in _recovery._fallbacks.items()}
        coordinator = None
        if agree is None and self._native.consensus_steps:
            from . import consensus

            coordinator = consensus._get()
        try:
            report = self._native.run(
                store,
                text,
                adapters,
                execution_id=execution_id,
                tenant=tenant,
                agree=_agreement(agree) if agree is not None else None,
                notify=_notifier,
                fallbacks=fallbacks,
                dir=self._dir,
                durability=durability,
                coordinator=coordinator,
                respond=_answer if coordinator is not None else None,
                consensus_timeout=float(consensus_timeout),
                fix=_fix,
                analyze=_analyze,
            )
        except OmiumError as e:
            if e.code == "paused":
                raise ExecutionPaused(str(e), execution_id=execution_id or "") from None
            if e.code == "interrupted":
                # Like a crash: the execution stays resumable (steps still running are abandoned).
                raise KeyboardInterrupt(str(e)) from None
            raise
        r = json.loads(report)
        return RunReport(r["execution_id"], r["workflow"], r["data"], [StepReport(**s) for s in r["steps"]])

    def __repr__(self) -> str:
        return f"<omium.workflows.Spec {self.name!r} agents={self.agents} bound={sorted(self._bindings)}>"


def _notifier(payload: str) -> None:
    body = json.loads(payload)
    channels = body.get("channels") or []
    for fn, only in list(_recovery._notifiers):
        if only is not None and channels and not (only & set(channels)):
            continue
        fn(body)


def _fix(name: str, failure: str, inputs: str) -> str | None:
    """A ``suggest_fix`` with ``auto_apply`` for a workflow step: the fixer registered as
    ``name`` gets the failure, no positional arguments and the step's inputs as keyword
    arguments, and returns ``(args, kwargs)``; ``kwargs`` are the inputs of the next attempt."""
    fixer = _recovery._fixers.get(name)
    if fixer is None:
        return None
    got = fixer(json.loads(failure), [], json.loads(inputs))
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[1], dict)):
        raise TypeError(f"fixer {name!r} must return (args, kwargs), not {got!r}")
    return json.dumps(got[1])


def _analyze(failure: str) -> str | None:
    """An ``inspect`` action of a workflow step: the analyzer's answer, as JSON."""
    if _recovery._analyzer is None:
        return None
    said = _recovery._analyzer(json.loads(failure))
    return json.dumps(said if isinstance(said, dict) else {})


def _answer(agent: str, message: str) -> bool | str:
    from . import consensus

    return consensus._answer(agent, json.loads(message))


def _agreement(fn: Callable[[dict[str, Any]], Any]) -> Callable[[str], str]:
    from .errors import ConsensusViolation

    def agree(request: str) -> str:
        req = json.loads(request)
        verdict = fn(req)
        if inspect.isawaitable(verdict):
            verdict = asyncio.run(_await(verdict))
        if verdict is False or verdict is None:
            raise ConsensusViolation(f"the agreement function rejected the outputs of step {req['step']}")
        if verdict is True:
            return "agreed"
        return verdict if isinstance(verdict, str) else json.dumps(verdict)

    return agree


async def _await(aw: Any) -> Any:
    return await aw


def _adapter(name: str, obj: Any) -> Callable[[str, dict[str, Any]], str]:
    """One call shape for every kind of agent: ``(inputs_json, context) -> outputs_json``."""
    call = _caller(name, obj)

    def adapter(inputs_json: str, context: dict[str, Any]) -> str:
        out = call(json.loads(inputs_json))
        if inspect.isawaitable(out):
            out = asyncio.run(_await(out))
        out = _as_outputs(out, context)
        try:
            return json.dumps(out)
        except TypeError as e:
            raise TypeError(f"agent {name!r} of step {context['step']} returned outputs that are not JSON values ({e})") from None

    return adapter


def _caller(name: str, obj: Any) -> Callable[[dict[str, Any]], Any]:
    kind = _framework(obj)
    if kind == "langgraph":
        return lambda inputs: obj.invoke(inputs)
    if kind == "crew":
        return lambda inputs: _crew_outputs(obj.kickoff(inputs=inputs))
    if kind == "flow_class":
        return lambda inputs: _flow_outputs(obj(), inputs)
    if kind == "flow":
        return lambda inputs: _flow_outputs(obj, inputs)
    if callable(obj):
        return lambda inputs: obj(**inputs)
    raise TypeError(
        f"agent {name!r}: cannot bind {type(obj).__name__}; bind a callable, a compiled LangGraph graph, or a CrewAI Crew or Flow"
    )


def _framework(obj: Any) -> str | None:
    mod = type(obj).__module__ if not isinstance(obj, type) else obj.__module__
    if mod.startswith("langgraph") and hasattr(obj, "invoke"):
        return "langgraph"
    if mod.startswith("crewai") or _subclass_of(obj, "crewai.flow.flow", "Flow"):
        try:
            from crewai import Crew
            from crewai.flow.flow import Flow
        except ImportError:  # pragma: no cover - crewai objects imply crewai
            return None
        if isinstance(obj, type) and issubclass(obj, Flow):
            return "flow_class"
        if isinstance(obj, Flow):
            return "flow"
        if isinstance(obj, Crew):
            return "crew"
    return None


def _subclass_of(obj: Any, module: str, name: str) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return any(c.__module__ == module and c.__name__ == name for c in cls.__mro__)


def _crew_outputs(out: Any) -> Any:
    if getattr(out, "json_dict", None):
        return out.json_dict
    if getattr(out, "pydantic", None) is not None:
        return out.pydantic.model_dump()
    return out.raw


def _flow_outputs(flow: Any, inputs: dict[str, Any]) -> Any:
    result = flow.kickoff(inputs=inputs)
    if isinstance(result, dict):
        return result
    state = flow.state
    as_dict = state.model_dump() if hasattr(state, "model_dump") else dict(state) if isinstance(state, dict) else None
    return _FlowResult(result, as_dict or {})


class _FlowResult:
    """A flow's return value with its final state, for picking the step's outputs."""

    def __init__(self, result: Any, state: dict[str, Any]) -> None:
        self.result = result
        self.state = state


def _as_outputs(out: Any, context: dict[str, Any]) -> dict[str, Any]:
    names: list[str] = context.get("outputs") or []
    if isinstance(out, _FlowResult):
        picked = {k: out.state[k] for k in names if k in out.state}
        if len(picked) == len(names):
            return picked
        out = out.result
    if hasattr(out, "model_dump") and not isinstance(out, type):
        out = out.model_dump()
    if isinstance(out, dict) and (not names or any(k in out for k in names)):
        return out
    if len(names) == 1:
        return {names[0]: out}
    if out is None and not names:
        return {}
    raise TypeError(
        f"agent {context['agent']!r} of step {context['step']} returned {type(out).__name__}; "
        f"return a dict with its outputs ({', '.join(names) or 'none'})"
    )
