/**
 * The event feed: every change of the store as a CloudEvent, from a cursor, optionally live.
 *
 * Events are the store's audit log read as a feed (written in the same batch as each change),
 * so `event.omiumseq` is a gap-free position a consumer stores as its cursor and passes back as
 * `since` after a restart: nothing is lost, and nothing before the cursor comes again.
 */
import { call } from "./errors";
import { store } from "./runtime";

/** One change of the store, in the CloudEvents 1.0 JSON format. */
export interface CloudEvent {
  specversion: "1.0";
  /** The seq, as a string (unique within `source`). */
  id: string;
  source: string;
  /** `io.omium.execution.started`, `io.omium.checkpoint.created`, ... */
  type: string;
  /** The execution (or framework thread) it concerns. */
  subject?: string;
  time: string;
  datacontenttype: "application/json";
  /** The position in the feed: store it as the cursor. */
  omiumseq: number;
  omiumactor: string;
  omiumresource: string;
  data: Record<string, unknown>;
}

export interface EventsOptions {
  /** Events after this seq (0: from the first). */
  since?: number;
  /** Only these types or families (`execution.failed`, `execution.*`). */
  types?: string[];
  /** Only the events of this execution. */
  executionId?: string;
  /** At most this many events. */
  limit?: number;
  /** Wait for new events as they are written. */
  follow?: boolean;
  /** With `follow`: stop after this many ms without an event (default: never). */
  timeoutMs?: number;
  /** With `follow`: stop when this signal aborts. */
  signal?: AbortSignal;
}

const BATCH = 1000;
const POLL_MS = 1000;

/**
 * The events after `since`, oldest first, as an async iterator. Without `follow` it ends at
 * the end of the feed (or after `limit` events); with `follow` it waits for new ones.
 */
export async function* events(options: EventsOptions = {}): AsyncGenerator<CloudEvent, void, undefined> {
  const { types = [], executionId, follow = false, timeoutMs, signal } = options;
  let since = options.since ?? 0;
  let left = options.limit ?? Number.POSITIVE_INFINITY;
  let idleSince = Date.now();
  while (left > 0 && !signal?.aborted) {
    const want = Math.min(left, BATCH);
    let wait = 0;
    if (follow) wait = timeoutMs === undefined ? POLL_MS : Math.max(0, Math.min(POLL_MS, timeoutMs - (Date.now() - idleSince)));
    const page = (await call(() => store().events(since, want, types, executionId, wait))) as {
      events: CloudEvent[];
      cursor: number;
    };
    since = page.cursor;
    for (const e of page.events) yield e;
    left -= page.events.length;
    if (!follow) {
      if (page.events.length < want) return;
    } else if (page.events.length > 0) {
      idleSince = Date.now();
    } else if (timeoutMs !== undefined && Date.now() - idleSince >= timeoutMs) {
      return;
    }
  }
}
