import { describe, expect, it } from "vitest";
import {
  bf16BitsToF32,
  type DType,
  e4m3ToF32,
  e5m2ToF32,
  e8m0ToF32,
  f16BitsToF32,
  f32Tensor,
  f32ToBf16Bits,
  f32ToE4m3,
  f32ToE5m2,
  f32ToE8m0,
  f32ToF16Bits,
  fromF32,
  toF32,
} from "../src/index.ts";
import { table, tableMetadata } from "./tables.ts";

interface Case {
  key: string;
  dtype: DType;
  encode: (x: number) => number;
  decode: (c: number) => number;
}
const cases: Case[] = [
  { key: "bf16", dtype: "BF16", encode: f32ToBf16Bits, decode: bf16BitsToF32 },
  { key: "f16", dtype: "F16", encode: f32ToF16Bits, decode: f16BitsToF32 },
  { key: "f8_e4m3", dtype: "F8_E4M3", encode: f32ToE4m3, decode: e4m3ToF32 },
  { key: "f8_e5m2", dtype: "F8_E5M2", encode: f32ToE5m2, decode: e5m2ToF32 },
  { key: "f8_e8m0", dtype: "F8_E8M0", encode: f32ToE8m0, decode: e8m0ToF32 },
];

const sameFloat = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

describe("conversions against PyTorch 2.11 tables", () => {
  it("tables were made by torch 2.11", () => {
    expect(tableMetadata.torch).toMatch(/^2\.11/);
  });

  for (const c of cases) {
    it(`${c.key}: decodes every code like torch (scalar and bulk)`, () => {
      const want = table(`${c.key}.decode`) as Float32Array;
      expect(want.length).toBe(c.key.startsWith("f8") ? 256 : 65536);
      const bad: number[] = [];
      for (let code = 0; code < want.length; code++)
        if (!sameFloat(Math.fround(c.decode(code)), want[code])) bad.push(code);
      expect(bad).toEqual([]);
      const codes = c.key.startsWith("f8")
        ? Uint8Array.from({ length: 256 }, (_, i) => i)
        : Uint16Array.from({ length: 65536 }, (_, i) => i);
      const bulk = toF32({ dtype: c.dtype, data: new Uint8Array(codes.buffer) });
      for (let code = 0; code < want.length; code++) if (!sameFloat(bulk[code], want[code])) bad.push(code);
      expect(bad).toEqual([]);
    });

    it(`${c.key}: encodes every table input to torch's code (scalar and bulk)`, () => {
      const input = table(`${c.key}.enc_in`) as Float32Array;
      const want = table(`${c.key}.enc_out`);
      expect(input.length).toBe(want.length);
      expect(input.length).toBeGreaterThan(20000);
      const agree = (got: number, w: number) => got === w || (Number.isNaN(c.decode(got)) && Number.isNaN(c.decode(w)));
      const bad: string[] = [];
      for (let i = 0; i < input.length; i++) {
        const got = c.encode(input[i]);
        if (!agree(got, want[i])) bad.push(`${input[i]} → ${got.toString(16)}, torch ${want[i].toString(16)}`);
      }
      expect(bad.slice(0, 10)).toEqual([]);
      const t = fromF32(input, c.dtype, [input.length]);
      const codes = c.key.startsWith("f8") ? t.data : new Uint16Array(t.data.buffer);
      for (let i = 0; i < input.length; i++) if (!agree(codes[i], want[i])) bad.push(`bulk ${input[i]}`);
      expect(bad.slice(0, 10)).toEqual([]);
    });
  }

  it("e4m3 saturation rule: no inf, 448 is the max, past the last tie is NaN", () => {
    expect(f32ToE4m3(448)).toBe(0x7e);
    expect(f32ToE4m3(464)).toBe(0x7e); // tie between 448 and the (NaN) next code rounds to even
    expect(Number.isNaN(e4m3ToF32(f32ToE4m3(465)))).toBe(true);
    expect(Number.isNaN(e4m3ToF32(f32ToE4m3(Infinity)))).toBe(true);
    expect(f32ToE4m3(2 ** -9)).toBe(0x01); // smallest subnormal
    expect(f32ToE4m3(2 ** -10)).toBe(0x00); // tie to even → 0
  });

  it("e8m0 rounding as torch does it: mantissa ≥ 1.5 rounds up, overflow is NaN", () => {
    expect(f32ToE8m0(1)).toBe(127);
    expect(f32ToE8m0(1.5)).toBe(128);
    expect(f32ToE8m0(1.4999999)).toBe(127);
    expect(f32ToE8m0(6)).toBe(130); // 1.5·2^2 → 2^3
    expect(f32ToE8m0(0)).toBe(0);
    expect(f32ToE8m0(2 ** 127 * 1.5)).toBe(0xff);
    expect(e8m0ToF32(0)).toBe(2 ** -127);
  });
});

