// Activation (linear input) quantization as the serving engine does it at run time, as fake
// quantization: rows of x [rows, cols] go to the low-precision grid and straight back to f32, so a
// plain f32 GEMM with the dequantized weight reproduces the quantized GEMM up to summation order.
// The arithmetic follows vLLM's kernels step by step (f32 throughout):
//  - static FP8 per tensor (`static_scaled_fp8_quant`): inv = 1/s; q = e4m3(clamp(x·inv, ±448)).
//  - dynamic FP8 per token (`dynamic_per_token_scaled_fp8_quant`): s = max(amax_row/448,
//    1/(448·512)); q = e4m3(clamp(x/s, ±448)).
//  - dynamic FP8 per token and column group (`per_token_group_quant_fp8`, DeepSeek FP8 block
//    checkpoints, group 128): s = max(amax_group, 1e-10)/448; q = e4m3(clamp(x/s, ±448)).
//  - NVFP4 (`scaled_fp4_quant` / `cvt_warp_fp16_to_fp4`, global scale G = input_global_scale):
//    per 16 elements sf = e4m3sat(G·(amax·(1/6))); k = sf ≠ 0 ? 1/(sf·(1/G)) : 0;
//    q = e2m1(x·k) round-half-even, saturating at ±6; the GEMM's alpha 1/G makes x' = q·sf/G.
// e4m3 rounding is round-half-even (f32ToE4m3); saturation is an explicit clamp because the cast
// itself would give NaN past 448 (e4m3fn has no infinity).
import { e4m3ToF32 as decodeE4m3, f32ToE4m3 as encodeE4m3 } from "@moeq/tensor";
import { decodeE2m1, encodeE2m1, FP4_E2M1_MAX, FP8_E4M3_MAX } from "./float-codecs.ts";
import { FloatQuantInputError } from "./float-errors.ts";
import { NVFP4_BLOCK } from "./nvfp4.ts";

const f = Math.fround;

/** vLLM's floor for dynamic per-token FP8 scales (`min_scaling_factor<e4m3fn>`: 1/(448·512)). */
export const FP8_MIN_TOKEN_SCALE = f(1 / (FP8_E4M3_MAX * 512));
/** vLLM's `per_token_group_quant_fp8` eps on the group absmax. */
export const FP8_GROUP_EPS = 1e-10;

/** e4m3 code of v after saturation at ±448 (the cast alone would give NaN past 448). */
export const e4m3Saturate = (v: number): number => encodeE4m3(Math.min(FP8_E4M3_MAX, Math.max(-FP8_E4M3_MAX, v)));

const checkShape = (x: ArrayLike<number>, rows: number, cols: number, name: string): void => {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols <= 0 || x.length !== rows * cols) {
    throw new FloatQuantInputError({
      message: `${name}: ${x.length} activation values do not fill [${rows}, ${cols}]`,
    });
  }
};

const checkScale = (s: number, what: string, name: string): void => {
  if (!(Number.isFinite(s) && s > 0)) {
    throw new FloatQuantInputError({ message: `${name}: ${what} ${s} must be finite and positive` });
  }
};

/** Static per-tensor FP8: x' = e4m3(clamp(x·(1/s), ±448))·s with the checkpoint's input_scale s. */
export const fakeQuantFp8Static = (
  x: Float32Array,
  rows: number,
  cols: number,
  scale: number,
  name = "activations",
): Float32Array => {
  checkShape(x, rows, cols, name);
  checkScale(scale, "input_scale", name);
  const s = f(scale);
  const inv = f(1 / s);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(decodeE4m3(e4m3Saturate(f(x[i]! * inv))) * s);
  return out;
};

/** FP8 with a scale computed per token (row): s = max(amax/448, 1/(448·512)). */
export const fakeQuantFp8PerToken = (x: Float32Array, rows: number, cols: number, name = "activations"): Float32Array =>
  fakeQuantFp8Groups(x, rows, cols, cols, name, (amax) => Math.max(f(amax / FP8_E4M3_MAX), FP8_MIN_TOKEN_SCALE));

