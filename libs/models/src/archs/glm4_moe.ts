// GLM-4.5/4.6: q/k/v biases (attention_bias), optional per-head q/k RMSNorm, partial RoPE
// (partial_rotary_factor), first_k_dense_replace dense layers, then DeepSeek-V3-style routing
// (sigmoid + e_score_correction_bias for selection, group limit, renormalise, × routed_scaling_factor)
// with shared experts. The MTP layer (index num_hidden_layers) is not part of the forward pass.
import type { Architecture } from "../arch.ts";
import {
  coreDims,
  decoderModel,
  gatedMlp,
  lin,
  llamaAttention,
  partialRotaryDim,
  perExpert,
  ropeFromConfig,
} from "../blocks/standard.ts";

export const glm4_moe: Architecture = {
  modelType: "glm4_moe",
  hfArchitectures: ["Glm4MoeForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, partialRotaryDim(cfg, d.headDim, 0.5), false);
    const E = cfg.int("n_routed_experts", 128, 1);
    const firstDense = cfg.int("first_k_dense_replace", 1);
    const moeI = cfg.int("moe_intermediate_size", undefined, 1);
    const qkNorm = cfg.bool("use_qk_norm", false);
    return decoderModel("glm4_moe", d, (i, p) => ({
      attention: llamaAttention(d, `${p}.self_attn`, {
        rope,
        qkvBias: cfg.bool("attention_bias", false),
        ...(qkNorm ? { qkNorm: { q: "q_norm", k: "k_norm", scope: "head" as const } } : {}),
      }),
      mlp:
        i >= firstDense
          ? {
              kind: "moe",
              router: lin(`${p}.mlp.gate`, E, d.hidden),
              routing: {
                kind: "sigmoid_bias",
                topK: cfg.int("num_experts_per_tok", 8, 1),
                bias: `${p}.mlp.gate.e_score_correction_bias`,
                normTopK: cfg.bool("norm_topk_prob", true),
                scale: cfg.num("routed_scaling_factor", 1),
                nGroup: cfg.int("n_group", 1, 1),
                topkGroup: cfg.int("topk_group", 1, 1),
              },
              experts: perExpert(`${p}.mlp.experts`, E, d.hidden, moeI, d.act),
              shared: {
                mlp: gatedMlp(`${p}.mlp.shared_experts`, d.hidden, moeI * cfg.int("n_shared_experts", 1, 1), d.act),
              },
              reportedRouterLogits: "logits",
            }
          : gatedMlp(`${p}.mlp`, d.hidden, cfg.int("intermediate_size", undefined, 1), d.act),
    }));
  },
};
