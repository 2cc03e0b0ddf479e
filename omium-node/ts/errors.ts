/**
 * Errors of the `omium` package. Every error Omium raises is an {@link OmiumError} with a
 * stable `code` (the same snake_case codes as the Python package, the C header and the CLI's
 * `--json`), so code can branch on `err.code` or on the subclass.
 */

export class OmiumError extends Error {
  /** Stable snake_case code of the error kind. */
  readonly code: string;
  constructor(message: string, code = "omium_error") {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Another process (or another handle in this one) writes the store: one writer per store. */
export class StoreLockedError extends OmiumError {}
/** No Omium store at the path (read-only opens do not create one). */
export class StoreNotFoundError extends OmiumError {}
/** The store or a record was written by a newer Omium. */
export class NewerFormatError extends OmiumError {}
/** The directory is a RocksDB database but not an Omium store. */
export class NotAStoreError extends OmiumError {}
/** The store could not be opened for another reason (permissions, I/O). */
export class OpenFailedError extends OmiumError {}
/** RocksDB failed while reading or writing. */
export class StorageError extends OmiumError {}
/** The store handle was closed (`shutdown()` or `init()` of another store). */
export class StoreClosedError extends OmiumError {}
export class ExecutionNotFoundError extends OmiumError {}
export class CheckpointNotFoundError extends OmiumError {}
/** A checkpoint of another execution than the one named. */
export class WrongExecutionError extends OmiumError {}
/** A resumed run calls a different step at a recorded position; the message names both. */
export class NonDeterminismError extends OmiumError {}
/** Stored bytes do not match their hashes; the message names the checkpoint. */
export class IntegrityError extends OmiumError {}
/** The execution is being run by another run of this store. */
export class ExecutionLeasedError extends OmiumError {}
/** A stored record or state cannot be decoded. */
export class DecodeError extends OmiumError {}
/** The store was opened read-only and the call needs the writer. */
export class ReadOnlyError extends OmiumError {}
/** An argument has the wrong type or value; the message names it. */
export class InvalidArgumentError extends OmiumError {}
/** No checkpoint of the execution passed its checks and verified. */
export class NoConsistentCheckpointError extends OmiumError {}
/** The execution is in a state that does not allow the call. */
export class InvalidStateError extends OmiumError {}
/** A CEL condition does not parse. */
export class ConditionSyntaxError extends OmiumError {}
/** A precondition or postcondition does not hold: nothing was recorded. */
export class ConditionFailed extends OmiumError {}
/** A condition could not be evaluated. */
export class ConditionError extends ConditionFailed {}
/** A step ran longer than its timeout; nothing was recorded. */
export class StepTimeoutError extends OmiumError {}
/** A validator flagged a step's result (handled by the `hallucination_detected` rule). */
export class HallucinationDetected extends OmiumError {}
/** Agents did not agree (handled by the `consensus_violation` rule). */
export class ConsensusViolation extends OmiumError {}
/** A tool outside the policy's allowlist was called. */
export class ToolDeniedError extends OmiumError {}
/** An execution to recover belongs to a workflow not defined in this process. */
export class WorkflowNotRegisteredError extends OmiumError {}

/** Where a policy problem is and what was expected. */
export interface PolicyProblem {
  file: string | null;
  line: number;
  column: number;
  path: string;
  problem: string;
  value: string | null;
  expected: string[];
  suggestion: string | null;
}

/** A policy document is invalid: `details` says where (file, line, column) and why. */
export class PolicyError extends OmiumError {
  readonly details: PolicyProblem | undefined;
  constructor(message: string, code = "invalid_policy", details?: PolicyProblem) {
    super(message, code);
    this.details = details;
  }
}

/** A recovery policy ended the step's handling: the subclasses say how. */
export class RecoveryOutcome extends OmiumError {
  /** The failure record (type, step, attempts, actions taken). */
  readonly failure: Record<string, unknown>;
  constructor(message: string, code: string, failure: Record<string, unknown> = {}) {
    super(message, code);
    this.failure = failure;
  }
}
/** The policy escalated the failure (notifiers and webhooks were called). */
export class EscalatedError extends RecoveryOutcome {}
/** No `omium serve` daemon answers at the URL given to `omium.init({ url })` (or it went away). */
export class ServerUnavailableError extends OmiumError {}
/** The `omium serve` daemon needs an API key this process did not give (`apiKey`, `$OMIUM_API_KEY`). */
export class UnauthorizedError extends OmiumError {}
/** The daemon knows this process's key, but its roles or authorization policies do not allow the call. */
export class ForbiddenError extends OmiumError {}
/** The key sent more requests than its rate allows; the message says when to retry. */
export class RateLimitedError extends OmiumError {}
/** A workflow spec is invalid (the message names file, line and column). */
export class WorkflowError extends OmiumError {}
/** A workflow agent cannot run: it is not bound, or its image needs a missing container runtime. */
export class AgentUnavailableError extends OmiumError {}
/** A workflow step failed and its policy gave up. */
export class StepFailedError extends OmiumError {}
/** The run was interrupted before the step finished; nothing was recorded. */
export class RunInterruptedError extends OmiumError {}
/** An operator cancelled the execution (`omium cancel`, `omium.cancel`); its run stopped at a step boundary. `omium.retry()` makes it resumable. */
export class ExecutionCancelled extends OmiumError {}
/** A consensus message is invalid (schema, targets, quorum). */
export class InvalidMessageError extends OmiumError {}
/** No consensus message has that id. */
export class MessageNotFoundError extends OmiumError {}
/** An agent acknowledged a message it was not a target of. */
export class NotATargetError extends OmiumError {}
/** The Raft group cannot serve the request now (no leader, nodes unreachable). */
export class ConsensusUnavailableError extends OmiumError {}
/** The cluster has another branch or a live holder of the execution. */
export class SyncConflictError extends OmiumError {}
/** The cluster lacked chunks a push referenced; the store sends them again. */
export class SyncIncompleteError extends OmiumError {}
/**
 * Another store took this execution over in the cluster (it pulled it after this store's lease
 * ran out): this run stopped before its next step body. Pull the execution to run it here again.
 */
export class LeaseLostError extends OmiumError {}
/** A daemon or node answered an error of a kind this version does not know. */
export class ServerError extends OmiumError {}
/**
 * A replayed run made a request that does not match the recording (or one more or one fewer
 * than it recorded): `index` is the call, `recorded` and `actual` the two canonical requests.
 */
export class ReplayDivergence extends OmiumError {
  readonly index: number;
  readonly recorded: unknown;
  readonly actual: unknown;
  constructor(message: string, code = "replay_divergence", details: { index?: number; recorded?: unknown; actual?: unknown } = {}) {
    super(message, code);
    this.index = details.index ?? 0;
    this.recorded = details.recorded ?? null;
    this.actual = details.actual ?? null;
  }
}
/** The policy paused the execution until a human calls `resume()`. */
export class ExecutionPaused extends RecoveryOutcome {
  readonly executionId: string;
  readonly reason: string;
  constructor(message: string, executionId = "", reason = "", failure: Record<string, unknown> = {}) {
    super(message, "paused", failure);
    this.executionId = executionId;
    this.reason = reason;
  }
}
/** The policy rolled the execution back; its workflow runs again from the target. */
export class ExecutionRolledBack extends RecoveryOutcome {
  readonly executionId: string;
  readonly to: string;
  constructor(message: string, executionId = "", to = "last_consistent", failure: Record<string, unknown> = {}) {
    super(message, "rolled_back", failure);
    this.executionId = executionId;
    this.to = to;
  }
}

/**
 * The class of every code a core error can have (`native.errorCodes()`; a test fails when a
 * code has no class of its own).
 */
export const BY_CODE: Record<string, new (message: string, code: string) => OmiumError> = {
  store_locked: StoreLockedError,
  store_not_found: StoreNotFoundError,
  newer_format: NewerFormatError,
  not_a_store: NotAStoreError,
  open_failed: OpenFailedError,
  storage: StorageError,
  store_closed: StoreClosedError,
  execution_not_found: ExecutionNotFoundError,
  checkpoint_not_found: CheckpointNotFoundError,
  wrong_execution: WrongExecutionError,
  non_determinism: NonDeterminismError,
  integrity: IntegrityError,
  execution_leased: ExecutionLeasedError,
  decode: DecodeError,
  read_only: ReadOnlyError,
  invalid_argument: InvalidArgumentError,
  no_consistent_checkpoint: NoConsistentCheckpointError,
  invalid_state: InvalidStateError,
  condition_syntax: ConditionSyntaxError,
  condition_error: ConditionError,
  invalid_policy: PolicyError,
  invalid_workflow: WorkflowError,
  agent_unavailable: AgentUnavailableError,
  step_failed: StepFailedError,
  escalated: EscalatedError,
  paused: ExecutionPaused,
  rolled_back: ExecutionRolledBack,
  tool_denied: ToolDeniedError,
  interrupted: RunInterruptedError,
  cancelled: ExecutionCancelled,
  invalid_message: InvalidMessageError,
  message_not_found: MessageNotFoundError,
  not_a_target: NotATargetError,
  consensus_violation: ConsensusViolation,
  consensus_unavailable: ConsensusUnavailableError,
  server_unavailable: ServerUnavailableError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  rate_limited: RateLimitedError,
  sync_conflict: SyncConflictError,
  sync_incomplete: SyncIncompleteError,
  lease_lost: LeaseLostError,
  replay_divergence: ReplayDivergence,
  server_error: ServerError,
};

const DETAILS = "\n--omium-details--\n";

/**
 * The `OmiumError` for an error thrown by the native layer (`[code] message`). Errors that are
 * not Omium's (a wrong argument type caught by napi) become `InvalidArgumentError`s; anything
 * else is returned unchanged.
 */
export function fromNative(e: unknown): unknown {
  if (!(e instanceof Error) || e instanceof OmiumError) return e;
  const m = /^\[([a-z_]+)\] ([\s\S]*)$/.exec(e.message);
  if (m === null) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (code === "InvalidArg" || code.endsWith("Expected"))) {
      const err = new InvalidArgumentError(`wrong argument type: ${e.message}`, "invalid_argument");
      err.cause = e;
      return err;
    }
    return e;
  }
  const code = m[1] as string;
  let message = m[2] as string;
  // Details the core gives with some errors (a policy problem, a replay divergence), as JSON.
  let details: Record<string, unknown> | undefined;
  const at = message.indexOf(DETAILS);
  if (at >= 0) {
    details = JSON.parse(message.slice(at + DETAILS.length)) as Record<string, unknown>;
    message = message.slice(0, at);
  }
  let err: OmiumError;
  if (code === "invalid_policy") err = new PolicyError(message, code, details as PolicyProblem | undefined);
  else if (code === "replay_divergence") err = new ReplayDivergence(message, code, details);
  else {
    const Cls = BY_CODE[code] ?? OmiumError;
    // These take the execution and reason or target second: the core's errors have none.
    err = Cls === ExecutionPaused || Cls === ExecutionRolledBack ? new (Cls as typeof ExecutionPaused)(message) : new Cls(message, code);
  }
  if (e.stack) err.stack = `${err.name}: ${message}\n${e.stack.split("\n").slice(1).join("\n")}`;
  return err;
}

