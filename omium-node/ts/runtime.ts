/** The process-wide store handle and the per-task execution context (AsyncLocalStorage). */
import { AsyncLocalStorage } from "node:async_hooks";
import * as path from "node:path";

import native = require("./native");
import { type Codec, checkCodec, msgpack } from "./codec";
import { OmiumError, InvalidArgumentError, call, callSync, requireCluster } from "./errors";

export type Durability = "sync" | "buffered" | "none";

export interface InitOptions {
  /** Store directory; default `$OMIUM_HOME`, else `./.omium`. */
  path?: string;
  /**
   * An `omium serve` daemon to use instead of opening a directory: `unix:///path/omium.sock`
   * or `http://127.0.0.1:7700`; default `$OMIUM_URL` (when no `path` is given). Several worker
   * processes share its store, with the same semantics as an embedded one (an execution runs
   * in one worker at a time).
   */
  url?: string;
  /** The daemon's API key (default `$OMIUM_API_KEY`), sent as a bearer token. */
  apiKey?: string;
  /** Tenant of the executions (policies are applied per tenant); default "default". */
  project?: string;
  /** "sync" (default: fsync before a step returns), "buffered" or "none". */
  durability?: Durability;
  /** State codec; default msgpack (the Python package's default: states decode in both). */
  codec?: Codec;
  readOnly?: boolean;
  /** Record spans of workflows, steps, checkpoints and recovery actions (default true). */
  tracing?: boolean;
  /**
   * Sync the store to an Omium cluster: `"host:port,host:port"` or a list (default
   * `$OMIUM_REMOTE`). Every execution is pushed with the chunks the cluster lacks; another
   * machine takes an execution over with `omium.pull()`, or `omium.recover()` pulls those left
   * unfinished.
   */
  remote?: string | string[];
  /** "background" (default: pushed within about 50 ms) or "sync" (in the cluster before a step returns). */
  remoteDurability?: "background" | "sync";
}

export interface Config {
  store: native.Store;
  project: string | undefined;
  codec: Codec;
  tracing: boolean;
  /** The store syncs to a cluster. */
  remote: boolean;
}

/** The execution a task is running. */
export interface ExecutionContext {
  run: native.Run;
  executionId: string;
  codec: Codec;
  workflow: string | undefined;
  tenant: string;
  /** Rollbacks a recovery policy made in this call of the workflow. */
  rollbacks: number;
  /**
   * The store writes with `sync` durability, or is a daemon's: records wait (for an fsync or
   * the daemon), off the JS thread.
   */
  waitsForFsync: boolean;
  /** The store is an `omium serve` daemon's: a journal lookup is a call, made off the JS thread. */
  served: boolean;
  /** A replay's recording, answering the run's LLM and tool calls. */
  replay?: native.Replay;
  /** A fork's change of the arguments of the step or call at a top-level position. */
  mutation?: { seq: number; apply: (args: unknown[]) => unknown[] };
}

/** What the async context carries: the execution, and the step and span running, if any. */
export interface Scope {
  ctx: ExecutionContext | undefined;
  /** Key of the step whose body is running. */
  stepKey: string | undefined;
  /** Name of the step whose body is running. */
  stepName?: string;
  /** The span that new spans are children of. */
  span: { traceId: string; spanId: string; executionId: string } | undefined;
  /** What the step whose body is running spent (`recordSpend`), recorded with its checkpoint. */
  spend?: { costUsd: number; tokensIn: number; tokensOut: number };
}

export const scope = new AsyncLocalStorage<Scope>();

/** What runs before the store closes (the consensus coordinator stops first). */
export const beforeClose: (() => Promise<void>)[] = [];

async function closing(): Promise<void> {
  for (const hook of beforeClose) await hook();
}

let config: Config | undefined;

/**
 * Opens the store this process records into, or connects to an `omium serve` daemon (`url`,
 * `$OMIUM_URL`); calling it again closes the previous one.
 */
