"""Durable workflows (``@omium.workflow``), the execution context for code without one, and
the operations on executions: rollback, fork, history, resumable, recover, verify."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import functools
import inspect
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _runtime, _trace
from .codecs import CODEC_KEY, Codec, get_codec, recorded_codec
from .errors import (
    ExecutionCancelled,
    ExecutionNotFoundError,
    ExecutionPaused,
    ExecutionRolledBack,
    OmiumError,
    WorkflowNotRegisteredError,
)

_registry: dict[str, Workflow] = {}
_UNENCODABLE_INPUT = "omium.input"


def _ms(ms: int | None) -> _dt.datetime | None:
    return None if ms is None else _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint of an execution's tree. ``load()`` returns its decoded state."""

    id: str
    execution_id: str
    agent: str
    name: str
    kind: str
    parent: str | None
    seq: int
    global_seq: int
    key: str | None
    checksum: str
    raw_size: int
    stored_size: int
    checks_passed: bool
    preconditions: list[tuple[str, bool]]
    postconditions: list[tuple[str, bool]]
    metadata: dict[str, str]
    created_at: _dt.datetime
    #: "inline" (small states) or "chunked" (content-addressed chunks), and how many chunks.
    storage: str = "inline"
    chunks: int = 0

    @staticmethod
    def of(d: dict[str, Any]) -> CheckpointInfo:
        """From the core's record view (the one C and Node get)."""
        d = dict(d)
        d["created_at"] = _ms(d.pop("created_at_ms"))
        checks = d.pop("checks")
        for which in ("preconditions", "postconditions"):
            d[which] = [(c["expression"], c["passed"]) for c in checks[which]]
        return CheckpointInfo(**d)

    def load(self, codec: str | Codec | None = None) -> Any:
        """The state of this checkpoint, verified and decoded (default: the codec it was recorded
        with, else the init() codec)."""
        c = (
            get_codec(codec)
            if codec is not None
            else recorded_codec(self.metadata.get(CODEC_KEY), _runtime.config().codec, f"checkpoint {self.id}")
        )
        return c.decode(_runtime.store().read_state(self.id))


@dataclass(frozen=True)
class ExecutionInfo:
    id: str
    workflow: str
    tenant: str
    status: str
    head: str | None
    error: str | None
    attempts: int
    lease_owner: str | None
    lease_expires_at: _dt.datetime | None
    labels: dict[str, str]
    checkpoint_count: int
    created_at: _dt.datetime
    updated_at: _dt.datetime
    has_input: bool = False
    has_output: bool = False
    #: Who holds the lease (``owner``, ``host``, ``pid``, ``token``, ``expires_at``), or None.
    lease: dict[str, Any] | None = None

    @staticmethod
    def of(d: dict[str, Any]) -> ExecutionInfo:
        d = dict(d)
        d["created_at"] = _ms(d.pop("created_at_ms"))
        d["updated_at"] = _ms(d.pop("updated_at_ms"))
        d["lease_expires_at"] = _ms(d.pop("lease_expires_at_ms"))
        if d.get("lease") is not None:
            lease = dict(d["lease"])
            lease["expires_at"] = _ms(lease.pop("expires_at_ms"))
            d["lease"] = lease
        return ExecutionInfo(**d)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    executions: int
    checkpoints: int
    audit_entries: int
    problems: list[str] = field(default_factory=list)
    #: The audit chain's last entry as ``"SEQ:HASH"`` (None for an empty log): keep it
    #: elsewhere and pass it as ``verify(expect_head=...)`` later.
    audit_head: str | None = None

    @staticmethod
    def of(d: dict[str, Any]) -> VerifyReport:
        """From the core's record view: each problem names its execution and checkpoint."""
        audit = d["audit"]
        head = audit.get("head")
        problems = [
            f"execution {json.dumps(p['execution'])} checkpoint {p['checkpoint'] or '-'}: {p['error']}" for p in d["problems"]
        ] + list(audit["problems"])
        return VerifyReport(
            ok=d["ok"],
            executions=d["executions"],
            checkpoints=d["checkpoints"],
            audit_entries=audit["entries"],
            problems=problems,
            audit_head=None if head is None else f"{head['seq']}:{head['hash']}",
        )


def _new_execution_id(workflow: str) -> str:
    return f"{workflow}-{uuid.uuid4().hex[:16]}"


