// NVFP4: e2m1 codes in 16-element blocks along the input dim, an e4m3 scale per block and
// one f32 scale per tensor. Two producers define the tensor scale as reciprocals of each other,
// so the quantizer follows one of them exactly (the dequantized f32 values differ in the last
// bit between the two, and a checkpoint must be decoded the way it was encoded):
//  - compressed-tensors (`calculate_qparams`, `generate_gparam`, `cast_to_fp4`):
//    global = 448·6/amax; block = fp8(amax_b/6 · global), 0 → 0.125;
//    q = e2m1(bf16(w / (block/global))); w' = q · (block/global).
//  - ModelOpt (`NVFP4QTensor`): scale_2 = amax/2688; block = fp8(amax_b / (6·scale_2)), 0 → 1;
//    q = e2m1(w / (block·scale_2)); w' = q · (block·scale_2).

import { e4m3ToF32 as decodeE4m3, f32ToE4m3 as encodeE4m3 } from "@moeq/tensor";
import { decodeE2m1, encodeE2m1, FP4_E2M1_MAX, FP8_E4M3_MAX, roundBf16 } from "./float-codecs.ts";
import { checkMatrix, FloatQuantInputError } from "./float-errors.ts";

export const NVFP4_BLOCK = 16;

export type Nvfp4Convention = "compressed-tensors" | "modelopt";

export interface Nvfp4Options {
  readonly convention?: Nvfp4Convention;
  /**
   * Tensor scale in the convention's own units (compressed-tensors: weight_global_scale;
   * ModelOpt: weight_scale_2). Pass one shared value for shards vLLM fuses (gate/up, q/k/v).
   */
  readonly globalScale?: number;
  readonly name?: string;
}

export interface Nvfp4Quantized {
  readonly kind: "nvfp4";
  readonly convention: Nvfp4Convention;
  readonly rows: number;
  readonly cols: number;
  /** One e2m1 code (sign<<3 | index) per element, row-major [rows, cols]. */
  readonly codes: Uint8Array;
  /** e4m3fn bytes [rows, cols/16]. */
  readonly blockScales: Uint8Array;
  /** compressed-tensors: weight_global_scale (divides); ModelOpt: weight_scale_2 (multiplies). */
  readonly globalScale: number;
  readonly dequant: Float32Array;
}

const TWO_LEVEL_MAX = FP8_E4M3_MAX * FP4_E2M1_MAX; // 2688

/** Tensor scale for a tensor (or activation) whose absolute maximum is amax. */
export const nvfp4GlobalScale = (amax: number, convention: Nvfp4Convention): number => {
  const a = Math.fround(amax);
  if (convention === "compressed-tensors") {
    return Math.fround(TWO_LEVEL_MAX / Math.max(a, 2 ** -126));
  }
  const s = Math.fround(a / TWO_LEVEL_MAX);
  return s > 0 ? s : 1;
};

/** Value each e2m1 code of a block is multiplied by. Shared by the quantizer and the readers. */
export const nvfp4BlockMultiplier = (scaleByte: number, globalScale: number, convention: Nvfp4Convention): number =>
  convention === "compressed-tensors"
    ? Math.fround(decodeE4m3(scaleByte) / globalScale)
    : Math.fround(decodeE4m3(scaleByte) * globalScale);

const blockScaleByte = (amaxBlock: number, globalScale: number, convention: Nvfp4Convention): number => {
  let s: number;
  if (convention === "compressed-tensors") {
    s = Math.fround(Math.fround(amaxBlock / FP4_E2M1_MAX) * globalScale);
  } else {
    s = Math.fround(amaxBlock / Math.fround(FP4_E2M1_MAX * globalScale));
    if (s === 0) s = 1;
  }
  // Rounding can land a hair above 448 (amax_b = amax): saturate rather than produce NaN.
  const code = encodeE4m3(Math.min(s, FP8_E4M3_MAX));
  if (convention === "compressed-tensors" && decodeE4m3(code) === 0) return encodeE4m3(0.125);
  return code;
};

export const quantizeNvfp4 = (
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  opts: Nvfp4Options = {},
): Nvfp4Quantized => {
  const name = opts.name ?? "nvfp4 weight";
  const convention = opts.convention ?? "compressed-tensors";
  checkMatrix(w, rows, cols, name);
  if (cols % NVFP4_BLOCK !== 0) {
    throw new FloatQuantInputError({
      message: `${name}: input dim ${cols} is not a multiple of the NVFP4 block (${NVFP4_BLOCK}); leave this module unquantized`,
    });
  }
  let globalScale = opts.globalScale;
  if (globalScale === undefined) {
    let amax = 0;
    for (let i = 0; i < w.length; i++) amax = Math.max(amax, Math.abs(Math.fround(w[i]!)));
    globalScale = nvfp4GlobalScale(amax, convention);
  } else if (!(Number.isFinite(globalScale) && globalScale > 0)) {
    throw new FloatQuantInputError({ message: `${name}: global scale ${globalScale} must be finite and positive` });
  }
  globalScale = Math.fround(globalScale);
  const nb = cols / NVFP4_BLOCK;
  const codes = new Uint8Array(rows * cols);
  const blockScales = new Uint8Array(rows * nb);
  const dequant = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const base = r * cols + b * NVFP4_BLOCK;
      let amax = 0;
      for (let k = 0; k < NVFP4_BLOCK; k++) amax = Math.max(amax, Math.abs(Math.fround(w[base + k]!)));
      const sb = blockScaleByte(amax, globalScale, convention);
      blockScales[r * nb + b] = sb;
      const mult = nvfp4BlockMultiplier(sb, globalScale, convention);
      for (let k = 0; k < NVFP4_BLOCK; k++) {
        let x = Math.fround(Math.fround(w[base + k]!) / mult);
        x = Math.min(FP4_E2M1_MAX, Math.max(-FP4_E2M1_MAX, x));
        // compressed-tensors rounds through bfloat16 before choosing the e2m1 value.
        if (convention === "compressed-tensors") x = roundBf16(x);
        const code = encodeE2m1(x);
        codes[base + k] = code;
        dequant[base + k] = Math.fround(decodeE2m1(code) * mult);
      }
    }
  }
  return { kind: "nvfp4", convention, rows, cols, codes, blockScales, globalScale, dequant };
};

export const dequantizeNvfp4 = (
  codes: Uint8Array,
  blockScales: Uint8Array,
  globalScale: number,
  convention: Nvfp4Convention,
  rows: number,
  cols: number,
): Float32Array => {
  const nb = cols / NVFP4_BLOCK;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const mult = nvfp4BlockMultiplier(blockScales[r * nb + b]!, globalScale, convention);
      const base = r * cols + b * NVFP4_BLOCK;
      for (let k = 0; k < NVFP4_BLOCK; k++) out[base + k] = Math.fround(decodeE2m1(codes[base + k]!) * mult);
    }
  }
  return out;
};
