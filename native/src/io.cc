// Read-only file mappings handed to JS as external ArrayBuffers: zero copy, pages fault in lazily
// when a tensor is touched. A mapping is released by the ArrayBuffer's finalizer, or earlier by
// munmapFile, which first detaches the buffer so no JS view can reach unmapped memory.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "args.h"
#include "registry.h"

namespace moeq {
namespace {

struct Mapping {
  void* addr;
  size_t length;
  bool unmapped = false;
};

std::mutex mappingsMutex;
std::unordered_map<void*, Mapping*> mappings;  // addr → live mapping, for munmapFile

std::string errnoText(const std::string& what, const std::string& path, int err) {
  return what + " '" + path + "': " + std::strerror(err);
}

void finalizeMapping(Napi::Env, void*, Mapping* m) {
  {
    std::lock_guard<std::mutex> lock(mappingsMutex);
    if (!m->unmapped) {
      mappings.erase(m->addr);
      munmap(m->addr, m->length);
      m->unmapped = true;
    }
  }
  delete m;
}

Napi::Value MmapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "mmapFile: expected a path string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Napi::Error::New(env, errnoText("mmapFile: cannot open", path, errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw Napi::Error::New(env, errnoText("mmapFile: cannot stat", path, err));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    throw Napi::Error::New(env, "mmapFile: not a regular file '" + path + "'");
  }
  size_t length = static_cast<size_t>(st.st_size);
  if (length == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);  // mmap cannot map zero bytes
  }
  void* addr = mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);  // the mapping keeps its own reference to the file
  if (addr == MAP_FAILED) throw Napi::Error::New(env, errnoText("mmapFile: mmap failed for", path, err));
  auto* m = new Mapping{addr, length};
  {
    std::lock_guard<std::mutex> lock(mappingsMutex);
    mappings[addr] = m;
  }
  return Napi::ArrayBuffer::New(env, addr, length, finalizeMapping, m);
}

// Unmaps now instead of at garbage collection. Returns false when the buffer is not a live mapping.
Napi::Value MunmapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "munmapFile: expected an ArrayBuffer");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  void* addr = ab.Data();
  Mapping* m = nullptr;
  {
    std::lock_guard<std::mutex> lock(mappingsMutex);
    auto it = mappings.find(addr);
    if (it == mappings.end() || it->second->length != ab.ByteLength()) return Napi::Boolean::New(env, false);
    m = it->second;
    mappings.erase(it);
    munmap(m->addr, m->length);  // no JS runs before the Detach below, so no view can read it
    m->unmapped = true;          // the finalizer (maybe run by Detach) then only frees m
  }
  ab.Detach();
  return Napi::Boolean::New(env, true);
}

Napi::Value MappedBytes(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mappingsMutex);
  double total = 0;
  for (auto& kv : mappings) total += static_cast<double>(kv.second->length);
  return Napi::Number::New(info.Env(), total);
}

void exportIo(Napi::Env env, Napi::Object exports) {
  exports.Set("mmapFile", Napi::Function::New(env, MmapFile, "mmapFile"));
  exports.Set("munmapFile", Napi::Function::New(env, MunmapFile, "munmapFile"));
  exports.Set("mappedBytes", Napi::Function::New(env, MappedBytes, "mappedBytes"));
}
MOEQ_EXPORTS(exportIo);

}  // namespace
}  // namespace moeq
