// Loads the PyTorch value tables (test/data/torch-tables.safetensors, made by make_tables.py).
// Parsed here with a few lines of JSON rather than @moeq/safetensors, which depends on this
// package: the tables must not be read through the code they check.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const file = join(dirname(fileURLToPath(import.meta.url)), "data", "torch-tables.safetensors");
const raw = readFileSync(file);
const n = Number(raw.readBigUInt64LE(0));
const header = JSON.parse(raw.subarray(8, 8 + n).toString("utf8")) as Record<
  string,
  { dtype: string; data_offsets: [number, number] }
>;

export const tableMetadata = header.__metadata__ as unknown as Record<string, string>;

export function table(key: string): Float32Array | Uint16Array | Uint8Array {
  const info = header[key];
  if (!info) throw new Error(`no table ${key}`);
  const [b, e] = info.data_offsets;
  const bytes = new Uint8Array(raw.subarray(8 + n + b, 8 + n + e)); // copy: aligned
  if (info.dtype === "F32") return new Float32Array(bytes.buffer);
  if (info.dtype === "I16" || info.dtype === "U16") return new Uint16Array(bytes.buffer);
  return bytes;
}
