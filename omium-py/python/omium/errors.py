"""Omium's exceptions. Every error of the engine arrives as a subclass of :class:`OmiumError`
with a stable ``code`` (the same snake_case names as the Rust ``Error::code`` and the CLI's
``--json`` output), so callers can catch failures selectively."""

from __future__ import annotations

import json
from typing import Any


class OmiumError(Exception):
    """Base class of every Omium error."""

    code: str = "omium_error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class StoreLockedError(OmiumError):
    """Another process holds the store for writing."""

    code = "store_locked"


class StoreNotFoundError(OmiumError, FileNotFoundError):
    code = "store_not_found"


class NotAStoreError(OmiumError):
    """The path holds something that is not an Omium store."""

    code = "not_a_store"


class OpenFailedError(OmiumError, OSError):
    """The store could not be opened (permissions, disk, RocksDB); the message says why."""

    code = "open_failed"


class NewerFormatError(OmiumError):
    """The store (or a record in it) was written by a newer Omium."""

    code = "newer_format"


class IntegrityError(OmiumError):
    """Stored bytes do not match their hash; the message names the checkpoint."""

    code = "integrity"


class NonDeterminismError(OmiumError):
    """The code calls a different step where the journal recorded another one."""

    code = "non_determinism"


class ConditionFailed(OmiumError):
    """A pre- or postcondition of a step did not hold; nothing was recorded."""

    code = "condition_failed"


class ConditionError(ConditionFailed):
    """A condition raised or could not be evaluated (e.g. a missing field); nothing was recorded."""

    code = "condition_error"


class ConditionSyntaxError(OmiumError, ValueError):
    """A condition expression does not parse."""

    code = "condition_syntax"


class ExecutionNotFoundError(OmiumError, LookupError):
    code = "execution_not_found"


class CheckpointNotFoundError(OmiumError, LookupError):
    code = "checkpoint_not_found"


class WrongExecutionError(OmiumError, ValueError):
    """A rollback target belongs to another execution."""

    code = "wrong_execution"


class ExecutionLeasedError(OmiumError):
    """Another run holds the execution."""

    code = "execution_leased"


class SyncConflictError(OmiumError):
    """An execution advanced on another store: the push or pull was refused, nothing was merged."""

    code = "sync_conflict"


class StoreClosedError(OmiumError):
    code = "store_closed"


class ReadOnlyError(OmiumError):
    code = "read_only"


class InvalidArgumentError(OmiumError, ValueError):
    code = "invalid_argument"


class NoConsistentCheckpointError(OmiumError, LookupError):
    code = "no_consistent_checkpoint"


class InvalidStateError(OmiumError):
    code = "invalid_state"


class StorageError(OmiumError, OSError):
    code = "storage"


class DecodeError(OmiumError):
    code = "decode"


class WorkflowNotRegisteredError(OmiumError, LookupError):
    """recover() found an execution whose workflow this process has not defined."""

    code = "workflow_not_registered"


class StepTimeoutError(OmiumError, TimeoutError):
    code = "step_timeout"


