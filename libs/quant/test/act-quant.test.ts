// Activation fake-quantization against (a) hand-worked values and the byte-level NVFP4 example of
// ../shared/reference/formats.md §1, and (b) a reference that rounds by searching the e4m3 / e2m1
// value grids in float64 (nearest value, ties to the even code, saturation by clamping) instead
// of the bit arithmetic of @moeq/tensor, following vLLM's f32 operation order.
import { e4m3ToF32, packNibbles } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import {
  e4m3Saturate,
  FloatQuantInputError,
  fakeQuantFp8PerToken,
  fakeQuantFp8PerTokenGroup,
  fakeQuantFp8Static,
  fakeQuantNvfp4,
  quantizeNvfp4Activations,
} from "../src/float.ts";
import { E4M3_POS, refE4m3, refGroups, refNvfp4, refStatic } from "./act-quant-ref.ts";

const f = Math.fround;

/** Values with -0 read as 0: the sign of a zero product does not reach the GEMM's sums. */
const vals = (a: ArrayLike<number>) => Array.from(a, (v) => v + 0);

/** Normal-ish values with a heavy tail (a few large outliers, as activations have). */
const rand = (n: number, seed: number, scale = 1): Float32Array => {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return Float32Array.from({ length: n }, () => {
    const v = scale * Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
    return next() < 0.02 ? v * 40 : v;
  });
};

describe("e4m3Saturate", () => {
  it("rounds half to even and saturates at ±448 instead of NaN", () => {
    expect(e4m3Saturate(1)).toBe(0x38);
    expect(e4m3Saturate(448)).toBe(0x7e);
    expect(e4m3Saturate(2 ** -9)).toBe(0x01);
    expect(e4m3Saturate(1 + 1 / 16)).toBe(0x38); // halfway 1 | 1.125 → even mantissa 1
    expect(e4m3Saturate(1 + 3 / 16)).toBe(0x3a); // halfway 1.125 | 1.25 → 1.25
    expect(e4m3Saturate(464)).toBe(0x7e); // the cast alone would give NaN (0x7f)
    expect(e4m3Saturate(-1e6)).toBe(0xfe);
  });
  it("equals the float64 nearest-value search on every f32 tie point and random values", () => {
    const vals: number[] = [];
    for (let i = 0; i + 1 < E4M3_POS.length; i++) vals.push((E4M3_POS[i]! + E4M3_POS[i + 1]!) / 2);
    vals.push(...rand(5000, 3, 30));
    for (const v of vals)
      for (const s of [1, -1]) expect(e4m3ToF32(e4m3Saturate(f(s * v))), String(s * v)).toBe(refE4m3(f(s * v)));
  });
});

describe("fakeQuantFp8Static", () => {
  it("hand-worked: scale 0.5 → x·2 on the e4m3 grid, saturated, times 0.5", () => {
    const y = fakeQuantFp8Static(Float32Array.from([1, -224, 300, 0.53, 0]), 1, 5, 0.5);
    // 0.53·2 = 1.06 → 1 (e4m3 step 0.125 at 1); 300·2 = 600 → 448
    expect(Array.from(y)).toEqual([1, -224, 224, 0.5, 0]);
  });
  it.each([
    [1, 1],
    [7, 33],
    [13, 256],
  ])("random %i×%i equals the reference", (rows, cols) => {
    const x = rand(rows * cols, rows * 31 + cols, 2);
    for (const s of [f(3 / 448), f(1.7), f(100 / 448)]) {
      expect(vals(fakeQuantFp8Static(x, rows, cols, s))).toEqual(vals(refStatic(x, s)));
    }
  });
  it("refuses a bad scale or shape with a typed error naming the module", () => {
    const x = new Float32Array(6);
    expect(() => fakeQuantFp8Static(x, 2, 3, 0, "L0.E3.gate_proj")).toThrow(FloatQuantInputError);
    expect(() => fakeQuantFp8Static(x, 2, 3, Number.NaN, "L0.E3.gate_proj")).toThrow(
      /L0\.E3\.gate_proj: input_scale NaN/,
    );
    expect(() => fakeQuantFp8Static(x, 4, 3, 1, "m")).toThrow(/m: 6 activation values do not fill \[4, 3\]/);
  });
});

