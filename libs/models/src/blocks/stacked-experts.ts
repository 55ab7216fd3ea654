// Expert forward for the layouts the mid architectures add: DBRX's row-stacked [E·I, H] w1/v1/w2
// (w2 used without a transpose), and GPT-OSS's clamped SwiGLU over a fused gate/up output.
import { native } from "@moeq/native";
import type { ExpertLayout, ExpertsSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import type { ExpertOutput } from "./experts.ts";
import { hookExpertInput } from "./linear-hook.ts";
import { gatedActivation } from "./mlp.ts";

type Stacked = Extract<ExpertLayout, { kind: "stacked" }>;

export async function stackedExpertForward(
  w: F32Weights,
  spec: ExpertsSpec,
  layout: Stacked,
  e: number,
  x: Float32Array,
  rows: number,
): Promise<ExpertOutput> {
  const { numExperts: E, hidden: H, intermediate: I } = spec;
  const slice = (name: string) => w.get(name, E * I * H).subarray(e * I * H, (e + 1) * I * H);
  const G = slice(layout.gate);
  const U = slice(layout.up);
  const D = slice(layout.down);
  const g = new Float32Array(rows * I);
  const u = new Float32Array(rows * I);
  const h = w.linearHook;
  const xg = h ? hookExpertInput(h, spec, e, layout.gate, "gate_proj", x, rows, H) : x;
  const xu = h ? hookExpertInput(h, spec, e, layout.up, "up_proj", x, rows, H) : x;
  await Promise.all([
    native.gemmF32(xg, G, g, rows, I, H, false, true),
    native.gemmF32(xu, U, u, rows, I, H, false, true),
  ]);
  const act = spec.clampedGlu
    ? clampedGlu(spec.clampedGlu, g, u, rows, I, I, 1)
    : gatedActivation(spec.act, g, u, rows, I);
  const out = new Float32Array(rows * H);
  // downTransposed: D's [I, H] slice multiplies act as is (y = act·D), not as a Linear weight
  const ad = h ? hookExpertInput(h, spec, e, layout.down, "down_proj", act, rows, I) : act;
  await native.gemmF32(ad, D, out, rows, H, I, false, !layout.downTransposed);
  return { out, act };
}

/** GPT-OSS: (clamp(up, ±limit) + 1) · g·σ(alpha·g) with g = min(gate, limit), over strided views. */
export function clampedGlu(
  p: { readonly alpha: number; readonly limit: number },
  gate: Float32Array,
  up: Float32Array,
  rows: number,
  cols: number,
  rowStride: number,
  colStride: number,
): Float32Array {
  const out = new Float32Array(rows * cols);
  native.clampedSwigluF32(gate, up, out, rows, cols, rowStride, colStride, p.alpha, p.limit);
  return out;
}
