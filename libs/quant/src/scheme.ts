// The float schemes this package implements, as the quantizer stage and `moeq quantize` name them.
export type FloatSchemeName =
  | "fp8-tensor"
  | "fp8-channel"
  | "fp8-block"
  | "w8a8-fp8"
  | "nvfp4"
  | "nvfp4-w4a16"
  | "mxfp4";

export interface FloatSchemeInfo {
  readonly name: FloatSchemeName;
  readonly weights: "fp8" | "nvfp4" | "mxfp4";
  readonly fp8Strategy?: "tensor" | "channel" | "block";
  /** "static": per-module input scales from calibration are required. */
  readonly activations: "none" | "dynamic" | "static";
  readonly description: string;
}

export const floatSchemes: Readonly<Record<FloatSchemeName, FloatSchemeInfo>> = {
  "fp8-tensor": {
    name: "fp8-tensor",
    weights: "fp8",
    fp8Strategy: "tensor",
    activations: "none",
    description: "FP8 e4m3 weights, one scale per tensor",
  },
  "fp8-channel": {
    name: "fp8-channel",
    weights: "fp8",
    fp8Strategy: "channel",
    activations: "none",
    description: "FP8 e4m3 weights, one scale per output channel",
  },
  "fp8-block": {
    name: "fp8-block",
    weights: "fp8",
    fp8Strategy: "block",
    activations: "dynamic",
    description: "FP8 e4m3 weights in 128×128 blocks (DeepSeek-V3 style), activations quantized at run time",
  },
  "w8a8-fp8": {
    name: "w8a8-fp8",
    weights: "fp8",
    fp8Strategy: "tensor",
    activations: "static",
    description: "FP8 weights per tensor and static per-module (per-expert) FP8 input scales",
  },
  nvfp4: {
    name: "nvfp4",
    weights: "nvfp4",
    activations: "static",
    description:
      "NVFP4 weights (16-element blocks, e4m3 block scales, f32 tensor scale) and static input global scales",
  },
  "nvfp4-w4a16": {
    name: "nvfp4-w4a16",
    weights: "nvfp4",
    activations: "none",
    description: "NVFP4 weights only",
  },
  mxfp4: {
    name: "mxfp4",
    weights: "mxfp4",
    activations: "none",
    description: "MXFP4 weights (32-element blocks, E8M0 scales)",
  },
};

export const floatSchemeNames = Object.keys(floatSchemes) as FloatSchemeName[];
