/**
 * State codecs: how step results, workflow inputs and outputs become bytes. The default is
 * msgpack, the same wire format as the Python package's default, so a state one language
 * records the other decodes (and `omium checkpoint ID --value` shows). The codec's name is
 * recorded with every checkpoint (`omium.codec` in its metadata) and with every execution's
 * input and output (the `omium.codec` label); reads use the recorded codec. Pass your own
 * `{ name, encode, decode }` for other types, or `jsonCodec`.
 */
import { decode as mpDecode, encode as mpEncode, Encoder, ExtensionCodec } from "@msgpack/msgpack";
import { DecodeError, InvalidArgumentError } from "./errors";

export interface Codec {
  readonly name: string;
  encode(value: unknown): Buffer;
  decode(data: Buffer): unknown;
}

/** Where the codec's name is recorded: checkpoint metadata and execution labels. */
export const CODEC_KEY = "omium.codec";

// `undefined` is stored as zero bytes (neither format has undefined): a step returning
// nothing replays as returning nothing.
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

// Extension type 1 is the Python package's tagged value: msgpack of `[tag, payload]` for the
// types msgpack lacks. Node writes it for a Set; it reads every tag Python writes, as the
// nearest plain JavaScript value (the value's JSON form where JavaScript has no such type).
// Dates travel as msgpack's own timestamp extension (-1), which Python reads as an aware
// datetime in UTC.
const EXT_TAGGED = 1;
const extensions = new ExtensionCodec();
extensions.register({
  type: EXT_TAGGED,
  encode: (value: unknown): Uint8Array | null => (value instanceof Set ? mpEncode(["set", [...value]], { extensionCodec: extensions, ignoreUndefined: true }) : null),
  decode: (data: Uint8Array): unknown => untag(mpDecode(data, { extensionCodec: extensions })),
});

// Extension types omium does not write are refused, not handed back as opaque ExtData. (A
// decoder registered per type would also add an encoder per type, and the encoder tries every
// registered one on every object it writes.)
const decodeExtension = extensions.decode.bind(extensions);
extensions.decode = (data, type, context) => {
  if (type !== EXT_TAGGED && type !== -1) throw new DecodeError(`malformed stored state: msgpack extension type ${type} is not one omium writes`, "decode");
  return decodeExtension(data, type, context);
};

// The msgpack decoder refuses a "__proto__" map key; such a value is refused when it is
// recorded, not when it is replayed. The key's bytes (fixstr of 9 bytes) are looked for first.
const PROTO_KEY = Buffer.from([0xa9, ...Buffer.from("__proto__")]);

function malformed(what: string): never {
  throw new DecodeError(`malformed ${what} in stored state`, "decode");
}

function untag(tagged: unknown): unknown {
  if (!Array.isArray(tagged) || tagged.length !== 2 || typeof tagged[0] !== "string") malformed("tagged value (expected [tag, payload])");
  const [tag, payload] = tagged as [string, unknown];
  const list = (): unknown[] => (Array.isArray(payload) ? payload : malformed(`${tag} value`));
  const text = (): string => (typeof payload === "string" ? payload : malformed(`${tag} value`));
  switch (tag) {
    case "datetime": {
      // Python's isoformat: a naive datetime (no offset) is read as UTC.
      const s = text();
      const d = new Date(/(Z|[+-]\d\d:\d\d)$/.test(s) ? s : `${s}Z`);
      return Number.isNaN(d.getTime()) ? malformed("datetime value") : d;
    }
    case "date":
    case "time":
    case "uuid":
    case "decimal":
      return text();
    case "timedelta": {
      const [days, seconds, micros] = list();
      if (![days, seconds, micros].every((n) => typeof n === "number")) malformed("timedelta value");
      return (days as number) * 86400 + (seconds as number) + (micros as number) / 1e6;
    }
    case "enum":
      return list()[1];
    case "set":
    case "frozenset":
      return new Set(list());
    case "tuple":
      return list();
    case "dataclass":
    case "pydantic":
      return list()[1];
    case "bytes":
      return Buffer.from(text(), "base64");
    default:
      throw new DecodeError(`unknown tagged value ${JSON.stringify(tag)} in stored state (written by a newer omium?)`, "decode");
  }
}

/** The parts of the library's encoder that `StateEncoder` uses (not in its typings). */
interface EncoderInternals {
  bytes: Uint8Array;
  view: DataView;
  pos: number;
  ensureBufferSizeToWrite(n: number): void;
  writeStringHeader(byteLength: number): void;
}

