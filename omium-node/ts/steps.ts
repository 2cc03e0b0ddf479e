/**
 * Durable steps: `checkpoint(name, fn, options)`.
 *
 * A step called inside a workflow takes the next position of the execution's journal when it
 * is *called* (synchronously, before its first await, so `Promise.all` keeps call order). If
 * the journal has a result at that position, it is decoded and returned and `fn` is not called;
 * a different step name there is a `NonDeterminismError`. Otherwise `fn` runs (with retries and
 * a timeout when asked), its postconditions and validators are checked, and only then is the
 * result recorded. A step nested in another step is identified by its parent's position and
 * its order inside the parent. Outside a workflow a step simply runs.
 */
import native = require("./native");
import { type Codec, CODEC_KEY, checkCodec, recordedCodec, toPlain } from "./codec";
import { ConditionError, ConditionFailed, InvalidArgumentError, StepTimeoutError, call, callSync } from "./errors";
import { spendMetadata } from "./analytics";
import { agree } from "./consensus";
import * as recovery from "./recovery";
import { type ExecutionContext, scope } from "./runtime";
import { failStepSpan, nowNs, startStepSpan } from "./trace";

/** A CEL expression over `args` (and `result` for postconditions), or a function. */
export type Condition<A extends unknown[], R = unknown> = string | ((...a: A) => boolean) | ((result: R) => boolean);

export interface StepOptions<A extends unknown[], R> {
  /** Checked before `fn` runs: CEL over `args` and the parameters by name (`customer.verified == true`), or `(...args) => boolean`. */
  preconditions?: (string | ((...args: A) => boolean | Promise<boolean>))[];
  /** Checked on the result before it is recorded: CEL over `args`, the parameters by name and `result`, or `(result) => boolean`. */
  postconditions?: (string | ((result: R) => boolean | Promise<boolean>))[];
  /**
   * The names conditions give the parameters, by position (default: read from `fn`'s source,
   * which a bundler's minifier may rename; destructured parameters have none).
   */
  params?: string[];
  /** Retries on failure when no policy rule applies (exponential backoff from 50 ms). */
  retries?: number;
  /** Milliseconds; a step that runs longer fails with `StepTimeoutError` (nothing recorded). */
  timeoutMs?: number;
  /** An identity from the arguments, so concurrent steps match by key rather than by order. */
  key?: (...args: A) => string;
  /** The agent recorded on the checkpoint. */
  agent?: string;
  codec?: Codec;
  /** Validators of the result: false or a string (the reason) flags a hallucination. */
  validators?: ((result: R) => unknown)[];
  /**
   * A consensus hand-off: the result is broadcast to `targets` (sender: `agent`, else the step
   * name) and recorded only once a quorum (default a majority) agreed within `timeoutMs`
   * (default 5000); otherwise the step fails with `ConsensusViolation` and its policy decides.
   */
  consensus?: { targets: string[]; timeoutMs?: number; quorum?: number };
}

interface Compiled {
  text: string;
  cel: native.Condition | undefined;
  fn: ((...a: unknown[]) => unknown) | undefined;
}

function compile(spec: unknown, where: string): Compiled {
  if (typeof spec === "string") return { text: spec, cel: callSync(() => new native.Condition(spec)), fn: undefined };
  if (typeof spec === "function") return { text: spec.name || "(function)", cel: undefined, fn: spec as (...a: unknown[]) => unknown };
  throw new InvalidArgumentError(`${where}: a condition must be a CEL expression string or a function, not ${spec === null ? "null" : typeof spec}`, "invalid_argument");
}

let warnedOutside = false;

/** Warns once per process that a step ran outside any execution (it ran; nothing was recorded). */
function warnOutside(step: string): void {
  if (warnedOutside) return;
  warnedOutside = true;
  process.emitWarning(
    `omium: step ${JSON.stringify(step)} ran outside any execution, so nothing was recorded (a crash would run it again); ` +
      "call it inside a workflow run (omium.workflow(...).run). This warning is shown once.",
    { type: "OmiumOutsideExecutionWarning", code: "OMIUM_OUTSIDE_EXECUTION" },
  );
}

