/**
 * `omium/langgraph`: a LangGraph.js checkpointer on an Omium store.
 *
 * ```ts
 * import { OmiumSaver } from "omium/langgraph";
 * const checkpointer = await OmiumSaver.open(".omium");
 * const graph = builder.compile({ checkpointer });
 * await graph.invoke(input, { configurable: { thread_id: "t1" } });
 * ```
 *
 * Values are serialized by LangGraph's own serializer (`this.serde`); Omium stores the bytes.
 * Channel values are stored once per (thread, namespace, channel, version) through Omium's
 * content-addressed blob store, so a channel that did not change costs nothing and a message
 * list that grew by one message shares all but its last chunks with the previous version. The
 * storage is the Rust core's (`omium-storage/src/threads.rs`), shared with Python's `OmiumSaver`.
 */
import type { RunnableConfig } from "@langchain/core/runnables";
import {
  BaseCheckpointSaver,
  type ChannelVersions,
  type Checkpoint,
  type CheckpointListOptions,
  type CheckpointMetadata,
  type CheckpointPendingWrite,
  type CheckpointTuple,
  type PendingWrite,
  type SerializerProtocol,
  TASKS,
  WRITES_IDX_MAP,
  compareWritesSortKeys,
  getCheckpointId,
  maxChannelVersion,
  writesSortKey,
} from "@langchain/langgraph-checkpoint";

import native = require("./native");
import { InvalidArgumentError, call, callSync } from "./errors";
import type { Durability } from "./runtime";

const EMPTY = "empty";

/** Canonical JSON of a metadata value (what `list({ filter })` compares), as Python's
 * `json.dumps(sort_keys=True, separators=(",", ":"))` writes it, so both bindings match the
 * same stored fields. Undefined for values JSON cannot express. */
