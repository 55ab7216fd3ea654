// Builders for the Llama-shaped parts most MoE decoders share, so an architecture file only states
// what differs: names, norms, RoPE flavour, MoE layer selection and routing.
import type { ActivationKind } from "@moeq/native";
import type { ConfigReader } from "../config.ts";
import { ModelConfigError } from "../errors.ts";
import type {
  AttentionSpec,
  DenseMlpSpec,
  ExpertsSpec,
  LayerSpec,
  LinearSpec,
  ModelSpec,
  NormSpec,
  QkNormSpec,
} from "../spec.ts";
import { type RopeSpec, ropeFromConfig } from "./rope.ts";

export const lin = (prefix: string, outFeatures: number, inFeatures: number, bias = false): LinearSpec => ({
  weight: `${prefix}.weight`,
  ...(bias ? { bias: `${prefix}.bias` } : {}),
  outFeatures,
  inFeatures,
});

export const rms = (weight: string | null, dim: number, eps: number): NormSpec => ({ kind: "rms", weight, dim, eps });

/** Sizes every Llama-like config has. */
export interface CoreDims {
  readonly hidden: number;
  readonly layers: number;
  readonly vocab: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly eps: number;
  readonly tied: boolean;
  readonly maxPositions: number;
  readonly act: ActivationKind;
}

const ACTS: Record<string, ActivationKind> = {
  silu: "silu",
  swish: "silu",
  gelu: "gelu_erf",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_new: "gelu_tanh",
  relu: "relu",
};

