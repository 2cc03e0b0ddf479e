"""Durable steps: ``@omium.checkpoint`` and ``omium.Checkpoint``.

A step called inside an execution takes the next position of the execution's journal when it
is *called* (so ``asyncio.gather`` and threads keep call order). If the journal has a result at
that position, the result is decoded and returned and the function is not called; a different
step name there raises :class:`~omium.NonDeterminismError`. Otherwise the function runs (with
retries and a timeout when asked), its postconditions are checked, and only then is the result
recorded. A step nested in another step is identified by its parent's position and its order
inside the parent, so replaying the parent (without running its body) shifts nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _omium, _recovery, _replay, _runtime, _trace
from ._analytics import spend_metadata
from .codecs import CODEC_KEY, Codec, get_codec, recorded_codec, to_plain
from .errors import ConditionError, ConditionFailed, OmiumError, StepTimeoutError


@dataclass(frozen=True)
class _Condition:
    text: str
    compiled: _omium.Condition | None
    func: Callable[..., bool] | None

    @staticmethod
    def make(spec: Any, where: str) -> _Condition:
        if isinstance(spec, str):
            # Parsed at decoration time: a syntax error shows up when the module is imported.
            return _Condition(spec, _omium.Condition(spec), None)
        if callable(spec):
            return _Condition(getattr(spec, "__qualname__", repr(spec)), None, spec)
        raise TypeError(f"{where}: a condition must be a CEL expression string or a callable, not {type(spec).__name__}")


# Names a condition always has (a parameter called so is reached as args[i] or kwargs[...]), and
# the receiver of a method.
_RESERVED = frozenset({"args", "kwargs", "result", "self", "cls"})


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or a callable without one
        return None


def _variables(sig: inspect.Signature | None, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The variables of a CEL condition: ``args``, ``kwargs``, and each parameter of the step by
    its name (defaults applied; ``*args`` as a list, ``**kwargs`` as a map), in their plain form
    as ``args`` has them. ``self`` and ``cls`` are left out."""
    out: dict[str, Any] = {"args": to_plain(list(args)), "kwargs": to_plain(kwargs)}
    if sig is None:
        return out
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:  # the call itself will fail, with Python's own message
        return out
    bound.apply_defaults()
    for name, value in bound.arguments.items():
        if name in _RESERVED:
            continue
        out[name] = to_plain(list(value) if sig.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL else value)
    return out


def _eval(
    cond: _Condition,
    step: str,
    kind: str,
    args: tuple,
    kwargs: dict,
    variables: dict[str, Any],
    result: Any = None,
    has_result: bool = False,
) -> None:
    try:
        if cond.func is not None:
            ok = cond.func(result) if has_result else cond.func(*args, **kwargs)
        else:
            ctx = variables
            if has_result:
                ctx = {**variables, "result": to_plain(result)}
            ok = cond.compiled.evaluate(ctx)  # type: ignore[union-attr]
    except ConditionFailed:
        raise
    except Exception as e:  # the condition itself broke
        raise ConditionError(f"step {step!r}: {kind} {cond.text!r} could not be evaluated: {e}") from e
    if not ok:
        raise ConditionFailed(f"step {step!r}: {kind} {cond.text!r} does not hold; nothing was recorded")


async def _run_unit(body: Callable[[], Any]) -> Any:
    return await body()


# The durable units of the framework integrations, by step name (stateless: a step's journal
# position is taken when it is called).
_units: dict[str, Callable[..., Any]] = {}


def unit(name: str) -> Callable[..., Any]:
    """The durable step ``name`` whose body is given at each call (``await unit(name)(body)``,
    ``body`` an async callable): what the framework integrations run a model request or a tool
    call in. Results are recorded with the JSON codec, so they read back in any process."""
    step = _units.get(name)
    if step is None:
        step = _units[name] = checkpoint(name, codec="json")(_run_unit)
    return step


class OutsideExecutionWarning(UserWarning):
    """A durable step ran outside any execution, so nothing was recorded."""


_warned_outside = False


