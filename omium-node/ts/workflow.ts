/**
 * Durable workflows (`workflow(name, fn)`), and the operations on executions: rollback, fork,
 * history, resumable, recover, resume, verify.
 */
import { randomBytes } from "node:crypto";

import { type Codec, CODEC_KEY, checkCodec, recordedCodec } from "./codec";
import {
  ExecutionNotFoundError,
  ExecutionCancelled,
  ExecutionPaused,
  ExecutionRolledBack,
  InvalidArgumentError,
  OmiumError,
  WorkflowNotRegisteredError,
  call,
  callSync,
  requireCluster,
  requireId,
} from "./errors";
import native = require("./native");
import { type ExecutionContext, getConfig, scope, store } from "./runtime";
import { endSpan, startSpan } from "./trace";

export interface CheckpointInfo {
  id: string;
  executionId: string;
  agent: string;
  name: string;
  kind: "step" | "snapshot" | "rollback" | "fork" | string;
  parent: string | null;
  seq: number;
  globalSeq: number;
  key: string | null;
  checksum: string;
  rawSize: number;
  storedSize: number;
  /** "inline" (small states) or "chunked" (content-addressed chunks). */
  storage: "inline" | "chunked";
  chunks: number;
  checksPassed: boolean;
  checks: { preconditions: { expression: string; passed: boolean }[]; postconditions: { expression: string; passed: boolean }[] };
  metadata: Record<string, string>;
  createdAt: Date;
  /** The decoded state of this checkpoint (verified against its checksum). */
  load(codec?: Codec): Promise<unknown>;
}

export interface ExecutionInfo {
  id: string;
  workflow: string;
  tenant: string;
  status: "pending" | "running" | "paused" | "completed" | "failed" | "rolled_back" | string;
  head: string | null;
  error: string | null;
  attempts: number;
  leaseOwner: string | null;
  leaseExpiresAt: Date | null;
  /** Who holds the lease, or null. */
  lease: { owner: string; host: string; pid: number; token: string; expiresAt: Date } | null;
  labels: Record<string, string>;
  checkpointCount: number;
  hasInput: boolean;
  hasOutput: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface VerifyReport {
  ok: boolean;
  executions: number;
  checkpoints: number;
  /** What does not verify, each naming the execution and checkpoint. */
  problems: { execution: string; checkpoint: string | null; error: string }[];
  /** The audit chain: its length, every break found, and its last entry (`head`, null when
   * empty) to keep elsewhere and pass as `verify(id, { expectHead })` later. */
  audit: { entries: number; problems: string[]; head: { seq: number; hash: string } | null };
}

type Raw = Record<string, unknown>;

function checkpointInfo(r: Raw): CheckpointInfo {
  const { createdAtMs, ...rest } = r;
  const info = { ...rest, createdAt: new Date(createdAtMs as number) } as unknown as CheckpointInfo;
  Object.defineProperty(info, "load", {
    enumerable: false,
    value: async (codec?: Codec) => {
      const c = codec ?? recordedCodec(info.metadata[CODEC_KEY], getConfig().codec, `checkpoint ${info.id}`);
      return c.decode(await call(() => store().readState(info.id)));
    },
  });
  return info;
}

function executionInfo(r: Raw): ExecutionInfo {
  const { createdAtMs, updatedAtMs, leaseExpiresAtMs, lease, ...rest } = r;
  let held: ExecutionInfo["lease"] = null;
  if (lease != null) {
    const { expiresAtMs, ...who } = lease as Raw;
    held = { ...(who as Omit<NonNullable<ExecutionInfo["lease"]>, "expiresAt">), expiresAt: new Date(expiresAtMs as number) };
  }
  return {
    ...(rest as unknown as ExecutionInfo),
    createdAt: new Date(createdAtMs as number),
    updatedAt: new Date(updatedAtMs as number),
    leaseExpiresAt: leaseExpiresAtMs == null ? null : new Date(leaseExpiresAtMs as number),
    lease: held,
  };
}

const registry = new Map<string, Workflow<never, unknown>>();
const UNENCODABLE_INPUT = "omium.input";

export interface RunOptions {
  /** The execution to start, or to resume when it was seen before. Default: a new id. */
  executionId?: string;
}

/**
 * A durable workflow. `run(input, { executionId })` starts it, or resumes it when the execution
 * id was seen before: recorded steps return their recorded results. A completed execution
 * returns its recorded output without running again.
 */
export class Workflow<I, O> {
  readonly name: string;
  private readonly fn: (input: I) => O | Promise<O>;
  private readonly ownCodec: Codec | undefined;