/** Names a condition always has: a parameter called so is reached as `args[i]` only. */
const RESERVED = new Set(["args", "result"]);

/**
 * The names of a function's parameters, by position, from its source: `(customer, amount = 1) =>`,
 * `function (a, ...rest)`, `x =>`, methods. A destructured parameter has no name (`undefined` at
 * its position); a rest parameter is marked with a leading `...`. `options.params` overrides.
 */
export function parameterNames(fn: (...a: never[]) => unknown): (string | undefined)[] {
  const src = Function.prototype.toString.call(fn);
  const single = /^(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(src);
  if (single) return [single[1]];
  const open = src.indexOf("(");
  if (open < 0) return [];
  const parts: string[] = [];
  let depth = 0;
  let start = open + 1;
  for (let i = open; i < src.length; i++) {
    const ch = src[i];
    if (ch === "(" || ch === "[" || ch === "{") depth++;
    else if (ch === ")" || ch === "]" || ch === "}") {
      depth--;
      if (depth === 0) {
        parts.push(src.slice(start, i));
        break;
      }
    } else if (ch === "," && depth === 1) {
      parts.push(src.slice(start, i));
      start = i + 1;
    }
  }
  return parts
    .map((p) => p.replace(/\/\*[\s\S]*?\*\//g, "").trim())
    .filter((p, i, all) => p !== "" || i < all.length - 1)
    .map((p) => {
      const m = /^(\.\.\.)?\s*([A-Za-z_$][\w$]*)\s*(=[\s\S]*)?$/.exec(p);
      return m ? `${m[1] ?? ""}${m[2]}` : undefined;
    });
}

/** The variables of a CEL condition: `args`, and each named parameter of the step (a rest parameter as a list). */
function variables(names: (string | undefined)[], args: unknown[]): Record<string, unknown> {
  const vars: Record<string, unknown> = { args: toPlain(args) };
  names.forEach((n, i) => {
    if (n === undefined) return;
    if (n.startsWith("...")) {
      if (!RESERVED.has(n.slice(3))) vars[n.slice(3)] = toPlain(args.slice(i));
    } else if (!RESERVED.has(n) && i < args.length) vars[n] = toPlain(args[i]);
  });
  return vars;
}

async function check(c: Compiled, step: string, kind: string, args: unknown[], names: (string | undefined)[], hasResult: boolean, result?: unknown): Promise<void> {
  let ok: unknown;
  try {
    if (c.fn !== undefined) ok = await (hasResult ? c.fn(result) : c.fn(...args));
    else {
      const vars = variables(names, args);
      if (hasResult) vars.result = toPlain(result);
      ok = c.cel!.evaluate(vars);
    }
  } catch (e) {
    if (e instanceof ConditionFailed) throw e;
    throw new ConditionError(`step ${JSON.stringify(step)}: ${kind} ${JSON.stringify(c.text)} could not be evaluated: ${(e as Error).message ?? e}`, "condition_error");
  }
  if (!ok) throw new ConditionFailed(`step ${JSON.stringify(step)}: ${kind} ${JSON.stringify(c.text)} does not hold; nothing was recorded`, "condition_failed");
}

/** How often a step that awaits looks for an operator's pause or cancel (milliseconds). */
export const CONTROL_POLL_MS = 200;

/**
 * Awaits the step's body, with its timeout; while it awaits, every `CONTROL_POLL_MS` the run
 * looks for a pause or cancel an operator asked for and carries it out at once: the step
 * rejects with `ExecutionPaused` / `ExecutionCancelled` (the body is left to finish on its own,
 * its result unused, as after a timeout).
 */
async function awaitStep<R>(p: Promise<R>, timeoutMs: number | undefined, step: string, run: ExecutionContext["run"] | undefined): Promise<R> {
  if (timeoutMs === undefined && run === undefined) return p;
  return new Promise<R>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const watched: Watched | undefined = run === undefined ? undefined : { run, step, reject: (e) => done(() => reject(e)) };
    const done = (then: () => void) => {
      if (timer !== undefined) clearTimeout(timer);
      if (watched !== undefined) unwatch(watched);
      then();
    };
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () => done(() => reject(new StepTimeoutError(`step ${JSON.stringify(step)} did not finish within ${timeoutMs} ms; nothing was recorded (the call is left to finish on its own)`, "step_timeout"))),
        timeoutMs,
      );
    }
    if (watched !== undefined) watch(watched);
    p.then(
      (v) => done(() => resolve(v)),
      (e) => done(() => reject(e)),
    );
  });
}