def _warn_outside(step: str) -> None:
    """Warns once per process that a step ran outside any execution (it ran; nothing was
    recorded, so a resume cannot skip it)."""
    global _warned_outside
    if _warned_outside:
        return
    _warned_outside = True
    warnings.warn(
        f"omium: step {step!r} ran outside any execution, so nothing was recorded (a crash would run it again); "
        "call it inside an @omium.workflow run, or after omium.set_execution_context(execution_id=...). "
        "This warning is shown once.",
        OutsideExecutionWarning,
        stacklevel=4,
    )


def _position(ctx: _runtime.ExecutionContext, key: str | None) -> tuple[int, str | None]:
    """The journal position of a step called now: a top-level position, or parent/child key
    (the core's positions: keyed steps nested in a step keep their own key under the parent's)."""
    return ctx.run.position(_runtime.current_step.get(), key)


class _Step:
    """What a durable step needs at call time."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        preconditions: Sequence[Any],
        postconditions: Sequence[Any],
        retries: int,
        timeout: float | None,
        key: Callable[..., str] | None,
        codec: str | Codec | None,
        agent: str | None,
        validators: Sequence[Callable[[Any], Any]] = (),
        consensus: tuple[list[str], float, int | None] | None = None,
    ) -> None:
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"@omium.checkpoint({name!r}): retries must be a non-negative int, not {retries!r}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"@omium.checkpoint({name!r}): timeout must be a positive number of seconds, not {timeout!r}")
        if key is not None and not callable(key):
            raise TypeError(f"@omium.checkpoint({name!r}): key must be a callable of the step's arguments returning a str")
        self.fn = fn
        self.sig = _signature(fn)
        self.name = name
        self.pre = [_Condition.make(c, f"@omium.checkpoint({name!r}) preconditions") for c in preconditions]
        self.post = [_Condition.make(c, f"@omium.checkpoint({name!r}) postconditions") for c in postconditions]
        # What a recorded step says about its conditions (they held, or it would not be recorded).
        self.pre_held = [(c.text, True) for c in self.pre]
        self.post_held = [(c.text, True) for c in self.post]
        self.cel_pre = any(c.compiled is not None for c in self.pre)
        self.cel_post = any(c.compiled is not None for c in self.post)
        # The policy's step timeout, by (policy generation, store, tenant, workflow).
        self._timeout_at: tuple[Any, ...] | None = None
        self._policy_timeout: float | None = None
        self.retries = retries
        self.timeout = timeout
        self.key = key
        self.codec = get_codec(codec) if codec is not None else None
        self.agent = agent
        for v in validators:
            if not callable(v):
                raise TypeError(f"@omium.checkpoint({name!r}): validators must be callables, not {type(v).__name__}")
        self.validators = list(validators)
        # (targets, timeout, quorum) when the step's result must be agreed before it is recorded.
        self.consensus = consensus

    def user_key(self, args: tuple, kwargs: dict) -> str | None:
        if self.key is None:
            return None
        key = self.key(*args, **kwargs)
        if not isinstance(key, str):
            raise TypeError(f"step {self.name!r}: key(...) must return a str, not {type(key).__name__}")
        return key

    def begin(self, args: tuple, kwargs: dict) -> tuple[_runtime.ExecutionContext, int, str | None, Codec] | None:
        ctx = _runtime.current.get()
        if ctx is None:
            _warn_outside(self.name)
            return None
        seq, key = _position(ctx, self.user_key(args, kwargs))
        return ctx, seq, key, self.codec or ctx.codec

    def begin_sync(self, args: tuple, kwargs: dict) -> tuple[_runtime.ExecutionContext, int, str | None, Codec, Any] | None:
        """:meth:`begin` and the lookup of the recorded step in one native call (a synchronous
        step looks it up right away; an async one when its coroutine runs)."""
        ctx = _runtime.current.get()
        if ctx is None:
            _warn_outside(self.name)
            return None
        seq, key, found = ctx.run.begin_step(self.name, _runtime.current_step.get(), self.user_key(args, kwargs))
        return ctx, seq, key, self.codec or ctx.codec, found

    def decode(self, found: tuple[dict[str, Any], bytes], codec: Codec) -> Any:
        return recorded_codec(found[0]["metadata"].get(CODEC_KEY), codec, f"step {self.name!r}").decode(found[1])

    def replay(self, ctx: _runtime.ExecutionContext, seq: int, key: str | None, codec: Codec) -> tuple[bool, Any]:
        found = ctx.run.recorded(seq, self.name, key)
        if found is None:
            return False, None
        return True, self.decode(found, codec)

    def check_pre(self, args: tuple, kwargs: dict) -> None:
        if not self.pre:
            return
        variables = _variables(self.sig, args, kwargs) if self.cel_pre else {}
        for c in self.pre:
            _eval(c, self.name, "precondition", args, kwargs, variables)

    def check_result(self, args: tuple, kwargs: dict, result: Any) -> Any:
        """Postconditions, then validators: a result that fails them is a failure of the step."""
        if self.post:
            variables = _variables(self.sig, args, kwargs) if self.cel_post else {}
            for c in self.post:
                _eval(c, self.name, "postcondition", args, kwargs, variables, result, True)
        if self.validators or _recovery.has_validators():
            _recovery.validate(self.name, result, self.validators)
        return result

    def timeout_in(self, ctx: _runtime.ExecutionContext | None) -> float | None:
        """The step's own timeout, else the one its policy gives (looked up once per policy
        change, store, tenant and workflow)."""
        if self.timeout is not None or ctx is None:
            return self.timeout
        at = (_recovery._defaults_gen, id(_runtime._config), ctx.tenant, ctx.workflow)
        if at != self._timeout_at:
            self._policy_timeout = _recovery.timeout_seconds(ctx, self.name)
            self._timeout_at = at
        return self._policy_timeout

    def attempt_sync(self, ctx: _runtime.ExecutionContext | None, args: tuple, kwargs: dict) -> Any:
        timeout = self.timeout_in(ctx)
        result = self.fn(*args, **kwargs) if timeout is None else _call_sync_with_timeout(self.fn, timeout, self.name, args, kwargs)
        self.check_result(args, kwargs, result)
        self.agree(ctx, result)
        return result

    async def attempt_async(self, ctx: _runtime.ExecutionContext | None, args: tuple, kwargs: dict) -> Any:
        result = await _await_with_timeout(self, self.timeout_in(ctx), args, kwargs, ctx.run if ctx is not None else None)
        self.check_result(args, kwargs, result)
        if self.consensus is not None and ctx is not None:
            await asyncio.to_thread(self.agree, ctx, result)
        return result

    def agree(self, ctx: _runtime.ExecutionContext | None, result: Any) -> None:
        """``consensus_required``: the result is broadcast to the step's consensus targets and
        recorded only once agreed; a violation is a failure of the step (its recovery policy's
        ``consensus_violation`` rule decides), so the core does not record it a second time."""
        if self.consensus is None or ctx is None:
            return
        from . import consensus as _consensus

        targets, timeout, quorum = self.consensus
        _consensus.agree(result, targets, sender=self.agent or self.name, timeout=timeout, quorum=quorum, record=False)

    def finish(
        self,
        ctx: _runtime.ExecutionContext,
        seq: int,
        key: str | None,
        codec: Codec,
        args: tuple,
        kwargs: dict,
        result: Any,
        span: _trace.StepSpan | None,
    ) -> Any:
        try:
            data = codec.encode(result)
        except (TypeError, ValueError, OverflowError) as e:
            kind = f"{type(result).__module__}.{type(result).__qualname__}"
            raise TypeError(
                f"step {self.name!r} returned a value the {codec.name} codec cannot encode ({kind}): {e}; "
                "return plain data, or choose codec='pickle' for this step"
            ) from None
        spend = _runtime.current_spend.get()
        metadata = {CODEC_KEY: codec.name, **_spent()} if spend else {CODEC_KEY: codec.name}
        if span is None:
            ctx.run.record(
                seq,
                self.name,
                data,
                key=key,
                agent=self.agent,
                preconditions=self.pre_held,
                postconditions=self.post_held,
                metadata=metadata,
            )
            return result
        # The checkpoint's span, child of the step's, is recorded by the same native call; so is
        # the step's own span (a tuple: see `_trace.StepSpan`), ending it now: the common case
        # costs no second call and no conversion of attributes. A step span with captured
        # content is a `Span`, ended with its output after this.
        if type(span) is tuple:
            native = (span[0], span[1], span[2], span[4], True)
        else:
            native = (span.trace_id, span.span_id, None, 0, False)
        cid = ctx.run.record(
            seq,
            self.name,
            data,
            key=key,
            agent=self.agent,
            preconditions=self.pre_held,
            postconditions=self.post_held,
            metadata=metadata,
            span=native,
        )
        if type(span) is not tuple:
            span.attributes["omium.checkpoint_id"] = cid
        return result

    def step_key(self, seq: int, key: str | None) -> str:
        return key if key is not None else str(seq)


def _call_sync_with_timeout(fn: Callable[..., Any], timeout: float | None, name: str, args: tuple, kwargs: dict) -> Any:
    if timeout is None:
        return fn(*args, **kwargs)
    ctx = contextvars.copy_context()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"omium-step-{name}")
    try:
        fut = pool.submit(ctx.run, fn, *args, **kwargs)
        try:
            return fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise StepTimeoutError(
                f"step {name!r} did not finish within {timeout} s; nothing was recorded (its thread is left to finish on its own)"
            ) from None
    finally:
        pool.shutdown(wait=False)


def _spent() -> dict[str, str]:
    """The checkpoint metadata of what the running step reported with ``omium.record_spend``."""
    spend = _runtime.current_spend.get() or {}
    return spend_metadata(*(spend.get(k) or None for k in ("tokens_in", "tokens_out", "cost_usd")))


def _wrap_sync(step: _Step) -> Callable[..., Any]:
    # The step path in one frame where it can be (it runs once per step): no helper calls for
    # what is usually absent (preconditions, a fork's mutation, a timeout).
    current_step = _runtime.current_step
    current_step_name = _runtime.current_step_name
    current_spend = _runtime.current_spend
    mutations = _replay._mutations

    @functools.wraps(step.fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = step.begin_sync(args, kwargs)
        if started is None:
            step.check_pre(args, kwargs)
            return step.attempt_sync(None, args, kwargs)
        ctx, seq, key, codec, found = started
        if found is not None:
            return step.decode(found, codec)
        if key is None and mutations.get() is not None:
            args, kwargs = _replay.mutated(ctx, seq, args, kwargs)
        if step.pre:
            step.check_pre(args, kwargs)
        token = current_step.set(key if key is not None else str(seq))
        name_token = current_step_name.set(step.name)
        spend_token = current_spend.set({})
        span = _trace.step_span(step.name, seq, step.agent, args, kwargs, ctx.execution_id)
        try:
            try:
                result = step.attempt_sync(ctx, args, kwargs)
            except BaseException as e:
                if not _recovery.recoverable(e):
                    raise
                again = functools.partial(step.attempt_sync, ctx)
                result = _recovery.run_sync(_recovery.plan(step, ctx, seq, key, args, kwargs, e, lambda *a, **k: again(a, k)))
            out = step.finish(ctx, seq, key, codec, args, kwargs, result, span)
        except BaseException as e:
            _trace.end_step_span(span, e, None)
            raise
        finally:
            current_spend.reset(spend_token)
            current_step_name.reset(name_token)
            current_step.reset(token)
        _trace.end_step_span(span, None, out)
        return out

    wrapper.__omium_step__ = step.name  # type: ignore[attr-defined]
    return wrapper


def _wrap_async(step: _Step) -> Callable[..., Any]:
    @functools.wraps(step.fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Not `async def`: the position is taken now, when the coroutine is created, so
        # `asyncio.gather(a(), b())` records a before b whatever order they finish in.
        started = step.begin(args, kwargs)

        async def run() -> Any:
            if started is None:
                step.check_pre(args, kwargs)
                return await step.attempt_async(None, args, kwargs)
            ctx, seq, key, codec = started
            hit, value = step.replay(ctx, seq, key, codec)
            if hit:
                return value
            if key is None:
                a, kw = _replay.mutated(ctx, seq, args, kwargs)
            else:
                a, kw = args, kwargs
            step.check_pre(a, kw)
            token = _runtime.current_step.set(step.step_key(seq, key))
            name_token = _runtime.current_step_name.set(step.name)
            spend_token = _runtime.current_spend.set({})
            span = _trace.step_span(step.name, seq, step.agent, a, kw, ctx.execution_id)
            try:
                try:
                    result = await step.attempt_async(ctx, a, kw)
                except BaseException as e:
                    if not _recovery.recoverable(e):
                        raise
                    again = functools.partial(step.attempt_async, ctx)
                    result = await _recovery.run_async(_recovery.plan(step, ctx, seq, key, a, kw, e, lambda *x, **k: again(x, k)))
                if _slow_io(ctx):
                    # sync durability waits for an fsync: keep the event loop free meanwhile.
                    out = await asyncio.to_thread(contextvars.copy_context().run, step.finish, ctx, seq, key, codec, a, kw, result, span)
                else:
                    out = step.finish(ctx, seq, key, codec, a, kw, result, span)
            except BaseException as e:
                _trace.end_step_span(span, e, None)
                raise
            finally:
                _runtime.current_spend.reset(spend_token)
                _runtime.current_step_name.reset(name_token)
                _runtime.current_step.reset(token)
            _trace.end_step_span(span, None, out)
            return out

        return run()

    wrapper.__omium_step__ = step.name  # type: ignore[attr-defined]
    return wrapper


def _slow_io(ctx: _runtime.ExecutionContext) -> bool:
    try:
        return _runtime.store().durability == "sync"
    except OmiumError:
        return False


# How often a step that awaits looks for an operator's pause or cancel (seconds).
CONTROL_POLL_S = 0.2


async def _await_with_timeout(step: _Step, timeout: float | None, args: tuple, kwargs: dict, run: Any = None) -> Any:
    """Awaits the step's body, with its timeout; while it awaits, every ``CONTROL_POLL_S`` the
    run looks for a pause or cancel an operator asked for, and carries it out at once: the
    body is cancelled and the run raises ``ExecutionPaused`` / ``ExecutionCancelled``."""
    coro = step.fn(*args, **kwargs)
    if timeout is not None:
        coro = asyncio.wait_for(coro, timeout)
    try:
        if run is None:
            return await coro
        task = asyncio.ensure_future(coro)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=CONTROL_POLL_S)
                if done:
                    return task.result()
                await asyncio.to_thread(run.check_control, step.name)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    except asyncio.TimeoutError:
        raise StepTimeoutError(f"step {step.name!r} did not finish within {timeout} s; it was cancelled and nothing was recorded") from None


def checkpoint(
    name: str | Callable[..., Any] | None = None,
    *,
    preconditions: Sequence[Any] = (),
    postconditions: Sequence[Any] = (),
    retries: int = 0,
    timeout: float | None = None,
    key: Callable[..., str] | None = None,
    codec: str | Codec | None = None,
    agent: str | None = None,
    validators: Sequence[Callable[[Any], Any]] = (),
    policy: Any = None,
    consensus_required: bool = False,
    consensus_targets: Sequence[str] | None = None,
    consensus_timeout: float = 5.0,
    consensus_quorum: int | None = None,
) -> Any:
    """Makes a function a durable step (sync or async).

    ``preconditions`` and ``postconditions`` are CEL expressions over ``args``, ``kwargs`` and
    (postconditions) ``result`` — e.g. ``"result.verified == true"`` — or callables: a
    precondition callable receives the step's arguments, a postcondition callable its result.
    A failure of the step (an exception, its timeout, a failed postcondition, a validator
    flagging the result) goes to the recovery policy in force (see ``omium.policy``): retry,
    roll back, pause, notify, escalate, fall back. ``policy`` (a path, YAML or JSON text, a
    dict, or an ``omium.policy.Policy``) is this step's own policy, scope ``step:<name>``: it
    is stored as a new version when the store first runs a step and it differs from the version
    in force. ``retries`` re-runs the function on an exception when no policy rule applies
    (exponential backoff from 50 ms, capped at 2 s);
    ``timeout`` (seconds; default: the policy's step timeout) fails the attempt with
    :class:`~omium.StepTimeoutError`. ``validators`` are callables of the result returning
    False or a reason to flag a hallucination. ``key`` derives the step's identity from its
    arguments, for steps whose call order is not fixed. Outside an execution the function runs
    normally (conditions and validators are still checked).
    ``consensus_required=True`` makes the step's result a consensus hand-off: it is broadcast to
    ``consensus_targets`` (sender: ``agent``, else the step name) and the step is recorded only
    once a quorum (``consensus_quorum``, default a majority) agreed within
    ``consensus_timeout`` seconds; otherwise the step fails with
    :class:`~omium.ConsensusViolation` and its recovery policy decides (see
    ``omium.consensus``).
    """
    consensus = None
    if consensus_required:
        from . import consensus as _consensus

        where = "@omium.checkpoint(consensus_required=True) consensus_targets"
        targets = _consensus._check_targets(where, consensus_targets, consensus_timeout)
        consensus = (targets, float(consensus_timeout), consensus_quorum)
    elif consensus_targets is not None:
        raise ValueError("@omium.checkpoint: consensus_targets is given but consensus_required is not True")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"@omium.checkpoint must decorate a function, not {type(fn).__name__}")
        step_name = name if isinstance(name, str) else fn.__qualname__
        step = _Step(fn, step_name, preconditions, postconditions, retries, timeout, key, codec, agent, validators, consensus)
        if policy is not None:
            from . import policy as _policy

            _policy.attach(policy, f"step:{step_name}")
        if inspect.iscoroutinefunction(fn):
            return _wrap_async(step)
        return _wrap_sync(step)

    if callable(name):  # bare @omium.checkpoint
        return decorate(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"@omium.checkpoint(name): name must be a str, not {type(name).__name__}")
    return decorate


class Checkpoint:
    """Records explicit state as a durable step: ``with omium.Checkpoint("plan") as cp:``.

    On a first run, ``cp.update_state(**values)`` collects state and it is recorded when the
    block exits without an exception. On resume the block still runs (Python cannot skip it) but
    ``cp.restored`` is True and ``cp.state`` holds the recorded state; ``update_state`` is then
    ignored. Use ``if not cp.restored:`` around work that must not repeat.
    """

    def __init__(self, name: str, *, agent: str | None = None, codec: str | Codec | None = None, **initial_state: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"omium.Checkpoint(name): name must be a str, not {type(name).__name__}")
        self.name = name
        self.agent = agent
        self.codec = get_codec(codec) if codec is not None else None
        self.state: dict[str, Any] = dict(initial_state)
        self.restored = False
        self.checkpoint_id: str | None = None
        self._pos: tuple[_runtime.ExecutionContext, int, str | None, Codec] | None = None

    def update_state(self, **values: Any) -> None:
        if not self.restored:
            self.state.update(values)

    def __enter__(self) -> Checkpoint:
        ctx = _runtime.current.get()
        if ctx is None:
            return self
        seq, key = _position(ctx, None)
        codec = self.codec or ctx.codec
        self._pos = (ctx, seq, key, codec)
        found = ctx.run.recorded(seq, self.name, key)
        if found is not None:
            self.restored = True
            self.checkpoint_id = found[0]["id"]
            self.state = recorded_codec(found[0]["metadata"].get(CODEC_KEY), codec, f"checkpoint {self.name!r}").decode(found[1])
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None or self._pos is None or self.restored:
            return
        ctx, seq, key, codec = self._pos
        try:
            data = codec.encode(self.state)
        except (TypeError, ValueError, OverflowError) as e:
            raise TypeError(f"checkpoint {self.name!r}: state cannot be encoded by the {codec.name} codec: {e}") from None
        start = _trace.now_ns()
        self.checkpoint_id = ctx.run.record(
            seq, self.name, data, key=key, agent=self.agent, kind="snapshot", metadata={CODEC_KEY: codec.name}
        )
        attrs = {"omium.checkpoint_id": self.checkpoint_id, "omium.seq": seq, "omium.state_bytes": len(data)}
        _trace.leaf_span(f"checkpoint {self.name}", "checkpoint", start, attrs, self.agent)

    async def __aenter__(self) -> Checkpoint:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