/**
 * FP8 with a scale per token and per `group` consecutive columns (DeepSeek-V3 / vLLM
 * per_token_group_quant_fp8): s = max(amax, 1e-10)/448. A trailing partial group has its own scale.
 */
export const fakeQuantFp8PerTokenGroup = (
  x: Float32Array,
  rows: number,
  cols: number,
  group: number,
  name = "activations",
): Float32Array => {
  if (!(Number.isInteger(group) && group > 0))
    throw new FloatQuantInputError({ message: `${name}: activation group size ${group} must be a positive integer` });
  return fakeQuantFp8Groups(x, rows, cols, group, name, (amax) => f(Math.max(amax, FP8_GROUP_EPS) / FP8_E4M3_MAX));
};

const fakeQuantFp8Groups = (
  x: Float32Array,
  rows: number,
  cols: number,
  group: number,
  name: string,
  scaleOf: (amax: number) => number,
): Float32Array => {
  checkShape(x, rows, cols, name);
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += group) {
      const a = r * cols + c0;
      const b = r * cols + Math.min(cols, c0 + group);
      let amax = 0;
      for (let i = a; i < b; i++) {
        const v = Math.abs(x[i]!);
        if (v > amax) amax = v;
      }
      if (!Number.isFinite(amax))
        throw new FloatQuantInputError({ message: `${name}: non-finite activation in row ${r}` });
      const s = scaleOf(amax);
      for (let i = a; i < b; i++) out[i] = f(decodeE4m3(e4m3Saturate(f(x[i]! / s))) * s);
    }
  }
  return out;
};

export interface Nvfp4Activations {
  /** e2m1 codes (sign<<3 | index), one per element, row-major [rows, cols]. */
  readonly codes: Uint8Array;
  /** e4m3 block scales [rows, cols/16]. */
  readonly blockScales: Uint8Array;
  /** q·sf/G per element: what the FP4 GEMM multiplies the weight with. */
  readonly dequant: Float32Array;
}

/** NVFP4 activation quantization with global scale G (compressed-tensors `input_global_scale`, 2688/amax). */
export const quantizeNvfp4Activations = (
  x: Float32Array,
  rows: number,
  cols: number,
  globalScale: number,
  name = "activations",
): Nvfp4Activations => {
  checkShape(x, rows, cols, name);
  checkScale(globalScale, "input global scale", name);
  if (cols % NVFP4_BLOCK !== 0) {
    throw new FloatQuantInputError({
      message: `${name}: input dim ${cols} is not a multiple of the NVFP4 block (${NVFP4_BLOCK})`,
    });
  }
  const g = f(globalScale);
  const invG = f(1 / g);
  const invMax = f(1 / FP4_E2M1_MAX);
  const nb = cols / NVFP4_BLOCK;
  const codes = new Uint8Array(x.length);
  const blockScales = new Uint8Array(rows * nb);
  const dequant = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const base = r * cols + b * NVFP4_BLOCK;
      let amax = 0;
      for (let k = 0; k < NVFP4_BLOCK; k++) {
        const v = Math.abs(x[base + k]!);
        if (v > amax) amax = v;
      }
      if (!Number.isFinite(amax))
        throw new FloatQuantInputError({ message: `${name}: non-finite activation in row ${r}` });
      const sfByte = e4m3Saturate(f(g * f(amax * invMax)));
      blockScales[r * nb + b] = sfByte;
      const sf = decodeE4m3(sfByte);
      const k = sf !== 0 ? f(1 / f(sf * invG)) : 0;
      const mult = f(sf / g);
      for (let j = 0; j < NVFP4_BLOCK; j++) {
        const code = encodeE2m1(f(x[base + j]! * k));
        codes[base + j] = code;
        dequant[base + j] = f(decodeE2m1(code) * mult);
      }
    }
  }
  return { codes, blockScales, dequant };
};

export const fakeQuantNvfp4 = (
  x: Float32Array,
  rows: number,
  cols: number,
  globalScale: number,
  name = "activations",
): Float32Array => quantizeNvfp4Activations(x, rows, cols, globalScale, name).dequant;
