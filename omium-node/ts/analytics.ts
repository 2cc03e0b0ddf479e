/**
 * Execution analytics: `await omium.metrics({ since: "7d", by: ["workflow"] })`.
 *
 * The core computes the figures from rollups kept as events are written, so a query reads a
 * few cells whatever the number of executions (docs/operations.md has the definitions).
 */
import { readFileSync } from "node:fs";

import { call, callSync } from "./errors";
import { beforeClose, store } from "./runtime";

export type GroupBy = "workflow" | "agent" | "tenant" | "step" | "failure_type" | "hour" | "day" | "week" | "month";

export interface MetricsQuery {
  /** A duration before now ("7d", "24h"), a date ("2026-11-01"), a UTC time, a Date or milliseconds since 1970. Default: 24 hours before `until`. */
  since?: string | number | Date;
  /** Default: now. */
  until?: string | number | Date;
  by?: GroupBy | GroupBy[] | string;
  workflow?: string;
  tenant?: string;
  agent?: string;
  step?: string;
}

/** The figures of a group or of the whole window; rates and percentiles are null when there is nothing to compute them over. */
export interface Figures {
  started: number;
  completed: number;
  failed: number;
  cancelled: number;
  paused: number;
  success_rate: number | null;
  execution_p50_ms: number | null;
  execution_p95_ms: number | null;
  execution_p99_ms: number | null;
  steps: number;
  step_p50_ms: number | null;
  step_p95_ms: number | null;
  step_p99_ms: number | null;
  replayed_steps: number;
  failures: number;
  failures_by_type: Record<string, number>;
  failure_rate_by_type: Record<string, number>;
  recovered: number;
  mttr_ms: number | null;
  retries: number;
  rollbacks: number;
  forks: number;
  tokens_in: number;
  tokens_out: number;
  llm_cost_usd: number;
  cost_per_execution_usd: number | null;
  cost_saved_usd: number;
  tokens_saved: number;
}

export interface MetricsReport {
  since: string;
  until: string;
  since_ms: number;
  until_ms: number;
  by: string[];
  totals: Figures;
  groups: { key: Record<string, string>; figures: Figures }[];
}

/** Checkpoint metadata of what a step spent (the keys the core's analytics read); undefined values are left out. */
export function spendMetadata(tokensIn: number | undefined, tokensOut: number | undefined, costUsd: number | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (tokensIn !== undefined) out["omium.tokens_in"] = String(Math.round(tokensIn));
  if (tokensOut !== undefined) out["omium.tokens_out"] = String(Math.round(tokensOut));
  if (costUsd !== undefined) out["omium.cost_usd"] = String(Math.round(costUsd * 1e8) / 1e8);
  return out;
}

/** Execution analytics over a window (default: the last 24 hours), optionally grouped. */
export async function metrics(query: MetricsQuery = {}): Promise<MetricsReport> {
  const time = (t: string | number | Date | undefined) => (t instanceof Date ? t.getTime() : t);
  const q = { ...query, since: time(query.since), until: time(query.until) };
  return (await call(() => store().metrics(q))) as unknown as MetricsReport;
}

/** Alert rules evaluated in a thread of this process (`startAlerts`), until `stop()`. */
export interface Alerts {
  stop(): Promise<void>;
  readonly running: boolean;
  /** The last evaluation's error, if it failed. */
  readonly lastError: string | null;
}

/** One change of an alert, as its audit entry records it. */
export interface AlertTransition {
  rule: string;
  group: Record<string, string>;
  status: "firing" | "resolved" | "acknowledged";
  repeat: boolean;
  value: number | null;
  /** Channel name → "ok" or why not. */
  delivered: Record<string, string>;
}

// Evaluators started in this process: shutdown() stops them (each holds the store open).
const started: { stop(): Promise<void> }[] = [];
beforeClose.push(async () => {
  for (const e of started.splice(0)) await e.stop();
});

function rulesText(rules: string): [string, string | undefined] {
  if (!rules.includes("\n") && /\.(ya?ml|json)$/.test(rules)) {
    return [readFileSync(rules, "utf8"), rules];
  }
  return [rules, undefined];
}

/**
 * Evaluates alert rules (YAML or JSON text, or the path of a `.yaml`/`.json` file) in a
 * thread of this process: threshold rules over `metrics()` that notify Slack, PagerDuty,
 * email and signed webhooks (docs/operations.md, "Alert rules"). A daemon evaluates its own
 * (`omium serve --alerts FILE`). `shutdown()` stops it.
 */
export function startAlerts(rules: string): Alerts {
  const [text, file] = rulesText(rules);
  const native = callSync(() => store().startAlerts(text, file));
  started.push(native);
  return {
    stop: () => native.stop(),
    get running() {
      return native.running;
    },
    get lastError() {
      return native.lastError ?? null;
    },
  };
}

/** Evaluates alert rules once now (a cron job's way); returns what changed. */
export async function evaluateAlerts(rules: string): Promise<AlertTransition[]> {
  const [text, file] = rulesText(rules);
  return (await call(() => store().evaluateAlerts(text, file))) as unknown as AlertTransition[];
}

/** The alerts pending or firing, and the rules an evaluator of this process (or the daemon) runs. */
export async function alerts(): Promise<{ state: { alerts: Record<string, unknown>; evaluated_ms: number }; rules: unknown }> {
  return (await call(() => store().alerts())) as never;
}

/** Acknowledges the firing alerts of `rule` (only `group`'s, when given): no more repeats; every channel hears it. */
export async function acknowledgeAlert(rule: string, options: { group?: Record<string, string>; by?: string } = {}): Promise<AlertTransition[]> {
  return (await call(() => store().acknowledgeAlert(rule, options.group, options.by))) as unknown as AlertTransition[];
}
