// Scalar conversions between f32 and the narrow float formats, bit-exact with PyTorch's CPU/CUDA
// casts (c10/util/{BFloat16,Half,Float8_*}.h): round to nearest, ties to even, with each format's
// own overflow rule. Inputs are f32 *bits* so that callers can run them over a Uint32Array view.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export const f32Bits = (x: number): number => {
  f32[0] = x;
  return u32[0];
};
export const bitsF32 = (b: number): number => {
  u32[0] = b >>> 0;
  return f32[0];
};

// Round half to even for a non-negative double that is exactly representable (scaled f32).
const rne = (v: number): number => {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
};

// ---- bfloat16: torch keeps the top 16 bits after RNE; every NaN becomes 0x7FC0.
export const f32BitsToBf16Bits = (u: number): number => {
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((u >>> 0) + 0x7fff + ((u >>> 16) & 1)) >>> 16;
};
export const f32ToBf16Bits = (x: number): number => f32BitsToBf16Bits(f32Bits(x));
export const bf16BitsToF32 = (h: number): number => bitsF32((h & 0xffff) << 16);

// ---- float16 (IEEE binary16): overflow to ±inf, NaN to 0x7E00 with the input's sign.
export const f32BitsToF16Bits = (u: number): number => {
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x477ff000) return sign | 0x7c00; // ≥ 65520 rounds past 65504
  if (a >= 0x38800000) {
    const m = a - 0x38000000; // rebias exponent 127 → 15
    return sign | ((m + 0xfff + ((m >>> 13) & 1)) >>> 13);
  }
  return sign | rne(bitsF32(a) * 2 ** 24); // subnormal grid 2^-24; 1024 lands on the min normal
};
export const f32ToF16Bits = (x: number): number => f32BitsToF16Bits(f32Bits(x));

const F16_DECODE = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? Number.NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();
export const f16BitsToF32 = (h: number): number => F16_DECODE[h & 0xffff];
export const f16DecodeTable = (): Float32Array => F16_DECODE;

// ---- float8: e4m3fn (no inf; 0x7F/0xFF are NaN; anything rounding past 448 becomes NaN, as torch
// does — it does not saturate) and e5m2 (IEEE-like; overflow → inf).
interface Fp8Spec {
  mbits: number;
  bias: number;
  maxCode: number; // largest finite magnitude code
  overflow: number; // magnitude code for values rounding past max (and ±inf)
  nan: number;
}
const E4M3: Fp8Spec = { mbits: 3, bias: 7, maxCode: 0x7e, overflow: 0x7f, nan: 0x7f };
const E5M2: Fp8Spec = { mbits: 2, bias: 15, maxCode: 0x7b, overflow: 0x7c, nan: 0x7f };

const fp8FromBits = (u: number, s: Fp8Spec): number => {
  const sign = (u >>> 24) & 0x80;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | s.nan;
  if (a === 0x7f800000) return sign | s.overflow;
  const minNormal = (127 + 1 - s.bias) << 23;
  let code: number;
  if (a >= minNormal) {
    const shift = 23 - s.mbits;
    const m = a - ((127 - s.bias) << 23);
    code = Math.floor((m + (2 ** (shift - 1) - 1) + (Math.floor(m / 2 ** shift) & 1)) / 2 ** shift);
  } else {
    code = rne(bitsF32(a) * 2 ** (s.bias - 1 + s.mbits));
  }
  return sign | (code > s.maxCode ? s.overflow : code);
};

const fp8Decode = (c: number, s: Fp8Spec, hasInf: boolean): number => {
  const sign = c & 0x80 ? -1 : 1;
  const ebits = 7 - s.mbits;
  const e = (c >>> s.mbits) & ((1 << ebits) - 1);
  const m = c & ((1 << s.mbits) - 1);
  const emax = (1 << ebits) - 1;
  if (hasInf && e === emax) return m === 0 ? sign * Infinity : Number.NaN;
  if (!hasInf && (c & 0x7f) === 0x7f) return Number.NaN;
  if (e === 0) return sign * m * 2 ** (1 - s.bias - s.mbits);
  return sign * (1 + m / 2 ** s.mbits) * 2 ** (e - s.bias);
};

const E4M3_DECODE = Float32Array.from({ length: 256 }, (_, c) => fp8Decode(c, E4M3, false));
const E5M2_DECODE = Float32Array.from({ length: 256 }, (_, c) => fp8Decode(c, E5M2, true));

export const f32BitsToE4m3 = (u: number): number => fp8FromBits(u, E4M3);
export const f32BitsToE5m2 = (u: number): number => fp8FromBits(u, E5M2);
export const f32ToE4m3 = (x: number): number => fp8FromBits(f32Bits(x), E4M3);
export const f32ToE5m2 = (x: number): number => fp8FromBits(f32Bits(x), E5M2);
export const e4m3ToF32 = (c: number): number => E4M3_DECODE[c & 0xff];
export const e5m2ToF32 = (c: number): number => E5M2_DECODE[c & 0xff];
export const e4m3DecodeTable = (): Float32Array => E4M3_DECODE;
export const e5m2DecodeTable = (): Float32Array => E5M2_DECODE;

// ---- float8_e8m0fnu: an unsigned power of two 2^(c−127); 0xFF is NaN. What torch 2.11 does (the
// table in test/data pins it): it rounds on the f32 mantissa, not in the log domain — m ≥ 1.5
// rounds up, so 1.5·2^e → 2^(e+1) (ties away from zero, not to even); zero and tiny inputs give
// code 0 (= 2^-127, there is no zero); a finite input that rounds past 2^127 gives 0xFF (NaN, no
// saturation); inf and NaN give 0xFF. The sign bit is ignored (callers pass magnitudes).
export const f32BitsToE8m0 = (u: number): number => {
  let e = (u >>> 23) & 0xff;
  if (e === 0xff) return 0xff;
  // torch's guard/round/sticky test treats the f32 hidden bit as the "lsb": normal inputs round
  // half up, subnormal ones (hidden bit 0) round half down.
  if ((u >>> 22) & 1 && ((u & 0x3fffff) !== 0 || e !== 0)) e += 1;
  return e;
};
export const f32ToE8m0 = (x: number): number => f32BitsToE8m0(f32Bits(x));
export const e8m0ToF32 = (c: number): number => ((c & 0xff) === 0xff ? Number.NaN : 2 ** ((c & 0xff) - 127));
