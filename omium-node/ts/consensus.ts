/**
 * Multi-agent consensus: hand-offs between agents agreed on a Raft log (`omium.consensus`).
 *
 * A message an agent broadcasts to target agents is validated (against a JSON Schema when one is
 * given), appended to the Raft log, and *agreed* once its entry is committed and a quorum of the
 * targets acknowledged it (or voted the same value). A timeout or a split vote throws
 * `ConsensusViolation`, recorded as a `consensus_violation` failure for the recovery policy.
 * Messages of one execution are totally ordered.
 *
 * By default the coordinator is a one-voter Raft group inside the store opened by `init()` (no
 * network); `connect(nodes)` points the same calls at a cluster of `omium node` processes:
 *
 * ```ts
 * const id = await omium.consensus.broadcast("run-1", "planner", ["coder", "reviewer"], { plan: "v2" });
 * await omium.consensus.acknowledge(id, "coder");
 * await omium.consensus.acknowledge(id, "reviewer", "approve");
 * await omium.consensus.awaitAgreement(id, { timeoutMs: 5000 });
 * ```
 *
 * Agents in this process can answer automatically: `subscribe(agent, handler)` registers a
 * handler called with every message broadcast to the agent from this process; it returns
 * `undefined` or `true` to acknowledge, `false` to stay silent, any other JSON value to vote it.
 * A step with `consensus: { targets }` is recorded only once its result is agreed.
 */
import native = require("./native");
import { InvalidArgumentError, OmiumError, call, requireCluster } from "./errors";
import { beforeClose, current, getConfig, isInitialized } from "./runtime";

export type Handler = (message: ConsensusMessage) => unknown;

/** A message as handlers and `message()` see it. */
export interface ConsensusMessage {
  id: string;
  executionId: string;
  seq: number;
  sender: string;
  targets: string[];
  message: unknown;
  [more: string]: unknown;
}

let coordinator: Promise<native.Coordinator> | undefined;
let nodes: string[] | undefined;
const subscribers = new Map<string, Handler[]>();

async function reset(): Promise<void> {
  const c = coordinator;
  coordinator = undefined;
  if (c !== undefined) await (await c.catch(() => undefined))?.close();
}
beforeClose.push(reset);

function get(): Promise<native.Coordinator> {
  if (coordinator === undefined) {
    requireCluster(native.hasCluster(), "omium.consensus", "consensus_unavailable");
    const store = nodes === undefined || isInitialized() ? getConfig().store : undefined;
    const opening = call(() => native.openCoordinator(store, nodes));
    opening.catch(() => {
      if (coordinator === opening) coordinator = undefined;
    });
    coordinator = opening;
  }
  return coordinator;
}

/**
 * Uses the cluster at `nodes` (`"host:port"` or a list; any node will do, requests follow the
 * leader); `null` returns to the store's embedded group. Violations are recorded in the store
 * opened by `init()` when there is one.
 */
export async function connect(to: string | string[] | null): Promise<void> {
  let chosen: string[] | undefined;
  if (to !== null) {
    chosen = typeof to === "string" ? to.split(",").map((n) => n.trim()).filter((n) => n !== "") : to;
    if (!Array.isArray(chosen) || chosen.length === 0 || !chosen.every((n) => typeof n === "string" && n !== "")) {
      throw new InvalidArgumentError(`omium.consensus.connect(nodes): expected "host:port" strings, not ${JSON.stringify(to)}`, "invalid_argument");
    }
  }
  await reset();
  nodes = chosen;
  if (chosen !== undefined) await get(); // checks the addresses now
}

/** Lets `handler` answer for `agent` (see the module's description); returns the handler. */
export function subscribe(agent: string, handler: Handler): Handler {
  if (typeof agent !== "string" || agent === "") throw new InvalidArgumentError(`omium.consensus.subscribe(agent): expected a non-empty string, not ${JSON.stringify(agent)}`, "invalid_argument");
  if (typeof handler !== "function") throw new InvalidArgumentError(`omium.consensus.subscribe(${JSON.stringify(agent)}, handler): handler must be a function`, "invalid_argument");
  subscribers.set(agent, [...(subscribers.get(agent) ?? []), handler]);
  return handler;
}

/** Removes `handler` (or every handler) of `agent`. */
export function unsubscribe(agent: string, handler?: Handler): void {
  if (handler === undefined) subscribers.delete(agent);
  else subscribers.set(agent, (subscribers.get(agent) ?? []).filter((h) => h !== handler));
}

function executionId(explicit: string | undefined, where: string): string {
  if (explicit !== undefined) {
    if (typeof explicit !== "string" || explicit === "") throw new InvalidArgumentError(`${where}: executionId must be a non-empty string`, "invalid_argument");
    return explicit;
  }
  const ctx = current();
  if (ctx !== undefined) return ctx.executionId;
  throw new OmiumError(`${where}: no execution: broadcast inside a workflow run, or pass an executionId`, "invalid_argument");
}

function checkTargets(targets: unknown, where: string): asserts targets is string[] {
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => typeof t === "string" && t !== "")) {
    throw new InvalidArgumentError(`${where}: targets must be a non-empty list of agent ids, not ${JSON.stringify(targets)}`, "invalid_argument");
  }
}

