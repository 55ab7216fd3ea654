import { describe, expect, it } from "vitest";
import {
  e2m1Decode,
  e2m1Encode,
  packCols,
  packE2M1,
  packInt4,
  packInt8,
  packNibbles,
  packRows,
  unpackCols,
  unpackE2M1,
  unpackInt4,
  unpackInt8,
  unpackNibbles,
  unpackRows,
} from "../src/index.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
const hex = (w: number) => (w >>> 0).toString(16).padStart(8, "0");

describe("int4/int8 packing (formats.md §1 worked examples)", () => {
  it("signed int4 [-7..0] → 0x87654321", () => {
    expect(hex(packInt4([-7, -6, -5, -4, -3, -2, -1, 0], 1, 8)[0])).toBe("87654321");
  });
  it("[1..7,-8] → 0x0FEDCBA9", () => {
    expect(hex(packInt4([1, 2, 3, 4, 5, 6, 7, -8], 1, 8)[0])).toBe("0fedcba9");
  });
  it("int8 [1,2,3,4] → 0x84838281", () => {
    expect(hex(packInt8([1, 2, 3, 4], 1, 4)[0])).toBe("84838281");
  });
  it("GPTQ v1 symmetric zero words: 0x77777777 (z−1=7) and v2 0x88888888", () => {
    expect(hex(packRows(new Array(8).fill(7), 1, 8, 4)[0])).toBe("77777777");
    expect(hex(packCols(new Array(8).fill(8), 8, 1, 4)[0])).toBe("88888888");
  });

  for (const [rows, cols] of [
    [1, 1],
    [3, 7],
    [5, 9],
    [2, 33],
    [17, 16],
  ] as const) {
    it(`random round trips at [${rows},${cols}] (rows and columns, 4 and 8 bits)`, () => {
      const r = rng(rows * 100 + cols);
      const q4 = Array.from({ length: rows * cols }, () => Math.floor(r() * 16) - 8);
      const q8 = Array.from({ length: rows * cols }, () => Math.floor(r() * 256) - 128);
      const w4 = packInt4(q4, rows, cols);
      expect(w4.length).toBe(rows * Math.ceil(cols / 8));
      expect(Array.from(unpackInt4(w4, rows, cols))).toEqual(q4);
      expect(Array.from(unpackInt8(packInt8(q8, rows, cols), rows, cols))).toEqual(q8);
      const u4 = q4.map((v) => v + 8);
      const c4 = packCols(u4, rows, cols, 4);
      expect(c4.length).toBe(Math.ceil(rows / 8) * cols);
      expect(Array.from(unpackCols(c4, rows, cols, 4))).toEqual(u4);
      // packing down columns equals packing rows of the transpose
      const t = Array.from({ length: rows * cols }, (_, i) => u4[(i % rows) * cols + Math.floor(i / rows)]);
      const viaT = packRows(t, cols, rows, 4);
      const w = Math.ceil(rows / 8);
      for (let c = 0; c < cols; c++) for (let k = 0; k < w; k++) expect(c4[k * cols + c]).toBe(viaT[c * w + k]);
      expect(Array.from(unpackRows(packRows(u4, rows, cols, 4), rows, cols, 4))).toEqual(u4);
    });
  }

  it("rejects values that do not fit", () => {
    expect(() => packInt4([8], 1, 1)).toThrow(/signed 4-bit/);
    expect(() => packRows([16], 1, 1, 4)).toThrow(/does not fit/);
    expect(() => unpackRows(new Int32Array(3), 2, 8, 4)).toThrow(/words/);
  });
});

describe("FP4 E2M1", () => {
  it("packs [0.5,1,1.5,2,3,4,6,-0.5] into bytes 21 43 65 97 (formats.md §1)", () => {
    expect(Array.from(packE2M1([0.5, 1, 1.5, 2, 3, 4, 6, -0.5]))).toEqual([0x21, 0x43, 0x65, 0x97]);
    expect(Array.from(unpackE2M1(new Uint8Array([0x21, 0x43, 0x65, 0x97]), 8))).toEqual([
      0.5, 1, 1.5, 2, 3, 4, 6, -0.5,
    ]);
  });

  it("rounds like compressed-tensors: nearest, ties to the smaller magnitude, saturate at 6", () => {
    // argmin |x − grid| keeps the first (smaller) grid point on a tie
    const cases: Array<[number, number]> = [
      [0.25, 0],
      [0.2500001, 0.5],
      [0.75, 0.5],
      [0.76, 1],
      [1.25, 1],
      [1.75, 1.5],
      [2.5, 2],
      [3.5, 3],
      [5, 4],
      [5.01, 6],
      [100, 6],
      [-0.75, -0.5],
      [-5, -4],
      [-7, -6],
    ];
    for (const [x, want] of cases) expect([x, e2m1Decode(e2m1Encode(x))]).toEqual([x, want]);
    expect(e2m1Encode(-0)).toBe(8); // sign from the sign bit, as torch.signbit
    expect(e2m1Encode(-0.1)).toBe(8);
  });

  it("every code decodes and re-encodes to itself (except -0 → 8)", () => {
    for (let c = 0; c < 16; c++) expect(e2m1Encode(e2m1Decode(c))).toBe(c === 8 ? 8 : c);
  });

  it("nibble order: even element low; odd count leaves the last high nibble zero", () => {
    expect(Array.from(packNibbles([1, 2, 3]))).toEqual([0x21, 0x03]);
    expect(Array.from(unpackNibbles(new Uint8Array([0x21, 0x03]), 3))).toEqual([1, 2, 3]);
  });
});
