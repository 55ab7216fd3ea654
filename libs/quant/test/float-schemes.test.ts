// Float quantizers against hand-worked values (each expectation derived on paper from the
// definitions in ../shared/reference/formats.md and the producers' source), plus properties
// that hold for any input: dequant is exactly code × scale, and the error is bounded.
import { e4m3ToF32 as decodeE4m3 } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import {
  decodeE2m1,
  dequantizeFp8,
  dequantizeMxfp4,
  dequantizeNvfp4,
  encodeE2m1,
  FloatQuantInputError,
  fp8ScaleTile,
  inputScaleFp8,
  MissingCalibrationError,
  mxfp4ScaleByte,
  nvfp4InputScale,
  quantizeFp8,
  quantizeMxfp4,
  quantizeNvfp4,
  resolveExpertInputRanges,
  resolveInputRange,
} from "../src/float.ts";

const rand = (n: number, seed: number, scale = 1): Float32Array => {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const v = s / 2 ** 32;
    out[i] = scale * Math.sqrt(-2 * Math.log(u + 1e-12)) * Math.cos(2 * Math.PI * v);
  }
  return out;
};

describe("quantizeFp8", () => {
  it("per tensor: amax 448 gives scale 1 and the e4m3 codes of the values themselves", () => {
    const q = quantizeFp8(Float32Array.from([448, -224, 1, 0, 0.001953125, -3.3]), 2, 3, { strategy: "tensor" });
    expect(Array.from(q.scales)).toEqual([1]);
    // 448 = 1.75·2^8 → 0 1111 110; −224 = −1.75·2^7 → 1 1110 110; 1 → 0 0111 000;
    // 2^-9 is the smallest subnormal → 0x01; −3.3 → nearest −3.25 = −1.625·2 → 1 1000 101.
    expect(Array.from(q.codes)).toEqual([0x7e, 0xf6, 0x38, 0x00, 0x01, 0xc5]);
    expect(Array.from(q.dequant)).toEqual([448, -224, 1, 0, 0.001953125, -3.25]);
  });
  it("per channel: one scale per row = row amax / 448", () => {
    const q = quantizeFp8(Float32Array.from([1, -2, 0.5, 896, 0, 0]), 3, 2, { strategy: "channel" });
    expect(q.scaleShape).toEqual([3, 1]);
    expect(q.scales[0]).toBe(Math.fround(2 / 448));
    expect(q.scales[1]).toBe(2);
    expect(q.scales[2]).toBe(2 ** -23); // all-zero row: eps, as compressed-tensors does
    expect(q.dequant[3]).toBe(896);
    expect(q.dequant[1]).toBe(-2);
  });
  it("blocks: partial edge blocks get their own amax and the scale grid is ceil(rows/br)×ceil(cols/bc)", () => {
    // 3×5 weight, 2×2 blocks → grid 2×3; block (1,2) holds only w[2][4].
    const w = Float32Array.from([1, 2, 3, 4, 5, -6, 7, 8, 9, 10, 11, 12, 13, 14, -448]);
    const q = quantizeFp8(w, 3, 5, { strategy: "block", block: [2, 2] });
    expect(q.scaleShape).toEqual([2, 3]);
    const amax = [7, 9, 10, 12, 14, 448];
    expect(Array.from(q.scales)).toEqual(amax.map((a) => Math.fround(a / 448)));
    expect(q.dequant[14]).toBe(-448);
    expect(fp8ScaleTile("block", 3, 5, [2, 2])).toEqual([2, 2]);
  });
  it("dequant is exactly e4m3(code)·scale and dequantizeFp8 reproduces it, for odd shapes", () => {
    for (const [rows, cols, strategy] of [
      [7, 13, "tensor"],
      [5, 129, "channel"],
      [131, 257, "block"],
    ] as const) {
      const w = rand(rows * cols, rows * 31 + cols, 0.05);
      const q = quantizeFp8(w, rows, cols, { strategy });
      const tile = fp8ScaleTile(strategy, rows, cols, q.block);
      const d = dequantizeFp8(q.codes, q.scales, rows, cols, tile);
      expect(Buffer.from(d.buffer).equals(Buffer.from(q.dequant.buffer))).toBe(true);
      for (let i = 0; i < w.length; i++) {
        const r = Math.floor(i / cols);
        const c = i % cols;
        const s = q.scales[Math.floor(r / tile[0]) * q.scaleShape[1] + Math.floor(c / tile[1])]!;
        expect(q.dequant[i]).toBe(Math.fround(decodeE4m3(q.codes[i]!) * s));
        // e4m3 has 3 mantissa bits: relative error ≤ 2^-4 above the subnormal range
        expect(Math.abs(q.dequant[i]! - w[i]!)).toBeLessThanOrEqual(Math.abs(w[i]!) / 16 + s * 2 ** -9);
      }
    }
  });
  it("rejects bad input with a typed error naming the tensor", () => {
    expect(() => quantizeFp8(new Float32Array(5), 2, 3, { strategy: "tensor", name: "x.weight" })).toThrow(/x\.weight/);
    const bad = Float32Array.from([1, Number.NaN]);
    expect(() => quantizeFp8(bad, 1, 2, { strategy: "tensor" })).toThrow(FloatQuantInputError);
  });
});

