/**
 * Spans: workflows, steps, checkpoints, rollbacks and recovery actions are traced
 * automatically; `trace(name, fn)` adds your own. One trace per execution (its trace id is
 * derived from the execution id, so every run of it lands in the same trace). Recording a span
 * queues it for the store's writer thread and never waits on disk.
 */
import native = require("./native");
import { call, requireId } from "./errors";
import { type Scope, getConfig, isInitialized, scope, store } from "./runtime";

export type SpanType = "workflow" | "step" | "checkpoint" | "rollback" | "recovery" | "function" | "llm" | "tool" | "agent" | "chain" | string;
export type SpanKind = "internal" | "client" | "server" | "producer" | "consumer";
export type AttributeValue = string | number | boolean | string[];

// Unix nanoseconds from a monotonic clock anchored once to the wall clock.
const anchorNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
export function nowNs(): bigint {
  return anchorNs + process.hrtime.bigint();
}

export function enabled(): boolean {
  return isInitialized() && getConfig().tracing && !store().readOnly;
}

/** The option only `failStepSpan` passes: the step's span as `startStepSpan` began it. */
const STARTED = Symbol("started");

export class Span {
  readonly traceId: string;
  readonly spanId: string;
  readonly parent: string | undefined;
  readonly executionId: string;
  name: string;
  spanType: SpanType;
  kind: SpanKind;
  agent: string;
  readonly startNs: bigint;
  status: "unset" | "ok" | "error" = "unset";
  statusMessage = "";
  readonly attributes: Record<string, AttributeValue> = {};
  readonly events: { name: string; timeNs: string; attributes?: Record<string, unknown> }[] = [];
  private ended = false;

  constructor(
    name: string,
    spanType: SpanType,
    options: { kind?: SpanKind; agent?: string; attributes?: Record<string, AttributeValue | undefined>; executionId?: string; startNs?: bigint } = {},
  ) {
    const started = (options as { [STARTED]?: StepSpan })[STARTED];
    if (started !== undefined) {
      // A step's span begun by startStepSpan: its ids are taken.
      this.traceId = started.traceId;
      this.parent = started.parent;
      this.spanId = started.spanId;
      this.executionId = started.executionId;
    } else {
      const s = scope.getStore();
      const parent = s?.span;
      const executionId = options.executionId ?? s?.ctx?.executionId ?? parent?.executionId ?? "";
      if (parent !== undefined && parent.executionId === executionId) {
        this.traceId = parent.traceId;
        this.parent = parent.spanId;
      } else {
        this.traceId = executionId ? native.traceIdOf(executionId) : native.newTraceId();
        this.parent = undefined;
      }
      this.spanId = native.newSpanId();
      this.executionId = executionId;
    }
    this.name = name;
    this.spanType = spanType;
    this.kind = options.kind ?? "internal";
    this.agent = options.agent ?? "";
    this.startNs = started?.startNs ?? options.startNs ?? nowNs();
    this.setAttributes(options.attributes ?? {});
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (value !== undefined && value !== null) this.attributes[key] = value;
    return this;
  }

  setAttributes(attributes: Record<string, AttributeValue | undefined>): this {
    for (const [k, v] of Object.entries(attributes)) this.setAttribute(k, v);
    return this;
  }

  addEvent(name: string, attributes?: Record<string, unknown>): this {
    this.events.push({ name, timeNs: nowNs().toString(), ...(attributes ? { attributes } : {}) });
    return this;
  }

  recordException(e: unknown): this {
    const err = e instanceof Error ? e : new Error(String(e));
    this.status = "error";
    this.statusMessage = `${err.name}: ${err.message}`;
    return this.addEvent("exception", { "exception.type": err.name, "exception.message": err.message, "exception.stacktrace": err.stack ?? "" });
  }

  /** Ends the span and queues it for storage (once). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.status === "unset") this.status = "ok";
    if (!enabled()) return;
    store().recordSpan({
      traceId: this.traceId,
      spanId: this.spanId,
      parent: this.parent,
      name: this.name,
      spanType: this.spanType,
      executionId: this.executionId,
      agent: this.agent,
      startNs: this.startNs.toString(),
      endNs: nowNs().toString(),
      status: this.status,
      statusMessage: this.statusMessage,
      kind: this.kind,
      attributes: this.attributes,
      events: this.events,
    });
  }

  /** The scope in which this span is the parent of new spans. */
  scope(): Scope {
    const s = scope.getStore();
    return { ...s, ctx: s?.ctx, stepKey: s?.stepKey, span: { traceId: this.traceId, spanId: this.spanId, executionId: this.executionId } };
  }
}

export interface TraceOptions {
  spanType?: SpanType;
  kind?: SpanKind;
  agent?: string;
  attributes?: Record<string, AttributeValue | undefined>;
}

