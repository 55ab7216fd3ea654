// DeepSeek-V3 (and Kimi-K2): multi-head latent attention with interleaved RoPE on the rope slice,
// first_k_dense_replace dense layers (or mlp_layer_types), then noaux_tc routing — sigmoid scores,
// e_score_correction_bias for selection only, group limit (groups scored by the sum of their top
// two, topk_group kept), renormalise, × routed_scaling_factor — with shared experts added
// unweighted. The MTP layer (index num_hidden_layers) is not part of the forward pass.
// The MLA builder here is shared by deepseek_v2, deepseek_v32 and glm4_moe_lite.
import type { Architecture } from "../arch.ts";
import { coreDims, decoderModel, gatedMlp, lin, perExpert, rms, ropeFromConfig } from "../blocks/standard.ts";
import type { ConfigReader } from "../config.ts";
import { ModelConfigError } from "../errors.ts";
import type { IndexerSpec, LayerSpec, MlaSpec, MoeSpec, RoutingSpec } from "../spec.ts";

function yarnMscale(scale: number, m: number): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

export interface MlaOptions {
  /** rope_interleave (V3, GLM-4.7-Flash: config, default true); V2 always rotates complex pairs. */
  readonly interleaved: boolean;
  /** V3 multiplies the softmax scale by mscale(factor, mscale_all_dim)² under YaRN; HF's V2 does not. */
  readonly yarnMscaleSquared: boolean;
  readonly indexer?: (prefix: string) => IndexerSpec;
}

/** The MLA block of layer prefix `p` (`${p}.self_attn.*`). */
export function mlaAttention(cfg: ConfigReader, p: string, o: MlaOptions): MlaSpec {
  const hidden = cfg.int("hidden_size", undefined, 1);
  const H = cfg.int("num_attention_heads", undefined, 1);
  const qLora = cfg.has("q_lora_rank") ? cfg.int("q_lora_rank", undefined, 1) : null;
  const C = cfg.int("kv_lora_rank", undefined, 1);
  const N = cfg.int("qk_nope_head_dim", undefined, 0);
  const R = cfg.int("qk_rope_head_dim", undefined, 2);
  const V = cfg.int("v_head_dim", undefined, 1);
  const D = N + R;
  const rope = ropeFromConfig(cfg, R, o.interleaved);
  let scale = D ** -0.5;
  if (o.yarnMscaleSquared && rope.scaling.type === "yarn") {
    const all =
      cfg.obj("rope_parameters")?.optNum("mscale_all_dim") ?? cfg.obj("rope_scaling")?.optNum("mscale_all_dim");
    if (all) scale *= yarnMscale(rope.scaling.factor, all) ** 2;
  }
  const a = `${p}.self_attn`;
  const bias = cfg.bool("attention_bias", false);
  // q_a_layernorm / kv_a_layernorm are built without an eps argument: RMSNorm's default 1e-6.
  const latentEps = 1e-6;
  return {
    kind: "mla",
    ...(qLora === null
      ? { q: lin(`${a}.q_proj`, H * D, hidden) }
      : {
          qA: lin(`${a}.q_a_proj`, qLora, hidden, bias),
          qANorm: rms(`${a}.q_a_layernorm.weight`, qLora, latentEps),
          qB: lin(`${a}.q_b_proj`, H * D, qLora),
        }),
    kvA: lin(`${a}.kv_a_proj_with_mqa`, C + R, hidden, bias),
    kvANorm: rms(`${a}.kv_a_layernorm.weight`, C, latentEps),
    kvB: lin(`${a}.kv_b_proj`, H * (N + V), C),
    o: lin(`${a}.o_proj`, hidden, H * V, bias),
    numHeads: H,
    kvLoraRank: C,
    qkNopeHeadDim: N,
    qkRopeHeadDim: R,
    vHeadDim: V,
    scale,
    rope,
    ...(o.indexer ? { indexer: o.indexer(a) } : {}),
  };
}

/** Which layers are MoE: mlp_layer_types when given, else i ≥ first_k_dense_replace. */
export function deepseekMoeLayers(cfg: ConfigReader, layers: number): (i: number) => boolean {
  const types = cfg.raw.mlp_layer_types;
  if (Array.isArray(types)) {
    if (types.length !== layers || !types.every((t) => t === "dense" || t === "sparse"))
      throw new ModelConfigError({
        field: "mlp_layer_types",
        message: `${cfg.source}: mlp_layer_types must list "dense" or "sparse" for each of the ${layers} layers`,
      });
    return (i) => types[i] === "sparse";
  }
  const first = cfg.int("first_k_dense_replace", 0);
  const freq = cfg.int("moe_layer_freq", 1, 1);
  return (i) => i >= first && i % freq === 0;
}

/** routed_scaling_factor null (MiMo) means 1. */
export function noauxRouting(cfg: ConfigReader, p: string): Extract<RoutingSpec, { kind: "sigmoid_bias" }> {
  return {
    kind: "sigmoid_bias",
    topK: cfg.int("num_experts_per_tok", 8, 1),
    bias: `${p}.mlp.gate.e_score_correction_bias`,
    normTopK: cfg.bool("norm_topk_prob", true),
    scale: cfg.num("routed_scaling_factor", 1),
    nGroup: cfg.int("n_group", 1, 1),
    topkGroup: cfg.int("topk_group", 1, 1),
  };
}

/** The DeepSeek MoE block: router `mlp.gate`, experts `mlp.experts.e.*`, shared `mlp.shared_experts`. */
export function deepseekMoe(
  cfg: ConfigReader,
  p: string,
  hidden: number,
  routing: RoutingSpec,
  act: MoeSpec["experts"]["act"],
): MoeSpec {
  const E = cfg.int("n_routed_experts", undefined, 1);
  const moeI = cfg.int("moe_intermediate_size", undefined, 1);
  const shared = cfg.int("n_shared_experts", 0);
  return {
    kind: "moe",
    router: lin(`${p}.mlp.gate`, E, hidden),
    routing,
    experts: perExpert(`${p}.mlp.experts`, E, hidden, moeI, act),
    ...(shared > 0 ? { shared: { mlp: gatedMlp(`${p}.mlp.shared_experts`, hidden, moeI * shared, act) } } : {}),
    reportedRouterLogits: "logits",
  };
}

/** A whole DeepSeek-style decoder: MLA everywhere, dense MLP or DeepSeek MoE per layer. */
export function deepseekModel(
  modelType: string,
  cfg: ConfigReader,
  mla: MlaOptions,
  routing: (p: string) => RoutingSpec,
  epsDefault = 1e-6,
) {
  const d = coreDims(cfg, "rms_norm_eps", epsDefault);
  const isMoe = deepseekMoeLayers(cfg, d.layers);
  return decoderModel(
    modelType,
    d,
    (i, p): Omit<LayerSpec, "index" | "inputNorm" | "postAttentionNorm"> => ({
      attention: mlaAttention(cfg, p, mla),
      mlp: isMoe(i)
        ? deepseekMoe(cfg, p, d.hidden, routing(p), d.act)
        : gatedMlp(`${p}.mlp`, d.hidden, cfg.int("intermediate_size", undefined, 1), d.act),
    }),
  );
}

export const deepseek_v3: Architecture = {
  modelType: "deepseek_v3",
  hfArchitectures: ["DeepseekV3ForCausalLM"],
  difficulty: "hard",
  build(cfg) {
    return deepseekModel(
      "deepseek_v3",
      cfg,
      { interleaved: cfg.bool("rope_interleave", true), yarnMscaleSquared: true },
      (p) => noauxRouting(cfg, p),
    );
  },
};
