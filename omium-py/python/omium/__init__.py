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

from . import policy, workflows
from ._omium import FORMAT_VERSION, Store, __version__
from ._recovery import (
    FailureInfo,
    add_notifier,
    add_validator,
    call_tool,
    failures,
    metrics,
    register_fallback,
    register_fix,
    set_analyzer,
    tool,
)
from ._replay import ReplayDivergence, RunResult, StepDiff, diff, llm, llm_call, replay, set_pricing, tool_call
from ._runtime import init, is_initialized, shutdown
from ._steps import Checkpoint, checkpoint
from ._trace import Span, enable_otlp_export, extract, get_traceparent, inject, spans, trace, trace_html, trace_text
from ._trace import configure as configure_tracing
from ._trace import flush as flush_traces
from ._workflow import (
    CheckpointInfo,
    ExecutionInfo,
    VerifyReport,
    Workflow,
    arecover,
    aresume,
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
    resume,
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
    ConsensusViolation,
    DecodeError,
    EscalatedError,
    ExecutionLeasedError,
    ExecutionNotFoundError,
    ExecutionPaused,
    ExecutionRolledBack,
    HallucinationDetected,
    IntegrityError,
    InvalidArgumentError,
    InvalidStateError,
    NewerFormatError,
    NoConsistentCheckpointError,
    NonDeterminismError,
    OmiumError,
    PolicyError,
    ReadOnlyError,
    RecoveryOutcome,
    StepTimeoutError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
    ToolDeniedError,
    WorkflowNotRegisteredError,
    WrongExecutionError,
)
from .errors import AgentUnavailableError, ConsensusUnavailableError, StepFailedError, WorkflowError
from .instrument import instrument_crewai, instrument_langgraph

__all__ = [
    "Checkpoint",
    "CheckpointInfo",
    "CheckpointNotFoundError",
    "Codec",
    "ConditionError",
    "ConditionFailed",
    "ConditionSyntaxError",
    "ConsensusViolation",
    "DecodeError",
    "EscalatedError",
    "ExecutionInfo",
    "ExecutionLeasedError",
    "ExecutionNotFoundError",
    "ExecutionPaused",
    "ExecutionRolledBack",
    "FORMAT_VERSION",
    "FailureInfo",
    "HallucinationDetected",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidStateError",
    "NewerFormatError",
    "NoConsistentCheckpointError",
    "NonDeterminismError",
    "OmiumError",
    "PolicyError",
    "ReadOnlyError",
    "RecoveryOutcome",
    "ReplayDivergence",
    "RunResult",
    "Span",
    "StepDiff",
    "StepTimeoutError",
    "StorageError",
    "Store",
    "StoreClosedError",
    "StoreLockedError",
    "StoreNotFoundError",
    "ToolDeniedError",
    "VerifyReport",
    "Workflow",
    "WorkflowNotRegisteredError",
    "WrongExecutionError",
    "__version__",
    "add_notifier",
    "add_validator",
    "arecover",
    "aresume",
    "branch",
    "call_tool",
    "checkpoint",
    "configure_tracing",
    "diff",
    "enable_otlp_export",
    "execution",
    "executions",
    "extract",
    "failures",
    "flush_traces",
    "fork",
    "get_codec",
    "get_execution",
    "get_execution_id",
    "get_traceparent",
    "history",
    "init",
    "inject",
    "instrument_crewai",
    "instrument_langgraph",
    "is_initialized",
    "llm",
    "llm_call",
    "metrics",
    "policy",
    "recover",
    "register_fallback",
    "register_fix",
    "registered_workflows",
    "replay",
    "resumable",
    "resume",
    "rollback",
    "set_analyzer",
    "set_execution_id",
    "set_pricing",
    "shutdown",
    "spans",
    "tool",
    "tool_call",
    "trace",
    "trace_html",
    "trace_text",
    "verify",
    "workflow",
]
