// Llama 4 (text): MoE on moe_layers (every interleave_moe_layer_step-th layer) with a sigmoid
// top-k router whose weight scales the expert *input*, plus an always-on shared expert; fused
// experts on disk (gate_up_proj [E, H, 2I] as [gate | up] columns, down_proj [E, I, H]); dense
// layers use intermediate_size_mlp. RoPE layers (no_rope_layers[i] = 1) use interleaved (complex)
// RoPE, chunked attention and a weightless per-head RMS "L2 norm" on q and k after RoPE; NoPE
// layers attend fully and scale q by the temperature log1p(floor((pos+1)/floor_scale))·attn_scale + 1.
import type { Architecture } from "../arch.ts";
import { coreDims, decoderModel, gatedMlp, lin, llamaAttention, rms, ropeFromConfig } from "../blocks/standard.ts";
import type { ConfigReader } from "../config.ts";
import { ModelConfigError } from "../errors.ts";

function flags(cfg: ConfigReader, key: string, layers: number, dflt: (i: number) => number): number[] {
  const v = cfg.has(key) ? cfg.intList(key, []) : Array.from({ length: layers }, (_, i) => dflt(i));
  if (v.length !== layers)
    throw new ModelConfigError({
      field: key,
      message: `${cfg.source}: ${key} must have one entry per layer (${layers})`,
    });
  return v;
}

export const llama4_text: Architecture = {
  modelType: "llama4_text",
  hfArchitectures: ["Llama4ForCausalLM"],
  difficulty: "mid",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, d.headDim, true, 500000);
    const E = cfg.int("num_local_experts", 16, 1);
    const I = cfg.int("intermediate_size", 8192, 1);
    const Imlp = cfg.int("intermediate_size_mlp", 16384, 1);
    const step = cfg.int("interleave_moe_layer_step", 1, 1);
    const moe = new Set(
      cfg.has("moe_layers")
        ? cfg.intList("moe_layers", [])
        : Array.from({ length: d.layers }, (_, i) => i).filter((i) => i % step === step - 1),
    );
    const interval = cfg.int("no_rope_layer_interval", 4, 1);
    const useRope = flags(cfg, "no_rope_layers", d.layers, (i) => ((i + 1) % interval ? 1 : 0));
    const types = cfg.raw.layer_types;
    const chunked = (i: number) => (Array.isArray(types) ? types[i] === "chunked_attention" : useRope[i] === 1);
    const chunk = cfg.has("attention_chunk_size") ? cfg.int("attention_chunk_size", undefined, 1) : 0;
    const qkNorm = cfg.bool("use_qk_norm", true);
    const tuning = cfg.bool("attn_temperature_tuning", true);
    const bias = cfg.bool("attention_bias", false);
    return decoderModel("llama4_text", d, (i, p) => {
      const roped = useRope[i] === 1;
      const f = `${p}.feed_forward`;
      return {
        attention: {
          ...llamaAttention(d, `${p}.self_attn`, { rope: roped ? rope : null, qkvBias: bias, oBias: bias }),
          ...(roped && qkNorm
            ? {
                qkNorm: {
                  q: rms(null, d.headDim, d.eps),
                  k: rms(null, d.headDim, d.eps),
                  scope: "head" as const,
                  afterRope: true,
                },
              }
            : {}),
          ...(chunked(i) && chunk > 0 ? { chunk } : {}),
          ...(!roped && tuning
            ? { qTemperature: { floorScale: cfg.num("floor_scale", 8192), attnScale: cfg.num("attn_scale", 0.1) } }
            : {}),
        },
        mlp: moe.has(i)
          ? {
              kind: "moe",
              router: lin(`${f}.router`, E, d.hidden),
              routing: { kind: "topk_sigmoid", topK: cfg.int("num_experts_per_tok", 1, 1) },
              experts: {
                numExperts: E,
                hidden: d.hidden,
                intermediate: I,
                act: d.act,
                layout: {
                  kind: "fused",
                  gateUp: `${f}.experts.gate_up_proj`,
                  down: `${f}.experts.down_proj`,
                  split: "halves",
                  transposed: true,
                  packedAs: { prefix: `${f}.experts`, gate: "gate_proj", up: "up_proj", down: "down_proj" },
                },
              },
              shared: { mlp: gatedMlp(`${f}.shared_expert`, d.hidden, I, d.act) },
              reportedRouterLogits: "logits",
              weightScalesInput: true,
            }
          : gatedMlp(f, d.hidden, Imlp, d.act),
      };
    });
  },
};
