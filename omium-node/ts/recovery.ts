/**
 * Recovery of failed steps: the hooks users register (notifiers, fallbacks, fixers, the
 * root-cause analyzer, validators) and the loop that carries out what the policy decides.
 * Decisions, backoff, history and webhooks live in the core (`Recovery`); this module only runs
 * JS code: it waits, calls the step again, calls the hooks.
 */
import { setTimeout as sleep } from "node:timers/promises";

import native = require("./native");

import {
  ConditionFailed,
  ConsensusViolation,
  EscalatedError,
  ExecutionPaused,
  ExecutionRolledBack,
  HallucinationDetected,
  InvalidArgumentError,
  OmiumError,
  RecoveryOutcome,
  StepTimeoutError,
  ToolDeniedError,
  call,
  classNames,
} from "./errors";
import { type ExecutionContext, getConfig, scope, store } from "./runtime";
import { endSpan, startSpan } from "./trace";

export type Failure = Record<string, unknown>;
export type Notifier = (notification: { event: string; channels: string[]; failure: Failure; [k: string]: unknown }) => unknown;

const notifiers: { fn: Notifier; channels: Set<string> | undefined }[] = [];
const fallbacks = new Map<string, (...args: unknown[]) => unknown>();
const fixers = new Map<string, (failure: Failure, args: unknown[]) => unknown[] | Promise<unknown[]>>();
const validators: { fn: (result: unknown) => unknown; steps: Set<string> | undefined }[] = [];
let analyzer: ((failure: Failure) => unknown) | undefined;

export function mustBeFunction(fn: unknown, where: string): void {
  if (typeof fn !== "function") throw new InvalidArgumentError(`${where}: expected a function, not ${fn === null ? "null" : typeof fn}`, "invalid_argument");
}

export function mustBeName(name: unknown, where: string): asserts name is string {
  if (typeof name !== "string" || name === "") throw new InvalidArgumentError(`${where}: name must be a non-empty string`, "invalid_argument");
}

/** Registers a callback for notifications (notify, escalate); with `channels`, only for those. */
export function addNotifier(fn: Notifier, options: { channels?: string[] } = {}): Notifier {
  mustBeFunction(fn, "omium.addNotifier(fn)");
  notifiers.push({ fn, channels: options.channels ? new Set(options.channels) : undefined });
  return fn;
}

/** Registers the fallback called `name` (`fallback: {function: name}`): called with the failed step's arguments, its result becomes the step's. */
export function registerFallback(name: string, fn: (...args: never[]) => unknown): void {
  mustBeName(name, "omium.registerFallback(name, fn)");
  mustBeFunction(fn, "omium.registerFallback(name, fn)");
  fallbacks.set(name, fn as (...args: unknown[]) => unknown);
}

/** Registers a fixer for `suggest_fix: {fix: name, auto_apply: true}`: `fn(failure, args)` returns the arguments to retry the step with once. */
export function registerFix(name: string, fn: (failure: Failure, args: unknown[]) => unknown[] | Promise<unknown[]>): void {
  mustBeName(name, "omium.registerFix(name, fn)");
  mustBeFunction(fn, "omium.registerFix(name, fn)");
  fixers.set(name, fn);
}

/** Sets the root-cause analyzer for `inspect` actions: it returns `{ rootCause, suggestedFix }`. */
export function setAnalyzer(fn: ((failure: Failure) => unknown) | undefined): void {
  if (fn !== undefined) mustBeFunction(fn, "omium.setAnalyzer(fn)");
  analyzer = fn;
}

/**
 * Registers a validator run on every step result (or those of `steps`): returning false or a
 * string (the reason) flags the result as a hallucination; nothing is recorded.
 */
export function addValidator(fn: (result: unknown) => unknown, options: { steps?: string[] } = {}): void {
  mustBeFunction(fn, "omium.addValidator(fn)");
  validators.push({ fn, steps: options.steps ? new Set(options.steps) : undefined });
}

/** Removes every notifier, fallback, fixer, validator and the analyzer (for tests). */
export function clearHooks(): void {
  defaultsCache = new WeakMap();
  notifiers.length = 0;
  validators.length = 0;
  fallbacks.clear();
  fixers.clear();
  analyzer = undefined;
}

export async function validate(step: string, result: unknown, own: ((result: unknown) => unknown)[]): Promise<void> {
  for (const fn of [...own, ...validators.filter((v) => v.steps === undefined || v.steps.has(step)).map((v) => v.fn)]) {
    const verdict = await fn(result);
    if (verdict === false || typeof verdict === "string") {
      const reason = typeof verdict === "string" ? verdict : "the result was rejected";
      throw new HallucinationDetected(`step ${JSON.stringify(step)}: validator ${fn.name || "(anonymous)"} flagged the result: ${reason}; nothing was recorded`, "hallucination_detected");
    }
  }
}

