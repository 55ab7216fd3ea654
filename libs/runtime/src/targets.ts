// What a run quantizes: one unit per (layer, expert, projection). Routed experts use their
// index; other modules (attention, shared expert, dense MLP) use expert 0 and a prefixed
// projection name ("attn.q_proj", "shared.down_proj", "mlp.up_proj"), so every unit has a
// unique layer/expert/proj key in the events.
import type { Architecture, ModelSpec, PackTarget, WeightRole } from "@moeq/models";
import { packTarget, quantizableWeights } from "@moeq/models";
import type { Targets } from "./options.ts";

export interface QuantTarget {
  readonly layer: number;
  readonly expert: number;
  readonly proj: string;
  /** the checkpoint tensor ("<module>.weight") */
  readonly tensor: string;
  readonly module: WeightRole["module"];
  readonly rows: number;
  readonly cols: number;
  /** where the [rows, cols] matrix sits in `tensor` (fused / stacked experts, row slices) */
  readonly role: WeightRole;
  /** true when `tensor` holds more than this matrix: the calibrator extracts it for the quantizer */
  readonly extracted: boolean;
  /** the module the packer writes it under (per-expert names for fused experts) and its rows there */
  readonly packed: PackTarget;
}

const PREFIX: Partial<Record<WeightRole["module"], string>> = {
  experts: "",
  attention: "attn.",
  shared_expert: "shared.",
  mlp: "mlp.",
};

export function quantTargets(arch: Architecture, spec: ModelSpec, targets: Targets): QuantTarget[] {
  const roles = quantizableWeights(arch, spec).filter((r) =>
    targets === "experts"
      ? r.module === "experts"
      : targets === "experts+attention"
        ? r.module === "experts" || r.module === "attention"
        : true,
  );
  return roles.map((r) => ({
    layer: r.layer,
    expert: r.expert ?? 0,
    proj: (PREFIX[r.module] ?? `${r.module}.`) + r.projection,
    tensor: r.tensor,
    module: r.module,
    rows: r.shape[0],
    cols: r.shape[1],
    role: r,
    extracted: Boolean(r.fused || r.rowSlice),
    packed: packTarget(spec, r),
  }));
}

export const targetKey = (t: { layer: number; expert: number; proj: string }) => `${t.layer}/${t.expert}/${t.proj}`;
export const moduleName = (t: QuantTarget) => t.packed.module;
