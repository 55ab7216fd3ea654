// Random-weight checkpoints with the real on-disk layout (names, shapes, dtypes from the
// architecture registry's tensor enumeration), for demos and benchmarks. Weights are bf16,
// seeded normal with std 0.02 (embeddings, lm_head) / 0.05 (projections), norms = 1. No
// tokenizer is written: runs on a synthesized model use `random:NxT` token windows.
import { existsSync, readdirSync } from "node:fs";
import { resolve } from "node:path";
import { seededRandom } from "@moeq/data";
import { buildSpec, expectedTensors, type RawConfig } from "@moeq/models";
import { OptionsError } from "@moeq/runtime";
import { createCheckpointWriter } from "@moeq/safetensors";
import { f32ToBf16Bits } from "@moeq/tensor";

interface Shape {
  hidden: number;
  layers: number;
  experts: number;
  topK: number;
  moeIntermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
}

/** Named shapes; `tiny` is the trained test model's, `tiny4x` has 4× its parameters per layer. */
export const PRESETS: Record<string, Shape> = {
  tiny: {
    hidden: 256,
    layers: 4,
    experts: 32,
    topK: 4,
    moeIntermediate: 128,
    heads: 8,
    kvHeads: 2,
    headDim: 32,
    vocab: 4096,
  },
  tiny4x: {
    hidden: 512,
    layers: 4,
    experts: 32,
    topK: 4,
    moeIntermediate: 256,
    heads: 16,
    kvHeads: 4,
    headDim: 32,
    vocab: 4096,
  },
  "qwen3-30b-a3b": {
    hidden: 2048,
    layers: 48,
    experts: 128,
    topK: 8,
    moeIntermediate: 768,
    heads: 32,
    kvHeads: 4,
    headDim: 128,
    vocab: 151936,
  },
};

const CONFIGS: Record<string, (s: Shape) => RawConfig> = {
  qwen3_moe: (s) => ({
    architectures: ["Qwen3MoeForCausalLM"],
    model_type: "qwen3_moe",
    attention_bias: false,
    bos_token_id: 0,
    eos_token_id: 0,
    decoder_sparse_step: 1,
    head_dim: s.headDim,
    hidden_act: "silu",
    hidden_size: s.hidden,
    intermediate_size: s.moeIntermediate * 4,
    max_position_embeddings: 4096,
    mlp_only_layers: [],
    moe_intermediate_size: s.moeIntermediate,
    norm_topk_prob: true,
    num_attention_heads: s.heads,
    num_experts: s.experts,
    num_experts_per_tok: s.topK,
    num_hidden_layers: s.layers,
    num_key_value_heads: s.kvHeads,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    vocab_size: s.vocab,
  }),
};

export const synthArchitectures = Object.keys(CONFIGS);

export interface SynthOptions {
  readonly arch: string;
  readonly preset: string;
  readonly layers?: number;
  readonly seed: number;
  readonly out: string;
}

export function synthesize(o: SynthOptions): { dir: string; tensors: number; bytes: number; shards: number } {
  const template = CONFIGS[o.arch];
  if (!template)
    throw new OptionsError({
      field: "arch",
      message: `--arch ${o.arch}: synth knows ${synthArchitectures.join(", ")}`,
    });
  const preset = PRESETS[o.preset];
  if (!preset)
    throw new OptionsError({
      field: "preset",
      message: `--preset ${o.preset}: known presets are ${Object.keys(PRESETS).join(", ")}`,
    });
  if (o.layers !== undefined && !(Number.isInteger(o.layers) && o.layers >= 1))
    throw new OptionsError({ field: "layers", message: `--layers must be a positive integer, got ${o.layers}` });
  const dir = resolve(o.out);
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new OptionsError({ field: "out", message: `${dir} already exists and is not empty` });
  const config = template({ ...preset, layers: o.layers ?? preset.layers });
  const { spec } = buildSpec(config, "synthesized config");
  const plan = expectedTensors(spec);
  const writer = createCheckpointWriter(
    dir,
    plan.map((t) => ({ name: t.name, dtype: "BF16" as const, shape: [...t.shape] })),
    { maxShardBytes: 2 * 1024 ** 3 },
  );
  const rand = seededRandom(o.seed);
  // Box–Muller from the seeded uniform stream.
  const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  let bytes = 0;
  try {
    for (const t of plan) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const bits = new Uint16Array(n);
      if (t.role === "norm") bits.fill(f32ToBf16Bits(1));
      else {
        const std = t.role === "embedding" || t.role === "lm_head" ? 0.02 : t.role === "router" ? 0.08 : 0.05;
        for (let i = 0; i < n; i++) bits[i] = f32ToBf16Bits(std * normal());
      }
      writer.write(t.name, new Uint8Array(bits.buffer));
      bytes += bits.byteLength;
    }
  } catch (e) {
    writer.abort();
    throw e;
  }
  writer.finish({
    "config.json": `${JSON.stringify(config, null, 2)}\n`,
    "generation_config.json": `${JSON.stringify({ bos_token_id: 0, eos_token_id: 0 }, null, 2)}\n`,
  });
  return { dir, tensors: plan.length, bytes, shards: writer.shards.length };
}
