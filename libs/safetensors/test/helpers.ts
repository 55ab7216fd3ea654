import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// <repo>/../shared, from this file's location (tests may read it; the product must not)
export const SHARED = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "shared");

export function tempDir(tag: string): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), `moeq-st-${tag}-`));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

export function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A safetensors file from a raw header string and a data section (for malformed inputs). */
export function rawFile(header: string, data: Uint8Array | number = 0): Uint8Array {
  const h = new TextEncoder().encode(header);
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}
