// Decoding of stored weight dtypes to f32, bit-exact with PyTorch's `.to(torch.float32)`:
// bf16 and f16 are exact widenings; f8_e4m3fn (bias 7, no infinities, S.1111.111 = NaN) goes
// through a 256-entry table. Only rows [r0, r1) of a stored [rows, cols] matrix are decoded at a
// time, so a caller never holds an f32 copy of a whole weight.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moeq {

enum class WeightDtype { F32, BF16, F16, F8E4M3 };

inline size_t dtypeBytes(WeightDtype d) {
  switch (d) {
    case WeightDtype::F32: return 4;
    case WeightDtype::BF16:
    case WeightDtype::F16: return 2;
    case WeightDtype::F8E4M3: return 1;
  }
  return 0;
}

inline WeightDtype parseWeightDtype(const std::string& s) {
  if (s == "f32") return WeightDtype::F32;
  if (s == "bf16") return WeightDtype::BF16;
  if (s == "f16") return WeightDtype::F16;
  if (s == "f8_e4m3") return WeightDtype::F8E4M3;
  throw std::invalid_argument("unknown weight dtype '" + s + "' (expected f32, bf16, f16 or f8_e4m3)");
}

inline float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16ToF32(uint16_t h) { return bitsToFloat(static_cast<uint32_t>(h) << 16); }

inline float f16ToF32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f) return bitsToFloat(sign | 0x7f800000u | (man << 13));  // inf / nan (payload kept)
  if (exp != 0) return bitsToFloat(sign | ((exp + 112) << 23) | (man << 13));
  // subnormal (or zero): man · 2^-24, exact in f32
  float v = static_cast<float>(man) * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

struct F8E4M3Table {
  float v[256];
  F8E4M3Table() {
    for (int c = 0; c < 256; c++) {
      int s = c >> 7, e = (c >> 3) & 0xf, m = c & 7;
      float mag;
      if (e == 0xf && m == 7) mag = std::nanf("");
      else if (e == 0) mag = std::ldexp(static_cast<float>(m), -9);  // m/8 · 2^-6
      else mag = std::ldexp(1.0f + m / 8.0f, e - 7);
      v[c] = s ? -mag : mag;
    }
  }
};
inline const float* f8e4m3Table() {
  static const F8E4M3Table t;
  return t.v;
}

inline float decodeOne(const uint8_t* base, size_t idx, WeightDtype d) {
  switch (d) {
    case WeightDtype::F32: {
      float f;
      std::memcpy(&f, base + idx * 4, 4);
      return f;
    }
    case WeightDtype::BF16: {
      uint16_t h;
      std::memcpy(&h, base + idx * 2, 2);
      return bf16ToF32(h);
    }
    case WeightDtype::F16: {
      uint16_t h;
      std::memcpy(&h, base + idx * 2, 2);
      return f16ToF32(h);
    }
    case WeightDtype::F8E4M3: return f8e4m3Table()[base[idx]];
  }
  return 0;
}

// f16 → f32 for one row. The scalar loop is the reference; on x86 with F16C (every CPU since
// 2012, but not in the x86-64-v2 baseline we compile for) eight values go through one vcvtph2ps,
// chosen at run time. Groups holding an inf/NaN take the scalar path so NaN payloads stay exactly
// as the reference (and PyTorch) widen them rather than however the instruction quiets them.
inline void f16RowScalar(const uint8_t* p, int64_t cols, float* out) {
  for (int64_t c = 0; c < cols; c++) {
    uint16_t h;
    std::memcpy(&h, p + c * 2, 2);
    out[c] = f16ToF32(h);
  }
}

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) inline void f16RowF16C(const uint8_t* p, int64_t cols, float* out) {
  const __m128i expMask = _mm_set1_epi16(0x7c00);
  int64_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + c * 2));
    if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(h, expMask), expMask)))
      f16RowScalar(p + c * 2, 8, out + c);
    else
      _mm256_storeu_ps(out + c, _mm256_cvtph_ps(h));
  }
  f16RowScalar(p + c * 2, cols - c, out + c);
}

inline bool cpuHasF16C() {
  static const bool yes = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return yes;
}
#endif

inline void f16Row(const uint8_t* p, int64_t cols, float* out) {
#if defined(__x86_64__)
  if (cpuHasF16C()) return f16RowF16C(p, cols, out);
#endif
  f16RowScalar(p, cols, out);
}

// Decodes stored rows [r0, r1) of a [rows, cols] matrix into dst ([r1-r0, cols], row-major).
// blockScale (optional, the "weight_scale_inv" layout) holds one f32 per 128×128 tile of the
// stored matrix, [ceil(rows/128), ceil(cols/128)]; each value is multiplied by its tile's scale.
inline void decodeRows(const uint8_t* src, WeightDtype d, int64_t cols, int64_t r0, int64_t r1, float* dst,
                       const float* blockScale) {
  const int64_t tilesPerRow = (cols + 127) / 128;
  for (int64_t r = r0; r < r1; r++) {
    float* out = dst + (r - r0) * cols;
    const size_t rowBase = static_cast<size_t>(r) * cols;
    switch (d) {
      case WeightDtype::F32: std::memcpy(out, src + rowBase * 4, cols * 4); break;
      case WeightDtype::BF16: {
        const uint8_t* p = src + rowBase * 2;
        for (int64_t c = 0; c < cols; c++) {
          uint16_t h;
          std::memcpy(&h, p + c * 2, 2);
          out[c] = bf16ToF32(h);
        }
        break;
      }
      case WeightDtype::F16: f16Row(src + rowBase * 2, cols, out); break;
      case WeightDtype::F8E4M3: {
        const float* t = f8e4m3Table();
        const uint8_t* p = src + rowBase;
        for (int64_t c = 0; c < cols; c++) out[c] = t[p[c]];
        break;
      }
    }
    if (blockScale) {
      const float* s = blockScale + (r / 128) * tilesPerRow;
      for (int64_t c = 0; c < cols; c++) out[c] *= s[c / 128];
    }
  }
}

}  // namespace moeq
