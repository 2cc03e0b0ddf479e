"""Multi-agent consensus: hand-offs between agents agreed on a Raft log.

A message an agent broadcasts to target agents is validated (against a JSON Schema when one is
given), appended to the Raft log, and *agreed* once its entry is committed and a quorum of the
targets acknowledged it (or voted the same value). A timeout or a split vote raises
:class:`~omium.ConsensusViolation` and is recorded as a ``consensus_violation`` failure for the
recovery policy. Messages of one execution are totally ordered.

By default the coordinator is a one-voter Raft group inside the store opened by
:func:`omium.init` (no network). :func:`connect` points the same calls at a cluster of
``omium node`` processes::

    mid = omium.consensus.broadcast("run-1", "planner", ["coder", "reviewer"], {"plan": "v2"})
    omium.consensus.acknowledge(mid, "coder")
    omium.consensus.acknowledge(mid, "reviewer", vote="approve")
    omium.consensus.await_agreement(mid, timeout=5.0)

Agents in this process can answer automatically: :func:`subscribe` registers a handler for an
agent, called with every message broadcast to it from this process; it returns ``None`` or
``True`` to acknowledge, ``False`` to stay silent, any other JSON value to vote that value.

The decorator form (the published SDK's signature) broadcasts a function's result and returns
it once agreed::

    @omium.consensus.broadcast(["reviewer", "qa"], timeout=5.0, sender_agent_id="planner")
    def plan(task): ...
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from . import _omium, _runtime
from .errors import OmiumError

__all__ = ["acknowledge", "await_agreement", "broadcast", "connect", "message", "status", "subscribe", "unsubscribe"]

_lock = threading.RLock()
_coordinator: _omium.Coordinator | None = None
_nodes: list[str] | None = None
_subscribers: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}


def _reset() -> None:
    """Stops the coordinator (before its store closes, or when the target changes)."""
    global _coordinator
    with _lock:
        if _coordinator is not None:
            _coordinator.close()
            _coordinator = None


_runtime._before_close.append(_reset)


def connect(nodes: str | Iterable[str] | None) -> None:
    """Uses the cluster at ``nodes`` (``"host:port"`` or a list of them; any node will do,
    requests follow the leader). ``None`` returns to the embedded group of the store. Violations
    are recorded in the store opened by :func:`omium.init` when there is one."""
    global _nodes
    if nodes is None:
        chosen = None
    else:
        chosen = [nodes] if isinstance(nodes, str) else list(nodes)
        if not chosen or not all(isinstance(n, str) and n for n in chosen):
            raise TypeError(f"omium.consensus.connect(nodes): expected host:port strings, not {nodes!r}")
    with _lock:
        _reset()
        _nodes = chosen
        if chosen is not None:
            _get()  # check the addresses now


def _get() -> _omium.Coordinator:
    global _coordinator
    with _lock:
        if _coordinator is None:
            store = _runtime.store() if (_nodes is None or _runtime.is_initialized()) else None
            _coordinator = _omium.Coordinator(store, _nodes)
        return _coordinator


def subscribe(agent: str, handler: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Lets ``handler`` answer for ``agent``: it is called with each message broadcast to the
    agent from this process (a dict: id, execution_id, seq, sender, targets, message, ...).
    Usable as a decorator: ``@omium.consensus.subscribe("reviewer")``."""
    if not isinstance(agent, str) or not agent:
        raise TypeError(f"omium.consensus.subscribe(agent): expected a non-empty str, not {agent!r}")

    def register(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        if not callable(fn):
            raise TypeError(f"omium.consensus.subscribe({agent!r}, handler): handler must be callable")
        with _lock:
            _subscribers.setdefault(agent, []).append(fn)
        return fn

    return register if handler is None else register(handler)


def unsubscribe(agent: str, handler: Callable[[dict[str, Any]], Any] | None = None) -> None:
    """Removes ``handler`` (or every handler) of ``agent``."""
    with _lock:
        if handler is None:
            _subscribers.pop(agent, None)
        else:
            _subscribers[agent] = [h for h in _subscribers.get(agent, []) if h is not handler]


def _json(what: str, value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"omium.consensus: {what} must be JSON-serialisable ({e})") from None


def _execution_id(explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    ctx = _runtime.current.get()
    if ctx is not None:
        return ctx.execution_id
    raise OmiumError(
        "omium.consensus: no execution: broadcast inside an @omium.workflow run, after omium.set_execution_id(...), or pass execution_id="
    )


def _send(execution_id: str, sender: str, targets: list[str], message: Any, schema: Any = None, quorum: int | None = None) -> str:
    if isinstance(targets, str) or not all(isinstance(t, str) for t in targets):
        raise TypeError(f"omium.consensus.broadcast(targets): expected a list of agent ids, not {targets!r}")
    if not isinstance(sender, str):
        raise TypeError(f"omium.consensus.broadcast(sender): expected a str, not {sender!r}")
    if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool)):
        raise TypeError(f"omium.consensus.broadcast(quorum): expected an int, not {quorum!r}")
    text = _json("the message", message)
    schema_text = None if schema is None else _json("the schema", schema)
    placed = json.loads(_get().broadcast(execution_id, sender, list(targets), text, schema_text, quorum))
    _deliver(placed, sender, list(targets), message)
    return placed["id"]