export function canonicalField(value: unknown): string | undefined {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
      return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  if (value === undefined || typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") return undefined;
  if (typeof value === "number" && !Number.isFinite(value)) return undefined;
  let text: string | undefined;
  try {
    text = JSON.stringify(sort(value));
  } catch {
    return undefined;
  }
  return text?.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function configurable(config: RunnableConfig | undefined, what: string): Record<string, unknown> {
  const conf = config?.configurable;
  if (conf === undefined || conf === null || typeof conf !== "object" || conf.thread_id === undefined || conf.thread_id === null) {
    throw new InvalidArgumentError(
      `OmiumSaver.${what}: config needs configurable.thread_id, e.g. { configurable: { thread_id: "t1" } }; got ${JSON.stringify(config)}`,
      "invalid_argument",
    );
  }
  return conf as Record<string, unknown>;
}

export interface OmiumSaverOptions {
  /** "sync" (fsync before a call returns), "buffered" or "none"; default: the store's. */
  durability?: Durability;
  /** LangGraph serializer; default LangGraph's JSON serializer. */
  serde?: SerializerProtocol;
}

export class OmiumSaver extends BaseCheckpointSaver<number> {
  private readonly threads: native.Threads;
  private readonly ownedStore: native.Store | undefined;
  /** Writes that do not wait for an fsync are made on the calling thread (tens of µs), not a worker's. */
  private readonly inline: boolean;

  /**
   * A checkpointer on an open store (for example `omium.store()` after `omium.init()`), or use
   * {@link OmiumSaver.open} to open a store directory of its own.
   */
  constructor(store: native.Store, options: OmiumSaverOptions = {}, owned = false) {
    super(options.serde);
    if (store === null || typeof store !== "object" || typeof (store as native.Store).threads !== "function") {
      throw new InvalidArgumentError("new OmiumSaver(store): store must be an open omium store (omium.store() or OmiumSaver.open(path))", "invalid_argument");
    }
    if (options.durability !== undefined) callSync(() => native.checkDurability(options.durability as string));
    this.threads = callSync(() => store.threads(options.durability));
    this.ownedStore = owned ? store : undefined;
    this.inline = (options.durability ?? callSync(() => store.durability)) !== "sync";
  }

  /** Opens (creating if needed) the store at `path` for this checkpointer alone. */
  static async open(path: string, options: OmiumSaverOptions = {}): Promise<OmiumSaver> {
    const store = await call(() => native.openStore(path, { durability: options.durability ?? "sync" }));
    return new OmiumSaver(store, options, true);
  }

  /** Releases the store (closed if this saver opened it). */
  close(): void {
    this.threads.close();
    this.ownedStore?.close();
  }

  private async tuple(row: native.ThreadTupleJs): Promise<CheckpointTuple> {
    const checkpoint = (await this.serde.loadsTyped(row.checkpointType, row.checkpoint)) as Checkpoint;
    const values: Record<string, unknown> = {};
    await Promise.all(
      row.values
        .filter((v) => v.valueType !== EMPTY)
        .map(async (v) => {
          values[v.channel] = await this.serde.loadsTyped(v.valueType, v.value);
        }),
    );
    checkpoint.channel_values = values;
    if (checkpoint.v < 4 && row.parentId) await this.migratePendingSends(checkpoint, row.threadId, row.ns, row.parentId);
    const pendingWrites: CheckpointPendingWrite[] = await Promise.all(
      row.writes.map(async (w) => [w.taskId, w.channel, await this.serde.loadsTyped(w.valueType, w.value)] as CheckpointPendingWrite),
    );
    const ids = { thread_id: row.threadId, checkpoint_ns: row.ns };
    const t: CheckpointTuple = {
      config: { configurable: { ...ids, checkpoint_id: row.checkpointId } },
      checkpoint,
      metadata: (await this.serde.loadsTyped(row.metadataType, row.metadata)) as CheckpointMetadata,
      pendingWrites,
    };
    if (row.parentId) t.parentConfig = { configurable: { ...ids, checkpoint_id: row.parentId } };
    return t;
  }

  /** Checkpoints of format < 4 kept pending sends as writes of their parent: they become the
   * `__pregel_tasks` channel, as LangGraph's own savers migrate them. */
  private async migratePendingSends(checkpoint: Checkpoint, threadId: string, ns: string, parentId: string): Promise<void> {
    const parent = await call(() => this.threads.getTuple(threadId, ns, parentId));
    const sends = (parent?.writes ?? [])
      .filter((w) => w.channel === TASKS)
      .map((w) => ({ key: writesSortKey(w.taskPath, w.taskId, Number(w.idx)), w }))
      .sort((a, b) => compareWritesSortKeys(a.key, b.key));
    const values = checkpoint.channel_values as Record<string, unknown>;
    values[TASKS] = await Promise.all(sends.map(({ w }) => this.serde.loadsTyped(w.valueType, w.value)));
    const versions = (checkpoint.channel_versions ??= {});
    versions[TASKS] = Object.keys(versions).length > 0 ? maxChannelVersion(...Object.values(versions)) : this.getNextVersion(undefined);
  }

  async getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined> {
    // No thread: nothing to find (LangGraph's savers answer undefined, not an error).
    if (config?.configurable?.thread_id === undefined || config.configurable.thread_id === null) return undefined;
    const conf = configurable(config, "getTuple");
    const row = await call(() => this.threads.getTuple(String(conf.thread_id), String(conf.checkpoint_ns ?? ""), getCheckpointId(config) || undefined));
    return row === null ? undefined : this.tuple(row);
  }

  async *list(config: RunnableConfig, options: CheckpointListOptions = {}): AsyncGenerator<CheckpointTuple> {
    const conf = config?.configurable ?? {};
    const coreFilter: [string, string][] = [];
    const jsFilter: [string, unknown][] = [];
    for (const [k, v] of Object.entries(options.filter ?? {})) {
      const f = canonicalField(v);
      if (f === undefined) jsFilter.push([k, v]);
      else coreFilter.push([k, f]);
    }
    const limit = options.limit;
    const rows = await call(() => 
      this.threads.list({
        threadId: conf.thread_id === undefined || conf.thread_id === null ? undefined : String(conf.thread_id),
        ns: conf.checkpoint_ns === undefined ? undefined : String(conf.checkpoint_ns),
        checkpointId: conf.checkpoint_id ? String(conf.checkpoint_id) : undefined,
        before: options.before ? getCheckpointId(options.before) || undefined : undefined,
        filter: coreFilter,
        // Filters only JS can check apply after the core's: then the limit applies here.
        limit: jsFilter.length === 0 && limit !== undefined ? Math.max(0, limit) : undefined,
      }),
    );
    let n = 0;
    for (const row of rows) {
      if (limit !== undefined && n >= limit) return;
      const t = await this.tuple(row);
      if (jsFilter.some(([k, v]) => (t.metadata as Record<string, unknown> | undefined)?.[k] !== v)) continue;
      n += 1;
      yield t;
    }
  }

  async put(config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, newVersions: ChannelVersions): Promise<RunnableConfig> {
    const conf = configurable(config, "put");
    const threadId = String(conf.thread_id);
    const ns = String(conf.checkpoint_ns ?? "");
    const { channel_values: channelValues = {}, ...rest } = checkpoint;
    const values = await Promise.all(
      Object.entries(newVersions).map(async ([channel, version]) => {
        const [valueType, value] = channel in channelValues ? await this.serde.dumpsTyped((channelValues as Record<string, unknown>)[channel]) : [EMPTY, new Uint8Array()];
        return { channel, version: String(version), valueType, value: Buffer.from(value) };
      }),
    );
    const meta = { ...(metadata as Record<string, unknown>) };
    const fields: [string, string][] = [];
    for (const [k, v] of Object.entries(meta)) {
      const f = canonicalField(v);
      if (f !== undefined) fields.push([k, f]);
    }
    const [[checkpointType, ckpt], [metadataType, metaBytes]] = await Promise.all([this.serde.dumpsTyped(rest), this.serde.dumpsTyped(meta)]);
    const runId = meta.run_id;
    const put: native.PutCheckpointJs = {
      threadId,
      ns,
      checkpointId: checkpoint.id,
      parentId: conf.checkpoint_id ? String(conf.checkpoint_id) : undefined,
      checkpointType,
      checkpoint: Buffer.from(ckpt),
      metadataType,
      metadata: Buffer.from(metaBytes),
      fields,
      runId: runId === undefined || runId === null ? undefined : String(runId),
      channels: Object.entries(checkpoint.channel_versions ?? {}).map(([c, v]) => [c, String(v)] as [string, string]),
      values,
    };
    if (this.inline) callSync(() => this.threads.putNow(put));
    else await call(() => this.threads.put(put));
    return { configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id } };
  }

  async putWrites(config: RunnableConfig, writes: PendingWrite[], taskId: string, taskPath = ""): Promise<void> {
    const conf = configurable(config, "putWrites");
    if (!conf.checkpoint_id) {
      throw new InvalidArgumentError(
        `OmiumSaver.putWrites: config needs configurable.checkpoint_id (the checkpoint the writes belong to); got ${JSON.stringify(config)}`,
        "invalid_argument",
      );
    }
    const rows = await Promise.all(
      writes.map(async ([channel, value], idx) => {
        const [valueType, bytes] = await this.serde.dumpsTyped(value);
        return { idx: WRITES_IDX_MAP[channel] ?? idx, channel, valueType, value: Buffer.from(bytes) };
      }),
    );
    const at = [String(conf.thread_id), String(conf.checkpoint_ns ?? ""), String(conf.checkpoint_id), taskId, taskPath] as const;
    if (this.inline) callSync(() => this.threads.putWritesNow(...at, rows));
    else await call(() => this.threads.putWrites(...at, rows));
  }

  async deleteThread(threadId: string): Promise<void> {
    await call(() => this.threads.deleteThread(String(threadId)));
  }

  /** Deletes every checkpoint written by these runs (metadata `run_id`). */
  async deleteForRuns(runIds: string[]): Promise<void> {
    await call(() => this.threads.deleteForRuns(runIds.map(String)));
  }

  /** Copies every checkpoint and write of a thread to another thread id. */
  async copyThread(sourceThreadId: string, targetThreadId: string): Promise<void> {
    await call(() => this.threads.copyThread(String(sourceThreadId), String(targetThreadId)));
  }

  /** Keeps only the latest checkpoint of each namespace of the threads ("keep_latest"), or deletes them ("delete"). */
  async prune(threadIds: string[], strategy: "keep_latest" | "delete" = "keep_latest"): Promise<void> {
    if (strategy !== "keep_latest" && strategy !== "delete") {
      throw new InvalidArgumentError(`OmiumSaver.prune: unknown strategy ${JSON.stringify(strategy)}; expected "keep_latest" or "delete"`, "invalid_argument");
    }
    await call(() => this.threads.prune(threadIds.map(String), strategy === "keep_latest"));
  }
}