class Workflow:
    """A durable workflow. ``run(*args, execution_id=..., **kwargs)`` starts it, or resumes it
    when the execution id was seen before: recorded steps return their recorded results. A
    completed execution returns its recorded output without running again."""

    def __init__(self, fn: Callable[..., Any], name: str, codec: str | Codec | None) -> None:
        self.fn = fn
        self.name = name
        self._codec = get_codec(codec) if codec is not None else None
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    @property
    def codec(self) -> Codec:
        return self._codec or _runtime.config().codec

    def _prepare(self, args: tuple, kwargs: dict, execution_id: str | None) -> tuple[str, Any, bool]:
        if execution_id is None:
            execution_id = _new_execution_id(self.name)
        elif not isinstance(execution_id, str) or not execution_id:
            raise TypeError(f"{self.name}.run(execution_id=...): expected a non-empty str, not {execution_id!r}")
        store = _runtime.store()
        try:
            e = store.execution(execution_id)
        except ExecutionNotFoundError:
            e = None
        if e is not None and e["status"] == "completed":
            out = store.execution_output(execution_id)
            return execution_id, (_io_codec(e["labels"], e["id"], self.codec).decode(out) if out is not None else None), True
        return execution_id, None, False

    def _begin(self, execution_id: str, args: tuple, kwargs: dict) -> _runtime.ExecutionContext:
        labels: dict[str, str] = {}
        try:
            input_bytes: bytes | None = self.codec.encode({"args": list(args), "kwargs": kwargs})
        except (TypeError, ValueError, OverflowError) as e:
            input_bytes = None
            labels[_UNENCODABLE_INPUT] = f"unencodable: {e}"
        return _runtime.begin(execution_id, self.name, input_bytes, self.codec, labels)

    def _end_ok(self, ctx: _runtime.ExecutionContext, result: Any) -> None:
        try:
            out: bytes | None = ctx.codec.encode(result)
        except (TypeError, ValueError, OverflowError):
            out = None
        ctx.run.complete(out)

    @staticmethod
    def _end_err(ctx: _runtime.ExecutionContext, e: BaseException) -> None:
        # Ctrl-C and SystemExit leave the execution running: it is resumable, like a crash.
        # A pause leaves it waiting for omium.resume(); a rollback is handled by the caller.
        if isinstance(e, ExecutionPaused):
            ctx.run.pause(e.reason)
        elif isinstance(e, ExecutionCancelled):
            ctx.run.close()  # the operator's cancel ended the execution already
        elif isinstance(e, ExecutionRolledBack):
            ctx.run.close()
            _rollback_for_policy(e)
        elif isinstance(e, Exception):
            with contextlib.suppress(OmiumError):
                ctx.run.fail(f"{type(e).__name__}: {e}")

    def run(self, *args: Any, execution_id: str | None = None, **kwargs: Any) -> Any:
        if self.is_async:
            return self._run_async(args, kwargs, execution_id)
        execution_id, output, done = self._prepare(args, kwargs, execution_id)
        if done:
            return output
        rollbacks = 0
        while True:
            ctx = self._begin(execution_id, args, kwargs)
            ctx.rollbacks = rollbacks
            token = _runtime.current.set(ctx)
            span = _trace.workflow_span(self.name, execution_id)
            try:
                result = self.fn(*args, **kwargs)
            except ExecutionRolledBack as e:
                self._end_err(ctx, e)
                rollbacks += 1  # run again from the rollback target
                _end_span(span, e)
            except BaseException as e:
                self._end_err(ctx, e)
                _end_span(span, e)
                raise
            else:
                self._end_ok(ctx, result)
                _end_span(span, None)
                return result
            finally:
                _runtime.current.reset(token)
                ctx.run.close()

    async def _run_async(self, args: tuple, kwargs: dict, execution_id: str | None) -> Any:
        execution_id, output, done = await asyncio.to_thread(self._prepare, args, kwargs, execution_id)
        if done:
            return output
        rollbacks = 0
        while True:
            ctx = await asyncio.to_thread(self._begin, execution_id, args, kwargs)
            ctx.rollbacks = rollbacks
            token = _runtime.current.set(ctx)
            span = _trace.workflow_span(self.name, execution_id)
            try:
                result = await self.fn(*args, **kwargs)
            except ExecutionRolledBack as e:
                await asyncio.to_thread(self._end_err, ctx, e)
                rollbacks += 1
                _end_span(span, e)
            except BaseException as e:
                self._end_err(ctx, e)
                _end_span(span, e)
                raise
            else:
                await asyncio.to_thread(self._end_ok, ctx, result)
                _end_span(span, None)
                return result
            finally:
                _runtime.current.reset(token)
                ctx.run.close()

    async def arun(self, *args: Any, execution_id: str | None = None, **kwargs: Any) -> Any:
        """Awaitable form of :meth:`run`, for sync and async workflows alike."""
        if self.is_async:
            return await self._run_async(args, kwargs, execution_id)
        return await asyncio.to_thread(functools.partial(self.run, *args, execution_id=execution_id, **kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<omium.workflow {self.name!r}>"


def _end_span(span: _trace.Span | None, e: BaseException | None) -> None:
    if span is not None:
        span.__exit__(type(e) if e is not None else None, e, None)


def _rollback_for_policy(e: ExecutionRolledBack) -> None:
    """Carries out a rollback a recovery policy decided (the run is already released); the
    core runs the execution again from its start when nothing consistent was recorded yet."""
    with _trace.Span("rollback", "rollback", execution_id=e.execution_id, attributes={"omium.rollback.to": e.to}):
        _runtime.store().rollback_as_decided(e.execution_id, e.to, json.dumps(e.failure))


def workflow(name: str | Callable[..., Any] | None = None, *, codec: str | Codec | None = None) -> Any:
    """Makes a function a durable workflow, registered by name for :func:`recover`."""

    def decorate(fn: Callable[..., Any]) -> Workflow:
        wf = Workflow(fn, name if isinstance(name, str) else fn.__qualname__, codec)
        _registry[wf.name] = wf
        return wf

    if callable(name):
        return decorate(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"@omium.workflow(name): name must be a str, not {type(name).__name__}")
    return decorate


@contextlib.contextmanager
def execution(execution_id: str, *, workflow: str | None = None) -> Iterator[_runtime.ExecutionContext]:
    """Runs the block as (a resumption of) execution ``execution_id``, for code without a
    workflow function. Completes it when the block ends, marks it failed on an exception."""
    if not isinstance(execution_id, str) or not execution_id:
        raise TypeError(f"omium.execution(execution_id): expected a non-empty str, not {execution_id!r}")
    ctx = _runtime.begin(execution_id, workflow, None, _runtime.config().codec)
    token = _runtime.current.set(ctx)
    try:
        # A rollback decided by a policy is carried out on the way out; the block must be run
        # again (ExecutionRolledBack tells the caller).
        yield ctx
    except BaseException as e:
        Workflow._end_err(ctx, e)
        raise
    else:
        ctx.run.complete(None)
    finally:
        _runtime.current.reset(token)
        ctx.run.close()


def set_execution_id(execution_id: str | None) -> None:
    """Makes later steps of this thread/task record into ``execution_id`` (published SDK
    name). Passing None releases it; an execution released without completing stays resumable."""
    set_execution_context(execution_id, where="omium.set_execution_id")


def set_execution_context(execution_id: str | None, agent_id: str | None = None, *, where: str = "omium.set_execution_context") -> None:
    """Makes later steps of this thread/task record into ``execution_id``, as ``agent_id`` (the
    agent recorded on their checkpoints, default ``"main"``), as the published SDK's
    ``set_execution_context(execution_id=, agent_id=)`` does: the execution begins, or resumes
    after its last recorded step. Passing None releases it; an execution released without
    completing stays resumable. Inside an ``@omium.workflow`` run the workflow's execution is used
    instead and this is not needed."""
    ctx = _runtime.current.get()
    if ctx is not None and ctx.owns_run:
        ctx.run.close()
    if execution_id is None:
        _runtime.current.set(None)
        return
    if not isinstance(execution_id, str) or not execution_id:
        raise TypeError(f"{where}: expected a non-empty str or None, not {execution_id!r}")
    if agent_id is not None and (not isinstance(agent_id, str) or not agent_id):
        raise TypeError(f"{where}(agent_id=...): expected a non-empty str, not {agent_id!r}")
    _runtime.current.set(_runtime.begin(execution_id, None, None, _runtime.config().codec, agent=agent_id or "main"))


def get_execution_id() -> str | None:
    ctx = _runtime.current.get()
    return ctx.execution_id if ctx is not None else None


def rollback(execution_id: str, to: str | None = None, *, global_seq: int | None = None, reason: str | None = None) -> CheckpointInfo:
    """Rolls back to a checkpoint id or name (``to``), to the consistent cut at ``global_seq``,
    or, with neither, to the last consistent checkpoint. Steps after it run again on the next
    ``run`` with this execution id; the old branch stays readable. Returns the rollback marker."""
    attrs = {"omium.rollback.to": to or ("last_consistent" if global_seq is None else f"global_seq {global_seq}")}
    with _trace.Span("rollback", "rollback", execution_id=execution_id, attributes=attrs):
        marker = _runtime.store().rollback(execution_id, to=to, global_seq=global_seq, reason=reason)
    return CheckpointInfo.of(marker)


_MISSING: Any = object()


def fork(
    execution_id: str,
    at: str | None = None,
    *,
    state: Any = _MISSING,
    new_execution_id: str | None = None,
    at_step: int | None = None,
    mutate: Callable[..., Any] | None = None,
) -> Any:
    """Forks an execution at a checkpoint (id or name) into a new execution, optionally with
    that checkpoint's state replaced; running the new execution re-runs what follows. Returns
    its ``ExecutionInfo``.

    With ``at_step=N`` it keeps positions before N, changes the input of the call at N with
    ``mutate(args, kwargs) -> (args, kwargs)``, and runs the workflow live from there now;
    it returns a ``RunResult`` (the new execution id and the output). The original is kept."""
    if at_step is not None:
        if at is not None or state is not _MISSING:
            raise TypeError("omium.fork: give either at (with state) or at_step (with mutate), not both")
        from . import _replay

        return _replay.fork_at_step(execution_id, at_step, mutate, new_execution_id)
    if at is None:
        raise TypeError("omium.fork: at (a checkpoint id or name) or at_step is required")
    data = _encode_edit(execution_id, state)
    return ExecutionInfo.of(_runtime.store().fork(execution_id, at, new_execution_id=new_execution_id, state=data))


def history(execution_id: str, *, all_branches: bool = False) -> list[CheckpointInfo]:
    """The live branch of an execution (first checkpoint to head), or every checkpoint."""
    s = _runtime.store()
    rows = s.checkpoints(execution_id) if all_branches else s.history(execution_id)
    return [CheckpointInfo.of(r) for r in rows]


def branch(checkpoint_id: str) -> list[CheckpointInfo]:
    """The branch that ends at a checkpoint, first checkpoint first: the history of a branch a
    rollback abandoned, as well as of the live one."""
    return [CheckpointInfo.of(r) for r in _runtime.store().branch(checkpoint_id)]


def get_execution(execution_id: str) -> ExecutionInfo:
    return ExecutionInfo.of(_runtime.store().execution(execution_id))


def executions() -> list[ExecutionInfo]:
    return [ExecutionInfo.of(e) for e in _runtime.store().executions()]


def resumable() -> list[ExecutionInfo]:
    """Executions whose process died mid-run, and executions rolled back since they ran."""
    return [ExecutionInfo.of(e) for e in _runtime.store().resumable()]


def _resume_args(info: ExecutionInfo, codec: Codec) -> tuple[list, dict]:
    if _UNENCODABLE_INPUT in info.labels:
        raise OmiumError(
            f"execution {info.id!r} cannot be recovered automatically: its input was not storable ({info.labels[_UNENCODABLE_INPUT]}); "
            f"re-run it with {info.workflow}.run(..., execution_id={info.id!r})"
        )
    raw = _runtime.store().execution_input(info.id)
    if raw is None:
        return [], {}
    data = _io_codec(info.labels, info.id, codec).decode(raw)
    return list(data.get("args", [])), dict(data.get("kwargs", {}))


def _io_codec(labels: dict[str, str], execution_id: str, configured: Codec) -> Codec:
    """The codec of an execution's input, output and edited states: the one it recorded."""
    return recorded_codec(labels.get(CODEC_KEY), configured, f"execution {execution_id!r}")


def _encode_edit(execution_id: str, state: Any) -> bytes | None:
    """A state that replaces a recorded one (fork, resume), in the execution's codec."""
    if state is _MISSING:
        return None
    return _io_codec(get_execution(execution_id).labels, execution_id, _runtime.config().codec).encode(state)


def _recoverable(skip_unregistered: bool) -> list[tuple[ExecutionInfo, Workflow]]:
    from . import _sync

    if _sync.syncing():
        # Executions another machine left unfinished in the cluster become resumable here.
        _sync.pull_abandoned()
    todo = resumable()
    missing = [e for e in todo if e.workflow not in _registry]
    if missing and not skip_unregistered:
        names = ", ".join(sorted({repr(e.workflow) for e in missing}))
        ids = ", ".join(repr(e.id) for e in missing)
        known = ", ".join(sorted(map(repr, _registry))) or "none"
        raise WorkflowNotRegisteredError(
            f"cannot recover {ids}: workflow {names} is not defined in this process (registered: {known}); "
            "import the module that defines it before omium.recover(), or pass skip_unregistered=True"
        )
    return [(e, _registry[e.workflow]) for e in todo if e.workflow in _registry]


def _note_crashes(todo: list[tuple[ExecutionInfo, Workflow]]) -> None:
    """Records, as `process_crashed` failures, the executions whose process died mid-run."""
    store = _runtime.store()
    for info, _ in todo:
        if info.status == "running":
            store.record_crash(info.id)


def recover(*, skip_unregistered: bool = False) -> dict[str, Any]:
    """Resumes every resumable execution by calling its registered workflow with its stored
    input. With ``omium.init(remote=...)``, executions other stores left unfinished in the
    cluster (their lease expired) are pulled first and resumed here too. Returns
    ``{execution_id: result}``. Async workflows are run with ``asyncio.run`` (inside a running
    loop use ``await omium.arecover()``)."""
    results: dict[str, Any] = {}
    todo = _recoverable(skip_unregistered)
    _note_crashes(todo)
    for info, wf in todo:
        args, kwargs = _resume_args(info, wf.codec)
        if wf.is_async:
            results[info.id] = asyncio.run(wf._run_async(tuple(args), kwargs, info.id))
        else:
            results[info.id] = wf.run(*args, execution_id=info.id, **kwargs)
    return results


async def arecover(*, skip_unregistered: bool = False) -> dict[str, Any]:
    """Awaitable :func:`recover`."""
    results: dict[str, Any] = {}
    todo = await asyncio.to_thread(_recoverable, skip_unregistered)
    await asyncio.to_thread(_note_crashes, todo)
    for info, wf in todo:
        args, kwargs = _resume_args(info, wf.codec)
        results[info.id] = await wf.arun(*args, execution_id=info.id, **kwargs)
    return results


def verify(execution_id: str | None = None, *, expect_head: str | None = None) -> VerifyReport:
    """Recomputes every checksum (and the audit chain); ``report.ok`` and ``report.problems``.

    ``expect_head`` is a head that :func:`audit_head` returned earlier and that was kept where
    this store's owner cannot rewrite it: the report is not ok when the chain no longer holds
    it (its tail was cut off, or it was rewritten)."""
    return VerifyReport.of(_runtime.store().verify(execution_id, expect_head))


def audit_head() -> str | None:
    """The audit chain's last entry as ``"SEQ:HASH"``, or None when nothing was audited yet."""
    return _runtime.store().audit_head()


def registered_workflows() -> dict[str, Workflow]:
    return dict(_registry)


def resume(execution_id: str, state: Any = _MISSING, *, by: str | None = None, run: bool = True) -> Any:
    """Resumes an execution a recovery policy paused (human in the loop). With ``state``, the
    step that paused it is recorded with that value (a corrected output) instead of running
    again. With ``run`` (the default) and its workflow defined in this process, the workflow
    continues now and its result is returned; otherwise it is left resumable
    (``omium.recover()``) and None is returned."""
    store = _runtime.store()
    data = _encode_edit(execution_id, state)
    store.resume(execution_id, data, by)
    info = get_execution(execution_id)
    wf = _registry.get(info.workflow)
    if not run or wf is None:
        return None
    args, kwargs = _resume_args(info, wf.codec)
    if wf.is_async:
        return asyncio.run(wf._run_async(tuple(args), kwargs, execution_id))
    return wf.run(*args, execution_id=execution_id, **kwargs)


async def aresume(execution_id: str, state: Any = _MISSING, *, by: str | None = None, run: bool = True) -> Any:
    """Awaitable :func:`resume`."""
    store = _runtime.store()
    data = await asyncio.to_thread(_encode_edit, execution_id, state)
    await asyncio.to_thread(store.resume, execution_id, data, by)
    info = await asyncio.to_thread(get_execution, execution_id)
    wf = _registry.get(info.workflow)
    if not run or wf is None:
        return None
    args, kwargs = _resume_args(info, wf.codec)
    return await wf.arun(*args, execution_id=execution_id, **kwargs)
