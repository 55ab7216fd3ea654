// Parsing and validation of a safetensors header, rule for rule as safetensors' Rust reader
// (safetensors/src/tensor.rs, read_metadata + Metadata::validate) does it, plus two checks it
// lacks: a tensor named twice, and dtypes this project cannot hold.
import { DTYPES, type DType, dtypeBytes, isDType, KNOWN_UNSUPPORTED_DTYPES } from "@moeq/tensor";
import { SafetensorsError } from "./errors.ts";
import { isNumber, isObject, type Json, JsonSyntaxError, parseJson } from "./json.ts";

export const MAX_HEADER_BYTES = 100_000_000;
export const LENGTH_PREFIX = 8;

export interface HeaderEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: number[];
  /** relative to the data section (which starts at 8 + headerLength) */
  readonly begin: number;
  readonly end: number;
}

export interface ParsedHeader {
  /** __metadata__, or undefined when the header has none */
  readonly metadata: Record<string, string> | undefined;
  /** in data order */
  readonly entries: HeaderEntry[];
  readonly headerLength: number;
  readonly dataLength: number;
}

/** Reads the u64 length prefix; checks it against the file size and the 100 MB limit. */
export function headerLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < LENGTH_PREFIX || prefix.length < LENGTH_PREFIX)
    throw new SafetensorsError({
      file,
      reason: `truncated: ${fileSize} bytes, too short for the 8-byte header length`,
    });
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw new SafetensorsError({ file, reason: `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit` });
  const len = Number(n);
  if (LENGTH_PREFIX + len > fileSize)
    throw new SafetensorsError({ file, reason: `header length ${len} is longer than the file (${fileSize} bytes)` });
  return len;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

const usize = (v: Json | undefined, file: string, tensor: string, field: string): number => {
  if (v === undefined || !isNumber(v) || !/^[0-9]+$/.test(v.text))
    throw new SafetensorsError({ file, tensor, reason: `${field} must be a non-negative integer` });
  const x = Number(v.text);
  if (!Number.isSafeInteger(x)) throw new SafetensorsError({ file, tensor, reason: `${field} ${v.text} is too large` });
  return x;
};

/** Parses the header JSON bytes (without the length prefix) and validates it against fileSize. */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, file: string): ParsedHeader {
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new SafetensorsError({ file, reason: "header is not valid UTF-8" });
  }
  if (!text.startsWith("{")) throw new SafetensorsError({ file, reason: "header does not start with '{'" });
  let root: Json;
  try {
    root = parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      if (e.duplicateKey !== undefined)
        throw new SafetensorsError({ file, tensor: e.duplicateKey, reason: "tensor named twice in the header" });
      throw new SafetensorsError({ file, reason: `header is not valid JSON: ${e.message}` });
    }
    throw e;
  }
  if (!isObject(root)) throw new SafetensorsError({ file, reason: "header is not a JSON object" });

  let metadata: Record<string, string> | undefined;
  const entries: HeaderEntry[] = [];
  for (const [name, v] of root.entries) {
    if (name === "__metadata__") {
      if (v === null) continue;
      if (!isObject(v)) throw new SafetensorsError({ file, reason: "__metadata__ must be an object of strings" });
      metadata = {};
      for (const [k, s] of v.entries) {
        if (typeof s !== "string") throw new SafetensorsError({ file, reason: `__metadata__ "${k}" is not a string` });
        metadata[k] = s;
      }
      continue;
    }
    if (!isObject(v)) throw new SafetensorsError({ file, tensor: name, reason: "tensor info is not an object" });
    const field = (k: string) => v.entries.find((e) => e[0] === k)?.[1];
    const dtype = field("dtype");
    if (typeof dtype !== "string")
      throw new SafetensorsError({ file, tensor: name, reason: "missing or non-string dtype" });
    if (!isDType(dtype)) {
      const why = KNOWN_UNSUPPORTED_DTYPES.includes(dtype) ? "unsupported" : "unknown";
      throw new SafetensorsError({
        file,
        tensor: name,
        reason: `${why} dtype "${dtype}" (supported: ${DTYPES.join(", ")})`,
      });
    }
    const shape = field("shape");
    if (!Array.isArray(shape)) throw new SafetensorsError({ file, tensor: name, reason: "missing or non-array shape" });
    const dims = shape.map((d, i) => usize(d, file, name, `shape[${i}]`));
    const offsets = field("data_offsets");
    if (!Array.isArray(offsets) || offsets.length !== 2)
      throw new SafetensorsError({ file, tensor: name, reason: "data_offsets must be [begin, end]" });
    entries.push({
      name,
      dtype,
      shape: dims,
      begin: usize(offsets[0], file, name, "data_offsets[0]"),
      end: usize(offsets[1], file, name, "data_offsets[1]"),
    });
  }

  // Sorted by (begin, end), the tensors must tile the data section from 0 with no gap or overlap.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of entries) {
    if (e.begin !== at || e.end < e.begin) {
      const why =
        e.begin > at
          ? `a hole (bytes ${at}..${e.begin} belong to no tensor)`
          : `overlaps the previous tensor (begins at ${e.begin}, expected ${at})`;
      throw new SafetensorsError({
        file,
        tensor: e.name,
        reason: `invalid data_offsets [${e.begin}, ${e.end}]: ${e.end < e.begin ? "end before begin" : why}`,
      });
    }
    let n = 1;
    for (const d of e.shape) {
      n *= d;
      if (!Number.isSafeInteger(n))
        throw new SafetensorsError({ file, tensor: e.name, reason: `shape [${e.shape}] overflows` });
    }
    const bytes = n * dtypeBytes(e.dtype);
    if (!Number.isSafeInteger(bytes))
      throw new SafetensorsError({ file, tensor: e.name, reason: `shape [${e.shape}] overflows` });
    if (e.end - e.begin !== bytes)
      throw new SafetensorsError({
        file,
        tensor: e.name,
        reason: `size mismatch: ${e.dtype} [${e.shape}] needs ${bytes} bytes, data_offsets span ${e.end - e.begin}`,
      });
    at = e.end;
  }
  const expected = LENGTH_PREFIX + headerBytes.length + at;
  if (expected !== fileSize) {
    const last = entries.at(-1)?.name;
    const reason =
      expected > fileSize
        ? `truncated: the header describes ${at} data bytes (file should be ${expected} bytes) but the file has ${fileSize}`
        : `${fileSize - expected} bytes after the last tensor's data (file should be ${expected} bytes)`;
    throw new SafetensorsError({
      file,
      ...(last !== undefined && expected > fileSize ? { tensor: last } : {}),
      reason,
    });
  }
  return { metadata, entries, headerLength: headerBytes.length, dataLength: at };
}

/** Validates a complete in-memory safetensors file. */
export function parseSafetensorsBytes(bytes: Uint8Array, file = "<memory>"): ParsedHeader {
  const n = headerLength(bytes.subarray(0, 8), bytes.length, file);
  return parseHeader(bytes.subarray(LENGTH_PREFIX, LENGTH_PREFIX + n), bytes.length, file);
}