/** A step that awaits its body, for the control poll. */
interface Watched {
  run: NonNullable<ExecutionContext["run"]>;
  step: string;
  reject: (e: unknown) => void;
}

// The steps awaiting their bodies, and one timer that looks for their runs' pauses and cancels
// every CONTROL_POLL_MS while there are any (not a timer per step: most bodies settle at once).
const polled = new Set<Watched>();
let poller: NodeJS.Timeout | undefined;

function watch(w: Watched): void {
  polled.add(w);
  // Referenced while a step awaits (a body that never settles keeps the process alive, as its
  // own timer would), unreferenced once none does.
  if (poller === undefined) poller = setInterval(pollControl, CONTROL_POLL_MS);
  else if (polled.size === 1) poller.ref();
}

function unwatch(w: Watched): void {
  polled.delete(w);
  if (polled.size === 0) poller?.unref();
}

function pollControl(): void {
  if (polled.size === 0) {
    clearInterval(poller);
    poller = undefined;
    return;
  }
  for (const w of polled) {
    call(() => w.run.checkControl(w.step)).then(undefined, (e) => {
      if (polled.has(w)) w.reject(e);
    });
  }
}

/** The journal position of a step called now: a top-level position, or parent/child key (the core's). */
export function position(ctx: ExecutionContext, stepKey: string | undefined, key: string | undefined): [number, string | undefined] {
  const [seq, k] = callSync(() => ctx.run.position(stepKey, key));
  return [seq, k ?? undefined];
}

export type Step<A extends unknown[], R> = ((...args: A) => Promise<R>) & { readonly stepName: string };

/**
 * Makes `fn` a durable step named `name`: inside a workflow, its result is recorded once it
 * returns and its postconditions hold, and a resumed run returns the recorded result instead of
 * calling `fn` again.
 */
/** Checkpoint metadata of what a step reported with `recordSpend`. */
function spentMetadata(spend: { costUsd: number; tokensIn: number; tokensOut: number }): Record<string, string> {
  const given = (v: number) => (v > 0 ? v : undefined);
  return spendMetadata(given(spend.tokensIn), given(spend.tokensOut), given(spend.costUsd));
}

/**
 * Reports what the running step spent (an LLM call made without `llmCall`, a paid API): it is
 * recorded with the step's checkpoint, counted in the analytics' `llm_cost_usd`, and when a
 * resumed run answers the step from its checkpoint, in `cost_saved_usd`. Calls add up. Outside
 * the body of a `checkpoint` step it throws.
 */
export function recordSpend(spent: { costUsd?: number; tokensIn?: number; tokensOut?: number }): void {
  const spend = scope.getStore()?.spend;
  if (spend === undefined) throw new Error("omium.recordSpend() is called inside the body of an omium.checkpoint step, to record what that step spent");
  for (const [k, v] of Object.entries(spent)) {
    if (!(k in spend)) throw new InvalidArgumentError(`omium.recordSpend: unknown field ${JSON.stringify(k)}; expected costUsd, tokensIn, tokensOut`, "invalid_argument");
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`omium.recordSpend: ${k} must be a number >= 0, not ${String(v)}`, "invalid_argument");
    spend[k as keyof typeof spend] += v;
  }
}

