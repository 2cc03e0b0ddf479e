/**
 * LLM and tool calls that are recorded, replayed and diffed.
 *
 * `llmCall(fn, params, { provider })` / `llm(options, fn)` and `callTool(name, fn, ...args)` /
 * `tool(name, fn)` record each call's canonical request and its response as a durable step of
 * the execution, keyed by its position and by a blake3 hash of the request (provider, model,
 * messages, tools, parameters — never headers, ids or timestamps: the core builds it, the same
 * as in Python), and trace it with the OpenTelemetry GenAI attributes.
 *
 * `replay(executionId)` runs the workflow again with the recorded responses: nothing is called
 * live, side-effect tools never run; the first request that does not match the recording throws
 * `ReplayDivergence` with both requests. `forkAt(executionId, { atStep, mutate })` re-runs from a
 * position with a changed input and goes live from there; `diff(a, b)` compares two executions
 * step by step.
 */
import { randomBytes } from "node:crypto";

import native = require("./native");
import { spendMetadata } from "./analytics";
import { CODEC_KEY, recordedCodec, toPlain } from "./codec";
import { InvalidArgumentError, WorkflowNotRegisteredError, call, callSync } from "./errors";
import { type ExecutionContext, getConfig, scope, store } from "./runtime";
import { checkTool, mustBeFunction, mustBeName } from "./recovery";
import { position } from "./steps";
import { Span, enabled as tracing } from "./trace";
import { type ExecutionInfo, getExecution, registeredWorkflows, storedInput } from "./workflow";

type Params = Record<string, unknown>;

const pricing = new Map<string, [number, number]>();
const captureContent = (process.env.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT ?? "").toLowerCase() === "true";
const MAX_VALUE = 4096;

/** USD per 1,000 input and output tokens of a model, for the `omium.cost_usd` attribute of LLM spans (used by `diff`). */
export function setPricing(model: string, price: { inputPer1k: number; outputPer1k: number }): void {
  if (typeof model !== "string" || model === "") throw new InvalidArgumentError("omium.setPricing(model, price): model must be a non-empty string", "invalid_argument");
  const { inputPer1k, outputPer1k } = price ?? ({} as never);
  if (!Number.isFinite(inputPer1k) || !Number.isFinite(outputPer1k) || inputPer1k < 0 || outputPer1k < 0) {
    throw new InvalidArgumentError(`omium.setPricing(${JSON.stringify(model)}, price): inputPer1k and outputPer1k must be non-negative numbers`, "invalid_argument");
  }
  pricing.set(model, [inputPer1k, outputPer1k]);
}

export interface LlmOptions {
  /** `gen_ai.provider.name`: "openai", "anthropic", ... */
  provider?: string;
  /** The model; default `params.model`. */
  model?: string;
  /** `gen_ai.operation.name`; default "chat". */
  operation?: string;
}

interface Describe {
  kind: "llm" | "tool";
  name: string;
  provider: string;
  model: string;
  operation: string;
  sideEffect: boolean;
}

function content(value: unknown): string {
  let text: string;
  try {
    text = typeof value === "string" ? value : (JSON.stringify(toPlain(value)) ?? "null");
  } catch {
    text = String(value);
  }
  return text.length <= MAX_VALUE ? text : `${text.slice(0, MAX_VALUE)}…`;
}

function describeRequest(span: Span, d: Describe, args: unknown[], params: Params): void {
  if (d.kind === "llm") {
    span.setAttributes({ "gen_ai.operation.name": d.operation, "gen_ai.provider.name": d.provider || undefined });
    if (d.model) span.setAttributes({ "gen_ai.request.model": d.model, "llm.model_name": d.model });
    for (const [p, attr] of [
      ["temperature", "gen_ai.request.temperature"],
      ["max_tokens", "gen_ai.request.max_tokens"],
      ["top_p", "gen_ai.request.top_p"],
    ] as const) {
      if (typeof params[p] === "number") span.setAttribute(attr, params[p] as number);
    }
    if (captureContent && params.messages !== undefined) {
      const text = content(params.messages);
      span.setAttributes({ "gen_ai.input.messages": text, "input.value": text });
    }
  } else {
    span.setAttributes({ "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": d.name, "tool.name": d.name });
    if (captureContent) span.setAttribute("input.value", content(args));
  }
}

function usage(response: unknown): [number | undefined, number | undefined] {
  const u = (response as { usage?: Record<string, unknown> } | null)?.usage;
  if (u === null || typeof u !== "object") return [undefined, undefined];
  const get = (...names: string[]) => names.map((n) => u[n]).find((v): v is number => Number.isInteger(v));
  return [get("input_tokens", "prompt_tokens"), get("output_tokens", "completion_tokens")];
}

