// Qwen2-MoE: q/k/v biases, MoE on layers with (i+1) % decoder_sparse_step == 0 outside
// mlp_only_layers, softmax top-k (renormalised only with norm_topk_prob), and a shared expert
// scaled by sigmoid(shared_expert_gate·x).
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
import type { ConfigReader } from "../config.ts";

export function qwenMoeLayers(cfg: ConfigReader, layers: number): (i: number) => boolean {
  const step = cfg.int("decoder_sparse_step", 1, 1);
  const dense = new Set(cfg.intList("mlp_only_layers", []));
  const E = cfg.int("num_experts", cfg.has("num_local_experts") ? cfg.int("num_local_experts") : 0);
  return (i) => i < layers && E > 0 && !dense.has(i) && (i + 1) % step === 0;
}

/** sliding_window applies to layers layer_types marks "sliding_attention" (Qwen2's use_sliding_window). */
export function qwenWindow(cfg: ConfigReader, i: number): number {
  const types = cfg.raw.layer_types;
  if (!Array.isArray(types) || types[i] !== "sliding_attention") return 0;
  return cfg.int("sliding_window", 0);
}

export const qwen2_moe: Architecture = {
  modelType: "qwen2_moe",
  hfArchitectures: ["Qwen2MoeForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg);
    const rope = ropeFromConfig(cfg, d.headDim, false);
    const isMoe = qwenMoeLayers(cfg, d.layers);
    const E = cfg.int("num_experts", cfg.has("num_local_experts") ? cfg.int("num_local_experts") : 60, 1);
    return decoderModel("qwen2_moe", d, (i, p) => ({
      attention: llamaAttention(d, `${p}.self_attn`, {
        rope,
        qkvBias: cfg.bool("qkv_bias", true),
        window: qwenWindow(cfg, i),
      }),
      mlp: isMoe(i)
        ? {
            kind: "moe",
            router: lin(`${p}.mlp.gate`, E, d.hidden),
            routing: {
              kind: "softmax_topk",
              topK: cfg.int("num_experts_per_tok", 4, 1),
              normTopK: cfg.bool("norm_topk_prob", false),
            },
            experts: perExpert(`${p}.mlp.experts`, E, d.hidden, cfg.int("moe_intermediate_size", undefined, 1), d.act),
            shared: {
              mlp: gatedMlp(
                `${p}.mlp.shared_expert`,
                d.hidden,
                cfg.int("shared_expert_intermediate_size", undefined, 1),
                d.act,
              ),
              gate: lin(`${p}.mlp.shared_expert_gate`, 1, d.hidden),
            },
            reportedRouterLogits: "logits",
          }
        : gatedMlp(`${p}.mlp`, d.hidden, cfg.int("intermediate_size", undefined, 1), d.act),
    }));
  },
};
