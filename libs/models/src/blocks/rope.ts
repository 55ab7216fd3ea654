// RoPE frequency tables, computed here (not in C++) because the scaling variants are config logic:
// default, linear, dynamic NTK, llama3, YaRN (with its attention factor) and Hunyuan's NTK-alpha.
// Follows transformers' modeling_rope_utils; inverse frequencies are formed in f32 like torch.

import type { ConfigReader } from "../config.ts";
import { ModelConfigError } from "../errors.ts";

export type RopeScaling =
  | { readonly type: "default" }
  | { readonly type: "linear"; readonly factor: number }
  | { readonly type: "dynamic"; readonly factor: number; readonly originalMax: number }
  | {
      readonly type: "llama3";
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMax: number;
    }
  | {
      readonly type: "yarn";
      readonly factor: number;
      readonly originalMax: number;
      readonly betaFast: number;
      readonly betaSlow: number;
      readonly mscale?: number;
      readonly mscaleAllDim?: number;
      readonly attentionFactor?: number;
      readonly truncate: boolean;
    }
  /** Hunyuan "dynamic" with alpha: base ← θ·α^(d/(d−2)), independent of sequence length. */
  | { readonly type: "ntk_alpha"; readonly alpha: number }
  /**
   * LongRoPE (Phi-3 / Phi-MoE): per-frequency divisors, the long set once the sequence exceeds
   * originalMax; cos/sin × attentionFactor, or Phi-MoE's short/long mscale when the config has them.
   */
  | {
      readonly type: "longrope";
      readonly shortFactor: readonly number[];
      readonly longFactor: readonly number[];
      readonly originalMax: number;
      readonly attentionFactor: number;
      readonly shortMscale?: number;
      readonly longMscale?: number;
    };

export interface RopeSpec {
  readonly theta: number;
  /** Rotated dims per head (partial RoPE when < headDim); even. */
  readonly rotaryDim: number;
  /** Pairs (2i, 2i+1) instead of (i, i + rd/2). */
  readonly interleaved: boolean;
  /** The d of θ^(−2i/d) when it is not rotaryDim (MiMo: an odd int(headDim·factor), rounded up for rotaryDim). */
  readonly freqDim?: number;
  readonly scaling: RopeScaling;
}

export interface RopeTables {
  readonly cos: Float32Array;
  readonly sin: Float32Array;
  readonly positions: number;
}

/**
 * Reads `rope_parameters` (transformers v5) or the legacy `rope_theta` + `rope_scaling` fields.
 * `rotaryDim` is resolved by the architecture (partial_rotary_factor, rotary_dim...).
 */
export function ropeFromConfig(
  cfg: ConfigReader,
  rotaryDim: number,
  interleaved: boolean,
  defaultTheta = 10000,
): RopeSpec {
  const params = cfg.obj("rope_parameters") ?? cfg.obj("rope_scaling");
  const theta = params?.optNum("rope_theta") ?? cfg.optNum("rope_theta") ?? defaultTheta;
  const type = params?.has("rope_type")
    ? params.str("rope_type")
    : params?.has("type")
      ? params.str("type")
      : "default";
  const originalMax = () => params?.optNum("original_max_position_embeddings") ?? cfg.num("max_position_embeddings");
  let scaling: RopeScaling;
  switch (type) {
    case "default":
      scaling = { type: "default" };
      break;
    case "linear":
      scaling = { type: "linear", factor: params?.num("factor") ?? 1 };
      break;
    case "dynamic":
      if (params?.has("alpha")) scaling = { type: "ntk_alpha", alpha: params.num("alpha") };
      else scaling = { type: "dynamic", factor: params?.num("factor") ?? 1, originalMax: originalMax() };
      break;
    case "llama3":
      scaling = {
        type: "llama3",
        factor: params?.num("factor") ?? 8,
        lowFreqFactor: params?.num("low_freq_factor", 1) ?? 1,
        highFreqFactor: params?.num("high_freq_factor", 4) ?? 4,
        originalMax: originalMax(),
      };
      break;
    case "yarn":
      scaling = {
        type: "yarn",
        factor: params?.num("factor") ?? 1,
        originalMax: originalMax(),
        betaFast: params?.num("beta_fast", 32) ?? 32,
        betaSlow: params?.num("beta_slow", 1) ?? 1,
        mscale: params?.optNum("mscale"),
        mscaleAllDim: params?.optNum("mscale_all_dim"),
        attentionFactor: params?.optNum("attention_factor"),
        truncate: params?.bool("truncate", true) ?? true,
      };
      break;
    case "longrope":
      scaling = longropeFromConfig(cfg, params, rotaryDim);
      break;
    default:
      throw new ModelConfigError({
        field: "rope_parameters.rope_type",
        message: `${cfg.source}: rope_type '${type}' is not supported (default, linear, dynamic, llama3, yarn)`,
      });
  }
  if (rotaryDim % 2 !== 0 || rotaryDim <= 0)
    throw new ModelConfigError({
      field: "rotary_dim",
      message: `${cfg.source}: rotary dim ${rotaryDim} must be even and > 0`,
    });
  return { theta, rotaryDim, interleaved, scaling };
}

