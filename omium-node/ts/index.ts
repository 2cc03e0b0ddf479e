/**
 * `omium`: the reliability layer for AI agents, for Node. Durable steps and workflows that
 * resume after a crash, rollback and fork over a checkpoint tree, recovery policies, traces;
 * on an embedded RocksDB store (the Rust core, through napi-rs).
 *
 * ```ts
 * import * as omium from "omium";
 * await omium.init({ path: ".omium" }); // or { url: "unix:///run/omium.sock" }: an `omium serve` daemon
 * const verifyKyc = omium.checkpoint("kyc_doc_validated", async (c: Customer) => ..., {
 *   postconditions: ["result.verified == true"],
 * });
 * const onboard = omium.workflow("customer_onboarding", async (c: Customer) => makeOffer(await verifyKyc(c)));
 * await onboard.run(customer, { executionId: "cust-42" }); // same id after a crash: resumes
 * await omium.rollback("cust-42", { to: "kyc_doc_validated" });
 * ```
 */
import native = require("./native");

export * as workflows from "./workflows";
export * as consensus from "./consensus";

export {
  OmiumError,
  StoreLockedError,
  StoreNotFoundError,
  NewerFormatError,
  NotAStoreError,
  OpenFailedError,
  StorageError,
  StoreClosedError,
  ExecutionNotFoundError,
  CheckpointNotFoundError,
  WrongExecutionError,
  NonDeterminismError,
  IntegrityError,
  ExecutionLeasedError,
  DecodeError,
  ReadOnlyError,
  InvalidArgumentError,
  NoConsistentCheckpointError,
  InvalidStateError,
  ConditionSyntaxError,
  ConditionFailed,
  ConditionError,
  StepTimeoutError,
  HallucinationDetected,
  ConsensusViolation,
  ToolDeniedError,
  WorkflowNotRegisteredError,
  ServerUnavailableError,
  UnauthorizedError,
  ForbiddenError,
  RateLimitedError,
  WorkflowError,
  AgentUnavailableError,
  StepFailedError,
  RunInterruptedError,
  ExecutionCancelled,
  InvalidMessageError,
  MessageNotFoundError,
  NotATargetError,
  ConsensusUnavailableError,
  SyncConflictError,
  SyncIncompleteError,
  LeaseLostError,
  ServerError,
  ReplayDivergence,
  BY_CODE as ERROR_CLASSES,
  type PolicyProblem,
  PolicyError,
  RecoveryOutcome,
  EscalatedError,
  ExecutionPaused,
  ExecutionRolledBack,
} from "./errors";
export { type Codec, CODEC_KEY, json as jsonCodec, msgpack as msgpackCodec } from "./codec";
export { type InitOptions, type Durability, init, shutdown, isInitialized, getExecutionId, store } from "./runtime";
export { type StepOptions, type Step, checkpoint, recordSpend } from "./steps";
export {
  type CheckpointInfo,
  type ExecutionInfo,
  type VerifyReport,
  type RollbackOptions,
  type ForkOptions,
  type RunOptions,
  Workflow,
  workflow,
  rollback,
  fork,
  history,
  getExecution,
  executions,
  resumable,
  recover,
  resume,
  verify,
  auditHead,
  registeredWorkflows,
  pull,
  push,
  syncStatus,
} from "./workflow";
export {
  acknowledgeAlert,
  type AlertTransition,
  type Alerts,
  alerts,
  evaluateAlerts,
  type Figures,
  type GroupBy,
  type MetricsQuery,
  type MetricsReport,
  metrics,
  startAlerts,
} from "./analytics";
export { type CloudEvent, type EventsOptions, events } from "./events";
export { type ControlOptions, type ControlReply, cancel, deleteExecution, escalate, pause, recoverExecution, retry } from "./control";
export {
  type Failure,
  type Notifier,
  type ApplyPolicyOptions,
  addNotifier,
  registerFallback,
  registerFix,
  setAnalyzer,
  addValidator,
  clearHooks,
  applyPolicy,
  policyVersions,
  failures,
  recoveryMetrics,
} from "./recovery";
export {
  type LlmOptions,
  type RunResult,
  type ForkAtOptions,
  type StepDiff,
  llmCall,
  llm,
  tool,
  callTool,
  replay,
  forkAt,
  diff,
  setPricing,
} from "./calls";
export {
  type SpanRecord,
  type TraceOptions,
  type SpanType,
  type SpanKind,
  type AttributeValue,
  Span,
  trace,
  spans,
  traceText,
  traceHtml,
  getTraceparent,
  enableOtlpExport,
} from "./trace";

/** The version of the native layer. */
export const nativeVersion: string = native.nativeVersion();
/** Whether the native addon was built with the cluster (consensus and remote sync; `npm run build:small` leaves it out). */
export const HAS_CLUSTER: boolean = native.hasCluster();
/** The store format version this build writes. */
export const FORMAT_VERSION: number = native.formatVersion();
/** Every code a core error can have; `ERROR_CLASSES[code]` is its class. */
export const ERROR_CODES: readonly string[] = native.errorCodes();
