"""Remote sync from Python: pull an execution another machine ran, wait for pushes, and see
what the syncer did (``omium.init(remote=...)`` starts it)."""

from __future__ import annotations

import json
import warnings
from typing import Any

from . import _runtime
from .errors import OmiumError


def pull(execution_id: str) -> Any:
    """Fetches ``execution_id`` from the cluster into this store and takes it over, so that
    running its workflow here (or :func:`omium.recover`) resumes it: finished steps replay,
    the rest run here. Raises :class:`ExecutionLeasedError` while another store's run holds it
    and :class:`SyncConflictError` when this store has steps of it the cluster does not."""
    from ._workflow import ExecutionInfo

    if not isinstance(execution_id, str) or not execution_id:
        raise TypeError(f"omium.pull(execution_id) must be a non-empty str, not {execution_id!r}")
    return ExecutionInfo.of(_runtime.store().pull(execution_id))


def push(timeout: float = 30.0) -> None:
    """Waits until every change made so far is in the cluster (background sync pushes within
    about 50 ms; this is for the moment you need it there, e.g. before the process exits)."""
    _runtime.store().sync_flush(timeout)


def sync_status() -> dict[str, Any]:
    """What the syncer sent and received: rounds, checkpoints and chunks pushed, chunks skipped
    because the cluster had them, bytes sent, executions pulled, and ``conflicts``
    (``{execution_id: error}``) for executions the cluster refused."""
    return json.loads(_runtime.store().sync_report())


def pull_abandoned() -> list[str]:
    """Pulls every execution another store left unfinished in the cluster and no longer
    holds (the core skips those another store took over first, and warns of conflicts); the
    ids pulled. :func:`omium.recover` calls it when the store syncs."""
    pulled, skipped = _runtime.store().pull_abandoned()
    for execution_id, why in skipped:
        warnings.warn(f"omium.recover(): not pulling {execution_id!r}: {why}", RuntimeWarning, stacklevel=3)
    return pulled


def syncing() -> bool:
    try:
        return _runtime.config().remote
    except OmiumError:
        return False
