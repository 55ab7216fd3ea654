// model_type → Architecture. Adding an architecture = one file in ./archs plus one line here.
import type { Architecture } from "./arch.ts";
import { ernie4_5_moe } from "./archs/ernie4_5_moe.ts";
import { glm4_moe } from "./archs/glm4_moe.ts";
import { hunyuan_v1_moe } from "./archs/hunyuan_v1_moe.ts";
import { MID_ARCHITECTURES } from "./archs/mid.ts";
import { minimax_m2 } from "./archs/minimax_m2.ts";
import { mixtral } from "./archs/mixtral.ts";
import { olmoe } from "./archs/olmoe.ts";
import { qwen2_moe } from "./archs/qwen2_moe.ts";
import { qwen3_moe } from "./archs/qwen3_moe.ts";
import { HARD_ARCHITECTURES } from "./archs/hard.ts";
import { ConfigReader, type RawConfig } from "./config.ts";
import { UnknownArchitectureError } from "./errors.ts";
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
  for (const a of ALL) if (names.some((n) => a.hfArchitectures.includes(n))) return a;
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

export function buildSpec(config: RawConfig, source = "config.json"): { arch: Architecture; spec: ModelSpec } {
  const arch = detectArchitecture(config, source);
  return { arch, spec: arch.build(new ConfigReader(config, source)) };
}
