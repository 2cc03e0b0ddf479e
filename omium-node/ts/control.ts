/**
 * Operator controls: pause, cancel, retry, recover, escalate or delete an execution from outside the code that
 * runs it. A pause or cancel of an execution a run holds reaches that run at its next step
 * boundary (the run rejects with `ExecutionPaused` / `ExecutionCancelled` before the step's body
 * runs); otherwise it applies at once. Every control is audited with `by` and `reason` and is an
 * event of the feed. `resume()` continues a paused execution.
 */
import { call } from "./errors";
import { store } from "./runtime";

export interface ControlOptions {
  /** Why (recorded in the audit log). */
  reason?: string;
  /** Who asks (recorded); default `user@host`. */
  by?: string;
}

/** What became of a control. */
export interface ControlReply {
  action: "pause" | "cancel" | "resume" | "retry" | "recover" | "delete" | "escalate";
  execution: string;
  /** `applied` at once, or `requested`: a run holds the execution and stops at its next step. */
  result: "applied" | "requested";
  status: string | null;
  /** What a delete erased: checkpoints, the chunks no other checkpoint used, failure records, spans. */
  erased?: { checkpoints: number; chunks: number; failures: number; spans: number };
  /** The failure an escalation settled. */
  failure?: string;
  /** An escalation's notices: per channel of the failure's policy, `delivered` or why not. */
  notified?: Record<string, string>;
}

async function control(action: string, executionId: string, o: ControlOptions): Promise<ControlReply> {
  return (await call(() => store().control(action, executionId, o.reason, o.by))) as ControlReply;
}

/** Pauses an execution (status `paused`) until `resume()`. */
export function pause(executionId: string, options: ControlOptions = {}): Promise<ControlReply> {
  return control("pause", executionId, options);
}

/** Cancels an execution (status `cancelled`); it does not run again until `retry()`. */
export function cancel(executionId: string, options: ControlOptions = {}): Promise<ControlReply> {
  return control("cancel", executionId, options);
}

/** Makes a failed or cancelled execution resumable: `recover()` or a run with its id continues it. */
export function retry(executionId: string, options: ControlOptions = {}): Promise<ControlReply> {
  return control("retry", executionId, options);
}

/**
 * Makes an execution resumable again whatever stopped it — a run that died (still `running`
 * with no live run), a failure, a cancel, a pause: `recover()` (or a run with its id) continues
 * it from its last checkpoint. A completed execution, one already resumable, and one a live run
 * holds are refused.
 */
export function recoverExecution(executionId: string, options: ControlOptions = {}): Promise<ControlReply> {
  return control("recover", executionId, options);
}

/**
 * Hands the execution's open failure to people: it is settled as escalated, the channels of its
 * policy are told (event `omium.failure.escalation`), and the execution keeps its status.
 */
export function escalate(executionId: string, options: ControlOptions = {}): Promise<ControlReply> {
  return control("escalate", executionId, options);
}

/**
 * Erases an execution (its record, checkpoints, input, output, failure records, spans and unshared
 * chunks); audited.
 */
export function deleteExecution(executionId: string, options: ControlOptions = {}): Promise<ControlReply> {
  return control("delete", executionId, options);
}
