import { Result, Schema } from "effect";
import { Packr } from "msgpackr";
import { InvalidMessage, MalformedMessage } from "./errors.ts";

// useRecords: false keeps messages plain msgpack maps that any language can read.
const packr = new Packr({ useRecords: false });

function assertNoForeignTypedArrays(value: unknown, path: string): void {
  // msgpackr writes garbage for typed arrays other than Uint8Array (stack.md); refuse them loudly.
  if (ArrayBuffer.isView(value)) {
    if (!(value instanceof Uint8Array))
      throw new TypeError(`msgpack: ${path} is a ${value.constructor.name}; pack a Uint8Array view`);
    return;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) assertNoForeignTypedArrays(value[i], `${path}[${i}]`);
  } else if (value !== null && typeof value === "object")
    for (const [k, v] of Object.entries(value)) assertNoForeignTypedArrays(v, `${path}.${k}`);
}

/** msgpack of any plain value (no schema): maps, arrays, strings, numbers, Uint8Array as bin. */
export function packValue(value: unknown): Uint8Array {
  assertNoForeignTypedArrays(value, "$");
  const buf = packr.pack(value);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

// msgpackr decodes the never-used byte 0xc1 into a placeholder object instead of throwing.
function containsReservedByte(v: unknown): boolean {
  if (v === null || typeof v !== "object" || v instanceof Uint8Array) return false;
  if (v.constructor?.name === "C1Type") return true;
  return Array.isArray(v) ? v.some(containsReservedByte) : Object.values(v).some(containsReservedByte);
}

export function unpackValue(bytes: Uint8Array, source: string): Result.Result<unknown, MalformedMessage> {
  try {
    if (bytes.byteLength === 0)
      return Result.fail(new MalformedMessage({ source, message: `${source}: empty message` }));
    // unpackMultiple-free: trailing bytes after one value mean the message is not one of ours.
    const values: unknown[] = [];
    packr.unpackMultiple(bytes as Buffer, (v: unknown) => {
      values.push(v);
    });
    if (values.length !== 1)
      return Result.fail(
        new MalformedMessage({ source, message: `${source}: expected one msgpack value, got ${values.length}` }),
      );
    if (containsReservedByte(values[0]))
      return Result.fail(new MalformedMessage({ source, message: `${source}: not msgpack (reserved byte 0xc1)` }));
    return Result.succeed(values[0]);
  } catch (e) {
    return Result.fail(new MalformedMessage({ source, message: `${source}: not msgpack (${(e as Error).message})` }));
  }
}

function schemaName(schema: Schema.Top): string {
  const id = (schema.ast.annotations as { identifier?: unknown } | undefined)?.identifier;
  return typeof id === "string" ? id : "value";
}

export function encode<S extends Schema.Codec<unknown, unknown, never, never>>(
  schema: S,
  value: S["Type"],
): Uint8Array {
  return packValue(Schema.encodeSync(schema)(value));
}

/** msgpack bytes → schema-valid value, or a typed error naming `source` (subject/file/field). */
export function decode<S extends Schema.Codec<unknown, unknown, never, never>>(
  schema: S,
  bytes: Uint8Array,
  source: string,
): Result.Result<S["Type"], MalformedMessage | InvalidMessage> {
  const raw = unpackValue(bytes, source);
  if (Result.isFailure(raw)) return raw;
  return validate(schema, raw.success, source);
}

export function validate<S extends Schema.Codec<unknown, unknown, never, never>>(
  schema: S,
  value: unknown,
  source: string,
): Result.Result<S["Type"], InvalidMessage> {
  const r = Schema.decodeUnknownResult(schema)(value, { errors: "all" });
  if (Result.isSuccess(r)) return Result.succeed(r.success);
  const name = schemaName(schema);
  return Result.fail(
    new InvalidMessage({ source, schema: name, message: `${source}: not a valid ${name}: ${String(r.failure)}` }),
  );
}
