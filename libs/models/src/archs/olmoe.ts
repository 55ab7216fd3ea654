// OLMoE: q/k RMSNorm over the whole projection (heads·d) before RoPE, optional clip_qkv, every
// layer MoE with softmax top-k (renormalised only with norm_topk_prob).
import type { Architecture } from "../arch.ts";
import { coreDims, decoderModel, lin, llamaAttention, perExpert, ropeFromConfig } from "../blocks/standard.ts";

export const olmoe: Architecture = {
  modelType: "olmoe",
  hfArchitectures: ["OlmoeForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, d.headDim, false);
    const E = cfg.int("num_experts", 64, 1);
    const bias = cfg.bool("attention_bias", false);
    const clip = cfg.optNum("clip_qkv");
    return decoderModel("olmoe", d, (_, p) => ({
      attention: llamaAttention(d, `${p}.self_attn`, {
        rope,
        qkvBias: bias,
        oBias: bias,
        qkNorm: { q: "q_norm", k: "k_norm", scope: "full" },
        ...(clip !== undefined ? { clipQkv: clip } : {}),
      }),
      mlp: {
        kind: "moe",
        router: lin(`${p}.mlp.gate`, E, d.hidden),
        routing: {
          kind: "softmax_topk",
          topK: cfg.int("num_experts_per_tok", 8, 1),
          normTopK: cfg.bool("norm_topk_prob", false),
        },
        experts: perExpert(`${p}.mlp.experts`, E, d.hidden, cfg.int("intermediate_size", undefined, 1), d.act),
        reportedRouterLogits: "logits",
      },
    }));
  },
};
