import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";
import type { ActivationKind } from "../ts/kernels.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}
const fill = (n: number, r: () => number, scale = 4) => Float32Array.from({ length: n }, () => r() * scale);
const maxAbs = (a: Float32Array, b: ArrayLike<number>) => {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]));
  return e;
};
const shapes: Array<[number, number]> = [
  [1, 1],
  [3, 7],
  [5, 64],
  [17, 33],
  [2, 257],
  [9, 1000],
];

describe("softmax / log-softmax", () => {
  for (const [rows, cols] of shapes)
    it(`${rows}x${cols} matches the reference and a JS formula`, () => {
      const x = fill(rows * cols, rng(rows * 31 + cols), 20);
      const a = new Float32Array(x.length);
      const b = new Float32Array(x.length);
      native.softmaxF32(x, a, rows, cols);
      native.softmaxF32Ref(x, b, rows, cols);
      expect(maxAbs(a, b)).toBeLessThan(1e-6);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
        const m = Math.max(...row);
        const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
        for (let c = 0; c < cols; c++) expect(a[r * cols + c]).toBeCloseTo(Math.exp(row[c] - m) / z, 6);
      }
      native.logSoftmaxF32(x, a, rows, cols);
      native.logSoftmaxF32Ref(x, b, rows, cols);
      expect(maxAbs(a, b)).toBeLessThan(1e-5);
    });
  it("works in place and handles -inf entries", () => {
    const x = Float32Array.from([0, -Infinity, 0, Math.log(2)]);
    native.softmaxF32(x, x, 1, 4);
    expect(Array.from(x).map((v) => +v.toFixed(6))).toEqual([0.25, 0, 0.25, 0.5]);
  });
  it("rejects a short buffer with a RangeError", () => {
    expect(() => native.softmaxF32(new Float32Array(5), new Float32Array(6), 2, 3)).toThrow(/x is smaller/);
  });
});

describe("activations", () => {
  const kinds: ActivationKind[] = ["silu", "gelu_tanh", "gelu_erf", "sigmoid", "softplus", "relu"];
  const oracle: Record<ActivationKind, (x: number) => number> = {
    silu: (x) => x / (1 + Math.exp(-x)),
    gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    gelu_erf: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    sigmoid: (x) => 1 / (1 + Math.exp(-x)),
    softplus: (x) => (x > 20 ? x : Math.log1p(Math.exp(x))),
    relu: (x) => Math.max(0, x),
  };
  for (const kind of kinds)
    for (const n of [1, 7, 1023])
      it(`${kind} n=${n}`, () => {
        const x = fill(n, rng(n + kind.length), 50);
        const a = new Float32Array(n);
        const b = new Float32Array(n);
        native.activationF32(kind, x, a);
        native.activationF32Ref(kind, x, b);
        for (let i = 0; i < n; i++) {
          const want = oracle[kind](x[i]);
          expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(b[i])));
          expect(Math.abs(b[i] - want)).toBeLessThanOrEqual(2e-6 * Math.max(1, Math.abs(want)));
        }
      });
  it("rejects an unknown kind", () => {
    expect(() => native.activationF32("swish" as ActivationKind, new Float32Array(1), new Float32Array(1))).toThrow(
      /not one of/,
    );
  });
});

