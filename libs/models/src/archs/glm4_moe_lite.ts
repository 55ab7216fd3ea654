// GLM-4.7-Flash (glm4_moe_lite): DeepSeek-V3's multi-head latent attention (interleaved RoPE on
// the rope slice by default) with GLM-4.5's MoE — sigmoid + e_score_correction_bias for selection,
// renormalise, × routed_scaling_factor, shared experts — and mlp_layer_types (default: layer 0
// dense). The MTP layer is not part of the forward pass.
import type { Architecture } from "../arch.ts";
import { deepseekModel, noauxRouting } from "./deepseek_v3.ts";

export const glm4_moe_lite: Architecture = {
  modelType: "glm4_moe_lite",
  hfArchitectures: ["Glm4MoeLiteForCausalLM"],
  difficulty: "hard",
  build(cfg) {
    return deepseekModel(
      "glm4_moe_lite",
      cfg,
      { interleaved: cfg.bool("rope_interleave", true), yarnMscaleSquared: true },
      (p) => noauxRouting(cfg, p),
      1e-5,
    );
  },
};