  constructor(name: string, fn: (input: I) => O | Promise<O>, options: { codec?: Codec } = {}) {
    if (typeof name !== "string" || name === "") throw new InvalidArgumentError(`omium.workflow(name, fn): name must be a non-empty string, not ${JSON.stringify(name)}`, "invalid_argument");
    if (typeof fn !== "function") throw new InvalidArgumentError(`omium.workflow(${JSON.stringify(name)}, fn): fn must be a function`, "invalid_argument");
    this.name = name;
    this.fn = fn;
    this.ownCodec = options.codec === undefined ? undefined : checkCodec(options.codec, `omium.workflow(${JSON.stringify(name)})`);
  }

  get codec(): Codec {
    return this.ownCodec ?? getConfig().codec;
  }

  async run(input: I, options: RunOptions = {}): Promise<Awaited<O>> {
    if (options === null || typeof options !== "object") throw new InvalidArgumentError(`${this.name}.run(input, options): options must be an object`, "invalid_argument");
    let executionId = options.executionId;
    if (executionId === undefined) executionId = `${this.name}-${randomBytes(8).toString("hex")}`;
    else if (typeof executionId !== "string" || executionId === "") {
      throw new InvalidArgumentError(`${this.name}.run(input, { executionId }): expected a non-empty string, not ${JSON.stringify(executionId)}`, "invalid_argument");
    }
    return this.runWith(input, executionId, {});
  }

