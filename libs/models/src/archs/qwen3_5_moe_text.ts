// Qwen3.5-MoE (text): Qwen3-Next's hybrid decoder with the DeltaNet projections split into
// in_proj_qkv ([q | k | v]), in_proj_z, in_proj_b and in_proj_a; every layer MoE with a
// renormalised softmax top-k (the Qwen3-VL router: no norm_topk_prob switch) and the
// sigmoid-gated shared expert. Text positions make its multimodal RoPE the plain partial RoPE.
import type { Architecture } from "../arch.ts";
import { lin } from "../blocks/standard.ts";
import type { ConfigReader } from "../config.ts";
import type { DeltaNetSpec } from "../spec.ts";
import { deltaNetDims, qwenHybridModel, withoutLinearAttention } from "./qwen3_next.ts";

function splitDeltaNet(cfg: ConfigReader, p: string, d: { hidden: number; eps: number }): DeltaNetSpec {
  const { Hk, Hv, dk, dv, K } = deltaNetDims(cfg);
  const a = `${p}.linear_attn`;
  return {
    kind: "gated_deltanet",
    projections: {
      layout: "split",
      qkv: lin(`${a}.in_proj_qkv`, 2 * Hk * dk + Hv * dv, d.hidden),
      z: lin(`${a}.in_proj_z`, Hv * dv, d.hidden),
      b: lin(`${a}.in_proj_b`, Hv, d.hidden),
      a: lin(`${a}.in_proj_a`, Hv, d.hidden),
    },
    conv: `${a}.conv1d.weight`,
    convKernel: K,
    aLog: `${a}.A_log`,
    dtBias: `${a}.dt_bias`,
    norm: { kind: "rms", weight: `${a}.norm.weight`, dim: dv, eps: d.eps },
    out: lin(`${a}.out_proj`, d.hidden, Hv * dv),
    numKHeads: Hk,
    numVHeads: Hv,
    kHeadDim: dk,
    vHeadDim: dv,
  };
}

export const qwen3_5_moe_text: Architecture = {
  modelType: "qwen3_5_moe_text",
  hfArchitectures: ["Qwen3_5MoeForCausalLM"],
  difficulty: "hard",
  quantizable: withoutLinearAttention,
  build(cfg) {
    return qwenHybridModel(cfg, {
      modelType: "qwen3_5_moe_text",
      deltaNet: splitDeltaNet,
      isMoe: () => true,
      routing: { kind: "softmax_topk", topK: cfg.int("num_experts_per_tok", 8, 1), normTopK: true },
    });
  },
};
