// The codecs against tables PyTorch 2.11 produced (libs/tensor/test/data/make_tables.py).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { decodeBf16, decodeE4m3, decodeE8m0, encodeBf16, encodeE4m3, encodeF16, f32Bits } from "../src/float-codecs.ts";

const here = dirname(fileURLToPath(import.meta.url));
const tablePath = join(here, "../../tensor/test/data/torch-tables.safetensors");

const loadTables = (): Map<string, Uint8Array> => {
  const buf = readFileSync(tablePath);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<
    string,
    { data_offsets: [number, number] }
  >;
  const out = new Map<string, Uint8Array>();
  for (const [k, v] of Object.entries(header)) {
    if (k === "__metadata__") continue;
    const [b, e] = v.data_offsets;
    out.set(k, new Uint8Array(buf.subarray(8 + n + b, 8 + n + e)));
  }
  return out;
};

const asF32 = (b: Uint8Array) => new Float32Array(b.slice().buffer);
const asU16 = (b: Uint8Array) => new Uint16Array(b.slice().buffer);
const t = loadTables();

describe("e4m3fn", () => {
  it("decodes all 256 codes like torch", () => {
    const dec = asF32(t.get("f8_e4m3.decode")!);
    for (let c = 0; c < 256; c++) {
      if (Number.isNaN(dec[c]!)) expect(Number.isNaN(decodeE4m3(c))).toBe(true);
      else expect(f32Bits(decodeE4m3(c))).toBe(f32Bits(dec[c]!));
    }
  });
  it("encodes ties, edges, subnormals, overflow and random values like torch", () => {
    const inp = asF32(t.get("f8_e4m3.enc_in")!);
    const out = t.get("f8_e4m3.enc_out")!;
    expect(inp.length).toBeGreaterThan(20000);
    let bad = 0;
    for (let i = 0; i < inp.length; i++) if (encodeE4m3(inp[i]!) !== out[i]) bad++;
    expect(bad).toBe(0);
  });
});

describe("e8m0", () => {
  it("decodes all codes like torch", () => {
    const dec = asF32(t.get("f8_e8m0.decode")!);
    for (let c = 0; c < 256; c++) {
      if (Number.isNaN(dec[c]!)) expect(Number.isNaN(decodeE8m0(c))).toBe(true);
      else expect(decodeE8m0(c)).toBe(dec[c]);
    }
  });
});

describe("16-bit floats", () => {
  it("bf16 encoding matches torch (round-to-nearest-even, ties included)", () => {
    const inp = asF32(t.get("bf16.enc_in")!);
    const out = asU16(t.get("bf16.enc_out")!);
    let bad = 0;
    for (let i = 0; i < inp.length; i++) {
      if (Number.isNaN(inp[i]!)) continue; // torch keeps NaN payload bits; any NaN is fine for us
      if (encodeBf16(inp[i]!) !== out[i]) bad++;
    }
    expect(bad).toBe(0);
    const dec = asF32(t.get("bf16.decode")!);
    for (let c = 0; c < 65536; c += 97) if (!Number.isNaN(dec[c]!)) expect(decodeBf16(c)).toBe(dec[c]);
  });
  it("f16 encoding matches torch", () => {
    const inp = asF32(t.get("f16.enc_in")!);
    const out = asU16(t.get("f16.enc_out")!);
    let bad = 0;
    for (let i = 0; i < inp.length; i++) {
      if (Number.isNaN(inp[i]!)) continue;
      if (encodeF16(inp[i]!) !== out[i]) bad++;
    }
    expect(bad).toBe(0);
  });
});
