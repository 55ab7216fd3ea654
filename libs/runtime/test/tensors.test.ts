import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { descriptorSource, TensorReader, writeTensorFile } from "../src/tensors.ts";

const dir = mkdtempSync(join(tmpdir(), "moeq-runtime-"));
const other = mkdtempSync(join(tmpdir(), "moeq-runtime-other-"));

describe("tensor files", () => {
  it("round-trip f32 / i32 / u8 through file descriptors (odd sizes)", () => {
    const reader = new TensorReader([dir]);
    const f = Float32Array.from({ length: 7 * 13 }, (_, i) => i * 0.5 - 3);
    const d = writeTensorFile(dir, "a.f32", "f32", [7, 13], f);
    expect(d.loc).toMatchObject({ kind: "file", offset: 0, bytes: 7 * 13 * 4 });
    expect([...reader.f32(d, "a")]).toEqual([...f]);
    const i = Int32Array.from({ length: 11 }, (_, k) => k - 5);
    expect([...reader.i32(writeTensorFile(dir, "b.i32", "i32", [11], i), "b")]).toEqual([...i]);
    const u = Uint8Array.from({ length: 5 }, (_, k) => 250 + k);
    expect([...reader.bytes(writeTensorFile(dir, "c.u8", "u8", [5], u), "c")]).toEqual([...u]);
  });

  it("reads a byte range at an offset, and bf16 through a WeightSource", () => {
    const bytes = new Uint8Array(64);
    for (let k = 0; k < 64; k++) bytes[k] = k;
    writeFileSync(join(dir, "blob"), bytes);
    const reader = new TensorReader([dir]);
    const d = {
      dtype: "bf16" as const,
      shape: [2, 3],
      loc: { kind: "file" as const, path: join(dir, "blob"), offset: 10, bytes: 12 },
    };
    expect([...reader.bytes(d, "x")]).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]);
    const src = descriptorSource(reader, new Map([["w", d]]));
    expect(src.has("w")).toBe(true);
    expect(src.tensor("w")).toMatchObject({ dtype: "BF16", shape: [2, 3] });
    expect(() => src.tensor("v")).toThrow(/'v' was not published/);
  });

  it("rejects wrong sizes, files outside the roots and ranges past the end, naming the source", () => {
    const reader = new TensorReader([dir]);
    expect(() => writeTensorFile(dir, "bad", "f32", [3], new Float32Array(4))).toThrow(/bad: 16 bytes/);
    writeFileSync(join(other, "secret"), new Uint8Array(16));
    const outside = {
      dtype: "u8" as const,
      shape: [16],
      loc: { kind: "file" as const, path: join(other, "secret"), offset: 0, bytes: 16 },
    };
    expect(() => reader.bytes(outside, "outside")).toThrow(/outside.*allowed roots/);
    const past = {
      dtype: "u8" as const,
      shape: [60],
      loc: { kind: "file" as const, path: join(dir, "blob"), offset: 10, bytes: 60 },
    };
    expect(() => reader.bytes(past, "past")).toThrow(/past: \[10, 70\) is past the end/);
    const lying = {
      dtype: "f32" as const,
      shape: [4],
      loc: { kind: "file" as const, path: join(dir, "blob"), offset: 0, bytes: 8 },
    };
    expect(() => reader.bytes(lying, "lying")).toThrow(/lying: descriptor says 8 bytes, f32\[4\] needs 16/);
    const shm = {
      dtype: "u8" as const,
      shape: [1],
      loc: { kind: "shm" as const, segment: "moeq-x-1.0", offset: 0, bytes: 1 },
    };
    expect(() => reader.bytes(shm, "shm")).toThrow(/shm descriptors are not used/);
  });
});
