// MiniMax-M2: q/k RMSNorm over the whole projection before a partial half RoPE (rotary_dim),
// every layer MoE with w1/w3/w2 experts; sigmoid scores, selection on scores + bias, weights
// renormalised (no scale, no groups).
import type { Architecture } from "../arch.ts";
import {
  coreDims,
  decoderModel,
  lin,
  llamaAttention,
  partialRotaryDim,
  perExpert,
  ropeFromConfig,
} from "../blocks/standard.ts";

export const minimax_m2: Architecture = {
  modelType: "minimax_m2",
  hfArchitectures: ["MiniMaxM2ForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg);
    // transformers 5.17 ignores the hub's rotary_dim (MiniMaxM2Config has no such field): only
    // rope_parameters.partial_rotary_factor makes RoPE partial; the goldens confirm full rotation.
    const rope = ropeFromConfig(cfg, partialRotaryDim(cfg, d.headDim), false, 5e6);
    const E = cfg.int("num_local_experts", 256, 1);
    return decoderModel("minimax_m2", d, (_, p) => ({
      attention: llamaAttention(d, `${p}.self_attn`, {
        rope,
        // FlexOlmo attention: q_norm/k_norm always exist (use_qk_norm is not read by transformers).
        qkNorm: { q: "q_norm", k: "k_norm", scope: "full" },
      }),
      mlp: {
        kind: "moe",
        router: lin(`${p}.block_sparse_moe.gate`, E, d.hidden),
        routing: {
          kind: "sigmoid_bias",
          topK: cfg.int("num_experts_per_tok", 8, 1),
          bias: `${p}.block_sparse_moe.e_score_correction_bias`,
          normTopK: true,
          // MiniMaxM2TopKRouter renormalises and applies no routed_scaling_factor.
          scale: 1,
          nGroup: 1,
          topkGroup: 1,
        },
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
