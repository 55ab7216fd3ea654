// The GPTQ oracle cases from ../shared/fixtures/gptq (beside the checkout), read with a minimal
// safetensors reader, plus small helpers for the integer-quantizer tests.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "shared", "fixtures", "gptq");

export interface OracleCase {
  name: string;
  rows: number;
  cols: number;
  bits: number;
  group: number;
  sym: boolean;
  actorder: boolean;
  damp: number;
  blocksize: number;
  proxy_loss: number;
  rtn_proxy_loss: number;
}

export function loadCases() {
  const cases = JSON.parse(readFileSync(join(fixtureDir, "cases.json"), "utf8")) as OracleCase[];
  return cases.map((c) => {
    const buf = readFileSync(join(fixtureDir, `${c.name}.safetensors`));
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    const get = (k: string) => {
      const t = header[k];
      const copy = new Uint8Array(buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1])).buffer;
      return t.dtype === "I32" ? new Int32Array(copy) : new Float32Array(copy);
    };
    return {
      c,
      W: get("W") as Float32Array,
      H: get("H") as Float32Array,
      Q: get("Q") as Float32Array,
      scale: get("scale") as Float32Array,
      zero: get("zero") as Float32Array,
      gIdx: get("g_idx") as Int32Array,
      perm: get("perm") as Int32Array,
    };
  });
}

/** tr((W−Q)·H·(W−Q)ᵀ) in f64. */
export function proxyLoss(w: Float32Array, q: Float32Array, h: ArrayLike<number>, rows: number, cols: number): number {
  let loss = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = w[r * cols + c] - q[r * cols + c];
    for (let i = 0; i < cols; i++) {
      if (d[i] === 0) continue;
      let acc = 0;
      for (let j = 0; j < cols; j++) acc += h[i * cols + j] * d[j];
      loss += d[i] * acc;
    }
  }
  return loss;
}

export function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// The tie-aware code comparison is shared with the native GPTQ tests (one definition).
export { codesVsOracle } from "../../../native/test/gptq_fixtures.ts";

/**
 * The oracle's round-to-nearest written out plainly with an UNROUNDED f64 scale (the oracle's own
 * arithmetic): codes, dequant, and which values sat on a half-way tie of x/scale (to f64 rounding).
 */
export function rtnF64(w: Float32Array, rows: number, cols: number, bits: number, group: number, sym: boolean) {
  const maxq = 2 ** bits - 1;
  const g = group === -1 ? cols : group;
  const codes = new Int32Array(rows * cols);
  const dequant = new Float32Array(rows * cols);
  const tie = new Uint8Array(rows * cols);
  const even = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));
  for (let r = 0; r < rows; r++)
    for (let c0 = 0; c0 < cols; c0 += g) {
      const end = Math.min(cols, c0 + g);
      let lo = 0;
      let hi = 0;
      for (let c = c0; c < end; c++) {
        lo = Math.min(lo, w[r * cols + c]);
        hi = Math.max(hi, w[r * cols + c]);
      }
      if (sym) [lo, hi] = [-Math.max(-lo, hi), Math.max(-lo, hi)];
      if (lo === 0 && hi === 0) [lo, hi] = [-1, 1];
      const scale = (hi - lo) / maxq;
      const zero = sym ? (maxq + 1) / 2 : even(-lo / scale);
      for (let c = c0; c < end; c++) {
        const i = r * cols + c;
        const v = w[i] / scale;
        // within what rounding the scale to f32 (2^-24 relative) can move x/scale
        tie[i] = Math.abs(Math.abs(v % 1) - 0.5) <= Math.abs(v) * 2 ** -23 ? 1 : 0;
        codes[i] = Math.min(maxq, Math.max(0, even(v) + zero));
        dequant[i] = scale * (codes[i] - zero);
      }
    }
  return { codes, dequant, tie };
}