/** Failures a policy may handle: the step's own errors, its timeout, failed conditions, flagged results, consensus violations, denied tools; not Omium's own errors. */
export function recoverable(e: unknown): boolean {
  if (e instanceof RecoveryOutcome) return false;
  if (e instanceof OmiumError) {
    return e instanceof StepTimeoutError || e instanceof ConditionFailed || e instanceof HallucinationDetected || e instanceof ConsensusViolation || e instanceof ToolDeniedError;
  }
  return true;
}

function kindOf(e: unknown): string | undefined {
  if (e instanceof StepTimeoutError) return "timeout_error";
  if (e instanceof ConditionFailed) return "postcondition_failed";
  return undefined; // classified by the core (policy `classify`, then built-in rules)
}

function classesOf(e: unknown): string[] {
  const out = classNames(e);
  const code = e instanceof Error ? (e as { code?: unknown }).code : undefined;
  if (typeof code === "string" && code !== "") out.push(code);
  return out;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

export interface FailedStep {
  name: string;
  agent: string | undefined;
  retries: number;
}

/**
 * Handles a failed step: returns the value that replaces its result, or throws. The core's
 * recovery driver decides and records everything; this runs what it commands.
 */
export async function handle(
  step: FailedStep,
  ctx: ExecutionContext,
  seq: number,
  key: string | undefined,
  args: unknown[],
  error: unknown,
  attempt: (args: unknown[]) => Promise<unknown>,
): Promise<unknown> {
  const s = store();
  const rec = await call(() =>
    s.startRecovery({
      executionId: ctx.executionId,
      workflow: ctx.workflow ?? "",
      tenant: ctx.tenant,
      step: step.name,
      seq,
      key,
      agent: step.agent ?? "main",
      kind: kindOf(error),
      errorClasses: classesOf(error),
      message: error instanceof Error ? error.message : String(error),
      retries: step.retries,
      rollbacksSoFar: ctx.rollbacks,
    }),
  );
  let exc = error;
  let fixed = args;
  let value: unknown;
  let event: native.RecoveryEvent = { event: "start" };
  for (;;) {
    const { name, params } = (await call(() => rec.advance(event))) as { name: string; params: Record<string, unknown> };
    if (name === "return") return value;
    if (name === "reraise") throw exc;
    const span = recoverySpan(name, params);
    try {
      let run: (() => Promise<unknown>) | undefined;
      if (name === "retry") {
        await sleep(Number(params.delayMs ?? 0));
        run = () => attempt(args);
      } else if (name === "call") {
        run = () => attempt(fixed);
      } else if (name === "fallback") {
        const fn = fallbacks.get(String(params.function));
        if (fn !== undefined) run = async () => fn(...args);
        else event = { event: "missing" };
      } else if (name === "fix") {
        const fixer = fixers.get(String(params.fix));
        if (fixer === undefined) event = { event: "missing" };
        else {
          try {
            const got = await fixer(params.failure as Failure, [...args]);
            if (Array.isArray(got)) {
              fixed = got;
              event = { event: "fixed" };
            } else event = { event: "fixed", ok: false, note: `fixer ${JSON.stringify(params.fix)} must return the step's arguments as an array` };
          } catch (e) {
            event = { event: "fixed", ok: false, note: describe(e) };
          }
        }
      } else if (name === "analyze") {
        if (analyzer === undefined) event = { event: "missing" };
        else {
          try {
            const said = (await analyzer(params.failure as Failure)) as { rootCause?: string; suggestedFix?: string } | undefined;
            event = { event: "analyzed", rootCause: said?.rootCause, suggestedFix: said?.suggestedFix };
          } catch (e) {
            event = { event: "analyzed", ok: false, note: describe(e) };
          }
        }
      } else if (name === "notify") {
        event = { event: "notified", note: await notify(params as Parameters<Notifier>[0]) };
      } else {
        throw outcome(params, exc); // raise: escalated, paused, rolled back
      }
      if (run !== undefined) {
        try {
          value = await run();
          event = { event: "called" };
        } catch (e) {
          event = { event: "called", ok: false, note: describe(e), recoverable: recoverable(e) };
          exc = e;
        }
      }
      endSpan(span);
    } catch (e) {
      endSpan(span, e);
      throw e;
    }
  }
}

/** A span for what the recovery does (`recovery retry`, `recovery paused`, ...). */
function recoverySpan(name: string, params: Record<string, unknown>): ReturnType<typeof startSpan> {
  const action = name === "raise" ? String(params.code) : name;
  const attributes: Record<string, string | number | boolean> = { "omium.recovery.action": action };
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) attributes[`omium.recovery.${k}`] = v.join(", ");
    else if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") attributes[`omium.recovery.${k}`] = v;
  }
  return startSpan(`recovery ${action}`, "recovery", { attributes });
}

