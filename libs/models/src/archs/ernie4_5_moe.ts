// ERNIE-4.5-MoE: interleaved RoPE, use_bias on every linear, MoE on layers
// start ≤ i ≤ end with (i+1) % interval == 0; softmax scores, selection on scores + moe_statics
// bias, weights = p[idx] / max(Σ, moe_norm_min); shared experts added unweighted.
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

export const ernie4_5_moe: Architecture = {
  modelType: "ernie4_5_moe",
  hfArchitectures: ["Ernie4_5_MoeForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, d.headDim, true);
    const E = cfg.int("moe_num_experts", 64, 1);
    const bias = cfg.bool("use_bias", false);
    // Both indices may be per-modality lists (VL checkpoints): the text trunk takes min / max.
    const index = (key: string, dflt: number, pick: (xs: number[]) => number) => {
      const v = cfg.raw[key];
      if (Array.isArray(v)) return pick(cfg.intList(key, []));
      if (v === undefined || v === null || v === -1) return dflt;
      return cfg.int(key);
    };
    const start = index("moe_layer_start_index", 1, (xs) => Math.min(...xs));
    const end = index("moe_layer_end_index", d.layers - 1, (xs) => Math.max(...xs));
    const interval = cfg.int("moe_layer_interval", 1, 1);
    const moeI = cfg.int("moe_intermediate_size", undefined, 1);
    const shared = cfg.int("moe_num_shared_experts", 0);
    return decoderModel(
      "ernie4_5_moe",
      d,
      (i, p) => ({
        attention: llamaAttention(d, `${p}.self_attn`, { rope, qkvBias: bias, oBias: bias }),
        mlp:
          (i + 1) % interval === 0 && i >= start && i <= end
            ? {
                kind: "moe",
                router: lin(`${p}.mlp.gate`, E, d.hidden),
                routing: {
                  kind: "softmax_bias",
                  topK: cfg.int("moe_k", 2, 1),
                  bias: `${p}.mlp.moe_statics.e_score_correction_bias`,
                  biasShape: [1, E],
                  normMin: cfg.num("moe_norm_min", 1e-12),
                },
                experts: perExpert(`${p}.mlp.experts`, E, d.hidden, moeI, d.act),
                ...(shared > 0
                  ? { shared: { mlp: gatedMlp(`${p}.mlp.shared_experts`, d.hidden, moeI * shared, d.act, bias) } }
                  : {}),
                reportedRouterLogits: "logits",
              }
            : gatedMlp(`${p}.mlp`, d.hidden, cfg.int("intermediate_size", undefined, 1), d.act, bias),
      }),
      { lmHeadBias: bias },
    );
  },
};
