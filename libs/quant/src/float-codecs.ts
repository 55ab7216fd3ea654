// Rounding to e2m1 as the NVFP4/MXFP4 quantizers do it. The byte-level codecs (e4m3, e8m0,
// bf16, f16, nibble packing) live in @moeq/tensor; this differs from its `e2m1Encode`, which
// breaks ties toward the smaller magnitude (fine for packing values already on the grid): the
// producers round ties to the even mantissa, and give magnitude zero the code +0.
import { bf16BitsToF32, E2M1_VALUES, f32ToBf16Bits } from "@moeq/tensor";

export const FP8_E4M3_MAX = 448;
export const FP4_E2M1_MAX = 6;

export const roundBf16 = (x: number): number => bf16BitsToF32(f32ToBf16Bits(x));

export const decodeE2m1 = (code: number): number => {
  const v = E2M1_VALUES[code & 7]!;
  return code & 8 ? -v : v;
};

/**
 * f32 → e2m1 code, round-to-nearest-even with saturation at ±6. Ties go to the even
 * mantissa (0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4), as both compressed-tensors'
 * `cast_to_fp4` and ModelOpt's `_cast_fp4` do. Magnitude zero is always code 0 (+0).
 */
export const encodeE2m1 = (x: number): number => {
  const a = Math.abs(x);
  let idx: number;
  if (a <= 0.25 || Number.isNaN(a)) idx = 0;
  else if (a < 0.75) idx = 1;
  else if (a <= 1.25) idx = 2;
  else if (a < 1.75) idx = 3;
  else if (a <= 2.5) idx = 4;
  else if (a < 3.5) idx = 5;
  else if (a <= 5) idx = 6;
  else idx = 7;
  return idx === 0 ? 0 : x < 0 ? idx | 8 : idx;
};
