// DBRX: its own names (transformer.blocks.N.norm_attn_norm / ffn), LayerNorm without bias
// (eps 1e-5), a fused Wqkv [(H + 2·kv·d), H] clamped to ±clip_qkv, half RoPE, softmax top-k
// renormalised by the moe_normalize_expert_weights p-norm, and experts packed row-wise as
// w1 / v1 / w2 [E·I, H] — w2's [I, H] slice multiplies the activation without a transpose.
import type { ActivationKind } from "@moeq/native";
import type { Architecture } from "../arch.ts";
import { lin, ropeFromConfig } from "../blocks/standard.ts";
import type { ConfigReader } from "../config.ts";
import { ModelConfigError } from "../errors.ts";
import type { LayerSpec, LinearSpec, NormSpec } from "../spec.ts";

const layerNorm = (weight: string, dim: number): NormSpec => ({ kind: "layer", weight, bias: null, dim, eps: 1e-5 });

function sub(cfg: ConfigReader, key: string): ConfigReader {
  const o = cfg.obj(key);
  if (!o)
    throw new ModelConfigError({ field: key, message: `${cfg.source}: '${key}' (an object) is required for DBRX` });
  return o;
}

function activation(ffn: ConfigReader): ActivationKind {
  const name = ffn.obj("ffn_act_fn")?.str("name", "silu") ?? "silu";
  if (name === "silu") return "silu";
  if (name === "gelu") return "gelu_erf";
  throw new ModelConfigError({
    field: "ffn_config.ffn_act_fn.name",
    message: `${ffn.source}: ffn_act_fn '${name}' is not supported (silu, gelu)`,
  });
}

export const dbrx: Architecture = {
  modelType: "dbrx",
  hfArchitectures: ["DbrxForCausalLM"],
  difficulty: "mid",
  build(cfg) {
    const attn = sub(cfg, "attn_config");
    const ffn = sub(cfg, "ffn_config");
    const H = cfg.int("d_model", undefined, 1);
    const heads = cfg.int("n_heads", undefined, 1);
    const kv = attn.int("kv_n_heads", 1, 1);
    if (H % heads !== 0 || heads % kv !== 0)
      throw new ModelConfigError({
        field: "n_heads",
        message: `${cfg.source}: d_model ${H} must be a multiple of n_heads ${heads}, and n_heads of attn_config.kv_n_heads ${kv}`,
      });
    const hd = H / heads;
    const V = cfg.int("vocab_size", undefined, 1);
    const E = ffn.int("moe_num_experts", undefined, 1);
    const I = ffn.int("ffn_hidden_size", undefined, 1);
    const clip = attn.optNum("clip_qkv");
    const norm = ffn.raw.moe_normalize_expert_weights;
    if (norm !== undefined && norm !== null && (typeof norm !== "number" || !(norm > 0)))
      throw new ModelConfigError({
        field: "ffn_config.moe_normalize_expert_weights",
        message: `${ffn.source}: moe_normalize_expert_weights must be a positive number or null`,
      });
    const rope = ropeFromConfig(cfg, hd, false, attn.optNum("rope_theta") ?? 10000);
    const act = activation(ffn);
    const total = H + 2 * kv * hd;
    const slice = (w: string, start: number, out: number): LinearSpec => ({
      weight: w,
      outFeatures: out,
      inFeatures: H,
      rowSlice: { start, totalRows: total },
    });
    const layers: LayerSpec[] = Array.from({ length: cfg.int("n_layers", undefined, 1) }, (_, i) => {
      const p = `transformer.blocks.${i}`;
      const a = `${p}.norm_attn_norm.attn`;
      const w = `${a}.Wqkv.weight`;
      return {
        index: i,
        inputNorm: layerNorm(`${p}.norm_attn_norm.norm_1.weight`, H),
        attention: {
          kind: "standard",
          q: slice(w, 0, H),
          k: slice(w, H, kv * hd),
          v: slice(w, H + kv * hd, kv * hd),
          o: lin(`${a}.out_proj`, H, H),
          numHeads: heads,
          numKvHeads: kv,
          headDim: hd,
          vHeadDim: hd,
          scale: 1 / Math.sqrt(hd),
          rope,
          ...(clip !== undefined ? { clipQkv: clip } : {}),
        },
        postAttentionNorm: layerNorm(`${p}.norm_attn_norm.norm_2.weight`, H),
        mlp: {
          kind: "moe",
          router: lin(`${p}.ffn.router.layer`, E, H),
          routing: {
            kind: "softmax_topk",
            topK: ffn.int("moe_top_k", 1, 1),
            normTopK: typeof norm === "number",
            ...(typeof norm === "number" && norm !== 1 ? { normPower: norm } : {}),
          },
          experts: {
            numExperts: E,
            hidden: H,
            intermediate: I,
            act,
            layout: {
              kind: "stacked",
              gate: `${p}.ffn.experts.mlp.w1`,
              up: `${p}.ffn.experts.mlp.v1`,
              down: `${p}.ffn.experts.mlp.w2`,
              downTransposed: true,
              packedAs: { prefix: `${p}.ffn.experts.mlp`, gate: "w1", up: "v1", down: "w2" },
            },
          },
          reportedRouterLogits: "logits",
        },
      };
    });
    const tied = cfg.bool("tie_word_embeddings", false);
    return {
      modelType: "dbrx",
      hiddenSize: H,
      vocabSize: V,
      embed: { weight: "transformer.wte.weight" },
      layers,
      finalNorm: layerNorm("transformer.norm_f.weight", H),
      lmHead: tied ? { weight: "transformer.wte.weight", outFeatures: V, inFeatures: H } : lin("lm_head", V, H),
      tiedEmbeddings: tied,
      maxPositions: cfg.int("max_seq_len", 2048, 1),
    };
  },
};
