// Row-wise top-k of [rows, cols] f32 with a stable tie rule: larger value first; among equal values
// the lower column index first; NaN ranks above every number (as torch.topk does). The optimised
// version keeps a sorted k-buffer (insertion, O(cols·k) worst case but k is tiny for routers);
// the Ref does a full stable sort of (value, index) pairs.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "args.h"
#include "registry.h"

namespace moeq {
namespace {

// true when (va, ia) ranks before (vb, ib)
inline bool before(float va, int32_t ia, float vb, int32_t ib) {
  bool na = std::isnan(va), nb = std::isnan(vb);
  if (na || nb) return na && !nb ? true : (na && nb ? ia < ib : false);
  if (va != vb) return va > vb;
  return ia < ib;
}

template <bool REF>
Napi::Value TopK(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = typedArg<float>(info, 0, "x");
  int64_t rows = intArg(info, 1, "rows"), cols = intArg(info, 2, "cols"), k = intArg(info, 3, "k");
  View<int32_t> idx = typedArg<int32_t>(info, 4, "indices");
  View<float> val = typedArg<float>(info, 5, "values");
  require(env, rows >= 0 && cols >= 0, "topkF32: negative dimension");
  require(env, k >= 0 && k <= cols, "topkF32: k must be in [0, cols]");
  require(env, x.length >= static_cast<size_t>(rows * cols), "topkF32: x is smaller than rows*cols");
  require(env, idx.length >= static_cast<size_t>(rows * k) && val.length >= static_cast<size_t>(rows * k),
          "topkF32: indices/values are smaller than rows*k");
  std::vector<int32_t> order(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; r++) {
    const float* v = x.data + r * cols;
    int32_t* oi = idx.data + r * k;
    float* ov = val.data + r * k;
    if (REF) {
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return before(v[a], a, v[b], b); });
      for (int64_t j = 0; j < k; j++) {
        oi[j] = order[j];
        ov[j] = v[order[j]];
      }
    } else {
      int64_t n = 0;  // filled entries of the sorted buffer
      for (int32_t c = 0; c < cols && k > 0; c++) {
        float fc = v[c];
        if (n == k && !before(fc, c, ov[k - 1], oi[k - 1])) continue;
        int64_t p = n < k ? n++ : k - 1;
        while (p > 0 && before(fc, c, ov[p - 1], oi[p - 1])) {
          ov[p] = ov[p - 1];
          oi[p] = oi[p - 1];
          p--;
        }
        ov[p] = fc;
        oi[p] = c;
      }
    }
  }
  return env.Undefined();
}

void exportTopK(Napi::Env env, Napi::Object e) {
  e.Set("topkF32", Napi::Function::New(env, TopK<false>, "topkF32"));
  e.Set("topkF32Ref", Napi::Function::New(env, TopK<true>, "topkF32Ref"));
}
MOEQ_EXPORTS(exportTopK);

}  // namespace
}  // namespace moeq