const f = Math.fround;

function yarnMscale(scale: number, m = 1): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/** Inverse frequencies [rd/2] and the factor cos/sin are multiplied by. */
export function inverseFrequencies(spec: RopeSpec, seqLen: number): { invFreq: Float64Array; attentionFactor: number } {
  const rd = spec.rotaryDim;
  const half = rd / 2;
  const s = spec.scaling;
  let base = spec.theta;
  if (s.type === "ntk_alpha") base = spec.theta * s.alpha ** (rd / (rd - 2));
  if (s.type === "dynamic" && seqLen > s.originalMax)
    base = spec.theta * ((s.factor * seqLen) / s.originalMax - (s.factor - 1)) ** (rd / (rd - 2));
  const inv = new Float64Array(half);
  const fd = spec.freqDim ?? rd;
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(base ** f((2 * i) / fd)));
  let attentionFactor = 1;
  if (s.type === "linear") for (let i = 0; i < half; i++) inv[i] = f(inv[i] / s.factor);
  if (s.type === "llama3") {
    const lowWl = s.originalMax / s.lowFreqFactor;
    const highWl = s.originalMax / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wl = (2 * Math.PI) / inv[i];
      if (wl > lowWl) inv[i] = inv[i] / s.factor;
      else if (wl >= highWl) {
        const smooth = (s.originalMax / wl - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
      inv[i] = f(inv[i]);
    }
  }
  if (s.type === "yarn") {
    attentionFactor =
      s.attentionFactor ??
      (s.mscale !== undefined && s.mscaleAllDim !== undefined
        ? yarnMscale(s.factor, s.mscale) / yarnMscale(s.factor, s.mscaleAllDim)
        : yarnMscale(s.factor));
    const corrDim = (rot: number) => (rd * Math.log(s.originalMax / (rot * 2 * Math.PI))) / (2 * Math.log(base));
    let low = corrDim(s.betaFast);
    let high = corrDim(s.betaSlow);
    if (s.truncate) {
      low = Math.floor(low);
      high = Math.ceil(high);
    }
    low = Math.max(low, 0);
    high = Math.min(high, rd - 1);
    if (low === high) high += 0.001;
    for (let i = 0; i < half; i++) {
      const pos = base ** ((2 * i) / rd);
      const extrap = 1 / pos;
      const interp = 1 / (s.factor * pos);
      const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
      const extrapFactor = 1 - ramp;
      inv[i] = f(interp * (1 - extrapFactor) + extrap * extrapFactor);
    }
  }
  if (s.type === "longrope") {
    const long = seqLen > s.originalMax;
    const ext = long ? s.longFactor : s.shortFactor;
    for (let i = 0; i < half; i++) inv[i] = f(1 / f(ext[i] * f(base ** f((2 * i) / rd))));
    attentionFactor = (long ? s.longMscale : s.shortMscale) ?? s.attentionFactor;
  }
  return { invFreq: inv, attentionFactor };
}

/** cos/sin [positions, rd/2] for positions 0..positions−1 (seqLen drives dynamic NTK). */
export function ropeTables(spec: RopeSpec, positions: number, seqLen = positions): RopeTables {
  const { invFreq, attentionFactor } = inverseFrequencies(spec, seqLen);
  const half = spec.rotaryDim / 2;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++)
    for (let i = 0; i < half; i++) {
      const a = f(p * invFreq[i]);
      cos[p * half + i] = Math.cos(a) * attentionFactor;
      sin[p * half + i] = Math.sin(a) * attentionFactor;
    }
  return { cos, sin, positions };
}

function factorList(params: ConfigReader, key: string, half: number): number[] {
  const v = params.raw[key];
  if (!Array.isArray(v) || v.length !== half || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0))
    throw new ModelConfigError({
      field: `rope_parameters.${key}`,
      message: `${params.source}: ${key} must be a list of ${half} positive numbers, got ${JSON.stringify(v)}`,
    });
  return v as number[];
}

/** transformers' _compute_longrope_parameters, plus Phi-MoE's short_mscale / long_mscale. */
function longropeFromConfig(cfg: ConfigReader, params: ConfigReader | undefined, rotaryDim: number): RopeScaling {
  if (!params)
    throw new ModelConfigError({ field: "rope_parameters", message: `${cfg.source}: longrope needs rope_parameters` });
  const maxPos = cfg.num("max_position_embeddings");
  const originalMax =
    params.optNum("original_max_position_embeddings") ?? cfg.optNum("original_max_position_embeddings") ?? maxPos;
  const factor = params.optNum("factor") ?? maxPos / originalMax;
  const attentionFactor =
    params.optNum("attention_factor") ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(originalMax)));
  return {
    type: "longrope",
    shortFactor: factorList(params, "short_factor", rotaryDim / 2),
    longFactor: factorList(params, "long_factor", rotaryDim / 2),
    originalMax,
    attentionFactor,
    shortMscale: params.optNum("short_mscale"),
    longMscale: params.optNum("long_mscale"),
  };
}
