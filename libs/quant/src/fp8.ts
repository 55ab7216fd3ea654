// FP8 (e4m3fn) weight quantization per tensor, per output channel, or in 2-D blocks.
// Scale = amax / 448 in f32, codes = e4m3(clamp(w / scale, ±448)), dequant = e4m3 · scale,
// which is what compressed-tensors, ModelOpt and DeepSeek-V3's `weight_scale_inv` all store.

import { e4m3ToF32 as decodeE4m3, f32ToE4m3 as encodeE4m3 } from "@moeq/tensor";
import { FP8_E4M3_MAX } from "./float-codecs.ts";
import { checkMatrix, FloatQuantInputError } from "./float-errors.ts";

export type Fp8Strategy = "tensor" | "channel" | "block";

export interface Fp8Options {
  readonly strategy: Fp8Strategy;
  /** [rows, cols] of one block; default [128, 128]. Edge blocks may be partial. */
  readonly block?: readonly [number, number];
  /** Used in error messages. */
  readonly name?: string;
}

export interface Fp8Quantized {
  readonly kind: "fp8";
  readonly strategy: Fp8Strategy;
  readonly block: readonly [number, number] | null;
  readonly rows: number;
  readonly cols: number;
  /** e4m3fn bytes, row-major [rows, cols]. */
  readonly codes: Uint8Array;
  /** f32 multipliers: tensor [1, 1], channel [rows, 1], block [ceil(rows/br), ceil(cols/bc)]. */
  readonly scales: Float32Array;
  readonly scaleShape: readonly [number, number];
  readonly dequant: Float32Array;
}

// compressed-tensors replaces a zero scale by the scale dtype's eps so that w / scale stays finite.
const ZERO_SCALE = 2 ** -23;

export const fp8ScaleFromAmax = (amax: number): number => {
  const s = Math.fround(Math.fround(amax) / FP8_E4M3_MAX);
  return s === 0 ? ZERO_SCALE : s;
};

/** The tile of the weight each scale covers: [rowsPerScale, colsPerScale]. */
export const fp8ScaleTile = (
  strategy: Fp8Strategy,
  rows: number,
  cols: number,
  block: readonly [number, number] | null,
): readonly [number, number] => {
  if (strategy === "tensor") return [rows, cols];
  if (strategy === "channel") return [1, cols];
  return block ?? [128, 128];
};

export const quantizeFp8 = (w: ArrayLike<number>, rows: number, cols: number, opts: Fp8Options): Fp8Quantized => {
  const name = opts.name ?? "fp8 weight";
  checkMatrix(w, rows, cols, name);
  const block = opts.strategy === "block" ? (opts.block ?? ([128, 128] as const)) : null;
  if (block && !(Number.isInteger(block[0]) && Number.isInteger(block[1]) && block[0] > 0 && block[1] > 0)) {
    throw new FloatQuantInputError({ message: `${name}: block size [${block}] must be positive integers` });
  }
  const [tr, tc] = fp8ScaleTile(opts.strategy, rows, cols, block);
  const sr = Math.ceil(rows / tr);
  const sc = Math.ceil(cols / tc);
  const scales = new Float32Array(sr * sc);
  const codes = new Uint8Array(rows * cols);
  const dequant = new Float32Array(rows * cols);
  for (let bi = 0; bi < sr; bi++) {
    const r0 = bi * tr;
    const r1 = Math.min(rows, r0 + tr);
    for (let bj = 0; bj < sc; bj++) {
      const c0 = bj * tc;
      const c1 = Math.min(cols, c0 + tc);
      let amax = 0;
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) amax = Math.max(amax, Math.abs(Math.fround(w[r * cols + c]!)));
      }
      const s = fp8ScaleFromAmax(amax);
      scales[bi * sc + bj] = s;
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          const i = r * cols + c;
          const x = Math.fround(Math.fround(w[i]!) / s);
          const code = encodeE4m3(Math.min(FP8_E4M3_MAX, Math.max(-FP8_E4M3_MAX, x)));
          codes[i] = code;
          dequant[i] = Math.fround(decodeE4m3(code) * s);
        }
      }
    }
  }
  return { kind: "fp8", strategy: opts.strategy, block, rows, cols, codes, scales, scaleShape: [sr, sc], dequant };
};

/** codes · scale per tile; the single dequantization formula shared by the quantizer and every FP8 reader. */
export const dequantizeFp8 = (
  codes: Uint8Array,
  scales: ArrayLike<number>,
  rows: number,
  cols: number,
  tile: readonly [number, number],
): Float32Array => {
  const [tr, tc] = tile;
  const sc = Math.ceil(cols / tc);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const srow = Math.floor(r / tr) * sc;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      out[i] = Math.fround(decodeE4m3(codes[i]!) * scales[srow + Math.floor(c / tc)]!);
    }
  }
  return out;
};