class PolicyError(OmiumError, ValueError):
    """A policy document is invalid. The message reads ``file:line:column: path: problem``;
    the attributes give each part (``expected`` lists the valid choices, ``suggestion`` the
    nearest one)."""

    code = "invalid_policy"

    def __init__(self, message: str = "", details: dict[str, Any] | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        d = details or {}
        self.file: str | None = d.get("file")
        self.line: int | None = d.get("line")
        self.column: int | None = d.get("column")
        self.path: str = d.get("path") or ""
        self.problem: str = d.get("problem") or message
        self.value: str | None = d.get("value")
        self.expected: list[str] = list(d.get("expected") or [])
        self.suggestion: str | None = d.get("suggestion")


class HallucinationDetected(OmiumError):
    """Raise it from a step (or let a validator flag the result) when an output is not
    supported by its inputs; the recovery policy's ``hallucination_detected`` rule handles it."""

    code = "hallucination_detected"


class ConsensusViolation(OmiumError):
    """Agents did not agree on a hand-off (a timeout or a split vote); handled by the
    ``consensus_violation`` rule."""

    code = "consensus_violation"


class InvalidMessageError(OmiumError, ValueError):
    """A broadcast message failed its JSON Schema (or is malformed); it was not appended."""

    code = "invalid_message"


class MessageNotFoundError(OmiumError, LookupError):
    """No consensus message has this id."""

    code = "message_not_found"


class NotATargetError(OmiumError, ValueError):
    """An agent acknowledged a message it was not a target of."""

    code = "not_a_target"


class ConsensusUnavailableError(OmiumError, ConnectionError):
    """The Raft group cannot serve the request now (no leader elected, nodes unreachable)."""

    code = "consensus_unavailable"


class ToolDeniedError(OmiumError, PermissionError):
    """A tool outside the policy's ``tool_whitelist`` was called through ``omium.tool``."""

    code = "tool_denied"


class RecoveryOutcome(OmiumError):
    """Base of the exceptions a recovery policy ends a step with; ``failure`` is the recorded
    failure (a dict, as ``omium.failures()`` returns them)."""

    def __init__(self, message: str = "", *, failure: dict[str, Any] | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.failure: dict[str, Any] = failure or {}


class EscalatedError(RecoveryOutcome):
    """The policy escalated the failure: people were notified and the step failed."""

    code = "escalated"


class ExecutionPaused(RecoveryOutcome):
    """The policy paused the execution for a human; ``omium.resume(execution_id)`` continues it."""

    code = "paused"

    def __init__(self, message: str = "", *, execution_id: str = "", reason: str = "", failure: dict[str, Any] | None = None) -> None:
        super().__init__(message, failure=failure)
        self.execution_id = execution_id
        self.reason = reason


class ExecutionRolledBack(RecoveryOutcome):
    """The policy rolled the execution back. A workflow re-runs itself from the rollback
    target; code run with ``omium.execution()`` sees this exception and runs its block again."""

    code = "rolled_back"

    def __init__(
        self, message: str = "", *, execution_id: str = "", to: str = "last_consistent", failure: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, failure=failure)
        self.execution_id = execution_id
        self.to = to


class WorkflowError(OmiumError, ValueError):
    """A workflow document is invalid. ``problems`` lists every problem as a dict with
    ``file``, ``line``, ``column``, ``path``, ``problem``, ``value``, ``suggestion`` and the
    one-line ``message`` (``file:line:column: path: problem``)."""

    code = "invalid_workflow"

    def __init__(self, message: str = "", problems: list[dict[str, Any]] | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.problems: list[dict[str, Any]] = list(problems or [])


class StepFailedError(OmiumError):
    """A workflow step failed and its recovery policy gave up; re-running the execution id
    resumes the workflow at that step."""

    code = "step_failed"


class AgentUnavailableError(OmiumError):
    """A workflow agent cannot run: it is not bound, or its ``image:`` needs a container
    runtime that is not installed."""

    code = "agent_unavailable"


class ExecutionCancelled(OmiumError):
    """An operator cancelled the execution (``omium cancel``, ``omium.cancel``); its run stopped
    at a step boundary. It does not run again until ``omium.retry(execution_id)``."""

    code = "cancelled"


class RunInterruptedError(OmiumError):
    """The run was interrupted (Ctrl-C, shutdown) before the step finished; nothing was recorded."""

    code = "interrupted"


class ServerUnavailableError(OmiumError, ConnectionError):
    """No ``omium serve`` daemon (or cluster node) answers at the URL given to ``omium.init``."""

    code = "server_unavailable"


class UnauthorizedError(OmiumError, PermissionError):
    """The daemon refused this process's API key (``api_key=``, ``$OMIUM_API_KEY``)."""

    code = "unauthorized"


class ForbiddenError(OmiumError, PermissionError):
    """The daemon knows this process's key, but its roles or the daemon's authorization
    policies do not allow the call."""

    code = "forbidden"


class RateLimitedError(OmiumError):
    """The key sent more requests than its rate allows; the message says when to retry."""

    code = "rate_limited"


class SyncIncompleteError(OmiumError):
    """The cluster lacked chunks a push referenced; the store sends them again."""

    code = "sync_incomplete"


class LeaseLostError(OmiumError):
    """Another store took this execution over in the cluster (it pulled it after this store's
    lease ran out): this run stopped before its next step body. Pull the execution to run it
    here again."""

    code = "lease_lost"


class ServerError(OmiumError):
    """A daemon or node answered an error of a kind this version does not know."""

    code = "server_error"


class ReplayDivergence(OmiumError):
    """A replayed run made a request that does not match the recording (or one more or one
    fewer than it recorded). ``index`` is the call; ``recorded`` and ``actual`` are the two
    canonical requests (None where there is none)."""

    code = "replay_divergence"

    def __init__(self, message: str = "", *, index: int = 0, recorded: Any = None, actual: Any = None) -> None:
        super().__init__(message)
        self.index = index
        self.recorded = recorded
        self.actual = actual


BY_CODE: dict[str, type[OmiumError]] = {
    cls.code: cls
    for cls in [
        StoreLockedError,
        StoreNotFoundError,
        NotAStoreError,
        OpenFailedError,
        NewerFormatError,
        IntegrityError,
        NonDeterminismError,
        ConditionFailed,
        ConditionError,
        ConditionSyntaxError,
        ExecutionNotFoundError,
        CheckpointNotFoundError,
        WrongExecutionError,
        ExecutionLeasedError,
        SyncConflictError,
        StoreClosedError,
        ReadOnlyError,
        InvalidArgumentError,
        NoConsistentCheckpointError,
        InvalidStateError,
        StorageError,
        DecodeError,
        PolicyError,
        HallucinationDetected,
        ConsensusViolation,
        InvalidMessageError,
        MessageNotFoundError,
        NotATargetError,
        ConsensusUnavailableError,
        ToolDeniedError,
        WorkflowError,
        StepFailedError,
        AgentUnavailableError,
        EscalatedError,
        ExecutionPaused,
        ExecutionRolledBack,
        ExecutionCancelled,
        RunInterruptedError,
        ServerUnavailableError,
        UnauthorizedError,
        ForbiddenError,
        RateLimitedError,
        SyncIncompleteError,
        LeaseLostError,
        ReplayDivergence,
        ServerError,
    ]
}


def from_code(code: str, message: str, details: str | None = None) -> OmiumError:
    """The exception for an engine error code (used by the native module), with the details
    (JSON text) some errors carry. Every code of the core has a class of its own
    (tests/test_errors.py checks it against ``_omium.ERROR_CODES``)."""
    cls = BY_CODE.get(code, OmiumError)
    if cls is ReplayDivergence and details:
        d = json.loads(details)
        err: OmiumError = ReplayDivergence(message, index=d.get("index", 0), recorded=d.get("recorded"), actual=d.get("actual"))
    else:
        err = cls(message)
    err.code = code
    return err
