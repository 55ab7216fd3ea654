// Routed experts: one expert's forward on given rows, for both on-disk layouts (per-expert 2-D
// tensors, or fused 3-D tensors with [gate; up] halves or GPT-OSS interleaving, possibly stored
// transposed). Returns the down-projection input (act(gate)·up) for calibration.
import { native } from "@moeq/native";
import type { ExpertLayout, ExpertsSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import { hookExpertInput } from "./linear-hook.ts";
import { gatedActivation } from "./mlp.ts";
import { clampedGlu, stackedExpertForward } from "./stacked-experts.ts";

export interface ExpertOutput {
  /** [rows, hidden] */
  readonly out: Float32Array;
  /** [rows, intermediate]: input of down_proj (as computed, before any linear hook) */
  readonly act: Float32Array;
}

export function perExpertName(
  layout: Extract<ExpertLayout, { kind: "per_expert" }>,
  e: number,
  proj: "gate" | "up" | "down",
): string {
  return `${layout.prefix}.${e}.${layout[proj]}.weight`;
}

export async function expertForward(
  w: F32Weights,
  spec: ExpertsSpec,
  e: number,
  x: Float32Array,
  rows: number,
): Promise<ExpertOutput> {
  const { hidden: H, intermediate: I, layout } = spec;
  if (rows === 0) return { out: new Float32Array(0), act: new Float32Array(0) };
  if (layout.kind === "stacked") return stackedExpertForward(w, spec, layout, e, x, rows);
  if (layout.kind === "per_expert") {
    const G = w.get(perExpertName(layout, e, "gate"), I * H);
    const U = w.get(perExpertName(layout, e, "up"), I * H);
    const D = w.get(perExpertName(layout, e, "down"), H * I);
    const g = new Float32Array(rows * I);
    const u = new Float32Array(rows * I);
    const h = w.linearHook;
    // separate gate/up matrices: one hook call each (same x; each may transform it its own way)
    const xg = h ? hookExpertInput(h, spec, e, perExpertName(layout, e, "gate"), "gate_proj", x, rows, H) : x;
    const xu = h ? hookExpertInput(h, spec, e, perExpertName(layout, e, "up"), "up_proj", x, rows, H) : x;
    await Promise.all([
      native.gemmF32(xg, G, g, rows, I, H, false, true),
      native.gemmF32(xu, U, u, rows, I, H, false, true),
    ]);
    const act = gatedActivation(spec.act, g, u, rows, I);
    const ad = h ? hookExpertInput(h, spec, e, perExpertName(layout, e, "down"), "down_proj", act, rows, I) : act;
    const out = new Float32Array(rows * H);
    await native.gemmF32(ad, D, out, rows, H, I, false, true);
    return { out, act };
  }
  const E = spec.numExperts;
  const GU = w.get(layout.gateUp, E * 2 * I * H).subarray(e * 2 * I * H, (e + 1) * 2 * I * H);
  const D = w.get(layout.down, E * H * I).subarray(e * H * I, (e + 1) * H * I);
  const gu = new Float32Array(rows * 2 * I);
  if (layout.gateUpBias) {
    const b = w.get(layout.gateUpBias, E * 2 * I).subarray(e * 2 * I, (e + 1) * 2 * I);
    for (let r = 0; r < rows; r++) gu.set(b, r * 2 * I);
  }
  // fused gate_up: one GEMM, so one hook call (projection "gate_proj") for the input gate and up share
  const hk = w.linearHook;
  const xgu = hk ? hookExpertInput(hk, spec, e, layout.gateUp, "gate_proj", x, rows, H) : x;
  // stored [2I, H] → x·GUᵀ; transposed [H, 2I] → x·GU
  await native.gemmF32(xgu, GU, gu, rows, 2 * I, H, false, !layout.transposed, 1, layout.gateUpBias ? 1 : 0);
  const cg = spec.clampedGlu;
  const act = cg
    ? layout.split === "halves"
      ? clampedGlu(cg, gu, gu.subarray(I), rows, I, 2 * I, 1)
      : clampedGlu(cg, gu, gu.subarray(1), rows, I, 2 * I, 2)
    : layout.split === "halves"
      ? gatedActivation(spec.act, gu, gu.subarray(I), rows, I, 2 * I, 1)
      : gatedActivation(spec.act, gu, gu.subarray(1), rows, I, 2 * I, 2);
  const out = new Float32Array(rows * H);
  if (layout.downBias) {
    const b = w.get(layout.downBias, E * H).subarray(e * H, (e + 1) * H);
    for (let r = 0; r < rows; r++) out.set(b, r * H);
  }
  const ad = hk ? hookExpertInput(hk, spec, e, layout.down, "down_proj", act, rows, I) : act;
  await native.gemmF32(ad, D, out, rows, H, I, false, !layout.transposed, 1, layout.downBias ? 1 : 0);
  return { out, act };
}
