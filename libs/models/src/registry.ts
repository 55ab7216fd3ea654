// model_type → Architecture. Adding an architecture = one file in ./archs plus one line here.
import type { Architecture } from "./arch.ts";
import { ernie4_5_moe } from "./archs/ernie4_5_moe.ts";
import { glm4_moe } from "./archs/glm4_moe.ts";
import { HARD_ARCHITECTURES } from "./archs/hard.ts";
import { hunyuan_v1_moe } from "./archs/hunyuan_v1_moe.ts";
import { MID_ARCHITECTURES } from "./archs/mid.ts";
import { minimax_m2 } from "./archs/minimax_m2.ts";
import { mixtral } from "./archs/mixtral.ts";
import { olmoe } from "./archs/olmoe.ts";
import { qwen2_moe } from "./archs/qwen2_moe.ts";
import { qwen3_moe } from "./archs/qwen3_moe.ts";
import { ConfigReader, type RawConfig } from "./config.ts";
import { ModelConfigError, UnknownArchitectureError } from "./errors.ts";
import type { ModelSpec } from "./spec.ts";

const ALL: readonly Architecture[] = [
  mixtral,
  qwen2_moe,
  qwen3_moe,
  olmoe,
  glm4_moe,
  minimax_m2,
  ernie4_5_moe,
  hunyuan_v1_moe,
  ...HARD_ARCHITECTURES,
  ...MID_ARCHITECTURES,
];

export const architectures: ReadonlyMap<string, Architecture> = new Map(ALL.map((a) => [a.modelType, a]));

export const supportedModelTypes = (): string[] => [...architectures.keys()].sort();

/** By model_type, else by architectures[0]; otherwise an error listing what is supported. */
export function detectArchitecture(config: RawConfig, source = "config.json"): Architecture {
  const modelType = typeof config.model_type === "string" ? config.model_type : "";
  const byType = architectures.get(modelType);
  if (byType) return byType;
  const names = Array.isArray(config.architectures) ? config.architectures.filter((x) => typeof x === "string") : [];
  const byClass = ALL.find((a) => a.hfArchitectures.includes(names[0] ?? ""));
  if (byClass) return byClass;
  const what = modelType
    ? `model_type '${modelType}'`
    : names.length
      ? `architectures ${JSON.stringify(names)}`
      : "no model_type";
  throw new UnknownArchitectureError({
    modelType,
    supported: supportedModelTypes(),
    message: `${source}: ${what} is not a supported architecture. Supported model_types: ${supportedModelTypes().join(", ")}. To add one, see docs/architectures.md ("Adding an architecture").`,
  });
}

/**
 * Said wherever a model is opened for the user (inspect, quantize): the architecture was chosen by
 * architectures[0] because model_type is not registered — remote-code configs (Kimi K2's
 * `kimi_k2` with DeepseekV3ForCausalLM) do this; it must never be silent. undefined otherwise.
 */
export function architectureNote(config: RawConfig): string | undefined {
  const modelType = typeof config.model_type === "string" ? config.model_type : "";
  if (architectures.has(modelType)) return undefined;
  const a = detectArchitecture(config);
  const cls = Array.isArray(config.architectures) ? config.architectures[0] : undefined;
  return `model_type ${modelType ? `'${modelType}' is not registered` : "is missing"}; read as ${a.modelType} because architectures[0] is ${cls}`;
}

export function buildSpec(config: RawConfig, source = "config.json"): { arch: Architecture; spec: ModelSpec } {
  const arch = detectArchitecture(config, source);
  const spec = arch.build(new ConfigReader(config, source));
  checkRouting(spec, source);
  return { arch, spec };
}

/**
 * Routing settings that no forward pass could run (top-k above the experts, groups that do not
 * divide them): refused with the model, not minutes into a run when the router first executes.
 */
function checkRouting(spec: ModelSpec, source: string): void {
  for (const L of spec.layers) {
    if (L.mlp.kind !== "moe") continue;
    const E = L.mlp.experts.numExperts;
    const r = L.mlp.routing;
    const fail = (field: string, why: string): never => {
      throw new ModelConfigError({ field, message: `${source}: layer ${L.index}: ${why}` });
    };
    if (r.topK > E) fail("num_experts_per_tok", `top-k ${r.topK} (num_experts_per_tok) exceeds the ${E} experts`);
    if (r.kind !== "sigmoid_bias" && r.kind !== "softmax_group_limited") continue;
    if (r.nGroup > E || E % r.nGroup !== 0) fail("n_group", `n_group ${r.nGroup} does not divide the ${E} experts`);
    if (r.topkGroup > r.nGroup) fail("topk_group", `topk_group ${r.topkGroup} exceeds n_group ${r.nGroup}`);
    if (r.nGroup > 1 && r.topK > r.topkGroup * (E / r.nGroup))
      fail(
        "num_experts_per_tok",
        `top-k ${r.topK} exceeds the ${r.topkGroup * (E / r.nGroup)} experts of the topk_group ${r.topkGroup} groups kept`,
      );
  }
}
