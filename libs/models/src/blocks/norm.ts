// RMSNorm / LayerNorm over the last dim, per NormSpec, through the native kernels.
import { native } from "@moeq/native";
import type { NormSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";

export function applyNorm(
  w: F32Weights,
  spec: NormSpec,
  x: Float32Array,
  rows: number,
  into?: Float32Array,
): Float32Array {
  const out = into ?? new Float32Array(x.length);
  const weight = spec.weight ? w.get(spec.weight, spec.dim) : null;
  if (spec.kind === "rms") native.rmsNormF32(x, weight, out, rows, spec.dim, spec.eps, spec.plusOne ?? false);
  else native.layerNormF32(x, weight, spec.bias ? w.get(spec.bias, spec.dim) : null, out, rows, spec.dim, spec.eps);
  return out;
}