describe("toF32 / fromF32 for the other dtypes", () => {
  it("integers, bool and f64 widen exactly and narrow by truncation with saturation", () => {
    const x = new Float32Array([-3.7, -1, 0, 1.9, 200, 70000, Number.NaN]);
    expect(Array.from(toF32(fromF32(x, "I8", [7])))).toEqual([-3, -1, 0, 1, 127, 127, 0]);
    expect(Array.from(toF32(fromF32(x, "U8", [7])))).toEqual([0, 0, 0, 1, 200, 255, 0]);
    expect(Array.from(toF32(fromF32(x, "I16", [7])))).toEqual([-3, -1, 0, 1, 200, 32767, 0]);
    expect(Array.from(toF32(fromF32(x, "I32", [7])))).toEqual([-3, -1, 0, 1, 200, 70000, 0]);
    expect(Array.from(toF32(fromF32(x, "I64", [7])))).toEqual([-3, -1, 0, 1, 200, 70000, 0]);
    expect(Array.from(toF32(fromF32(x, "BOOL", [7])))).toEqual([1, 1, 0, 1, 1, 1, 1]);
    expect(Array.from(toF32(fromF32(x, "F64", [7])))).toEqual(Array.from(x));
  });

  it("int64 → f32 rounds once (no double rounding)", () => {
    // 2^60 + 2^36 + 1 is just above the f32 midpoint 2^60 + 2^36; a double-rounding path
    // (via the nearest double, 2^60 + 2^36) would tie to even and round down.
    const v = new BigInt64Array([2n ** 60n + 2n ** 36n + 1n, -(2n ** 60n + 2n ** 36n + 1n)]);
    const out = toF32({ dtype: "I64", data: new Uint8Array(v.buffer) });
    expect(out[0]).toBe(2 ** 60 + 2 ** 37);
    expect(out[1]).toBe(-(2 ** 60 + 2 ** 37));
  });

  it("reads unaligned views (tensors at odd file offsets)", () => {
    const buf = new Uint8Array(9);
    new DataView(buf.buffer).setFloat32(1, 1.5, true);
    new DataView(buf.buffer).setFloat32(5, -2, true);
    expect(Array.from(toF32({ dtype: "F32", data: buf.subarray(1) }))).toEqual([1.5, -2]);
  });

  it("f32Tensor wraps without copying", () => {
    const x = new Float32Array([1, 2, 3, 4]);
    const t = f32Tensor(x, [2, 2]);
    expect(t.data.buffer).toBe(x.buffer);
    expect(t.shape).toEqual([2, 2]);
  });

  it("rejects a shape that does not match the data", () => {
    expect(() => fromF32(new Float32Array(3), "BF16", [2, 2])).toThrow(/shape \[2,2\] holds 4/);
    expect(() => toF32({ dtype: "F32", data: new Uint8Array(6) })).toThrow(/not a whole number/);
  });
});