def _deliver(placed: dict[str, Any], sender: str, targets: list[str], message: Any) -> None:
    """Hands the message to the handlers subscribed for its targets; their answers are
    acknowledgements (or votes)."""
    with _lock:
        handlers = [(t, h) for t in targets for h in _subscribers.get(t, [])]
    if not handlers:
        return
    msg = {**placed, "sender": sender, "targets": targets, "message": message}
    for agent, handler in handlers:
        answer = handler(msg)
        if answer is False:
            continue
        vote = None if answer is None or answer is True else _json(f"the vote of {agent!r}", answer)
        _get().acknowledge(placed["id"], agent, vote)


def _answer(agent: str, msg: dict[str, Any]) -> bool | str:
    """How ``agent`` answers a workflow hand-off: its handlers are called in order and the
    first that does not return ``False`` answers (``None``/``True``: acknowledge, another value:
    vote it); all ``False`` is silence. An agent with no handler acknowledges."""
    with _lock:
        handlers = list(_subscribers.get(agent, []))
    if not handlers:
        return True
    for handler in handlers:
        answer = handler(msg)
        if answer is False:
            continue
        return True if answer is None or answer is True else _json(f"the vote of {agent!r}", answer)
    return False


def broadcast(*args: Any, **kwargs: Any) -> Any:
    """``broadcast(execution_id, sender, targets, message, schema=None, quorum=None)`` appends a
    message and returns its id (``execution_id=None`` means the current execution).

    ``broadcast(target_agents, timeout=5.0, sender_agent_id=None)`` is the decorator form: the
    decorated function's result is broadcast to ``target_agents`` (sender: ``sender_agent_id``,
    else the function's name) and returned once agreed; a violation raises
    :class:`~omium.ConsensusViolation`. It also takes ``quorum`` and ``schema``."""
    if (args and isinstance(args[0], (list, tuple))) or "target_agents" in kwargs:
        return _decorator(*args, **kwargs)
    return _direct(*args, **kwargs)


def _direct(execution_id: str | None, sender: str, targets: list[str], message: Any, schema: Any = None, quorum: int | None = None) -> str:
    return _send(_execution_id(execution_id), sender, targets, message, schema, quorum)


def acknowledge(message_id: str, agent: str, vote: Any = None) -> dict[str, Any]:
    """Records ``agent``'s acknowledgement of a message it is a target of, or its vote when
    ``vote`` is given. Returns the message's status (``{"state": "pending" | "agreed" |
    "violated", ...}``)."""
    return json.loads(_get().acknowledge(message_id, agent, None if vote is None else _json("the vote", vote)))


def await_agreement(message_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """Waits until the message is agreed and returns it; a timeout or a split vote raises
    :class:`~omium.ConsensusViolation` (recorded as a ``consensus_violation`` failure)."""
    return _await(message_id, timeout, True)


def _await(message_id: str, timeout: float, record: bool) -> dict[str, Any]:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"omium.consensus.await_agreement(timeout): expected seconds >= 0, not {timeout!r}")
    return json.loads(_get().await_agreement(message_id, float(timeout), record))


def status(execution_id: str | None = None) -> list[dict[str, Any]]:
    """The messages of an execution (default: the current one) in their agreed order."""
    return json.loads(_get().status(_execution_id(execution_id)))


def message(message_id: str) -> dict[str, Any]:
    """One message, with its acknowledgements and status."""
    return json.loads(_get().message(message_id))


def agree(
    result: Any,
    targets: list[str],
    *,
    sender: str,
    timeout: float,
    quorum: int | None = None,
    schema: Any = None,
    record: bool = True,
) -> dict[str, Any]:
    """Broadcasts ``result`` in the current execution and waits for its agreement (used by the
    decorator and by ``@omium.checkpoint(consensus_required=True)``)."""
    mid = _send(_execution_id(None), sender, targets, result, schema, quorum)
    return _await(mid, timeout, record)


def _check_targets(where: str, targets: Any, timeout: Any) -> list[str]:
    ok = isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) and t for t in targets)
    if not ok:
        raise TypeError(f"{where}: target agents must be a non-empty list of agent ids, not {targets!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"{where}: timeout must be a positive number of seconds, not {timeout!r}")
    return list(targets)


def _decorator(
    target_agents: list[str], timeout: float = 5.0, sender_agent_id: str | None = None, *, quorum: int | None = None, schema: Any = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    targets = _check_targets("@omium.consensus.broadcast", target_agents, timeout)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sender = sender_agent_id or fn.__qualname__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                result = await fn(*args, **kwargs)
                # to_thread carries the context (the current execution) into the worker thread.
                await asyncio.to_thread(agree, result, targets, sender=sender, timeout=timeout, quorum=quorum, schema=schema)
                return result

            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            agree(result, targets, sender=sender, timeout=timeout, quorum=quorum, schema=schema)
            return result

        return run

    return decorate