export function coreDims(cfg: ConfigReader, epsKey = "rms_norm_eps", epsDefault = 1e-6): CoreDims {
  const hidden = cfg.int("hidden_size", undefined, 1);
  const heads = cfg.int("num_attention_heads", undefined, 1);
  const kvHeads = cfg.int("num_key_value_heads", heads, 1);
  if (heads % kvHeads !== 0)
    throw new ModelConfigError({
      field: "num_key_value_heads",
      message: `${cfg.source}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
    });
  const headDim = cfg.int("head_dim", Math.floor(hidden / heads), 1);
  const actName = cfg.str("hidden_act", "silu");
  const act = ACTS[actName];
  if (!act)
    throw new ModelConfigError({
      field: "hidden_act",
      message: `${cfg.source}: hidden_act '${actName}' is not supported (${Object.keys(ACTS).join(", ")})`,
    });
  return {
    hidden,
    layers: cfg.int("num_hidden_layers", undefined, 1),
    vocab: cfg.int("vocab_size", undefined, 1),
    heads,
    kvHeads,
    headDim,
    eps: cfg.num(epsKey, epsDefault),
    tied: cfg.bool("tie_word_embeddings", false),
    maxPositions: cfg.int("max_position_embeddings", 4096, 1),
    act,
  };
}

/** rotary dims from partial_rotary_factor (rope_parameters or top level), or an explicit rotary_dim. */
export function rotaryDim(cfg: ConfigReader, headDim: number, defaultFactor = 1): number {
  if (cfg.has("rotary_dim")) return cfg.int("rotary_dim", undefined, 2);
  return partialRotaryDim(cfg, headDim, defaultFactor);
}

export function partialRotaryDim(cfg: ConfigReader, headDim: number, defaultFactor = 1): number {
  const factor =
    cfg.obj("rope_parameters")?.optNum("partial_rotary_factor") ?? cfg.optNum("partial_rotary_factor") ?? defaultFactor;
  return Math.floor(headDim * factor);
}

export interface AttentionOptions {
  readonly qkvBias?: boolean;
  readonly oBias?: boolean;
  readonly qkNorm?: {
    readonly q: string;
    readonly k: string;
    readonly scope: "head" | "full";
    readonly afterRope?: boolean;
    readonly eps?: number;
  };
  readonly rope: RopeSpec | null;
  readonly window?: number;
  readonly clipQkv?: number;
}

export function llamaAttention(d: CoreDims, prefix: string, o: AttentionOptions): AttentionSpec {
  const qOut = d.heads * d.headDim;
  const kvOut = d.kvHeads * d.headDim;
  let qkNorm: QkNormSpec | undefined;
  if (o.qkNorm) {
    const eps = o.qkNorm.eps ?? d.eps;
    const full = o.qkNorm.scope === "full";
    qkNorm = {
      q: rms(`${prefix}.${o.qkNorm.q}.weight`, full ? qOut : d.headDim, eps),
      k: rms(`${prefix}.${o.qkNorm.k}.weight`, full ? kvOut : d.headDim, eps),
      scope: o.qkNorm.scope,
      afterRope: o.qkNorm.afterRope ?? false,
    };
  }
  return {
    kind: "standard",
    q: lin(`${prefix}.q_proj`, qOut, d.hidden, o.qkvBias),
    k: lin(`${prefix}.k_proj`, kvOut, d.hidden, o.qkvBias),
    v: lin(`${prefix}.v_proj`, kvOut, d.hidden, o.qkvBias),
    o: lin(`${prefix}.o_proj`, d.hidden, qOut, o.oBias),
    numHeads: d.heads,
    numKvHeads: d.kvHeads,
    headDim: d.headDim,
    vHeadDim: d.headDim,
    scale: 1 / Math.sqrt(d.headDim),
    ...(qkNorm ? { qkNorm } : {}),
    rope: o.rope,
    ...(o.window ? { window: o.window } : {}),
    ...(o.clipQkv !== undefined ? { clipQkv: o.clipQkv } : {}),
  };
}

export function gatedMlp(
  prefix: string,
  hidden: number,
  inter: number,
  act: ActivationKind,
  bias = false,
): DenseMlpSpec {
  return {
    kind: "dense",
    gate: lin(`${prefix}.gate_proj`, inter, hidden, bias),
    up: lin(`${prefix}.up_proj`, inter, hidden, bias),
    down: lin(`${prefix}.down_proj`, hidden, inter, bias),
    act,
  };
}

/** Experts stored as `${prefix}.${e}.{gate,up,down}.weight` (Qwen names by default, Mixtral w1/w3/w2). */
export function perExpert(
  prefix: string,
  numExperts: number,
  hidden: number,
  inter: number,
  act: ActivationKind,
  names: { gate: string; up: string; down: string } = { gate: "gate_proj", up: "up_proj", down: "down_proj" },
): ExpertsSpec {
  return { numExperts, hidden, intermediate: inter, act, layout: { kind: "per_expert", prefix, ...names } };
}

/** Embedding, pre-norm layers, final norm and lm_head under the usual `model.` names. */
export function decoderModel(
  modelType: string,
  d: CoreDims,
  layers: (i: number, prefix: string) => Omit<LayerSpec, "index" | "inputNorm" | "postAttentionNorm">,
  opts: { lmHeadBias?: boolean } = {},
): ModelSpec {
  return {
    modelType,
    hiddenSize: d.hidden,
    vocabSize: d.vocab,
    embed: { weight: "model.embed_tokens.weight" },
    layers: Array.from({ length: d.layers }, (_, i) => {
      const p = `model.layers.${i}`;
      return {
        index: i,
        inputNorm: rms(`${p}.input_layernorm.weight`, d.hidden, d.eps),
        postAttentionNorm: rms(`${p}.post_attention_layernorm.weight`, d.hidden, d.eps),
        ...layers(i, p),
      };
    }),
    finalNorm: rms("model.norm.weight", d.hidden, d.eps),
    lmHead: d.tied
      ? { weight: "model.embed_tokens.weight", outFeatures: d.vocab, inFeatures: d.hidden }
      : lin("lm_head", d.vocab, d.hidden, opts.lmHeadBias),
    tiedEmbeddings: d.tied,
    maxPositions: d.maxPositions,
  };
}

export { ropeFromConfig };