/** Strings at least this long are written by `Buffer.write`. */
const NATIVE_STRING_MIN = 64;
/** An encoder whose buffer grew past this (a large state) starts the next state afresh... */
const KEEP_BUFFER_MAX = 1 << 20;
/** ...with a buffer of this size, as a new encoder does (`initialBufferSize`). */
const INITIAL_BUFFER = 2048;

/**
 * One encoder for every state (the library's `encode` function builds one per call, with its
 * buffer). A long string is counted and written by `Buffer.byteLength` / `Buffer.write`
 * (native UTF-8) instead of the library's loop over its characters: the same bytes, in half the
 * time for a 1 KiB text. Both rely on the encoder's fields, which its typings keep private: they
 * are checked when this module loads, and without them the library's own code runs.
 */
class StateEncoder extends Encoder<undefined> {
  override encode(value: unknown): Uint8Array<ArrayBuffer> {
    const out = super.encode(value);
    const self = this as unknown as EncoderInternals;
    if (self.bytes.byteLength > KEEP_BUFFER_MAX) {
      self.view = new DataView(new ArrayBuffer(INITIAL_BUFFER));
      self.bytes = new Uint8Array(self.view.buffer);
    }
    return out;
  }
}

function nativeStrings(proto: object): boolean {
  const internals = proto as Partial<EncoderInternals>;
  if (typeof internals.ensureBufferSizeToWrite !== "function" || typeof internals.writeStringHeader !== "function") return false;
  Object.defineProperty(proto, "encodeString", {
    value(this: EncoderInternals, text: string): void {
      if (text.length < NATIVE_STRING_MIN) return (Encoder.prototype as unknown as { encodeString(t: string): void }).encodeString.call(this, text);
      const n = Buffer.byteLength(text, "utf8");
      this.ensureBufferSizeToWrite(5 + n);
      this.writeStringHeader(n);
      Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength).write(text, this.pos, n, "utf8");
      this.pos += n;
    },
  });
  return true;
}

const encoderOptions = { extensionCodec: extensions, ignoreUndefined: true, initialBufferSize: INITIAL_BUFFER };
const stateEncoder = (() => {
  const probe = { a: "é€😀 ".repeat(40), b: ["x".repeat(70000)], c: "short" };
  const expected = Buffer.from(mpEncode(probe, encoderOptions));
  if (nativeStrings(StateEncoder.prototype)) {
    const e = new StateEncoder(encoderOptions);
    if (Buffer.from(e.encode(probe)).equals(expected)) return e;
    // Another version of the library lays its buffer out differently: its own code then.
    Reflect.deleteProperty(StateEncoder.prototype, "encodeString");
  }
  return new StateEncoder(encoderOptions);
})();

export const msgpack: Codec = {
  name: "msgpack",
  encode(value: unknown): Buffer {
    if (value === undefined) return Buffer.alloc(0);
    try {
      const out = stateEncoder.encode(value);
      const data = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
      if (data.indexOf(PROTO_KEY) >= 0) mpDecode(data, { extensionCodec: extensions });
      return data;
    } catch (e) {
      throw new InvalidArgumentError(`the msgpack codec cannot encode this value: ${(e as Error).message} (an object key "__proto__" needs jsonCodec)`, "invalid_argument");
    }
  },
  // Builds plain data only (objects, arrays, strings, numbers, Uint8Arrays, Dates, Sets): no
  // class is looked up by a name in the data.
  decode(data: Buffer): unknown {
    if (data.length === 0) return undefined;
    try {
      return mpDecode(data, { extensionCodec: extensions });
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      throw new DecodeError(`the msgpack codec cannot decode stored state: ${(e as Error).message}`, "decode");
    }
  },
};

const builtIn: Record<string, Codec> = { msgpack, json };

/**
 * The codec that decodes what was recorded with `name` (checkpoint metadata or execution
 * label): `configured` when the names match, else the built-in codec of that name. Nothing
 * recorded means the state predates recorded codecs: Node wrote JSON then, unless the caller
 * had chosen a codec of its own.
 */
export function recordedCodec(name: string | undefined, configured: Codec, what: string): Codec {
  if (name === undefined) return configured === msgpack ? json : configured;
  if (name === configured.name) return configured;
  const c = builtIn[name];
  if (c !== undefined) return c;
  throw new DecodeError(
    `${what} was recorded with the ${JSON.stringify(name)} codec, which this process does not have (it has "msgpack", "json" and ${JSON.stringify(configured.name)}); pass a codec named ${JSON.stringify(name)}`,
    "decode",
  );
}

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