/** Awaits a native call and rethrows its error (thrown or rejected) as an `OmiumError`. */
export async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw fromNative(e);
  }
}

/** Runs a synchronous native call and rethrows its error as an `OmiumError`. */
export function callSync<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromNative(e);
  }
}

/**
 * Throws, saying so, when the native addon was built without the cluster (consensus and remote
 * sync: `cargo build -p omium-node --no-default-features`); `hasCluster` is the addon's answer.
 */
export function requireCluster(hasCluster: boolean, what: string, code: "consensus_unavailable" | "invalid_state"): void {
  if (hasCluster) return;
  throw fromNative(
    new Error(
      `[${code}] ${what}: this build of the omium native addon has no cluster (consensus and remote sync); ` +
        "build it with its default features (npm run build)",
    ),
  );
}

/** Checks that an id argument is a non-empty string (before it reaches the native layer). */
export function requireId(value: unknown, where: string): asserts value is string {
  if (typeof value !== "string" || value === "") {
    const got = value === null ? "null" : typeof value === "string" ? "an empty string" : typeof value;
    throw new InvalidArgumentError(`${where}: expected a non-empty string, not ${got}`, "invalid_argument");
  }
}

/** The class names of an error, most derived first (for the recovery policy's `classify`). */
export function classNames(e: unknown): string[] {
  const out: string[] = [];
  let proto = e !== null && typeof e === "object" ? Object.getPrototypeOf(e) : undefined;
  while (proto && proto !== Object.prototype) {
    const name = proto.constructor?.name;
    if (name) out.push(name);
    proto = Object.getPrototypeOf(proto);
  }
  return out;
}