  /** @internal `run`, with what a replay or a fork adds to the execution's context. */
  async runWith(input: I, executionId: string, extras: Pick<ExecutionContext, "replay" | "mutation">): Promise<Awaited<O>> {
    const s = store();
    const stepCodec = this.codec;
    let existing: Raw | undefined;
    try {
      existing = (await call(() => s.execution(executionId))) as Raw;
    } catch (e) {
      if (!(e instanceof ExecutionNotFoundError)) throw e;
    }
    // Input and output in the codec the execution recorded (an execution begun before codecs
    // were recorded keeps the one it had).
    const codec = existing === undefined ? stepCodec : ioCodec(existing as unknown as ExecutionInfo, stepCodec);
    if (existing?.status === "completed") {
      const out = await call(() => s.executionOutput(executionId));
      return (out === null ? undefined : codec.decode(out)) as Awaited<O>;
    }
    let rollbacks = 0;
    for (;;) {
      const labels: Record<string, string> = { [CODEC_KEY]: codec.name };
      let inputBytes: Buffer | undefined;
      try {
        inputBytes = codec.encode({ input });
      } catch (e) {
        labels[UNENCODABLE_INPUT] = `unencodable: ${(e as Error).message}`;
      }
      const cfg = getConfig();
      const run = await call(() => s.begin(executionId, { workflow: this.name, tenant: cfg.project ?? "default", input: inputBytes, labels }));
      const ctx: ExecutionContext = {
        run,
        executionId,
        codec: stepCodec,
        workflow: this.name,
        tenant: cfg.project ?? "default",
        rollbacks,
        waitsForFsync: s.durability === "sync" || s.url !== null,
        served: s.url !== null,
        ...extras,
      };
      const span = startSpan(this.name, "workflow", { executionId, attributes: { "omium.workflow": this.name, "omium.execution_id": executionId } });
      try {
        const result = await scope.run({ ctx, stepKey: undefined, span: span?.scope().span }, () => this.fn(input));
        let out: Buffer | undefined;
        try {
          out = codec.encode(result);
        } catch {
          out = undefined; // the output is returned, not stored
        }
        await call(() => run.complete(out));
        endSpan(span);
        return result as Awaited<O>;
      } catch (e) {
        endSpan(span, e);
        if (e instanceof ExecutionRolledBack) {
          run.close();
          await rollbackForPolicy(e);
          rollbacks += 1; // run again from the rollback target
          continue;
        }
        if (e instanceof ExecutionPaused) await call(() => run.pause(e.reason));
        else if (e instanceof ExecutionCancelled) {
          // The operator's cancel ended the execution already.
        } else await run.fail(e instanceof Error ? `${e.name}: ${e.message}` : String(e)).catch(() => undefined);
        throw e;
      } finally {
        run.close();
      }
    }
  }
}

/** Makes `fn` a durable workflow named `name`, registered for `recover()`. */
export function workflow<I = void, O = unknown>(name: string, fn: (input: I) => O | Promise<O>, options: { codec?: Codec } = {}): Workflow<I, O> {
  const wf = new Workflow(name, fn, options);
  registry.set(wf.name, wf as unknown as Workflow<never, unknown>);
  return wf;
}

/** Carries out a rollback a recovery policy decided; the core runs the execution again from its start when nothing consistent was recorded yet. */
async function rollbackForPolicy(e: ExecutionRolledBack): Promise<void> {
  const span = startSpan("rollback", "rollback", { executionId: e.executionId, attributes: { "omium.rollback.to": e.to } });
  try {
    await call(() => store().rollbackAsDecided(e.executionId, e.to, e.failure));
    endSpan(span);
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
}

export interface RollbackOptions {
  /** A checkpoint id or name; with neither this nor `globalSeq`, the last consistent one. */
  to?: string;
  /** The consistent cut at this global position: every agent back to its state there. */
  globalSeq?: number;
  reason?: string;
}

/** Rolls an execution back; steps after the target run again on the next `run`. Returns the rollback marker. */
export async function rollback(executionId: string, options: RollbackOptions = {}): Promise<CheckpointInfo> {
  requireId(executionId, "omium.rollback(executionId)");
  const to = options.to ?? (options.globalSeq === undefined ? "last_consistent" : `global_seq ${options.globalSeq}`);
  const span = startSpan("rollback", "rollback", { executionId, attributes: { "omium.rollback.to": to } });
  try {
    const marker = (await call(() => store().rollback(executionId, { to: options.to, globalSeq: options.globalSeq, reason: options.reason }))) as Raw;
    endSpan(span);
    return checkpointInfo(marker);
  } catch (e) {
    endSpan(span, e);
    throw e;
  }
}

export interface ForkOptions {
  /** The checkpoint (id or name) to fork at. */
  at: string;
  /** Replaces that checkpoint's state (encoded with the execution's codec). */
  state?: unknown;
  newExecutionId?: string;
}

/** Forks an execution at a checkpoint into a new execution (the original is kept); running the new one re-runs what follows. */
export async function fork(executionId: string, options: ForkOptions): Promise<ExecutionInfo> {
  requireId(executionId, "omium.fork(executionId)");
  if (options === null || typeof options !== "object" || typeof options.at !== "string") {
    throw new InvalidArgumentError("omium.fork(executionId, { at }): at (a checkpoint id or name) is required", "invalid_argument");
  }
  const state = "state" in options ? await encodeEdit(executionId, options.state) : undefined;
  return executionInfo((await call(() => store().fork(executionId, options.at, { newExecutionId: options.newExecutionId, state }))) as Raw);
}

/** The live branch of an execution (first checkpoint first), or every checkpoint. */
export async function history(executionId: string, options: { allBranches?: boolean } = {}): Promise<CheckpointInfo[]> {
  requireId(executionId, "omium.history(executionId)");
  const s = store();
  const rows = (await call(() => options.allBranches ? s.checkpoints(executionId) : s.history(executionId))) as Raw[];
  return rows.map(checkpointInfo);
}

export async function getExecution(executionId: string): Promise<ExecutionInfo> {
  requireId(executionId, "omium.getExecution(executionId)");
  return executionInfo((await call(() => store().execution(executionId))) as Raw);
}

export async function executions(): Promise<ExecutionInfo[]> {
  return ((await call(() => store().executions())) as Raw[]).map(executionInfo);
}

/** Executions whose process died mid-run, and executions rolled back since they ran. */
export async function resumable(): Promise<ExecutionInfo[]> {
  return ((await call(() => store().resumable())) as Raw[]).map(executionInfo);
}

/** The codec of an execution's input, output and edited states: the one it recorded. */
function ioCodec(info: ExecutionInfo, configured: Codec): Codec {
  return recordedCodec(info.labels?.[CODEC_KEY], configured, `execution ${JSON.stringify(info.id)}`);
}

/** A state that replaces a recorded one (fork, resume), in the execution's codec. */
async function encodeEdit(executionId: string, state: unknown): Promise<Buffer> {
  return ioCodec(await getExecution(executionId), getConfig().codec).encode(state);
}

export async function storedInput(info: ExecutionInfo, configured: Codec): Promise<unknown> {
  const codec = ioCodec(info, configured);
  if (UNENCODABLE_INPUT in info.labels) {
    throw new OmiumError(
      `execution ${JSON.stringify(info.id)} cannot be recovered automatically: its input was not storable (${info.labels[UNENCODABLE_INPUT]}); run it again with ${info.workflow}.run(input, { executionId: ${JSON.stringify(info.id)} })`,
      "input_not_stored",
    );
  }
  const raw = await call(() => store().executionInput(info.id));
  return raw === null ? undefined : (codec.decode(raw) as { input?: unknown }).input;
}

/**
 * Resumes every resumable execution by running its registered workflow with its stored input.
 * Returns `{ executionId: result }`.
 */
export async function recover(options: { skipUnregistered?: boolean } = {}): Promise<Record<string, unknown>> {
  // A store that syncs first takes over what other machines left unfinished in the cluster.
  if (getConfig().remote) await pullAbandoned();
  const todo = await resumable();
  const missing = todo.filter((e) => !registry.has(e.workflow));
  if (missing.length > 0 && !options.skipUnregistered) {
    const names = [...new Set(missing.map((e) => JSON.stringify(e.workflow)))].sort().join(", ");
    const known = [...registry.keys()].sort().map((n) => JSON.stringify(n)).join(", ") || "none";
    throw new WorkflowNotRegisteredError(
      `cannot recover ${missing.map((e) => JSON.stringify(e.id)).join(", ")}: workflow ${names} is not defined in this process (registered: ${known}); define it before omium.recover(), or pass { skipUnregistered: true }`,
      "workflow_not_registered",
    );
  }
  const results: Record<string, unknown> = {};
  for (const info of todo) {
    const wf = registry.get(info.workflow);
    if (wf === undefined) continue;
    if (info.status === "running") await call(() => store().recordCrash(info.id));
    const input = await storedInput(info, wf.codec);
    results[info.id] = await wf.run(input as never, { executionId: info.id });
  }
  return results;
}

/**
 * Fetches `executionId` from the cluster into this store and takes it over (`init({ remote })`),
 * so that running its workflow here (or `recover()`) resumes it: finished steps replay, the
 * rest run here. `ExecutionLeasedError` while another store's run holds it, `SyncConflictError`
 * when this store has steps of it the cluster does not.
 */
export async function pull(executionId: string): Promise<ExecutionInfo> {
  requireId(executionId, "omium.pull(executionId)");
  requireCluster(native.hasCluster(), "omium.pull()", "invalid_state");
  return executionInfo((await call(() => store().pull(executionId))) as Raw);
}

/** Waits (at most `timeoutMs`, default 30 s) until every change made so far is in the cluster. */
export async function push(options: { timeoutMs?: number } = {}): Promise<void> {
  requireCluster(native.hasCluster(), "omium.push()", "invalid_state");
  await call(() => store().syncFlush(options.timeoutMs ?? 30_000));
}

/** What the syncer sent and received: rounds, checkpoints and chunks pushed, executions pulled, conflicts. */
export function syncStatus(): Record<string, unknown> {
  requireCluster(native.hasCluster(), "omium.syncStatus()", "invalid_state");
  return callSync(() => store().syncReport()) as Record<string, unknown>;
}

/** Pulls what other stores left unfinished in the cluster (the core skips what another took over first, and conflicts, with a warning); the ids pulled. */
export async function pullAbandoned(): Promise<string[]> {
  requireCluster(native.hasCluster(), "omium.recover()", "invalid_state");
  const r = (await call(() => store().pullAbandoned())) as { pulled: string[]; skipped: [string, string][] };
  for (const [id, why] of r.skipped) process.emitWarning(`omium.recover(): not pulling ${JSON.stringify(id)}: ${why}`, "OmiumSyncWarning");
  return r.pulled;
}

/**
 * Resumes an execution a recovery policy paused (human in the loop). With `state`, the step that
 * paused it is recorded with that value instead of running again. With `run` (default true) and
 * its workflow defined here, the workflow continues now and its result is returned.
 */
export async function resume(executionId: string, options: { state?: unknown; by?: string; run?: boolean } = {}): Promise<unknown> {
  requireId(executionId, "omium.resume(executionId)");
  const data = "state" in options ? await encodeEdit(executionId, options.state) : undefined;
  await call(() => store().resume(executionId, data, options.by));
  const info = await getExecution(executionId);
  const wf = registry.get(info.workflow);
  if (options.run === false || wf === undefined) return undefined;
  return wf.run((await storedInput(info, wf.codec)) as never, { executionId });
}

/**
 * Recomputes every checksum (and the audit chain) of one execution or all. `expectHead` is a
 * head that {@link auditHead} returned earlier and that was kept where this store's owner cannot
 * rewrite it: the report is not ok when the chain no longer holds it (cut off or rewritten).
 */
export async function verify(executionId?: string, options: { expectHead?: string } = {}): Promise<VerifyReport> {
  return (await call(() => store().verify(executionId, options.expectHead))) as VerifyReport;
}

/** The audit chain's last entry as "SEQ:HASH", or null when nothing was audited yet. */
export async function auditHead(): Promise<string | null> {
  return (await call(() => store().auditHead())) ?? null;
}

export function registeredWorkflows(): Map<string, Workflow<never, unknown>> {
  return new Map(registry);
}