// Abramowitz–Stegun 7.1.26 is only 1.5e-7 accurate; use a series/continued fraction instead.
function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 3) {
    let sum = t;
    let term = t;
    for (let n = 1; n < 80; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  return Math.sign(x) * (1 - (Math.exp(-t * t) / (t * Math.sqrt(Math.PI))) * (1 - 1 / (2 * t * t)));
}

describe("SwiGLU", () => {
  for (const [rows, cols] of shapes)
    it(`separate, fused and interleaved layouts ${rows}x${cols}`, () => {
      const r = rng(rows * 7 + cols);
      const gate = fill(rows * cols, r, 10);
      const up = fill(rows * cols, r, 10);
      const want = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
      const a = new Float32Array(rows * cols);
      native.swigluF32(gate, up, a, rows, cols);
      expect(maxAbs(a, want)).toBeLessThan(1e-4);
      const b = new Float32Array(rows * cols);
      native.swigluF32Ref(gate, up, b, rows, cols);
      expect(maxAbs(a, b)).toBeLessThan(1e-4);
      // fused rows [gate | up] and interleaved pairs give the same answer
      const fused = new Float32Array(rows * 2 * cols);
      const inter = new Float32Array(rows * 2 * cols);
      for (let i = 0; i < rows; i++)
        for (let c = 0; c < cols; c++) {
          fused[i * 2 * cols + c] = gate[i * cols + c];
          fused[i * 2 * cols + cols + c] = up[i * cols + c];
          inter[i * 2 * cols + 2 * c] = gate[i * cols + c];
          inter[i * 2 * cols + 2 * c + 1] = up[i * cols + c];
        }
      const f = new Float32Array(rows * cols);
      native.swigluF32(fused, fused.subarray(cols), f, rows, cols, 2 * cols, 1);
      expect(Array.from(f)).toEqual(Array.from(a));
      native.swigluF32(inter, inter.subarray(1), f, rows, cols, 2 * cols, 2);
      expect(Array.from(f)).toEqual(Array.from(a));
    });
  it("clamped (GPT-OSS) against a JS formula", () => {
    const r = rng(99);
    const [rows, cols] = [13, 29];
    const gate = fill(rows * cols, r, 30);
    const up = fill(rows * cols, r, 30);
    const a = new Float32Array(rows * cols);
    const b = new Float32Array(rows * cols);
    native.clampedSwigluF32(gate, up, a, rows, cols, cols, 1, 1.702, 7);
    native.clampedSwigluF32Ref(gate, up, b, rows, cols, cols, 1, 1.702, 7);
    for (let i = 0; i < a.length; i++) {
      const g = Math.min(gate[i], 7);
      const u = Math.min(Math.max(up[i], -7), 7);
      const want = (u + 1) * (g / (1 + Math.exp(-1.702 * g)));
      expect(Math.abs(b[i] - want)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want)));
      expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(want)));
    }
  });
  it("rejects strides that run past the buffer", () => {
    const g = new Float32Array(10);
    expect(() => native.swigluF32(g, g, new Float32Array(10), 2, 5, 6, 1)).toThrow(/too short/);
  });
});

describe("L2 normalisation", () => {
  for (const [rows, cols] of shapes)
    it(`${rows}x${cols}`, () => {
      const x = fill(rows * cols, rng(rows + cols * 3));
      const a = new Float32Array(x.length);
      const b = new Float32Array(x.length);
      native.l2NormF32(x, a, rows, cols, 1e-6);
      native.l2NormF32Ref(x, b, rows, cols, 1e-6);
      expect(maxAbs(a, b)).toBeLessThan(1e-6);
      for (let i = 0; i < rows; i++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += a[i * cols + c] ** 2;
        expect(s).toBeCloseTo(1, 4);
      }
    });
});

describe("bf16 / f16 widening", () => {
  it("bf16 bits are the top half of f32", () => {
    const vals = [1, -2.5, 0.15625, 3.0e38, -0.0];
    const bits = new Uint16Array(vals.map((v) => new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16));
    const out = new Float32Array(vals.length);
    native.bf16ToF32(bits, out);
    expect(out[0]).toBe(1);
    expect(out[1]).toBe(-2.5);
    expect(out[2]).toBe(0.15625);
    expect(Object.is(out[4], -0)).toBe(true);
  });
  it("f16 decodes normals, subnormals and infinities", () => {
    const out = new Float32Array(5);
    native.f16ToF32(Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7c00, 0x7bff), out);
    expect(Array.from(out)).toEqual([1, -2, 2 ** -24, Infinity, 65504]);
  });
});
