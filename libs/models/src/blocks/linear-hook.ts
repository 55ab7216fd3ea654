// The linear-input hook: one callback that sees (and may replace) the input of every Linear the
// engine applies to a quantizable weight, before its GEMM. The calibrator observes it to gather
// Hessians from the inputs the forward really uses; an evaluator transforms it to fake-quantize
// activations (W8A8, W4A4). Blocks only know their LinearSpec/ExpertsSpec, not their layer, so
// the engine maps those spec objects (by identity) to where they sit once, when a hook is set.
import { ModelInputError } from "../errors.ts";
import type { ExpertsSpec, LinearSpec, WeightRole } from "../spec.ts";

export interface LinearCall {
  /** checkpoint tensor name of the matrix (fused: the fused tensor, e.g. DBRX Wqkv or experts.gate_up_proj) */
  readonly weight: string;
  readonly layer: number;
  readonly module: WeightRole["module"];
  /** routed expert index, null elsewhere */
  readonly expert: number | null;
  readonly projection: WeightRole["projection"];
}

/**
 * Sees the input [rows, inFeatures] of every Linear application before its GEMM; returns the
 * input to use (x itself, or a transformed copy of the same length). Observers must copy what
 * they keep: the engine reuses and frees its buffers.
 */
export type LinearHook = (call: LinearCall, x: Float32Array, rows: number, inFeatures: number) => Float32Array;

export type LinearSite = Omit<LinearCall, "weight" | "expert">;

/** The hook with the spec objects it can be called for. */
export interface LinearHookState {
  readonly fn: LinearHook;
  /** LinearSpec → its layer/module/projection; ExpertsSpec → its layer (module "experts") */
  readonly sites: ReadonlyMap<object, LinearSite>;
}

function checked(call: LinearCall, y: Float32Array, rows: number, k: number): Float32Array {
  if (!(y instanceof Float32Array) || y.length !== rows * k)
    throw new ModelInputError({
      message: `linear hook for '${call.weight}' (layer ${call.layer}, ${call.module}${call.expert === null ? "" : ` expert ${call.expert}`}, ${call.projection}) returned ${y instanceof Float32Array ? `${y.length} values` : String(y)}, expected ${rows}×${k}`,
    });
  return y;
}

/** The input a non-expert Linear multiplies: x, or what the hook returns for it. */
export function hookLinearInput(
  h: LinearHookState | undefined,
  spec: LinearSpec,
  x: Float32Array,
  rows: number,
): Float32Array {
  if (!h) return x;
  const site = h.sites.get(spec);
  if (!site) return x;
  const call: LinearCall = {
    weight: spec.weight,
    layer: site.layer,
    module: site.module,
    expert: null,
    projection: site.projection,
  };
  return checked(call, h.fn(call, x, rows, spec.inFeatures), rows, spec.inFeatures);
}

/** The input a routed expert's projection multiplies (weight: the tensor holding it). */
export function hookExpertInput(
  h: LinearHookState | undefined,
  spec: ExpertsSpec,
  e: number,
  weight: string,
  projection: "gate_proj" | "up_proj" | "down_proj",
  x: Float32Array,
  rows: number,
  k: number,
): Float32Array {
  if (!h) return x;
  const site = h.sites.get(spec);
  if (!site) return x;
  const call: LinearCall = { weight, layer: site.layer, module: "experts", expert: e, projection };
  return checked(call, h.fn(call, x, rows, k), rows, k);
}
