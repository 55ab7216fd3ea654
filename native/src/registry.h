// Each kernel file adds its exports with MOEQ_EXPORTS(fn); addon.cc calls them all at load.
// This keeps kernel files independent: adding one touches no shared file.
#pragma once
#include <napi.h>
#include <vector>

namespace moeq {
using ExportFn = void (*)(Napi::Env, Napi::Object);
std::vector<ExportFn>& exportRegistry();
struct Registrar {
  explicit Registrar(ExportFn fn) { exportRegistry().push_back(fn); }
};
}  // namespace moeq

#define MOEQ_CONCAT_(a, b) a##b
#define MOEQ_CONCAT(a, b) MOEQ_CONCAT_(a, b)
#define MOEQ_EXPORTS(fn) static ::moeq::Registrar MOEQ_CONCAT(moeq_registrar_, __LINE__)(fn)