/** The error a recovery ends a step with, from the core's error (code and message). */
function outcome(p: Record<string, unknown>, cause: unknown): OmiumError {
  const failure = (p.failure ?? {}) as Failure;
  const message = String(p.message);
  let err: OmiumError;
  if (p.code === "paused") err = new ExecutionPaused(message, String(p.executionId), String(p.reason), failure);
  else if (p.code === "rolled_back") err = new ExecutionRolledBack(message, String(p.executionId), String(p.to), failure);
  else err = new EscalatedError(message, "escalated", failure);
  err.cause = cause;
  return err;
}

/** Calls the notifiers (the core sends the webhooks); returns undefined, or what went wrong. */
async function notify(body: Parameters<Notifier>[0]): Promise<string | undefined> {
  const problems: string[] = [];
  const channels = body.channels ?? [];
  for (const { fn, channels: only } of [...notifiers]) {
    if (only !== undefined && channels.length > 0 && !channels.some((c) => only.has(c))) continue;
    try {
      await fn(body);
    } catch (e) {
      problems.push(`notifier ${fn.name || "(anonymous)"} threw ${describe(e)}`);
    }
  }
  return problems.length ? problems.join("; ") : undefined;
}

// The policy defaults in force per store and (tenant, workflow, step), until a policy is applied here.
let defaultsCache = new WeakMap<object, Map<string, Record<string, unknown>>>();

async function stepDefaults(ctx: ExecutionContext, step: string | undefined): Promise<Record<string, unknown>> {
  const s = store();
  let cache = defaultsCache.get(s);
  if (cache === undefined) defaultsCache.set(s, (cache = new Map()));
  const key = JSON.stringify([ctx.tenant, ctx.workflow ?? null, step ?? null]);
  let found = cache.get(key);
  if (found === undefined) {
    found = ((await call(() => s.policyDefaults(ctx.tenant, ctx.workflow, step))) as { defaults: Record<string, unknown> }).defaults;
    cache.set(key, found);
  }
  return found;
}

/**
 * The policy's step timeout when its defaults are cached already: a number, `null` for none,
 * `undefined` when not looked up yet (ask `policyTimeoutMs`). Spares a step an await.
 */
export function cachedPolicyTimeoutMs(ctx: ExecutionContext, step: string): number | null | undefined {
  const found = defaultsCache.get(store())?.get(JSON.stringify([ctx.tenant, ctx.workflow ?? null, step ?? null]));
  if (found === undefined) return undefined;
  return typeof found.step_timeout_ms === "number" ? found.step_timeout_ms : null;
}

/** Whether global validators are registered (a step without its own skips validation). */
export function hasValidators(): boolean {
  return validators.length > 0;
}

/** The step timeout the policy gives a step, in milliseconds. */
export async function policyTimeoutMs(ctx: ExecutionContext, step: string): Promise<number | undefined> {
  const ms = (await stepDefaults(ctx, step)).step_timeout_ms;
  return typeof ms === "number" ? ms : undefined;
}

/** The core checks a tool call against the policy's `tool_whitelist` and records a denial. */
export async function checkTool(name: string): Promise<void> {
  const s = scope.getStore();
  const ctx = s?.ctx;
  if (ctx === undefined) return;
  await call(() => store().checkTool(ctx.executionId, ctx.tenant, ctx.workflow, s?.stepName, "main", name));
}

export interface ApplyPolicyOptions {
  /** "global" (default), "workflow:NAME", "step:NAME" or "workflow:NAME/step:NAME". */
  scope?: string;
  /** Default: the `project` given to init(), else "default". */
  tenant?: string;
  /** File name shown in error messages. */
  file?: string;
  author?: string;
}

/** Validates a policy document (YAML or JSON text) and stores it as a new version. */
export async function applyPolicy(text: string, options: ApplyPolicyOptions = {}): Promise<Record<string, unknown>> {
  if (typeof text !== "string") throw new InvalidArgumentError("omium.applyPolicy(text): text must be the policy document as a string", "invalid_argument");
  const tenant = options.tenant ?? getConfig().project ?? "default";
  defaultsCache = new WeakMap();
  return (await call(() => store().applyPolicy(tenant, options.scope ?? "global", text, options.file, options.author))) as Record<string, unknown>;
}

/** Policy versions of a tenant (and scope), or of every tenant. */
export async function policyVersions(options: { tenant?: string; scope?: string } = {}): Promise<Record<string, unknown>[]> {
  return (await call(() => store().policyVersions(options.tenant, options.scope))) as Record<string, unknown>[];
}

/** Failure records (type, step, actions taken, outcome), of one execution or all. */
export async function failures(executionId?: string): Promise<Failure[]> {
  return (await call(() => store().failures(executionId))) as Failure[];
}

/** MTTR, recovery rate (recovered over settled), failures by type, retries per success; of one workflow or all. */
export async function recoveryMetrics(workflow?: string): Promise<Record<string, unknown>> {
  return (await call(() => store().recoveryMetrics(workflow))) as Record<string, unknown>;
}