describe("quantizeNvfp4", () => {
  it("compressed-tensors: the worked example row quantizes to itself with global scale 448", () => {
    const row = [0.5, 1, 1.5, 2, 3, 4, 6, -0.5, 0, 0, 0, 0, 0, 0, 0, -6];
    const q = quantizeNvfp4(Float32Array.from(row), 1, 16);
    expect(q.globalScale).toBe(448); // 2688 / 6
    expect(decodeE4m3(q.blockScales[0]!)).toBe(448); // 6/6 · 448
    expect(Array.from(q.codes.subarray(0, 8))).toEqual([1, 2, 3, 4, 5, 6, 7, 9]);
    expect(q.codes[15]).toBe(15);
    expect(Array.from(q.dequant)).toEqual(row);
  });
  it("compressed-tensors: a second block with a smaller amax gets fp8(amax_b/6·global)", () => {
    // amax 12 → global 224; block 2 amax 3 → 3/6·224 = 112 (exact in e4m3); multiplier 112/224 = 0.5
    const w = new Float32Array(32);
    w[0] = 12;
    w[16] = 3;
    w[17] = 0.74; // 0.74/0.5 = 1.48 → 1.5 → 0.75
    w[18] = -0.25; // −0.5 → code 9
    w[19] = 0.125; // 0.25 is a tie → even → 0
    const q = quantizeNvfp4(w, 1, 32);
    expect(q.globalScale).toBe(224);
    expect(decodeE4m3(q.blockScales[1]!)).toBe(112);
    expect(Array.from(q.dequant.subarray(16, 20))).toEqual([3, 0.75, -0.25, 0]);
    expect(q.codes[19]).toBe(0);
  });
  it("an all-zero block gets scale 0.125 (compressed-tensors) or 1.0 (ModelOpt)", () => {
    const w = new Float32Array(32);
    w[0] = 6;
    expect(decodeE4m3(quantizeNvfp4(w, 1, 32).blockScales[1]!)).toBe(0.125);
    expect(decodeE4m3(quantizeNvfp4(w, 1, 32, { convention: "modelopt" }).blockScales[1]!)).toBe(1);
  });
  it("ModelOpt: scale_2 = amax/2688 and w' = e2m1 · (block · scale_2)", () => {
    const w = rand(3 * 48, 7, 0.02);
    const q = quantizeNvfp4(w, 3, 48, { convention: "modelopt" });
    let amax = 0;
    for (const x of w) amax = Math.max(amax, Math.abs(x));
    expect(q.globalScale).toBe(Math.fround(amax / 2688));
    for (let i = 0; i < w.length; i++) {
      const m = Math.fround(decodeE4m3(q.blockScales[Math.floor(i / 16)]!) * q.globalScale);
      expect(q.dequant[i]).toBe(Math.fround(decodeE2m1(q.codes[i]!) * m));
    }
  });
  it("dequantizeNvfp4 reproduces the quantizer's dequant bit for bit (both conventions, odd row counts)", () => {
    for (const convention of ["compressed-tensors", "modelopt"] as const) {
      const w = rand(5 * 80, 11, 0.03);
      const q = quantizeNvfp4(w, 5, 80, { convention });
      const d = dequantizeNvfp4(q.codes, q.blockScales, q.globalScale, convention, 5, 80);
      expect(Buffer.from(d.buffer).equals(Buffer.from(q.dequant.buffer))).toBe(true);
    }
  });
  it("honours a shared global scale and rejects widths that are not multiples of 16", () => {
    const w = rand(2 * 16, 3, 0.01);
    expect(quantizeNvfp4(w, 2, 16, { globalScale: 1000 }).globalScale).toBe(1000);
    expect(() => quantizeNvfp4(new Float32Array(24), 1, 24, { name: "l0.gate_proj.weight" })).toThrow(
      /l0\.gate_proj\.weight.*multiple of the NVFP4 block/,
    );
  });
});