/** Tokens and USD cost of an LLM response, as checkpoint metadata (the analytics' `llm_cost_usd` and `cost_saved_usd` read them). */
function spend(d: Describe, response: unknown): Record<string, string> {
  if (d.kind !== "llm") return {};
  const [tin, tout] = usage(response);
  return spendMetadata(tin, tout, costOf(d, tin, tout));
}

function costOf(d: Describe, tin: number | undefined, tout: number | undefined): number | undefined {
  const price = pricing.get(d.model);
  if (price === undefined || (tin === undefined && tout === undefined)) return undefined;
  return Math.round((((tin ?? 0) * price[0] + (tout ?? 0) * price[1]) / 1000) * 1e8) / 1e8;
}

function describeResponse(span: Span, d: Describe, response: unknown): void {
  if (d.kind === "llm") {
    const [tin, tout] = usage(response);
    span.setAttributes({
      "gen_ai.usage.input_tokens": tin,
      "llm.token_count.prompt": tin,
      "gen_ai.usage.output_tokens": tout,
      "llm.token_count.completion": tout,
    });
    const cost = costOf(d, tin, tout);
    if (cost !== undefined) span.setAttribute("omium.cost_usd", cost);
    const model = (response as { model?: unknown } | null)?.model;
    if (typeof model === "string") span.setAttribute("gen_ai.response.model", model);
  }
  if (captureContent) {
    const text = content(response);
    span.setAttribute("output.value", text);
    if (d.kind === "llm") span.setAttribute("gen_ai.output.messages", text);
  }
}

/** One recorded call: resumed (the journal has it), replayed (answered by the recording), or run live and recorded. */
async function recordedCall<R>(d: Describe, fn: (...a: unknown[]) => R | Promise<R>, args: unknown[], params: Params | undefined): Promise<Awaited<R>> {
  const s = scope.getStore();
  const ctx: ExecutionContext | undefined = s?.ctx;
  const spanName = callSync(() => native.callSpanName(d.kind, d.name, d.model, d.operation));
  const stepName = `${d.kind}:${spanName}`;
  const live = (a: unknown[]) => (params === undefined ? fn(...a) : fn(a[0]));
  let callArgs = params === undefined ? args : [params];
  let seq = 0;
  let stepKey: string | undefined;
  if (ctx !== undefined) {
    [seq, stepKey] = position(ctx, s!.stepKey, undefined);
    if (ctx.served || callSync(() => ctx.run.isRecorded(seq, stepName, stepKey))) {
      const hit = await call(() => ctx.run.recorded(seq, stepName, stepKey));
      if (hit !== null) {
        const recorded = (hit.checkpoint as { metadata?: Record<string, string> }).metadata?.[CODEC_KEY];
        return (recordedCodec(recorded, ctx.codec, stepName).decode(hit.state) as { response: Awaited<R> }).response;
      }
    }
    if (ctx.mutation !== undefined && stepKey === undefined && ctx.mutation.seq === seq) callArgs = ctx.mutation.apply(callArgs);
  }
  const canonicalParams = params === undefined ? {} : (toPlain(callArgs[0]) as Params);
  // The canonical request is recorded (and replayed) inside an execution only.
  const { request, hash } =
    ctx === undefined
      ? { request: undefined, hash: "" }
      : (callSync(() => native.canonicalRequest(d.kind, d.name, d.provider, d.model, params === undefined ? (toPlain(callArgs) as unknown[]) : [], canonicalParams)) as { request: unknown; hash: string });
  const span = tracing() ? new Span(spanName, d.kind, { kind: d.kind === "llm" ? "client" : "internal" }) : undefined;
  if (span !== undefined) describeRequest(span, d, callArgs, canonicalParams);
  try {
    let response: Awaited<R>;
    if (ctx?.replay !== undefined) {
      span?.setAttribute("omium.request_hash", hash);
      const answer = callSync(() => ctx.replay!.answer(request, hash));
      response = (recordedCodec(answer.metadata[CODEC_KEY], ctx.codec, answer.name).decode(answer.state) as { response: Awaited<R> }).response;
      span?.setAttribute("omium.replayed", true);
    } else {
      response = (await (span === undefined ? live(callArgs) : scope.run(span.scope(), () => live(callArgs)))) as Awaited<R>;
    }
    if (span !== undefined) describeResponse(span, d, response);
    if (ctx !== undefined) {
      const data = ctx.codec.encode({ request, response });
      const metadata = {
        "omium.call": d.kind,
        "omium.request_hash": hash,
        "omium.side_effect": d.sideEffect ? "true" : "false",
        ...spend(d, response),
      };
      const options = { key: stepKey, metadata };
      const codec = ctx.codec.name;
      const id = ctx.waitsForFsync ? await call(() => ctx.run.record(seq, stepName, data, options, codec)) : callSync(() => ctx.run.recordNow(seq, stepName, data, options, codec));
      span?.setAttributes({ "omium.request_hash": hash, "omium.checkpoint_id": id });
    }
    span?.end();
    return response;
  } catch (e) {
    if (span !== undefined) {
      span.recordException(e);
      span.end();
    }
    throw e;
  }
}

