// Granite-MoE: Llama attention whose scale is attention_multiplier (not 1/√d), embeddings ×
// embedding_multiplier, attention and MoE outputs × residual_multiplier before each residual add,
// logits / logits_scaling; top-k on the router logits then softmax over the k; experts fused on
// disk as input_linear [E, 2I, H] ([gate; up] rows) and output_linear [E, H, I].
import type { Architecture } from "../arch.ts";
import { coreDims, decoderModel, lin, llamaAttention, ropeFromConfig } from "../blocks/standard.ts";

export const granitemoe: Architecture = {
  modelType: "granitemoe",
  hfArchitectures: ["GraniteMoeForCausalLM"],
  difficulty: "mid",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-6);
    const rope = ropeFromConfig(cfg, d.headDim, false);
    const E = cfg.int("num_local_experts", 8, 1);
    const I = cfg.int("intermediate_size", undefined, 1);
    const bias = cfg.bool("attention_bias", false);
    const spec = decoderModel("granitemoe", d, (_, p) => {
      const m = `${p}.block_sparse_moe`;
      return {
        attention: {
          ...llamaAttention(d, `${p}.self_attn`, { rope, qkvBias: bias, oBias: bias }),
          scale: cfg.num("attention_multiplier", 1),
        },
        mlp: {
          kind: "moe",
          router: lin(`${m}.router.layer`, E, d.hidden),
          routing: { kind: "topk_softmax", topK: cfg.int("num_experts_per_tok", 2, 1) },
          experts: {
            numExperts: E,
            hidden: d.hidden,
            intermediate: I,
            act: d.act,
            layout: {
              kind: "fused",
              gateUp: `${m}.input_linear.weight`,
              down: `${m}.output_linear.weight`,
              split: "halves",
              transposed: false,
              packedAs: { prefix: `${m}.experts`, gate: "w1", up: "w3", down: "w2" },
            },
          },
          reportedRouterLogits: "logits",
        },
      };
    });
    return {
      ...spec,
      embed: { ...spec.embed, multiplier: cfg.num("embedding_multiplier", 1) },
      residualMultiplier: cfg.num("residual_multiplier", 1),
      logitsScaling: cfg.num("logits_scaling", 1),
    };
  },
};
