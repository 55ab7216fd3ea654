// Test-only access to the read-only reference material beside the checkout (<repo>/../shared).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const sharedDir = fileURLToPath(new URL("../../../../shared/", import.meta.url));
export const modelDir = `${sharedDir}models/tiny-qwen3moe-brown`;

export interface GoldenSample {
  text: string;
  ids: number[];
  ids_auto: number[];
}

export function goldenSamples(): GoldenSample[] {
  return JSON.parse(readFileSync(`${modelDir}/tokenizer_golden.json`, "utf8"));
}

/** input_ids [2, 64] (int64) of golden.safetensors, read with a minimal safetensors parser. */
export function goldenInputIds(): number[][] {
  const buf = readFileSync(`${modelDir}/golden.safetensors`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString("utf8"));
  const entry = header.input_ids as { dtype: string; shape: number[]; data_offsets: [number, number] };
  if (entry.dtype !== "I64") throw new Error(`unexpected dtype ${entry.dtype}`);
  const base = 8 + headerLen + entry.data_offsets[0];
  const [rows, cols] = entry.shape;
  return Array.from({ length: rows }, (_, r) =>
    Array.from({ length: cols }, (_, c) => Number(buf.readBigInt64LE(base + 8 * (r * cols + c)))),
  );
}
