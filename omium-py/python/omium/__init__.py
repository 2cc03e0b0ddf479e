"""Omium: the reliability layer for AI agents.

Durable steps (``@omium.checkpoint``), durable workflows that resume after a crash
(``@omium.workflow``), rollback and fork over a checkpoint tree, all recorded in an embedded
RocksDB store (``omium.init(path=...)``; no server)::

    import omium
    omium.init(path=".omium", project="onboarding")

    @omium.checkpoint("kyc_doc_validated", postconditions=["result.verified == true"], retries=3)
    def verify_kyc(customer): ...

    @omium.workflow("customer_onboarding")
    def onboard(customer):
        return make_offer(credit_score(verify_kyc(customer)))

    onboard.run(customer, execution_id="cust-42")   # the same id again resumes it
    omium.rollback("cust-42", to="kyc_doc_validated")
"""

from ._omium import FORMAT_VERSION, Store, __version__
from ._runtime import init, is_initialized, shutdown
from ._steps import Checkpoint, checkpoint
from ._workflow import (
    CheckpointInfo,
    ExecutionInfo,
    VerifyReport,
    Workflow,
    arecover,
    branch,
    execution,
    executions,
    fork,
    get_execution,
    get_execution_id,
    history,
    recover,
    registered_workflows,
    resumable,
    rollback,
    set_execution_id,
    verify,
    workflow,
)
from .codecs import Codec, get_codec
from .errors import (
    CheckpointNotFoundError,
    ConditionError,
    ConditionFailed,
    ConditionSyntaxError,
    DecodeError,
    ExecutionLeasedError,
    ExecutionNotFoundError,
    IntegrityError,
    InvalidArgumentError,
    InvalidStateError,
    NewerFormatError,
    NoConsistentCheckpointError,
    NonDeterminismError,
    OmiumError,
    ReadOnlyError,
    StepTimeoutError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
    WorkflowNotRegisteredError,
    WrongExecutionError,
)

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointInfo",
    "CheckpointNotFoundError",
    "Codec",
    "ConditionError",
    "ConditionFailed",
    "ConditionSyntaxError",
    "DecodeError",
    "ExecutionInfo",
    "ExecutionLeasedError",
    "ExecutionNotFoundError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidStateError",
    "NewerFormatError",
    "NoConsistentCheckpointError",
    "NonDeterminismError",
    "OmiumError",
    "ReadOnlyError",
    "StepTimeoutError",
    "Store",
    "StorageError",
    "StoreClosedError",
    "StoreLockedError",
    "StoreNotFoundError",
    "VerifyReport",
    "Workflow",
    "WorkflowNotRegisteredError",
    "WrongExecutionError",
    "__version__",
    "arecover",
    "branch",
    "checkpoint",
    "execution",
    "executions",
    "fork",
    "get_codec",
    "get_execution",
    "get_execution_id",
    "history",
    "init",
    "is_initialized",
    "recover",
    "registered_workflows",
    "resumable",
    "rollback",
    "set_execution_id",
    "shutdown",
    "verify",
    "workflow",
]
