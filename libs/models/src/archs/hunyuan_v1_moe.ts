// Hunyuan-A13B (hunyuan_v1_moe): per-head query/key RMSNorm applied after RoPE, NTK-alpha RoPE,
// every layer MoE (gate.wg router, softmax top-k renormalised; moe_topk and sizes may be per
// layer) plus a shared MLP added unweighted.
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

export const hunyuan_v1_moe: Architecture = {
  modelType: "hunyuan_v1_moe",
  hfArchitectures: ["HunYuanMoEV1ForCausalLM"],
  difficulty: "easy",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, d.headDim, false);
    const E = cfg.perLayerInt("num_experts", 0, 16);
    const I = cfg.int("intermediate_size", undefined, 1);
    const bias = cfg.bool("attention_bias", false);
    return decoderModel("hunyuan_v1_moe", d, (i, p) => ({
      attention: llamaAttention(d, `${p}.self_attn`, {
        rope,
        qkvBias: bias,
        oBias: bias,
        // transformers 5.17 builds query/key_layernorm unconditionally (use_qk_norm is not read).
        qkNorm: { q: "query_layernorm", k: "key_layernorm", scope: "head", afterRope: true },
      }),
      mlp: {
        kind: "moe",
        router: lin(`${p}.mlp.gate.wg`, E, d.hidden),
        routing: { kind: "softmax_topk", topK: cfg.perLayerInt("moe_topk", i, 1), normTopK: true },
        experts: perExpert(
          `${p}.mlp.experts`,
          E,
          d.hidden,
          cfg.has("moe_intermediate_size") ? cfg.perLayerInt("moe_intermediate_size", i) : I,
          d.act,
        ),
        ...(cfg.perLayerInt("num_shared_expert", i, 1) > 0
          ? {
              shared: {
                mlp: gatedMlp(`${p}.mlp.shared_mlp`, d.hidden, I * cfg.perLayerInt("num_shared_expert", i, 1), d.act),
              },
            }
          : {}),
        reportedRouterLogits: "logits",
      },
    }));
  },
};
