// GPT-OSS: q/k/v/o biases, per-head attention sinks, sliding window on layers layer_types marks
// "sliding_attention" (even layers by default), YaRN RoPE (half-split), router with a bias
// (top-k on the logits, softmax over the k), fused experts gate_up_proj [E, H, 2I] with gate/up
// interleaved in the columns plus biases, and clamped SwiGLU (alpha 1.702, limit swiglu_limit,
// up + 1). Reads bf16 checkpoints and OpenAI's MXFP4 *_blocks / *_scales (mxfp4-source.ts).
import type { Architecture } from "../arch.ts";
import { mxfp4ExpertSource } from "../blocks/mxfp4-source.ts";
import { coreDims, decoderModel, lin, llamaAttention, ropeFromConfig } from "../blocks/standard.ts";
import type { ConfigReader } from "../config.ts";
import { ModelConfigError } from "../errors.ts";

function layerTypes(cfg: ConfigReader, layers: number): string[] {
  const t = cfg.raw.layer_types;
  if (t === undefined || t === null)
    return Array.from({ length: layers }, (_, i) => ((i + 1) % 2 ? "sliding_attention" : "full_attention"));
  if (!Array.isArray(t) || t.length !== layers || !t.every((x) => x === "sliding_attention" || x === "full_attention"))
    throw new ModelConfigError({
      field: "layer_types",
      message: `${cfg.source}: layer_types must list "sliding_attention" / "full_attention" for each of the ${layers} layers`,
    });
  return t as string[];
}

export const gpt_oss: Architecture = {
  modelType: "gpt_oss",
  hfArchitectures: ["GptOssForCausalLM"],
  difficulty: "mid",
  build(cfg) {
    const d = coreDims(cfg, "rms_norm_eps", 1e-5);
    const rope = ropeFromConfig(cfg, d.headDim, false, 150000);
    const E = cfg.int("num_local_experts", 128, 1);
    const I = cfg.int("intermediate_size", undefined, 1);
    const bias = cfg.bool("attention_bias", true);
    const types = layerTypes(cfg, d.layers);
    const window = cfg.int("sliding_window", 128, 1);
    return decoderModel("gpt_oss", d, (i, p) => {
      const x = `${p}.mlp.experts`;
      return {
        attention: {
          ...llamaAttention(d, `${p}.self_attn`, {
            rope,
            qkvBias: bias,
            oBias: bias,
            window: types[i] === "sliding_attention" ? window : 0,
          }),
          sinks: `${p}.self_attn.sinks`,
        },
        mlp: {
          kind: "moe",
          router: lin(`${p}.mlp.router`, E, d.hidden, true),
          routing: { kind: "topk_softmax", topK: cfg.int("num_experts_per_tok", 4, 1) },
          experts: {
            numExperts: E,
            hidden: d.hidden,
            intermediate: I,
            act: "silu",
            layout: {
              kind: "fused",
              gateUp: `${x}.gate_up_proj`,
              down: `${x}.down_proj`,
              split: "interleaved",
              transposed: true,
              gateUpBias: `${x}.gate_up_proj_bias`,
              downBias: `${x}.down_proj_bias`,
              packedAs: { prefix: x, gate: "gate_proj", up: "up_proj", down: "down_proj" },
            },
            clampedGlu: { alpha: 1.702, limit: cfg.num("swiglu_limit", 7) },
          },
          reportedRouterLogits: "logits",
        },
      };
    });
  },
  adaptSource: mxfp4ExpertSource,
};