/**
 * Runs `fn` inside a span named `name` (a child of the span running now): its duration, its
 * error if it throws. `fn` receives the span to add attributes to.
 */
export async function trace<R>(name: string, fn: (span: Span) => Promise<R> | R, options: TraceOptions = {}): Promise<R> {
  if (typeof name !== "string" || name === "") throw new TypeError("omium.trace(name, fn): name must be a non-empty string");
  if (typeof fn !== "function") throw new TypeError("omium.trace(name, fn): fn must be a function");
  const span = new Span(name, options.spanType ?? "function", options);
  try {
    const result = await scope.run(span.scope(), () => fn(span));
    return result;
  } catch (e) {
    span.recordException(e);
    throw e;
  } finally {
    span.end();
  }
}

/** Starts a span when tracing is on (internal: workflows, steps, recovery actions). */
export function startSpan(name: string, spanType: SpanType, options: TraceOptions & { executionId?: string } = {}): Span | undefined {
  return enabled() ? new Span(name, spanType, options) : undefined;
}

/**
 * @internal A step's span as a step begins it: its ids and start, no `Span` (the body cannot
 * reach its step's span). The native call that records the step's checkpoint records and ends
 * it; only a step that fails makes a `Span` of it (`failStepSpan`). Also the scope's parent of
 * the spans begun inside the step.
 */
export interface StepSpan {
  traceId: string;
  spanId: string;
  parent: string | undefined;
  executionId: string;
  startNs: bigint;
}

/** @internal Begins a step's span, child of the span running in `parent`, when tracing is on. */
export function startStepSpan(executionId: string, parent: Scope["span"]): StepSpan | undefined {
  if (!enabled()) return undefined;
  const same = parent !== undefined && parent.executionId === executionId;
  return {
    traceId: same ? parent.traceId : native.traceIdOf(executionId),
    spanId: native.newSpanId(),
    parent: same ? parent.spanId : undefined,
    executionId,
    startNs: nowNs(),
  };
}

/** @internal Records the span of a step that failed (or whose checkpoint was not recorded). */
export function failStepSpan(started: StepSpan, name: string, agent: string | undefined, attributes: Record<string, AttributeValue | undefined>, error: unknown): void {
  const options = { agent, attributes, [STARTED]: started }; // not a literal: no excess-property check
  endSpan(new Span(name, "step", options), error);
}

export function endSpan(span: Span | undefined, error?: unknown): void {
  if (span === undefined) return;
  if (error !== undefined) span.recordException(error);
  span.end();
}

/** The W3C `traceparent` of the span running now (to propagate to another service). */
export function getTraceparent(): string | undefined {
  const s = scope.getStore();
  if (s?.span !== undefined) return `00-${s.span.traceId}-${s.span.spanId}-01`;
  if (s?.ctx !== undefined) return `00-${native.traceIdOf(s.ctx.executionId)}-${native.newSpanId()}-01`;
  return undefined;
}

export interface SpanRecord {
  traceId: string;
  spanId: string;
  parent: string | null;
  name: string;
  kind: SpanKind;
  spanType: string;
  executionId: string;
  agent: string;
  startNs: string;
  endNs: string;
  status: "ok" | "error" | "unset";
  statusMessage: string;
  attributes: Record<string, AttributeValue>;
  events: { name: string; timeNs: string; attributes: Record<string, AttributeValue> }[];
}

/** The stored spans of an execution, start time order. */
export async function spans(executionId: string): Promise<SpanRecord[]> {
  requireId(executionId, "omium.spans(executionId)");
  return (await call(() => store().spans(executionId))) as SpanRecord[];
}

/** The execution's trace as a terminal waterfall. */
export async function traceText(executionId: string, width = 60): Promise<string> {
  return call(() => store().traceText(executionId, width));
}

/** The execution's trace as one self-contained HTML page (timeline and agents' graph). */
export async function traceHtml(executionId: string): Promise<string> {
  return call(() => store().traceHtml(executionId));
}

/**
 * Starts exporting spans over OTLP/HTTP protobuf (`OTEL_EXPORTER_OTLP_*` variables apply), and
 * the store's analytics (the instruments of `omium serve`'s `/metrics`) every `metricsIntervalMs`
 * (default `OTEL_METRIC_EXPORT_INTERVAL`, else 60 s) to `metricsEndpoint` (default
 * `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/metrics`).
 */
export function enableOtlpExport(
  options: { endpoint?: string; serviceName?: string; metricsEndpoint?: string; metricsIntervalMs?: number } = {},
): void {
  store().enableOtlpExport(options.endpoint, options.serviceName, options.metricsEndpoint, options.metricsIntervalMs);
}
