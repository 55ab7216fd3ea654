// Gated dense MLP: down(act(gate(x)) ⊙ up(x)). Also returns the down-projection input so the
// calibrator can collect it.

import type { ActivationKind } from "@moeq/native";
import { native } from "@moeq/native";
import type { DenseMlpSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import { linear } from "./linear.ts";

/** out[r,c] = act(gate[r,c]) · up[r,c] over strided gate/up views (see swigluF32). */
export function gatedActivation(
  act: ActivationKind,
  gate: Float32Array,
  up: Float32Array,
  rows: number,
  cols: number,
  rowStride = cols,
  colStride = 1,
): Float32Array {
  const out = new Float32Array(rows * cols);
  if (act === "silu") {
    native.swigluF32(gate, up, out, rows, cols, rowStride, colStride);
    return out;
  }
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = gate[r * rowStride + c * colStride];
  native.activationF32(act, out, out);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] *= up[r * rowStride + c * colStride];
  return out;
}

export async function denseMlp(
  w: F32Weights,
  spec: DenseMlpSpec,
  x: Float32Array,
  rows: number,
): Promise<{ out: Float32Array; act: Float32Array }> {
  const [g, u] = await Promise.all([linear(w, spec.gate, x, rows), linear(w, spec.up, x, rows)]);
  const act = gatedActivation(spec.act, g, u, rows, spec.gate.outFeatures);
  return { out: await linear(w, spec.down, act, rows), act };
}