function llmDescribe(options: LlmOptions, params: Params | undefined, where: string): Describe {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError(`${where}: options must be an object`, "invalid_argument");
  for (const k of ["provider", "model", "operation"] as const) {
    if (options[k] !== undefined && typeof options[k] !== "string") throw new InvalidArgumentError(`${where}: ${k} must be a string, not ${typeof options[k]}`, "invalid_argument");
  }
  const model = options.model ?? (typeof params?.model === "string" ? params.model : "");
  return { kind: "llm", name: model, provider: options.provider ?? "", model, operation: options.operation ?? "chat", sideEffect: false };
}

function mustBeParams(params: unknown, where: string): asserts params is Params {
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new InvalidArgumentError(`${where}: params must be the request object ({ model, messages, ... }), not ${params === null ? "null" : Array.isArray(params) ? "an array" : typeof params}`, "invalid_argument");
  }
}

/**
 * Makes an LLM call through Omium: `omium.llmCall((p) => client.chat.completions.create(p), {
 * model: "gpt-4o", messages, temperature: 0 }, { provider: "openai" })` calls `fn(params)`,
 * records request and response, traces it. Resumed and replayed runs get the recorded response
 * without calling `fn`.
 */
export function llmCall<R>(fn: (params: Params) => R | Promise<R>, params: Params, options: LlmOptions = {}): Promise<Awaited<R>> {
  if (typeof fn !== "function") throw new InvalidArgumentError("omium.llmCall(fn, params): fn must be a function", "invalid_argument");
  mustBeParams(params, "omium.llmCall(fn, params)");
  const d = llmDescribe(options, params, "omium.llmCall(fn, params, options)");
  const p = options.model !== undefined && params.model === undefined ? { ...params, model: options.model } : params;
  return recordedCall(d, fn as (...a: unknown[]) => R, [], p);
}

/** `llmCall` as a wrapper: `const ask = omium.llm({ provider: "anthropic", model: "claude" }, (params) => client.messages.create(params))`. */
export function llm<R>(options: LlmOptions, fn: (params: Params) => R | Promise<R>): (params: Params) => Promise<Awaited<R>> {
  if (typeof fn !== "function") throw new InvalidArgumentError("omium.llm(options, fn): fn must be a function", "invalid_argument");
  llmDescribe(options, undefined, "omium.llm(options, fn)");
  const wrapped = (params: Params) => llmCall(fn, params, options);
  Object.defineProperty(wrapped, "name", { value: fn.name || "llm" });
  return wrapped;
}

/**
 * Makes `fn` a tool called through Omium: inside an execution, a call of a tool the policy's
 * `tool_whitelist` does not allow throws `ToolDeniedError` (recorded as a `tool_denied` failure)
 * instead of calling it; an allowed call is recorded (arguments and result) and traced, and a
 * resumed or replayed run gets the recorded result. A `sideEffect` tool is marked so: a replay
 * never runs it (no replay runs any recorded tool).
 */
export function tool<A extends unknown[], R>(name: string, fn: (...args: A) => R | Promise<R>, options: { sideEffect?: boolean } = {}): (...args: A) => Promise<Awaited<R>> {
  mustBeName(name, "omium.tool(name, fn)");
  mustBeFunction(fn, "omium.tool(name, fn)");
  if (options === null || typeof options !== "object" || (options.sideEffect !== undefined && typeof options.sideEffect !== "boolean")) {
    throw new InvalidArgumentError(`omium.tool(${JSON.stringify(name)}, fn, options): options.sideEffect must be a boolean`, "invalid_argument");
  }
  const d: Describe = { kind: "tool", name, provider: "", model: "", operation: "execute_tool", sideEffect: options.sideEffect ?? false };
  const wrapped = async (...args: A): Promise<Awaited<R>> => {
    await checkTool(name);
    return recordedCall(d, fn as (...a: unknown[]) => R, args, undefined);
  };
  Object.defineProperty(wrapped, "name", { value: fn.name || name });
  return wrapped;
}

