// Mixtral: Llama attention (half RoPE, optional sliding window), every layer MoE with w1/w3/w2
// experts under block_sparse_moe; softmax → top-k → renormalise.
import type { Architecture } from "../arch.ts";
import { coreDims, decoderModel, lin, llamaAttention, perExpert, ropeFromConfig } from "../blocks/standard.ts";

export const mixtral: Architecture = {
  modelType: "mixtral",
  hfArchitectures: ["MixtralForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, d.headDim, false, 1e6);
    const E = cfg.int("num_local_experts", 8, 1);
    const window = cfg.has("sliding_window") ? cfg.int("sliding_window") : 0;
    return decoderModel("mixtral", d, (_, p) => ({
      attention: llamaAttention(d, `${p}.self_attn`, { rope, window }),
      mlp: {
        kind: "moe",
        router: lin(`${p}.block_sparse_moe.gate`, E, d.hidden),
        routing: { kind: "softmax_topk", topK: cfg.int("num_experts_per_tok", 2, 1), normTopK: true },
        experts: perExpert(
          `${p}.block_sparse_moe.experts`,
          E,
          d.hidden,
          cfg.int("intermediate_size", undefined, 1),
          d.act,
          {
            gate: "w1",
            up: "w3",
            down: "w2",
          },
        ),
        reportedRouterLogits: "logits",
      },
    }));
  },
};