describe("fakeQuantFp8PerToken / PerTokenGroup", () => {
  it("hand-worked: a row's amax lands on 448 exactly; a zero row stays zero", () => {
    const y = fakeQuantFp8PerToken(Float32Array.from([4.48, -1, 0, 0, 0, 0]), 2, 3);
    expect(y[0]).toBe(f(4.48));
    // s = 0.01: −1/0.01 = −100 → e4m3 −96 (step 8 in [64, 128), 100 is nearer 96) → −0.96
    expect(y[1]).toBe(f(f(-96) * f(4.48 / 448)));
    expect(Array.from(y.subarray(3))).toEqual([0, 0, 0]);
  });
  it.each([
    [1, 5],
    [9, 37],
    [4, 300],
  ])("random %i×%i equals the reference (per token, and groups of 128 with a partial tail)", (rows, cols) => {
    const x = rand(rows * cols, rows + cols * 7, 0.8);
    expect(vals(fakeQuantFp8PerToken(x, rows, cols))).toEqual(
      vals(refGroups(x, rows, cols, cols, (a) => Math.max(f(a / 448), f(1 / (448 * 512))))),
    );
    expect(vals(fakeQuantFp8PerTokenGroup(x, rows, cols, 128))).toEqual(
      vals(refGroups(x, rows, cols, 128, (a) => f(Math.max(a, 1e-10) / 448))),
    );
  });
});

describe("NVFP4 activations", () => {
  it("the formats.md byte example: [0.5,1,1.5,2,3,4,6,−0.5] with G = 1 → bytes 21 43 65 97, block scale 1.0", () => {
    const x = new Float32Array(16);
    x.set([0.5, 1, 1.5, 2, 3, 4, 6, -0.5]);
    const q = quantizeNvfp4Activations(x, 1, 16, 1);
    expect(Array.from(packNibbles(q.codes.subarray(0, 8)), (b) => b.toString(16))).toEqual(["21", "43", "65", "97"]);
    expect(q.blockScales[0]).toBe(0x38);
    expect(Array.from(q.dequant)).toEqual(Array.from(x));
  });
  it("ties round to the even e2m1 value and values past 6·scale saturate", () => {
    // amax 12 with G = 1: sf = 2, k = 1/2; x·k = 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6 (the amax)
    const x = Float32Array.from([0.5, 1.5, 2.5, 3.5, 5, 7, 10, 12, -0.5, -1.5, -2.5, -3.5, -5, -7, -10, -12]);
    const q = quantizeNvfp4Activations(x, 1, 16, 1);
    expect(Array.from(q.dequant)).toEqual([0, 2, 2, 4, 4, 8, 8, 12, 0, -2, -2, -4, -4, -8, -8, -12]);
    // a block far above the calibrated range (G = 1, amax 6000): its scale saturates at 448, the
    // block max lands past 6 and clamps, the small values flush to 0
    const big = quantizeNvfp4Activations(
      Float32Array.from({ length: 16 }, (_, i) => (i === 0 ? 6000 : 1)),
      1,
      16,
      1,
    );
    expect(big.blockScales[0]).toBe(0x7e);
    expect(big.codes[0]).toBe(7);
    expect(big.dequant[0]).toBe(2688);
    expect(big.dequant[1]).toBe(0);
  });
  it.each([
    [1, 16],
    [7, 48],
    [5, 256],
  ])("random %i×%i equals the reference", (rows, cols) => {
    const x = rand(rows * cols, 17 * rows + cols, 1.3);
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    // the calibrated G (2688/amax), and one from a smaller calibration range (run-time overflow)
    for (const g of [f(2688 / amax), f(2688 / (amax / 8))]) {
      expect(vals(fakeQuantNvfp4(x, rows, cols, g))).toEqual(vals(refNvfp4(x, rows, cols, g)));
    }
  });
  it("refuses an input dim that is not a multiple of 16 and a non-positive global scale", () => {
    expect(() => fakeQuantNvfp4(new Float32Array(20), 1, 20, 1, "L1.E0.down_proj")).toThrow(
      /L1\.E0\.down_proj: input dim 20/,
    );
    expect(() => fakeQuantNvfp4(new Float32Array(16), 1, 16, -1, "m")).toThrow(FloatQuantInputError);
  });
});
