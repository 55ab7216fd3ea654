// MXFP4 (OCP microscaling): e2m1 codes in 32-element blocks along the input dim with one
// E8M0 (power of two) scale per block. Scale selection follows compressed-tensors
// (`generate_mxfp4_scales`): round the block amax to bfloat16, round that to a power of two
// upward only when its mantissa is ≥ 1.75 (so the block max does not saturate far beyond 6),
// then exponent = log2(p) − 2 (2 = emax of e2m1). Bytes are clamped to [0, 254]; 255 is NaN.

import { e8m0ToF32 as decodeE8m0, f32ToBf16Bits as encodeBf16 } from "@moeq/tensor";
import { decodeE2m1, encodeE2m1, FP4_E2M1_MAX, roundBf16 } from "./float-codecs.ts";
import { checkMatrix, FloatQuantInputError } from "./float-errors.ts";

export const MXFP4_BLOCK = 32;

export interface Mxfp4Quantized {
  readonly kind: "mxfp4";
  readonly rows: number;
  readonly cols: number;
  /** One e2m1 code per element, row-major [rows, cols]. */
  readonly codes: Uint8Array;
  /** E8M0 bytes [rows, cols/32]: scale = 2^(byte − 127). */
  readonly scales: Uint8Array;
  readonly dequant: Float32Array;
}

export const mxfp4ScaleByte = (amax: number): number => {
  const bits = encodeBf16(Math.abs(amax));
  // +32 is half of the bf16 mantissa step that separates 1.75 from 2: mantissas ≥ 1.75 carry into the exponent.
  const biasedExp = ((bits + 32) >> 7) & 0xff;
  if (biasedExp === 0) return 0;
  return Math.min(254, Math.max(0, biasedExp - 2));
};

export const quantizeMxfp4 = (
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  opts: { readonly name?: string } = {},
): Mxfp4Quantized => {
  const name = opts.name ?? "mxfp4 weight";
  checkMatrix(w, rows, cols, name);
  if (cols % MXFP4_BLOCK !== 0) {
    throw new FloatQuantInputError({
      message: `${name}: input dim ${cols} is not a multiple of the MXFP4 block (${MXFP4_BLOCK}); leave this module unquantized`,
    });
  }
  const nb = cols / MXFP4_BLOCK;
  const codes = new Uint8Array(rows * cols);
  const scales = new Uint8Array(rows * nb);
  const dequant = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const base = r * cols + b * MXFP4_BLOCK;
      let amax = 0;
      for (let k = 0; k < MXFP4_BLOCK; k++) amax = Math.max(amax, Math.abs(Math.fround(w[base + k]!)));
      const e = mxfp4ScaleByte(amax);
      scales[r * nb + b] = e;
      const s = decodeE8m0(e);
      for (let k = 0; k < MXFP4_BLOCK; k++) {
        let x = Math.fround(Math.fround(w[base + k]!) / s);
        x = roundBf16(Math.min(FP4_E2M1_MAX, Math.max(-FP4_E2M1_MAX, x)));
        const code = encodeE2m1(x);
        codes[base + k] = code;
        dequant[base + k] = Math.fround(decodeE2m1(code) * s);
      }
    }
  }
  return { kind: "mxfp4", rows, cols, codes, scales, dequant };
};

export const dequantizeMxfp4 = (codes: Uint8Array, scales: Uint8Array, rows: number, cols: number): Float32Array => {
  const nb = cols / MXFP4_BLOCK;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const s = decodeE8m0(scales[r * nb + b]!);
      const base = r * cols + b * MXFP4_BLOCK;
      for (let k = 0; k < MXFP4_BLOCK; k++) out[base + k] = Math.fround(decodeE2m1(codes[base + k]!) * s);
    }
  }
  return out;
};
