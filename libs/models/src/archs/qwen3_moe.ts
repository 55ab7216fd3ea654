// Qwen3-MoE: Qwen2-MoE's layer selection and routing without a shared expert; per-head q/k
// RMSNorm before RoPE; explicit head_dim; attention_bias on all four projections.
import type { Architecture } from "../arch.ts";
import {
  coreDims,
  decoderModel,
  gatedMlp,
  lin,
  llamaAttention,
  perExpert,
  ropeFromConfig,
} from "../blocks/standard.ts";
import { qwenMoeLayers, qwenWindow } from "./qwen2_moe.ts";

export const qwen3_moe: Architecture = {
  modelType: "qwen3_moe",
  hfArchitectures: ["Qwen3MoeForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg);
    const rope = ropeFromConfig(cfg, d.headDim, false);
    const isMoe = qwenMoeLayers(cfg, d.layers);
    const E = cfg.int("num_experts", cfg.has("num_local_experts") ? cfg.int("num_local_experts") : 128, 1);
    const bias = cfg.bool("attention_bias", false);
    return decoderModel("qwen3_moe", d, (i, p) => ({
      attention: llamaAttention(d, `${p}.self_attn`, {
        rope,
        qkvBias: bias,
        oBias: bias,
        qkNorm: { q: "q_norm", k: "k_norm", scope: "head" },
        window: qwenWindow(cfg, i),
      }),
      mlp: isMoe(i)
        ? {
            kind: "moe",
            router: lin(`${p}.mlp.gate`, E, d.hidden),
            routing: {
              kind: "softmax_topk",
              topK: cfg.int("num_experts_per_tok", 8, 1),
              normTopK: cfg.bool("norm_topk_prob", false),
            },
            experts: perExpert(`${p}.mlp.experts`, E, d.hidden, cfg.int("moe_intermediate_size", undefined, 1), d.act),
            reportedRouterLogits: "logits",
          }
        : gatedMlp(`${p}.mlp`, d.hidden, cfg.int("intermediate_size", undefined, 1), d.act),
    }));
  },
};