describe("encodeE2m1", () => {
  it("rounds ties to the even mantissa and saturates at 6, with +0 for magnitude zero", () => {
    const cases: Array<[number, number]> = [
      [0.25, 0],
      [0.2500001, 1],
      [0.75, 2],
      [0.7499999, 1],
      [1.25, 2],
      [1.2500001, 3],
      [1.75, 4],
      [2.5, 4],
      [2.5000002, 5],
      [3.5, 6],
      [5, 6],
      [5.0000005, 7],
      [100, 7],
      [-0.75, 10],
      [-0.1, 0],
      [-6, 15],
    ];
    for (const [x, code] of cases) expect([x, encodeE2m1(x)]).toEqual([x, code]);
  });
});

describe("quantizeMxfp4", () => {
  it("scale byte: bf16 amax rounded up to a power of two only from mantissa 1.75, minus emax 2", () => {
    expect(mxfp4ScaleByte(6)).toBe(127); // 1.5·2^2 → 2^2 → 2^0
    expect(mxfp4ScaleByte(4)).toBe(127);
    expect(mxfp4ScaleByte(7)).toBe(128); // 1.75·2^2 → 2^3 → 2^1
    expect(mxfp4ScaleByte(1)).toBe(125);
    expect(mxfp4ScaleByte(1.74)).toBe(125);
    expect(mxfp4ScaleByte(1.75)).toBe(126);
    expect(mxfp4ScaleByte(0)).toBe(0);
  });
  it("quantizes a block: w/2^(e−127) rounded to e2m1, saturating at ±6", () => {
    const w = new Float32Array(32);
    w[0] = 7; // scale 2 → 3.5 → tie → 4 → 8
    w[1] = -1; // −0.5 → code 9 → −1
    w[2] = 5.5; // 2.75 → 3 → 6
    w[3] = 0.4; // 0.2 → 0
    const q = quantizeMxfp4(w, 1, 32);
    expect(Array.from(q.scales)).toEqual([128]);
    expect(Array.from(q.dequant.subarray(0, 4))).toEqual([8, -1, 6, 0]);
    expect(Array.from(q.codes.subarray(0, 4))).toEqual([6, 9, 5, 0]);
  });
  it("dequantizeMxfp4 reproduces the quantizer's dequant; widths must be multiples of 32", () => {
    const w = rand(3 * 96, 5, 0.1);
    const q = quantizeMxfp4(w, 3, 96);
    const d = dequantizeMxfp4(q.codes, q.scales, 3, 96);
    expect(Buffer.from(d.buffer).equals(Buffer.from(q.dequant.buffer))).toBe(true);
    expect(() => quantizeMxfp4(new Float32Array(48), 1, 48)).toThrow(FloatQuantInputError);
  });
});

describe("input scales", () => {
  it("fp8: absmax/448; nvfp4: 2688/absmax (compressed-tensors) or absmax/2688 (ModelOpt)", () => {
    const r = resolveInputRange("e0", { tokens: 10, absmax: 896 });
    expect(r.source).toBe("calibration");
    expect(inputScaleFp8(r)).toBe(2);
    expect(nvfp4InputScale(r, "compressed-tensors")).toBe(3);
    expect(nvfp4InputScale(r, "modelopt")).toBe(Math.fround(896 / 2688));
  });
  it("an expert that saw no tokens is refused unless a fallback with a reason is given", () => {
    expect(() => resolveInputRange("layers.1.experts.5", { tokens: 0, absmax: 0 })).toThrow(MissingCalibrationError);
    expect(() => resolveInputRange("e", undefined, { absmax: 1, reason: " " })).toThrow(/not usable/);
    const r = resolveInputRange("layers.1.experts.5", { tokens: 0, absmax: 0 }, { absmax: 3, reason: "policy all" });
    expect(r).toEqual({
      absmax: 3,
      source: "fallback",
      reason: "layers.1.experts.5 saw no calibration tokens: policy all",
    });
  });
  it("layer-max gives uncalibrated experts the largest sibling range and says so", () => {
    const m = resolveExpertInputRanges(
      new Map([
        ["e0", { tokens: 4, absmax: 2 }],
        ["e1", { tokens: 0, absmax: 0 }],
        ["e2", { tokens: 9, absmax: 5 }],
      ]),
      "layer-max",
    );
    expect(m.get("e1")!.absmax).toBe(5);
    expect(m.get("e1")!.source).toBe("fallback");
    expect(m.get("e1")!.reason).toMatch(/max input absmax over the 2 calibrated experts/);
    expect(m.get("e2")!.source).toBe("calibration");
    expect(() => resolveExpertInputRanges(new Map([["e0", undefined]]), "layer-max")).toThrow(MissingCalibrationError);
    expect(() => resolveExpertInputRanges(new Map([["e0", { tokens: 0, absmax: 0 }]]), "error")).toThrow(/e0/);
  });
});
