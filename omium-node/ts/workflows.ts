/**
 * Workflow specs (YAML or JSON): `workflows.load(path).bind({ kyc_agent: fn }).run(inputs, {
 * executionId })`. The core validates the spec (errors name line and column) and runs it with
 * its durable parallel executor: each step's outputs are a checkpoint, independent steps run at
 * once, a re-run resumes, failures go through the recovery policies. Agents bound here are JS
 * functions `(inputs, call) => outputs`; the others run their `command:` or `image:`.
 */
import native = require("./native");
import { InvalidArgumentError, call, callSync, classNames } from "./errors";
import { store } from "./runtime";

/** What an agent function receives besides its inputs. */
export interface AgentCall {
  agent: string;
  executionId: string;
  workflow: string;
  step: string;
  /** 1 for the first attempt of the step in this run. */
  attempt: number;
  /** The output names the step declares. */
  outputs: string[];
}

export type AgentFunction = (inputs: Record<string, unknown>, call: AgentCall) => Record<string, unknown> | Promise<Record<string, unknown>>;

export interface WorkflowRunOptions {
  /** Running an id again resumes it; generated when absent. */
  executionId?: string;
  tenant?: string;
  /** Where `command:` agents run (default: the spec file's folder for `load`, else the current one). */
  dir?: string;
  durability?: "sync" | "buffered" | "none";
}

export interface WorkflowReport {
  execution_id: string;
  workflow: string;
  /** The workflow inputs and every output produced, by name. */
  data: Record<string, unknown>;
  /** Each step: id, agent, outcome (`ran`, `replayed`, `skipped`), times. */
  steps: Record<string, unknown>[];
}

function errorClasses(e: unknown): string[] {
  const out = classNames(e);
  return out.length ? out : ["Error"];
}

export class WorkflowDefinition {
  private readonly spec: native.WorkflowSpec;
  private readonly bound: ReadonlyMap<string, AgentFunction>;
  private readonly dir: string | undefined;

  constructor(spec: native.WorkflowSpec, bound: ReadonlyMap<string, AgentFunction> = new Map(), dir?: string) {
    this.spec = spec;
    this.bound = bound;
    this.dir = dir;
  }

  get name(): string {
    return this.spec.name;
  }

  /** The agent ids the spec names. */
  get agents(): string[] {
    return this.spec.agents;
  }

  /** The order of execution: levels of steps that can run at once. */
  plan(): unknown {
    return this.spec.plan();
  }

  /** The plan as `omium workflow plan` prints it. */
  planText(): string {
    return this.spec.planText();
  }

  /** A copy with these agent ids bound to JS functions. */
  bind(agents: Record<string, AgentFunction>): WorkflowDefinition {
    if (agents === null || typeof agents !== "object") throw new InvalidArgumentError("bind(agents): expected an object of agent id → function", "invalid_argument");
    const next = new Map(this.bound);
    for (const [id, fn] of Object.entries(agents)) {
      if (typeof fn !== "function") throw new InvalidArgumentError(`bind(${id}): expected a function, not ${fn === null ? "null" : typeof fn}`, "invalid_argument");
      if (!this.spec.agents.includes(id)) {
        throw new InvalidArgumentError(`bind: workflow ${JSON.stringify(this.name)} has no agent ${JSON.stringify(id)} (its agents: ${this.spec.agents.join(", ")})`, "invalid_argument");
      }
      next.set(id, fn);
    }
    return new WorkflowDefinition(this.spec, next, this.dir);
  }

  /** Runs (or resumes) the workflow; resolves to the run's report. */
  async run(inputs: Record<string, unknown> = {}, options: WorkflowRunOptions = {}): Promise<WorkflowReport> {
    if (inputs === null || typeof inputs !== "object" || Array.isArray(inputs)) throw new InvalidArgumentError("run(inputs): expected an object of input name → value", "invalid_argument");
    const bound = this.bound;
    const dispatch = async (request: string): Promise<string> => {
      const req = JSON.parse(request) as AgentCall & { inputs: Record<string, unknown> };
      const fn = bound.get(req.agent);
      try {
        if (fn === undefined) throw new Error(`agent ${JSON.stringify(req.agent)} is not bound`);
        const { inputs: args, ...callInfo } = req;
        const outputs = await fn(args, callInfo);
        if (outputs === null || typeof outputs !== "object" || Array.isArray(outputs)) {
          return JSON.stringify({ error: { classes: ["TypeError"], message: `agent ${JSON.stringify(req.agent)} must return an object of outputs, not ${JSON.stringify(outputs)}` } });
        }
        return JSON.stringify({ outputs });
      } catch (e) {
        return JSON.stringify({ error: { classes: errorClasses(e), message: e instanceof Error ? e.message : String(e) } });
      }
    };
    const report = await call(() =>
      store().runWorkflow(this.spec, JSON.parse(JSON.stringify(inputs)) as Record<string, unknown>, [...bound.keys()], dispatch, {
        executionId: options.executionId,
        tenant: options.tenant,
        dir: options.dir ?? this.dir,
        durability: options.durability,
      }),
    );
    return report as WorkflowReport;
  }
}

/** Reads and validates a spec file. */
export function load(path: string): WorkflowDefinition {
  if (typeof path !== "string" || path === "") throw new InvalidArgumentError("workflows.load(path): expected a file path", "invalid_argument");
  const { dirname } = require("node:path") as typeof import("node:path");
  return new WorkflowDefinition(callSync(() => native.WorkflowSpec.load(path)), new Map(), dirname(path));
}

/** Parses and validates a spec given as text; `file` is named in error messages. */
export function parse(text: string, file?: string): WorkflowDefinition {
  if (typeof text !== "string") throw new InvalidArgumentError("workflows.parse(text): expected the spec as a string", "invalid_argument");
  return new WorkflowDefinition(callSync(() => native.WorkflowSpec.parse(text, file)));
}

/** The templates shipped with Omium (KYC, credit scoring, offer generation): name, description, text. */
export function templates(): { name: string; description: string; text: string }[] {
  return native.workflowTemplates().map(([name, description, text]) => ({ name, description, text }));
}