export function checkpoint<A extends unknown[], R>(name: string, fn: (...args: A) => R | Promise<R>, options: StepOptions<A, R> = {}): Step<A, Awaited<R>> {
  if (typeof name !== "string" || name === "") throw new InvalidArgumentError(`omium.checkpoint(name, fn): name must be a non-empty string, not ${JSON.stringify(name)}`, "invalid_argument");
  if (typeof fn !== "function") throw new InvalidArgumentError(`omium.checkpoint(${JSON.stringify(name)}, fn): fn must be a function, not ${fn === null ? "null" : typeof fn}`, "invalid_argument");
  if (options === null || typeof options !== "object") throw new InvalidArgumentError(`omium.checkpoint(${JSON.stringify(name)}, fn, options): options must be an object`, "invalid_argument");
  const where = `omium.checkpoint(${JSON.stringify(name)})`;
  const retries = options.retries ?? 0;
  if (!Number.isInteger(retries) || retries < 0) throw new InvalidArgumentError(`${where}: retries must be a non-negative integer, not ${JSON.stringify(retries)}`, "invalid_argument");
  const timeoutMs = options.timeoutMs;
  if (timeoutMs !== undefined && !(typeof timeoutMs === "number" && timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throw new InvalidArgumentError(`${where}: timeoutMs must be a positive number of milliseconds, not ${JSON.stringify(timeoutMs)}`, "invalid_argument");
  }
  if (options.key !== undefined && typeof options.key !== "function") throw new InvalidArgumentError(`${where}: key must be a function of the step's arguments returning a string`, "invalid_argument");
  if (options.params !== undefined && !(Array.isArray(options.params) && options.params.every((p) => typeof p === "string" && p !== ""))) {
    throw new InvalidArgumentError(`${where}: params must be a list of parameter names`, "invalid_argument");
  }
  const names = options.params ?? parameterNames(fn as (...a: never[]) => unknown);
  const pre = (options.preconditions ?? []).map((c) => compile(c, `${where} preconditions`));
  const post = (options.postconditions ?? []).map((c) => compile(c, `${where} postconditions`));
  const ownCodec = options.codec === undefined ? undefined : checkCodec(options.codec, where);
  const validators = (options.validators ?? []) as ((result: unknown) => unknown)[];
  for (const v of validators) if (typeof v !== "function") throw new InvalidArgumentError(`${where}: validators must be functions`, "invalid_argument");
  const handOff = options.consensus;
  if (handOff !== undefined) {
    const { targets, timeoutMs: t } = handOff;
    if (!Array.isArray(targets) || targets.length === 0 || !targets.every((x) => typeof x === "string" && x !== "")) {
      throw new InvalidArgumentError(`${where}: consensus.targets must be a non-empty list of agent ids`, "invalid_argument");
    }
    if (t !== undefined && !(typeof t === "number" && t > 0)) throw new InvalidArgumentError(`${where}: consensus.timeoutMs must be a positive number`, "invalid_argument");
  }

  // What a recorded step says about its conditions (they held, or it would not be recorded).
  const preHeld = pre.map((c) => [c.text, true] as [string, boolean]);
  const postHeld = post.map((c) => [c.text, true] as [string, boolean]);

  const attempt = async (args: unknown[]): Promise<unknown> => {
    // The step's own timeout, else the one its policy gives.
    const ctx = scope.getStore()?.ctx;
    let limit = timeoutMs;
    if (limit === undefined && ctx !== undefined) {
      const cached = recovery.cachedPolicyTimeoutMs(ctx, name);
      limit = cached === undefined ? await recovery.policyTimeoutMs(ctx, name) : (cached ?? undefined);
    }
    const result = await awaitStep(Promise.resolve().then(() => fn(...(args as A))), limit, name, ctx?.run);
    for (const c of post) await check(c, name, "postcondition", args, names, true, result);
    if (validators.length > 0 || recovery.hasValidators()) await recovery.validate(name, result, validators);
    // A violation is the step's failure; its recovery records it, not the coordinator.
    if (handOff !== undefined && ctx !== undefined) await agree(result, handOff.targets, { sender: options.agent ?? name, timeoutMs: handOff.timeoutMs, quorum: handOff.quorum, record: false });
    return result;
  };

  const step = async function (this: unknown, ...args: A): Promise<Awaited<R>> {
    // Everything up to the first await runs at call time: the position is taken here.
    const s = scope.getStore();
    const ctx = s?.ctx;
    if (ctx === undefined) {
      warnOutside(name);
      for (const c of pre) await check(c, name, "precondition", args, names, false);
      return (await attempt(args)) as Awaited<R>;
    }
    let key: string | undefined;
    if (options.key !== undefined) {
      key = options.key(...args);
      if (typeof key !== "string") throw new InvalidArgumentError(`step ${JSON.stringify(name)}: key(...) must return a string, not ${typeof key}`, "invalid_argument");
    }
    // The position and the journal lookup in one native call (in memory, synchronous); only a
    // hit reads the state, off-thread. A daemon's journal is asked off-thread, with the state in
    // the same call.
    const [seq, k, found] = ctx.served ? [...position(ctx, s!.stepKey, key), true] : callSync(() => ctx.run.beginStep(name, s!.stepKey, key));
    const stepKey = k ?? undefined; // (null from native)
    const codec = ownCodec ?? ctx.codec;
    if (found) {
      const hit = await call(() => ctx.run.recorded(seq, name, stepKey));
      if (hit !== null) {
        const recorded = (hit.checkpoint as { metadata?: Record<string, string> }).metadata?.[CODEC_KEY];
        return recordedCodec(recorded, codec, `step ${JSON.stringify(name)}`).decode(hit.state) as Awaited<R>;
      }
    }
    // A fork that changes this position's input (forkAt({ atStep, mutate })).
    if (ctx.mutation !== undefined && s!.stepKey === undefined && ctx.mutation.seq === seq) args = ctx.mutation.apply(args) as A;
    for (const c of pre) await check(c, name, "precondition", args, names, false);
    const span = startStepSpan(ctx.executionId, s!.span);
    const spend = { costUsd: 0, tokensIn: 0, tokensOut: 0 };
    const inner = { ctx, stepKey: stepKey ?? String(seq), stepName: name, span: span ?? s!.span, spend };
    try {
      const result = await scope.run(inner, async () => {
        try {
          return await attempt(args);
        } catch (e) {
          if (!recovery.recoverable(e)) throw e;
          return recovery.handle({ name, agent: options.agent, retries }, ctx, seq, stepKey, args, e, attempt);
        }
      });
      const data = codec.encode(result);
      const spent = spend.costUsd > 0 || spend.tokensIn > 0 || spend.tokensOut > 0;
      // Options only when there is more to record than the codec (the common step has none).
      let recordOptions: native.RecordOptions | undefined;
      if (stepKey !== undefined || options.agent !== undefined || preHeld.length > 0 || postHeld.length > 0 || spent || span !== undefined) {
        recordOptions = { key: stepKey, agent: options.agent, preconditions: preHeld, postconditions: postHeld, metadata: spent ? spentMetadata(spend) : undefined };
      }
      if (span !== undefined) {
        // The native call records the checkpoint's span and ends the step's, timed on the spans'
        // clock (nowNs), so the step ends inside its workflow's span.
        recordOptions!.span = { traceId: span.traceId, spanId: span.spanId, parent: span.parent, startNs: span.startNs.toString(), endStep: true, key: stepKey, nowNs: nowNs().toString() };
      }
      // A write that waits for an fsync goes to a worker thread; a buffered one is made here.
      if (ctx.waitsForFsync) await call(() => ctx.run.record(seq, name, data, recordOptions, codec.name));
      else callSync(() => ctx.run.recordNow(seq, name, data, recordOptions, codec.name));
      return result as Awaited<R>;
    } catch (e) {
      if (span !== undefined) failStepSpan(span, name, options.agent, { "omium.step": name, "omium.seq": seq, "omium.key": stepKey }, e);
      throw e;
    }
  };
  Object.defineProperty(step, "name", { value: fn.name || name });
  Object.defineProperty(step, "stepName", { value: name });
  return step as Step<A, Awaited<R>>;
}
