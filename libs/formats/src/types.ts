// What a format writer consumes and produces. Writers are pure: tensors in, tensors + JSON out;
// checkpoint.ts puts them on disk.
import type { Fp8Quantized, Mxfp4Quantized, Nvfp4Quantized } from "@moeq/quant";
import type { Tensor } from "@moeq/tensor";

/**
 * The integer quantizers' result (libs/quant RTN/GPTQ), structurally: unsigned codes
 * 0..2^bits−1 [rows·cols], scales and integer zero points [rows·nGroups], the group of every input
 * column, and the quantizer's own dequantization (code − zero)·scale.
 */
export interface IntQuantLike {
  readonly codes: ArrayLike<number>;
  readonly scales: ArrayLike<number>;
  readonly zeros: ArrayLike<number>;
  readonly gIdx: ArrayLike<number>;
  readonly perm?: ArrayLike<number> | null;
  readonly dequant: ArrayLike<number>;
  readonly bits: number;
  readonly groupSize: number;
  readonly symmetric: boolean;
}

export interface IntQuantized {
  readonly kind: "int";
  readonly rows: number;
  readonly cols: number;
  readonly result: IntQuantLike;
}

export type QuantizedWeight = IntQuantized | Fp8Quantized | Nvfp4Quantized | Mxfp4Quantized;
export type WeightKind = QuantizedWeight["kind"];

export interface QuantizedModule {
  /** Module path without ".weight", e.g. "model.layers.3.mlp.experts.17.down_proj". */
  readonly name: string;
  readonly weight: QuantizedWeight;
  /** Static activation scale for W8A8-FP8 / NVFP4 W4A4, in the units the format stores (see docs/formats.md). */
  readonly inputScale?: number;
  /**
   * Where the input range behind inputScale came from (libs/quant resolveInputRange): a
   * "fallback" (an expert that saw no calibration tokens) is listed in the written notes.
   */
  readonly inputRange?: { readonly source: "calibration" | "fallback"; readonly reason?: string };
  /** Unquantized bias, written as "<name>.bias" (GPT-OSS: fused into gate_up_proj_bias). */
  readonly bias?: Tensor;
}

export interface FormatInput {
  readonly modules: readonly QuantizedModule[];
  /** Every other tensor of the model, by full tensor name, written unchanged. */
  readonly passthrough: ReadonlyMap<string, Tensor>;
  /**
   * Linear-like modules left unquantized (router gates, lm_head, ...). When absent it is derived:
   * every 2-D "<module>.weight" in passthrough that is not an embedding.
   */
  readonly unquantizedModules?: readonly string[];
  /** The source model's config.json; the output gets its quantization_config. */
  readonly modelConfig: Readonly<Record<string, unknown>>;
}

export interface FormatOutput {
  readonly tensors: Map<string, Tensor>;
  /** config.json contents, with quantization_config. */
  readonly config: Record<string, unknown>;
  /** Other JSON files of the format (hf_quant_config.json, quantize_config.json), by file name. */
  readonly extraFiles: Map<string, string>;
  readonly ignore: readonly string[];
  /** Things the report must mention (scale dtype choices, provenance, limitations hit). */
  readonly notes: readonly string[];
}

export interface FormatDescription {
  readonly summary: string;
  readonly accepts: readonly WeightKind[];
  /** Files besides config.json and the safetensors shards. */
  readonly files: readonly string[];
  readonly loaders: string;
}

/** What one part (a layer's modules) of a checkpoint written in parts contributed to its config. */
export interface FormatPartOutput {
  readonly config: Record<string, unknown>;
  readonly extraFiles: ReadonlyMap<string, string>;
  readonly ignore: readonly string[];
  /** the part's quantized module names, in write order */
  readonly modules: readonly string[];
}

export interface Format {
  readonly name: string;
  readonly describe: FormatDescription;
  write(input: FormatInput): FormatOutput;
  /**
   * The whole model's config and extra files from the outputs of its parts (each written by
   * `write` with the model's unquantizedModules), for a format whose config names modules per
   * group. Without it every part's config and extra files must be equal (one per model).
   */
  mergeParts?(parts: readonly FormatPartOutput[]): {
    config: Record<string, unknown>;
    extraFiles: ReadonlyMap<string, string>;
  };
}

/**
 * How a serving engine quantizes a quantized module's input at run time, as the checkpoint
 * states it (scales in the units vLLM uses; see libs/quant act-quant.ts for the arithmetic).
 */
export type InputQuantization =
  /** static FP8 per tensor: x ≈ e4m3(x/scale)·scale (compressed-tensors / ModelOpt `input_scale`) */
  | { readonly kind: "fp8-tensor"; readonly scale: number }
  /** dynamic FP8, one scale per token (row) */
  | { readonly kind: "fp8-token" }
  /** dynamic FP8, one scale per token and `groupSize` input columns (DeepSeek FP8 block checkpoints) */
  | { readonly kind: "fp8-token-group"; readonly groupSize: number }
  /** NVFP4 W4A4: FP4 E2M1 in 16-element blocks, e4m3 block scales from the global scale
   *  (compressed-tensors `input_global_scale` = 2688/amax; ModelOpt stores its reciprocal) */
  | { readonly kind: "nvfp4"; readonly globalScale: number }
  /** the checkpoint declares an activation scheme the evaluator does not emulate */
  | { readonly kind: "unsupported"; readonly reason: string };

/** What any checkpoint decodes to: f32 [out, in] per quantized module. */
export interface DequantizedModule {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly weight: Float32Array;
}
