// What a run quantizes: one unit per (layer, expert, projection). Routed experts use their
// index; other modules (attention, shared expert, dense MLP) use expert 0 and a prefixed
// projection name ("attn.q_proj", "shared.down_proj", "mlp.up_proj"), so every unit has a
// unique layer/expert/proj key in the events.
import type { Architecture, ModelSpec, WeightRole } from "@moeq/models";
import { quantizableWeights } from "@moeq/models";
import { OptionsError } from "./errors.ts";
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
}

const PREFIX: Partial<Record<WeightRole["module"], string>> = { experts: "", attention: "attn.", shared_expert: "shared.", mlp: "mlp." };

export function quantTargets(arch: Architecture, spec: ModelSpec, targets: Targets): QuantTarget[] {
  const roles = quantizableWeights(arch, spec).filter((r) =>
    targets === "experts" ? r.module === "experts" : targets === "experts+attention" ? r.module === "experts" || r.module === "attention" : true,
  );
  const fused = roles.find((r) => r.fused);
  if (fused)
    throw new OptionsError({
      field: "targets",
      message: `${fused.tensor}: fused 3-D expert tensors (${spec.modelType}) are not supported by the pipeline yet; per-expert layouts are`,
    });
  return roles.map((r) => ({
    layer: r.layer,
    expert: r.expert ?? 0,
    proj: (PREFIX[r.module] ?? `${r.module}.`) + r.projection,
    tensor: r.tensor,
    module: r.module,
    rows: r.shape[0],
    cols: r.shape[1],
  }));
}

export const targetKey = (t: { layer: number; expert: number; proj: string }) => `${t.layer}/${t.expert}/${t.proj}`;
export const moduleName = (t: QuantTarget) => t.tensor.replace(/\.weight$/, "");