export interface BroadcastOptions {
  /** A JSON Schema the message must match (`InvalidMessageError` otherwise; nothing appended). */
  schema?: unknown;
  /** Acknowledgements (or equal votes) needed; default a majority of the targets. */
  quorum?: number;
}

/**
 * Appends `message` from `sender` to `targets` in the execution's log (`executionId`
 * undefined: the current execution) and returns its id; handlers subscribed for the targets
 * answer at once.
 */
export async function broadcast(executionId_: string | undefined, sender: string, targets: string[], message: unknown, options: BroadcastOptions = {}): Promise<string> {
  const where = "omium.consensus.broadcast";
  const execution = executionId(executionId_, where);
  if (typeof sender !== "string" || sender === "") throw new InvalidArgumentError(`${where}(sender): expected a non-empty string, not ${JSON.stringify(sender)}`, "invalid_argument");
  checkTargets(targets, `${where}(targets)`);
  const quorum = options.quorum;
  if (quorum !== undefined && !(Number.isInteger(quorum) && quorum > 0)) throw new InvalidArgumentError(`${where}: quorum must be a positive integer, not ${JSON.stringify(quorum)}`, "invalid_argument");
  const c = await get();
  const placed = (await call(() => c.broadcast(execution, sender, targets, message ?? null, { schema: options.schema, quorum }))) as { id: string; executionId: string; seq: number };
  await deliver(c, { ...placed, sender, targets, message });
  return placed.id;
}

/** Hands a message to the handlers subscribed for its targets; their answers are acknowledgements (or votes). */
async function deliver(c: native.Coordinator, msg: ConsensusMessage): Promise<void> {
  for (const agent of msg.targets) {
    for (const handler of subscribers.get(agent) ?? []) {
      const answer = await handler(msg);
      if (answer === false) continue;
      await call(() => c.acknowledge(msg.id, agent, answer === undefined || answer === true ? undefined : answer));
    }
  }
}

/** Records `agent`'s acknowledgement of a message it is a target of, or its `vote`; the message's status (`{ state: "pending" | "agreed" | "violated", ... }`). */
export async function acknowledge(messageId: string, agent: string, vote?: unknown): Promise<Record<string, unknown>> {
  const c = await get();
  return (await call(() => c.acknowledge(messageId, agent, vote))) as Record<string, unknown>;
}

/** Waits until the message is agreed and returns it; a timeout or a split vote throws `ConsensusViolation` (recorded as a `consensus_violation` failure). */
export async function awaitAgreement(messageId: string, options: { timeoutMs?: number } = {}): Promise<ConsensusMessage> {
  return wait(messageId, options.timeoutMs ?? 5000, true);
}

async function wait(messageId: string, timeoutMs: number, record: boolean): Promise<ConsensusMessage> {
  if (typeof timeoutMs !== "number" || !(timeoutMs >= 0)) throw new InvalidArgumentError(`omium.consensus.awaitAgreement: timeoutMs must be a number >= 0, not ${JSON.stringify(timeoutMs)}`, "invalid_argument");
  const c = await get();
  return (await call(() => c.awaitAgreement(messageId, timeoutMs, record))) as ConsensusMessage;
}

/** The messages of an execution (default: the current one) in their agreed order. */
export async function status(executionId_?: string): Promise<ConsensusMessage[]> {
  const execution = executionId(executionId_, "omium.consensus.status");
  const c = await get();
  return (await call(() => c.status(execution))) as ConsensusMessage[];
}

/** One message, with its acknowledgements and status. */
export async function message(messageId: string): Promise<ConsensusMessage> {
  const c = await get();
  return (await call(() => c.message(messageId))) as ConsensusMessage;
}

export interface AgreeOptions extends BroadcastOptions {
  sender: string;
  timeoutMs?: number;
  /** Record a violation as a failure here (a step's recovery records its own). */
  record?: boolean;
}

/** Broadcasts `result` in the current execution and waits for its agreement. */
export async function agree(result: unknown, targets: string[], options: AgreeOptions): Promise<ConsensusMessage> {
  const id = await broadcast(undefined, options.sender, targets, result, options);
  return wait(id, options.timeoutMs ?? 5000, options.record ?? true);
}

/**
 * `fn` whose result is broadcast to `targets` (sender: `options.sender`, else `fn`'s name) and
 * returned once agreed; a violation throws `ConsensusViolation`.
 */
export function withConsensus<A extends unknown[], R>(targets: string[], fn: (...args: A) => R | Promise<R>, options: Partial<AgreeOptions> = {}): (...args: A) => Promise<Awaited<R>> {
  checkTargets(targets, "omium.consensus.withConsensus(targets)");
  if (typeof fn !== "function") throw new InvalidArgumentError("omium.consensus.withConsensus(targets, fn): fn must be a function", "invalid_argument");
  const sender = options.sender ?? (fn.name || "agent");
  return async (...args: A): Promise<Awaited<R>> => {
    const result: Awaited<R> = await fn(...args);
    await agree(result, targets, { ...options, sender });
    return result;
  };
}
