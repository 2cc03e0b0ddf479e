"""Operator controls: pause, cancel, retry, recover or delete an execution from outside the code that
runs it. A pause or cancel of an execution a run holds reaches that run at its next step
boundary (the run raises :class:`omium.ExecutionPaused` / :class:`omium.ExecutionCancelled`
before the step's body runs); otherwise it applies at once. Every control is audited with
``by`` and ``reason`` and is an event of the feed. ``omium.resume`` continues a paused
execution."""

from __future__ import annotations

import json
from typing import Any

from . import _runtime


def _control(action: str, execution_id: str, reason: str | None, by: str | None) -> dict[str, Any]:
    return json.loads(_runtime.store().control(action, execution_id, reason, by))


def pause(execution_id: str, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Pauses an execution (status ``paused``) until :func:`omium.resume`. Returns
    ``{"result": "applied" | "requested", "status", ...}``: ``requested`` when a run holds it
    and stops at its next step boundary."""
    return _control("pause", execution_id, reason, by)


def cancel(execution_id: str, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Cancels an execution (status ``cancelled``): a run holding it stops at its next step
    boundary, and it does not run again until :func:`retry`."""
    return _control("cancel", execution_id, reason, by)


def retry(execution_id: str, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Makes a failed or cancelled execution resumable: ``omium.recover()`` (or a run with its
    id) continues it from its last checkpoint."""
    return _control("retry", execution_id, reason, by)


def recover_execution(execution_id: str, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Makes an execution resumable again whatever stopped it — a run that died (still
    ``running`` with no live run), a failure, a cancel, a pause: ``omium.recover()`` (or a run
    with its id) continues it from its last checkpoint. A completed execution, one already
    resumable, and one a live run holds are refused."""
    return _control("recover", execution_id, reason, by)


def escalate(execution_id: str, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Hands the execution's open failure to people: it is settled as escalated, the channels
    of its policy are told (event ``omium.failure.escalation``; the reply's ``notified`` says
    per channel ``delivered`` or why not), and the execution keeps its status."""
    return _control("escalate", execution_id, reason, by)


def delete_execution(execution_id: str, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Erases an execution (a data-subject request): its record, checkpoints, input and output,
    failure records and spans, and the chunks no other checkpoint uses. The audit log keeps who
    erased it; ``result["erased"]`` and the ``execution.deleted`` event count what (checkpoints,
    chunks, failure records, spans)."""
    return _control("delete", execution_id, reason, by)