export async function init(options: InitOptions = {}): Promise<native.Store> {
  if (options === null || typeof options !== "object") {
    throw new InvalidArgumentError(`omium.init(options): expected an object, not ${options === null ? "null" : typeof options}`, "invalid_argument");
  }
  let url = options.url;
  if (url === undefined && options.path === undefined) url = process.env.OMIUM_URL || undefined;
  if (url !== undefined) return initServed(url, options);
  const dir = options.path ?? process.env.OMIUM_HOME ?? ".omium";
  if (typeof dir !== "string" || dir === "") {
    throw new InvalidArgumentError(`omium.init({ path }): expected a non-empty string, not ${JSON.stringify(dir)}`, "invalid_argument");
  }
  const durability = callSync(() => native.checkDurability(options.durability ?? "sync"));
  const codec = options.codec === undefined ? msgpack : checkCodec(options.codec, "omium.init({ codec })");
  if (options.project !== undefined && typeof options.project !== "string") {
    throw new InvalidArgumentError(`omium.init({ project }): expected a string, not ${typeof options.project}`, "invalid_argument");
  }
  // Re-opening the same directory closes it first (one writer per directory).
  if (config !== undefined && path.resolve(config.store.path) === path.resolve(dir)) {
    await closing();
    config.store.close();
    config = undefined;
  }
  const nodes = remoteNodes(options.remote ?? (process.env.OMIUM_REMOTE || undefined));
  const store = await call(() => native.openStore(dir, { durability, readOnly: options.readOnly ?? false }));
  if (nodes !== undefined) {
    try {
      requireCluster(native.hasCluster(), "omium.init({ remote })", "invalid_state");
      await call(() => store.attachSync(nodes, options.remoteDurability ?? "background"));
    } catch (e) {
      store.close();
      throw e;
    }
  }
  if (config !== undefined) {
    await closing();
    config.store.close();
  }
  config = { store, project: options.project, codec, tracing: options.tracing ?? true, remote: nodes !== undefined };
  return store;
}

/** The cluster's node addresses from `remote`, checked. */
function remoteNodes(remote: unknown): string[] | undefined {
  if (remote === undefined) return undefined;
  const list = typeof remote === "string" ? remote.split(",").map((n) => n.trim()).filter((n) => n !== "") : remote;
  if (!Array.isArray(list) || !list.every((n) => typeof n === "string")) {
    throw new InvalidArgumentError(`omium.init({ remote }): expected "host:port,host:port" or a list of such strings, not ${JSON.stringify(remote)}`, "invalid_argument");
  }
  if (list.length === 0) throw new InvalidArgumentError('omium.init({ remote }): names no node; expected "host:port,host:port"', "invalid_argument");
  return list;
}

async function initServed(url: unknown, options: InitOptions): Promise<native.Store> {
  if (typeof url !== "string" || url === "") {
    throw new InvalidArgumentError(`omium.init({ url }): expected a non-empty string such as "unix:///run/omium.sock" or "http://127.0.0.1:7700", not ${JSON.stringify(url)}`, "invalid_argument");
  }
  if (options.path !== undefined) {
    throw new InvalidArgumentError(`omium.init({ url, path }): give either a store directory (path) or a daemon (url), not both`, "invalid_argument");
  }
  if (options.durability !== undefined || options.readOnly) {
    throw new InvalidArgumentError(`omium.init({ url }): durability and readOnly are the daemon's (omium serve --durability); do not pass them with url`, "invalid_argument");
  }
  if (options.remote !== undefined) {
    throw new InvalidArgumentError(`omium.init({ url, remote }): a daemon's store syncs as the daemon is configured; remote is for an embedded store (path)`, "invalid_argument");
  }
  const apiKey = options.apiKey ?? (process.env.OMIUM_API_KEY || undefined);
  if (apiKey !== undefined && (typeof apiKey !== "string" || apiKey === "")) {
    throw new InvalidArgumentError(`omium.init({ apiKey }): expected a non-empty string, not ${JSON.stringify(apiKey)}`, "invalid_argument");
  }
  const codec = options.codec === undefined ? msgpack : checkCodec(options.codec, "omium.init({ codec })");
  if (options.project !== undefined && typeof options.project !== "string") {
    throw new InvalidArgumentError(`omium.init({ project }): expected a string, not ${typeof options.project}`, "invalid_argument");
  }
  // Connects first: a daemon that does not answer leaves the current store in place.
  const store = await call(() => native.connectStore(url, { apiKey }));
  if (config !== undefined) {
    await closing();
    const previous = config.store;
    config = undefined;
    if (!previous.closed && !previous.readOnly) await call(() => previous.flushSpans()).catch(() => undefined);
    previous.close();
  }
  config = { store, project: options.project, codec, tracing: options.tracing ?? true, remote: false };
  return store;
}

/** Closes the store opened by `init()`; recorded steps are already durable. */
export async function shutdown(): Promise<void> {
  const c = config;
  if (c === undefined) return;
  await closing();
  config = undefined;
  try {
    if (!c.store.closed && !c.store.readOnly) await call(() => c.store.flushSpans());
  } finally {
    c.store.close();
  }
}

export function getConfig(): Config {
  if (config === undefined) {
    throw new OmiumError("omium is not initialised: call await omium.init({ path }) or omium.init({ url }) first (or set OMIUM_HOME or OMIUM_URL)", "not_initialized");
  }
  return config;
}

export function store(): native.Store {
  return getConfig().store;
}

export function isInitialized(): boolean {
  return config !== undefined;
}

export function current(): ExecutionContext | undefined {
  return scope.getStore()?.ctx;
}

/** The execution id of the running workflow or step, if any. */
export function getExecutionId(): string | undefined {
  return current()?.executionId;
}
