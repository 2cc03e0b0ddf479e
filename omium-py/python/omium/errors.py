"""Omium's exceptions. Every error of the engine arrives as a subclass of :class:`OmiumError`
with a stable ``code`` (the same snake_case names as the Rust ``Error::code`` and the CLI's
``--json`` output), so callers can catch failures selectively."""

from __future__ import annotations


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


BY_CODE: dict[str, type[OmiumError]] = {
    cls.code: cls
    for cls in [
        StoreLockedError,
        StoreNotFoundError,
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
        StoreClosedError,
        ReadOnlyError,
        InvalidArgumentError,
        NoConsistentCheckpointError,
        InvalidStateError,
        StorageError,
        DecodeError,
    ]
}


def from_code(code: str, message: str) -> OmiumError:
    """The exception for an engine error code (used by the native module)."""
    cls = BY_CODE.get(code, OmiumError)
    return cls(message, code=code)
