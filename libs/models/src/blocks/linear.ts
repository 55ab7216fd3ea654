// y[rows, out] = x[rows, in]·Wᵀ (+ b) with W the [out, in] Linear weight, through OpenBLAS.
import { native } from "@moeq/native";
import type { LinearSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import { hookLinearInput } from "./linear-hook.ts";

export async function linear(
  w: F32Weights,
  spec: LinearSpec,
  input: Float32Array,
  rows: number,
): Promise<Float32Array> {
  const { outFeatures: n, inFeatures: k } = spec;
  const x = w.linearHook ? hookLinearInput(w.linearHook, spec, input, rows) : input;
  // a row range of a fused tensor (DBRX Wqkv) is a zero-copy view of its f32 copy
  const rs = spec.rowSlice;
  const W = rs
    ? w.get(spec.weight, rs.totalRows * k).subarray(rs.start * k, (rs.start + n) * k)
    : w.get(spec.weight, n * k);
  const y = new Float32Array(rows * n);
  if (spec.bias) {
    const b = rs ? w.get(spec.bias, rs.totalRows).subarray(rs.start, rs.start + n) : w.get(spec.bias, n);
    for (let r = 0; r < rows; r++) y.set(b, r * n);
  }
  if (rows > 0) await native.gemmF32(x, W, y, rows, n, k, false, true, 1, spec.bias ? 1 : 0);
  return y;
}
