// Phi-MoE (Phi-3.5-MoE): LayerNorm with bias everywhere (eps = rms_norm_eps), q/k/v/o biases
// when attention_bias, lm_head bias when lm_head_bias, LongRoPE (short/long factors and mscale by
// sequence length), Mixtral-style w1/w3/w2 experts, and the inference sparsemixer router, which
// transformers always runs for exactly two rounds whatever num_experts_per_tok says.
import type { Architecture } from "../arch.ts";
import { coreDims, decoderModel, lin, llamaAttention, perExpert, ropeFromConfig } from "../blocks/standard.ts";
import type { NormSpec } from "../spec.ts";

export const phimoe: Architecture = {
  modelType: "phimoe",
  hfArchitectures: ["PhimoeForCausalLM"],
  difficulty: "mid",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, d.headDim, false, 1e6);
    const E = cfg.int("num_local_experts", 16, 1);
    const bias = cfg.bool("attention_bias", false);
    const window = cfg.has("sliding_window") ? cfg.int("sliding_window", 0) : 0;
    const ln = (p: string): NormSpec => ({
      kind: "layer",
      weight: `${p}.weight`,
      bias: `${p}.bias`,
      dim: d.hidden,
      eps: d.eps,
    });
    const spec = decoderModel(
      "phimoe",
      d,
      (_, p) => ({
        attention: llamaAttention(d, `${p}.self_attn`, { rope, qkvBias: bias, oBias: bias, window }),
        mlp: {
          kind: "moe",
          router: lin(`${p}.block_sparse_moe.gate`, E, d.hidden),
          routing: { kind: "sparsemixer", topK: 2, jitterEps: cfg.num("router_jitter_noise", 0.01) },
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
      }),
      { lmHeadBias: cfg.bool("lm_head_bias", false) },
    );
    return {
      ...spec,
      layers: spec.layers.map((L) => ({
        ...L,
        inputNorm: ln(`model.layers.${L.index}.input_layernorm`),
        postAttentionNorm: ln(`model.layers.${L.index}.post_attention_layernorm`),
      })),
      finalNorm: ln("model.norm"),
    };
  },
};
