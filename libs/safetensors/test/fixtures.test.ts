import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { native } from "@moeq/native";
import { bf16BitsToF32 } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import { openCheckpoint, openSafetensors, serializeSafetensors } from "../src/index.ts";
import { SHARED } from "./helpers.ts";

const tiny = join(SHARED, "fixtures", "tiny-random");
const archs = readdirSync(tiny).filter((d) => existsSync(join(tiny, d, "model.safetensors")));
const brown = join(SHARED, "models", "tiny-qwen3moe-brown");
const files = [
  ...archs.flatMap((a) => [join(tiny, a, "model.safetensors"), join(tiny, a, "golden.safetensors")]),
  join(brown, "model.safetensors"),
  join(brown, "golden.safetensors"),
];

describe("every shared checkpoint", () => {
  it("finds the fixtures", () => {
    expect(archs.length).toBeGreaterThanOrEqual(20);
  });

  // Python's safetensors wrote these: serializing the tensors we read must give the same bytes.
  it.each(files.map((f) => [f.slice(SHARED.length + 1), f]))(
    "%s: re-writing reproduces the file byte for byte",
    (_, f) => {
      const c = openSafetensors(f);
      try {
        const out = serializeSafetensors(
          c.names().map((n) => [n, c.tensor(n)]),
          c.fileMetadata(f),
        );
        const orig = readFileSync(f);
        expect(out.length).toBe(orig.length);
        expect(Buffer.compare(Buffer.from(out.buffer, out.byteOffset, out.length), orig)).toBe(0);
      } finally {
        c.close();
      }
    },
  );

  it.each(archs)("%s: openCheckpoint(dir) reads model.safetensors with its metadata, lazily and zero-copy", (a) => {
    const c = openCheckpoint(join(tiny, a));
    try {
      expect(c.metadata).toEqual({ format: "pt" });
      expect(c.names().length).toBeGreaterThan(10);
      const raw0 = readFileSync(join(tiny, a, "model.safetensors"));
      const keys = Object.keys(JSON.parse(raw0.subarray(8, 8 + Number(raw0.readBigUInt64LE(0))).toString())).filter(
        (k) => k !== "__metadata__",
      );
      expect(c.names().sort()).toEqual(keys.sort());
      const name = c.names()[0];
      const e = c.entry(name);
      expect(e.dtype).toBe("BF16");
      const t = c.tensor(name);
      // bytes come straight from the file at the recorded offset
      const raw = readFileSync(e.file).subarray(e.dataOffset, e.dataOffset + e.byteLength);
      expect(Buffer.compare(Buffer.from(t.data), raw)).toBe(0);
      // f32 decodes the same bytes with bf16's rule
      const f = c.f32(name);
      const u16 = new Uint16Array(new Uint8Array(raw).buffer);
      for (let i = 0; i < Math.min(64, f.length); i++) expect(f[i]).toBe(bf16BitsToF32(u16[i]));
    } finally {
      c.close();
    }
  });

  it("golden files expose int64 input ids and f32 logits", () => {
    const c = openSafetensors(join(brown, "golden.safetensors"));
    expect(c.entry("input_ids").dtype).toBe("I64");
    const ids = c.f32("input_ids");
    expect(ids.every((v) => Number.isInteger(v) && v >= 0)).toBe(true);
    expect(c.entry("logits").dtype).toBe("F32");
    c.close();
  });

  it("close() unmaps: views become empty and mapped bytes return to the baseline", () => {
    const before = native.mappedBytes();
    const c = openCheckpoint(join(tiny, archs[0]));
    const t = c.tensor(c.names()[0]);
    expect(t.data.length).toBeGreaterThan(0);
    expect(native.mappedBytes()).toBeGreaterThan(before);
    c.close();
    expect(t.data.length).toBe(0);
    expect(native.mappedBytes()).toBe(before);
    expect(() => c.tensor(c.names()[0])).toThrow(/closed/);
  });
});