/** Calls `fn(...args)` as the tool `name` (see `tool`). */
export async function callTool<A extends unknown[], R>(name: string, fn: (...args: A) => R | Promise<R>, ...args: A): Promise<Awaited<R>> {
  return tool(name, fn)(...args);
}

/** The new execution a replay or a fork ran, and what its workflow returned. */
export interface RunResult {
  executionId: string;
  output: unknown;
  sourceExecutionId: string;
}

async function workflowOf(executionId: string): Promise<[ExecutionInfo, { runWith: (input: unknown, executionId: string, extras: RunExtras) => Promise<unknown> }, unknown]> {
  const info = await getExecution(executionId);
  const wf = registeredWorkflows().get(info.workflow);
  if (wf === undefined) {
    throw new WorkflowNotRegisteredError(
      `cannot re-run ${JSON.stringify(executionId)}: workflow ${JSON.stringify(info.workflow)} is not defined in this process; import the module that defines it`,
      "workflow_not_registered",
    );
  }
  return [info, wf as never, await storedInput(info, wf.codec)];
}

/** What a replay or a fork adds to a run's context. */
type RunExtras = Pick<ExecutionContext, "replay" | "mutation">;

function newId(executionId: string, what: string, given: string | undefined): string {
  if (given === undefined) return `${executionId}-${what}-${randomBytes(4).toString("hex")}`;
  if (typeof given !== "string" || given === "") throw new InvalidArgumentError(`omium.${what}(executionId, { newExecutionId }): expected a non-empty string`, "invalid_argument");
  return given;
}

/**
 * Runs the workflow of `executionId` again, as a new execution, with every LLM and tool call
 * answered from the recording: nothing is called live and side-effect tools never run. Throws
 * `ReplayDivergence` at the first request that differs.
 */
export async function replay(executionId: string, options: { newExecutionId?: string } = {}): Promise<RunResult> {
  const [, wf, input] = await workflowOf(executionId);
  const id = newId(executionId, "replay", options.newExecutionId);
  const source = await call(() => store().openReplay(executionId));
  const output = await wf.runWith(input, id, { replay: source });
  callSync(() => source.finish());
  return { executionId: id, output, sourceExecutionId: executionId };
}

export interface ForkAtOptions {
  /** The position to re-run from (the `seq` of `history`; 1 is the first step). */
  atStep: number;
  /** Changes the arguments of the step or call at that position: `(args) => args`. */
  mutate?: (args: unknown[]) => unknown[];
  newExecutionId?: string;
}

/**
 * Forks `executionId` before position `atStep` and runs its workflow live from there, with the
 * arguments of that position changed by `mutate`; the original is kept.
 */
export async function forkAt(executionId: string, options: ForkAtOptions): Promise<RunResult> {
  if (options === null || typeof options !== "object" || !Number.isInteger(options.atStep) || options.atStep < 1) {
    throw new InvalidArgumentError(`omium.forkAt(executionId, { atStep }): expected a position (1 is the first step), not ${JSON.stringify(options?.atStep)}`, "invalid_argument");
  }
  const { mutate } = options;
  if (mutate !== undefined && typeof mutate !== "function") throw new InvalidArgumentError("omium.forkAt(executionId, { mutate }): mutate must be a function (args) => args", "invalid_argument");
  const [, wf, input] = await workflowOf(executionId);
  const id = newId(executionId, "fork", options.newExecutionId);
  await call(() => store().forkAtStep(executionId, options.atStep, id));
  const apply = (args: unknown[]) => {
    const out = mutate!(args);
    if (!Array.isArray(out)) throw new InvalidArgumentError(`omium.forkAt(mutate): must return the new arguments as an array, not ${typeof out}`, "invalid_argument");
    return out;
  };
  const output = await wf.runWith(input, id, mutate === undefined ? {} : { mutation: { seq: options.atStep, apply } });
  return { executionId: id, output, sourceExecutionId: executionId };
}

/** One position of two executions compared (durations in ns). */
export interface StepDiff {
  seq: number;
  position: string;
  nameA: string | null;
  nameB: string | null;
  outputDiffers: boolean;
  inputDiffers: boolean;
  durationNsA: number | null;
  durationNsB: number | null;
  tokensA: number | null;
  tokensB: number | null;
  costA: number | null;
  costB: number | null;
  differs: boolean;
}

/** Compares two executions position by position: step names, outputs, inputs (requests of LLM and tool calls), timing, tokens and cost. */
export async function diff(a: string, b: string): Promise<StepDiff[]> {
  getConfig();
  return (await call(() => store().diffExecutions(a, b))) as StepDiff[];
}
