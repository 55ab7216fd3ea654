// DeepSeek-V2 (and V2-Lite, q_lora_rank null → a plain q_proj): multi-head latent attention with
// RoPE on the rope slice as complex pairs (interleaved), and a softmax router: greedy top-k, or
// group_limited_greedy (groups scored by their max, topk_group kept); weights p[idx] ×
// routed_scaling_factor with no renormalisation (transformers ignores norm_topk_prob); shared
// experts added unweighted. transformers' V2 applies no YaRN mscale² to the softmax scale.
import type { Architecture } from "../arch.ts";
import { deepseekModel } from "./deepseek_v3.ts";

export const deepseek_v2: Architecture = {
  modelType: "deepseek_v2",
  hfArchitectures: ["DeepseekV2ForCausalLM"],
  difficulty: "hard",
  build(cfg) {
    const method = cfg.str("topk_method", "greedy");
    const grouped = method === "group_limited_greedy";
    return deepseekModel("deepseek_v2", cfg, { interleaved: true, yarnMscaleSquared: false }, () => ({
      kind: "softmax_group_limited",
      topK: cfg.int("num_experts_per_tok", 6, 1),
      nGroup: grouped ? cfg.int("n_group", 1, 1) : 1,
      topkGroup: grouped ? cfg.int("topk_group", 1, 1) : 1,
      scale: cfg.num("routed_scaling_factor", 1),
    }));
  },
};
