/**
 * State codecs: how step results, workflow inputs and outputs become bytes. The default is
 * JSON (readable by every binding and by `omium show`); pass your own `{ name, encode, decode }`
 * for other types.
 */
import { DecodeError, InvalidArgumentError } from "./errors";

export interface Codec {
  readonly name: string;
  encode(value: unknown): Buffer;
  decode(data: Buffer): unknown;
}

// `undefined` is stored as zero bytes (JSON has no undefined): a step returning nothing
// replays as returning nothing.
export const json: Codec = {
  name: "json",
  encode(value: unknown): Buffer {
    if (value === undefined) return Buffer.alloc(0);
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      throw new InvalidArgumentError(`the json codec cannot encode this value: ${(e as Error).message}`, "invalid_argument");
    }
    if (text === undefined) {
      throw new InvalidArgumentError(`the json codec cannot encode a ${typeof value}; return plain data or pass a codec`, "invalid_argument");
    }
    return Buffer.from(text, "utf8");
  },
  // JSON.parse builds plain data only: no reviver, no class lookup, and a "__proto__" key is
  // an own property of the object it is in, not its prototype. Bytes that are not JSON are a
  // DecodeError naming the problem.
  decode(data: Buffer): unknown {
    if (data.length === 0) return undefined;
    try {
      return JSON.parse(data.toString("utf8"));
    } catch (e) {
      throw new DecodeError(`the json codec cannot decode stored state: ${(e as Error).message}`, "decode");
    }
  },
};

export function checkCodec(codec: unknown, where: string): Codec {
  const c = codec as Codec;
  if (c === null || typeof c !== "object" || typeof c.encode !== "function" || typeof c.decode !== "function" || typeof c.name !== "string") {
    throw new InvalidArgumentError(`${where}: codec must be an object with name, encode(value) and decode(buffer)`, "invalid_argument");
  }
  return c;
}

/** JSON-safe plain data for CEL conditions (Dates become ISO strings, undefined null). */
export function toPlain(value: unknown): unknown {
  if (value === undefined) return null;
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null");
}
