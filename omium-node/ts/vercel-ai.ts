/**
 * `omium/vercel-ai`: durable AI SDK (Vercel) tool loops on Omium.
 *
 * ```ts
 * import { generateText, wrapLanguageModel, isStepCount } from "ai";
 * import { durableMiddleware, durableTools } from "omium/vercel-ai";
 *
 * const model = wrapLanguageModel({ model: openai("gpt-5"), middleware: durableMiddleware() });
 * const orders = omium.workflow("orders", async (request: string) => {
 *   const result = await generateText({ model, tools: durableTools({ charge, ship }), prompt: request, stopWhen: isStepCount(5) });
 *   return result.text;
 * });
 * ```
 *
 * Inside an Omium execution (a workflow run) every model call — `generateText`'s and
 * `streamText`'s, through the middleware's `wrapGenerate` / `wrapStream` — and every tool call
 * is a durable step (`vercel_ai.model:PROVIDER:MODEL`, `vercel_ai.tool:NAME`): a run killed
 * half-way and run again with the same execution id answers the calls that finished from their
 * checkpoints, in order, and goes on live from the first that did not. A streamed model call is
 * recorded as its stream parts; a replay streams the recorded parts. Outside an execution
 * everything runs as the AI SDK's own. Results are stored with the msgpack codec (dates and
 * bytes keep their types).
 *
 * This module does not import `ai`: the middleware and tools are the SDK's plain shapes.
 */
import { checkpoint } from "./steps";
import { scope } from "./runtime";
import { InvalidArgumentError } from "./errors";

/** The part of a language model the middleware names its steps by. */
interface ModelInfo {
  provider: string;
  modelId: string;
}

/** A stream of model parts, as the AI SDK hands it over. */
type PartStream = ReadableStream<unknown>;

/** The AI SDK's language model middleware (specification v4), as far as this module uses it. */
export interface DurableMiddleware {
  specificationVersion: "v4";
  wrapGenerate: (options: { doGenerate: () => PromiseLike<unknown>; model: ModelInfo }) => Promise<unknown>;
  wrapStream: (options: { doStream: () => PromiseLike<{ stream: PartStream } & Record<string, unknown>>; model: ModelInfo }) => Promise<unknown>;
}

function inExecution(): boolean {
  return scope.getStore()?.ctx !== undefined;
}

/** Runs `body` as the durable step `name` of the current execution (its position taken now). */
function step<T>(name: string, body: () => Promise<T>): Promise<T> {
  // `params: []`: no conditions, so the body's parameter names need not be read from its source.
  return checkpoint(name, body, { params: [] })();
}

/**
 * The middleware that makes a model's calls durable steps inside an Omium execution. `name`
 * names the steps (default `PROVIDER:MODEL`); step names are journal data, keep them stable.
 */
export function durableMiddleware(options: { name?: string } = {}): DurableMiddleware {
  if (options.name !== undefined && (typeof options.name !== "string" || options.name === "")) {
    throw new InvalidArgumentError(`durableMiddleware({ name }): expected a non-empty string, not ${JSON.stringify(options.name)}`, "invalid_argument");
  }
  const nameOf = (model: ModelInfo) => `vercel_ai.model:${options.name ?? `${model.provider}:${model.modelId}`}`;
  return {
    specificationVersion: "v4",
    wrapGenerate: async ({ doGenerate, model }) => {
      if (!inExecution()) return doGenerate();
      return step(nameOf(model), async () => await doGenerate());
    },
    wrapStream: async ({ doStream, model }) => {
      if (!inExecution()) return doStream();
      const { parts, rest } = await step(`${nameOf(model)}:stream`, async () => {
        const { stream, ...rest } = await doStream();
        const parts: unknown[] = [];
        const reader = stream.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parts.push(value);
        }
        // What the stream result carries besides its parts (request and response metadata).
        return { parts, rest };
      });
      return {
        ...rest,
        stream: new ReadableStream({
          start(controller) {
            for (const p of parts) controller.enqueue(p);
            controller.close();
          },
        }),
      };
    },
  };
}

/** A tool as the AI SDK defines one (only `execute` is wrapped). */
interface ToolLike {
  execute?: (input: never, options: never) => unknown;
  [key: string]: unknown;
}

/**
 * The same tools, whose `execute` calls are durable steps inside an Omium execution
 * (`vercel_ai.tool:NAME`): a replay answers a finished call from its checkpoint. Tools without
 * `execute` (answered by the client) are left as they are.
 */
export function durableTools<T extends Record<string, ToolLike>>(tools: T): T {
  if (tools === null || typeof tools !== "object") {
    throw new InvalidArgumentError("durableTools(tools): expected an object of tools", "invalid_argument");
  }
  const out: Record<string, ToolLike> = {};
  for (const [name, tool] of Object.entries(tools)) {
    const execute = tool.execute as ((input: unknown, options: unknown) => unknown) | undefined;
    if (typeof execute !== "function" || (execute as { omiumDurable?: boolean }).omiumDurable) {
      out[name] = tool;
      continue;
    }
    const durable = (input: unknown, options: unknown): unknown => {
      if (!inExecution()) return execute(input, options);
      return step(`vercel_ai.tool:${name}`, async () => await execute(input, options));
    };
    (durable as { omiumDurable?: boolean }).omiumDurable = true;
    out[name] = { ...tool, execute: durable };
  }
  return out as T;
}
