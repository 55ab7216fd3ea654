// Bit-exact scalar codecs for the narrow float types the float schemes store.
// They follow PyTorch's cast semantics (c10/util/Float8_e4m3fn.h, BFloat16.h) because the
// checkpoints we write are read by PyTorch-based engines, and the tests compare them with
// tables PyTorch produced. To be folded into @moeq/tensor once its converters land.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export const f32Bits = (x: number): number => {
  f32[0] = x;
  return u32[0]!;
};

export const f32FromBits = (bits: number): number => {
  u32[0] = bits >>> 0;
  return f32[0]!;
};

export const FP8_E4M3_MAX = 448;
export const FP4_E2M1_MAX = 6;

/** f32 → e4m3fn byte, round-to-nearest-even; |x| ≥ 480, inf and NaN become NaN (0x7f | sign). */
export const encodeE4m3 = (x: number): number => {
  let bits = f32Bits(x);
  const sign = (bits >>> 24) & 0x80;
  bits = (bits & 0x7fffffff) >>> 0;
  let code: number;
  if (bits >= 0x43f00000) {
    code = 0x7f;
  } else if (bits < 121 << 23) {
    // Subnormal range: adding 2^14 makes the FPU do the rounding at the right bit.
    const denorm = 141 << 23;
    code = (f32Bits(Math.fround(f32FromBits(bits) + f32FromBits(denorm))) - denorm) & 0xff;
  } else {
    const mantOdd = (bits >>> 20) & 1;
    bits = (bits + (((7 - 127) << 23) >>> 0) + 0x7ffff + mantOdd) >>> 0;
    code = (bits >>> 20) & 0xff;
  }
  return code | sign;
};

const E4M3_TABLE = (() => {
  const t = new Float32Array(256);
  for (let c = 0; c < 256; c++) {
    const sign = c & 0x80 ? -1 : 1;
    const e = (c >> 3) & 0xf;
    const m = c & 7;
    if (e === 0xf && m === 7) t[c] = Number.NaN;
    else if (e === 0) t[c] = sign * m * 2 ** -9;
    else t[c] = sign * (1 + m / 8) * 2 ** (e - 7);
  }
  return t;
})();

export const decodeE4m3 = (code: number): number => E4M3_TABLE[code & 0xff]!;

/** E8M0 scale byte → 2^(e−127); 0xff is NaN. */
export const decodeE8m0 = (code: number): number => (code === 0xff ? Number.NaN : 2 ** ((code & 0xff) - 127));

/** f32 → bf16 bits, round-to-nearest-even, NaN → 0x7fc0 (PyTorch's round_to_nearest_even). */
export const encodeBf16 = (x: number): number => {
  if (Number.isNaN(x)) return 0x7fc0;
  const bits = f32Bits(x);
  return ((bits + (((bits >>> 16) & 1) + 0x7fff)) >>> 16) & 0xffff;
};

export const decodeBf16 = (bits: number): number => f32FromBits((bits & 0xffff) << 16);

export const roundBf16 = (x: number): number => decodeBf16(encodeBf16(x));

const f16 = new Float16Array(1);
const u16 = new Uint16Array(f16.buffer);

export const encodeF16 = (x: number): number => {
  f16[0] = x;
  return u16[0]!;
};

export const decodeF16 = (bits: number): number => {
  u16[0] = bits;
  return f16[0]!;
};

/** Magnitudes of the e2m1 codes 0..7; code bit 3 is the sign. */
export const E2M1_VALUES: readonly number[] = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

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
