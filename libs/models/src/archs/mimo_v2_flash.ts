// MiMo-V2-Flash: hybrid full / sliding-window attention (layer_types) with per-type KV head counts
// (sliding layers have twice num_key_value_heads), attention sinks (attention_sink_bias) on the
// sliding layers only, q/k head_dim ≠ v_head_dim, values × attention_value_scale, and RoPE per
// layer type (rope_parameters.{full_attention,sliding_attention}: own θ and partial factor, half
// split; int(head_dim·factor) may be odd, then θ^(−2i/dim) keeps the odd dim, as transformers
// does). MLP per mlp_layer_types: dense, or DeepSeek-V3 noaux_tc routing without a shared expert.
import type { Architecture } from "../arch.ts";
import type { RopeSpec } from "../blocks/rope.ts";
import { coreDims, decoderModel, gatedMlp, lin, perExpert, ropeFromConfig } from "../blocks/standard.ts";
import { ConfigReader } from "../config.ts";
import { ModelConfigError } from "../errors.ts";
import type { AttentionSpec, LayerSpec } from "../spec.ts";
import { deepseekMoeLayers, noauxRouting } from "./deepseek_v3.ts";

type LayerType = "full_attention" | "sliding_attention";

function layerTypes(cfg: ConfigReader, layers: number): LayerType[] {
  const raw = cfg.raw.layer_types;
  if (
    Array.isArray(raw) &&
    raw.length >= layers &&
    raw.slice(0, layers).every((t) => t === "full_attention" || t === "sliding_attention")
  )
    return raw.slice(0, layers) as LayerType[];
  if (raw !== undefined && raw !== null)
    throw new ModelConfigError({
      field: "layer_types",
      message: `${cfg.source}: layer_types must give "full_attention" or "sliding_attention" for each of the ${layers} layers`,
    });
  // the released pattern: full at layer 0 and every 6th layer
  return Array.from({ length: layers }, (_, i) =>
    i === 0 || (i + 1) % 6 === 0 ? "full_attention" : "sliding_attention",
  );
}

function ropeFor(cfg: ConfigReader, type: LayerType, headDim: number): RopeSpec {
  const all = cfg.obj("rope_parameters");
  const params = all?.obj(type);
  const source = `${cfg.source}.rope_parameters.${type}`;
  const factor = params?.optNum("partial_rotary_factor") ?? 0.334;
  const dim = Math.floor(headDim * factor);
  if (dim < 1)
    throw new ModelConfigError({
      field: `rope_parameters.${type}`,
      message: `${source}: partial_rotary_factor ${factor} leaves no rotary dims`,
    });
  const rotaryDim = 2 * Math.ceil(dim / 2);
  const sub = new ConfigReader(
    {
      rope_parameters: params?.raw ?? { rope_theta: 10000, rope_type: "default" },
      max_position_embeddings: cfg.raw.max_position_embeddings,
    },
    cfg.source,
  );
  const spec = ropeFromConfig(sub, rotaryDim, false);
  return dim === rotaryDim ? spec : { ...spec, freqDim: dim };
}

export const mimo_v2_flash: Architecture = {
  modelType: "mimo_v2_flash",
  hfArchitectures: ["MiMoV2FlashForCausalLM"],
  difficulty: "hard",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const types = layerTypes(cfg, d.layers);
    const vDim = cfg.int("v_head_dim", d.headDim, 1);
    const swaKv = cfg.int("swa_num_key_value_heads", 2 * d.kvHeads, 1);
    const window = cfg.int("sliding_window", 128, 1);
    const valueScale = cfg.has("attention_value_scale") ? cfg.num("attention_value_scale") : undefined;
    const bias = cfg.bool("attention_bias", false);
    const ropes = {
      full_attention: ropeFor(cfg, "full_attention", d.headDim),
      sliding_attention: ropeFor(cfg, "sliding_attention", d.headDim),
    };
    const isMoe = deepseekMoeLayers(cfg, d.layers);
    const E = cfg.int("n_routed_experts", 256, 1);
    const moeI = cfg.int("moe_intermediate_size", undefined, 1);
    return decoderModel("mimo_v2_flash", d, (i, p): Omit<LayerSpec, "index" | "inputNorm" | "postAttentionNorm"> => {
      const swa = types[i] === "sliding_attention";
      const kv = swa ? swaKv : d.kvHeads;
      if (d.heads % kv !== 0)
        throw new ModelConfigError({
          field: "num_key_value_heads",
          message: `${cfg.source}: ${d.heads} heads are not a multiple of ${kv} KV heads (layer ${i})`,
        });
      const a = `${p}.self_attn`;
      const attention: AttentionSpec = {
        kind: "standard",
        q: lin(`${a}.q_proj`, d.heads * d.headDim, d.hidden, bias),
        k: lin(`${a}.k_proj`, kv * d.headDim, d.hidden, bias),
        v: lin(`${a}.v_proj`, kv * vDim, d.hidden, bias),
        o: lin(`${a}.o_proj`, d.hidden, d.heads * vDim),
        numHeads: d.heads,
        numKvHeads: kv,
        headDim: d.headDim,
        vHeadDim: vDim,
        scale: d.headDim ** -0.5,
        rope: ropes[types[i]],
        ...(swa ? { window, sinks: `${a}.attention_sink_bias` } : {}),
        ...(valueScale !== undefined ? { valueScale } : {}),
      };
      return {
        attention,
        mlp: isMoe(i)
          ? {
              kind: "moe",
              router: lin(`${p}.mlp.gate`, E, d.hidden),
              routing: noauxRouting(cfg, p),
              experts: perExpert(`${p}.mlp.experts`, E, d.hidden, moeI, d.act),
              reportedRouterLogits: "logits",
            }
          : gatedMlp(`${p}.mlp`, d.hidden, cfg.int("intermediate_size", undefined, 1), d.act),
      };
    });
  },
};
