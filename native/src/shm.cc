// POSIX shared-memory segments and read-only file ranges exposed as external ArrayBuffers.
// Consumers map with MAP_PRIVATE + PROT_WRITE over a read-only descriptor: a stray write from
// JavaScript then lands in a private copy-on-write page instead of killing the process with
// SIGSEGV, and it never reaches the producer's segment or the model file.
// Mappings are released by the ArrayBuffer's finalizer (GC); segment lifetime (shm_unlink) is
// the store's lease protocol, not the mapping's.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "args.h"
#include "registry.h"

namespace moeq {
namespace {

std::string errnoText(const std::string& what, int err) { return what + ": " + strerror(err); }

// Names are plain (no slash, no dot-dot) so a message cannot reach outside /dev/shm.
std::string shmName(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), "shm: name must be a string");
  std::string n = info[i].As<Napi::String>().Utf8Value();
  bool ok = !n.empty() && n.size() <= 200 && n != "." && n != "..";
  for (char c : n) ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.');
  if (!ok) throw Napi::TypeError::New(info.Env(), "shm: invalid segment name '" + n + "'");
  return "/" + n;
}

struct Mapping {
  void* base;
  size_t length;
};

void unmapFinalizer(Napi::Env, void*, Mapping* m) {
  munmap(m->base, m->length);
  delete m;
}

// An ArrayBuffer over [base + skip, base + skip + bytes) that unmaps [base, base + length) at GC.
Napi::ArrayBuffer external(Napi::Env env, void* base, size_t length, size_t skip, size_t bytes) {
  auto* m = new Mapping{base, length};
  return Napi::ArrayBuffer::New(env, static_cast<uint8_t*>(base) + skip, bytes, unmapFinalizer, m);
}

Napi::Value ShmCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = shmName(info, 0);
  int64_t bytes = intArg(info, 1, "bytes");
  require(env, bytes >= 0, "shmCreate: negative size");
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) throw Napi::Error::New(env, errnoText("shmCreate " + name, errno));
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    int err = errno;
    close(fd);
    shm_unlink(name.c_str());
    throw Napi::Error::New(env, errnoText("shmCreate " + name + " ftruncate", err));
  }
  if (bytes == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  void* p = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(name.c_str());
    throw Napi::Error::New(env, errnoText("shmCreate " + name + " mmap", err));
  }
  return external(env, p, static_cast<size_t>(bytes), 0, static_cast<size_t>(bytes));
}

// Creates a segment without mapping it here (the caller maps it into its region).
Napi::Value ShmCreateUnmapped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = shmName(info, 0);
  int64_t bytes = intArg(info, 1, "bytes");
  require(env, bytes >= 0, "shmCreateUnmapped: negative size");
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) throw Napi::Error::New(env, errnoText("shmCreate " + name, errno));
  int rc = ftruncate(fd, static_cast<off_t>(bytes));
  int err = errno;
  close(fd);
  if (rc != 0) {
    shm_unlink(name.c_str());
    throw Napi::Error::New(env, errnoText("shmCreate " + name + " ftruncate", err));
  }
  return env.Undefined();
}

// Maps the whole segment; writable=true maps it shared (producers filling it), otherwise the
// copy-on-write view described above.
Napi::Value ShmOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = shmName(info, 0);
  bool writable = boolArg(info, 1, false);
  int fd = shm_open(name.c_str(), writable ? O_RDWR : O_RDONLY, 0);
  if (fd < 0) throw Napi::Error::New(env, errnoText("shmOpen " + name, errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw Napi::Error::New(env, errnoText("shmOpen " + name + " fstat", err));
  }
  size_t bytes = static_cast<size_t>(st.st_size);
  if (bytes == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, writable ? MAP_SHARED : MAP_PRIVATE, fd, 0);
  int err = errno;
  close(fd);
  if (p == MAP_FAILED) throw Napi::Error::New(env, errnoText("shmOpen " + name + " mmap", err));
  return external(env, p, bytes, 0, bytes);
}

Napi::Value ShmUnlink(const Napi::CallbackInfo& info) {
  std::string name = shmName(info, 0);
  if (shm_unlink(name.c_str()) == 0) return Napi::Boolean::New(info.Env(), true);
  if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
  throw Napi::Error::New(info.Env(), errnoText("shmUnlink " + name, errno));
}

// Read-only (copy-on-write) view of bytes [offset, offset + bytes) of a regular file.
Napi::Value MapFileRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "mapFileRange: path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int64_t offset = intArg(info, 1, "offset");
  int64_t bytes = intArg(info, 2, "bytes");
  require(env, offset >= 0 && bytes >= 0, "mapFileRange " + path + ": negative offset or length");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Napi::Error::New(env, errnoText("mapFileRange " + path, errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    throw Napi::Error::New(env, "mapFileRange " + path + ": not a regular file");
  }
  if (offset + bytes > st.st_size) {
    close(fd);
    throw Napi::RangeError::New(env, "mapFileRange " + path + ": range [" + std::to_string(offset) + ", " +
                                         std::to_string(offset + bytes) + ") is past the end of the file (" +
                                         std::to_string(st.st_size) + " bytes)");
  }
  if (bytes == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  int64_t page = sysconf(_SC_PAGESIZE);
  int64_t aligned = offset - offset % page;
  size_t skip = static_cast<size_t>(offset - aligned);
  size_t length = skip + static_cast<size_t>(bytes);
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, static_cast<off_t>(aligned));
  int err = errno;
  close(fd);
  if (p == MAP_FAILED) throw Napi::Error::New(env, errnoText("mapFileRange " + path + " mmap", err));
  return external(env, p, length, skip, static_cast<size_t>(bytes));
}

// ---- The mapping region ------------------------------------------------------------------
// Every new external ArrayBuffer adds its length to V8's external-memory count, and a large one
// (a 256 MB tensor) makes V8 run a full mark-compact GC right away: milliseconds per open. So a
// process maps segments into one big reserved region instead, exposed once as a single
// ArrayBuffer: opening a segment is an mmap(MAP_FIXED) into a slot plus a Uint8Array view, with
// no new backing store. Unused and released slots are anonymous zero pages (MAP_NORESERVE), so a
// stray access through `view.buffer` reads zeros instead of faulting.
uint8_t* gRegion = nullptr;
size_t gRegionBytes = 0;
Napi::Reference<Napi::ArrayBuffer>* gRegionRef = nullptr;
napi_env gRegionEnv = nullptr;

bool zeroFill(uint8_t* at, size_t bytes) {
  return mmap(at, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) != MAP_FAILED;
}

Napi::Value ShmRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (gRegionRef) {
    if (gRegionEnv != static_cast<napi_env>(env)) throw Napi::Error::New(env, "shmRegion: the region belongs to another thread");
    return gRegionRef->Value();
  }
  int64_t bytes = intArg(info, 0, "bytes");
  int64_t page = sysconf(_SC_PAGESIZE);
  require(env, bytes > 0 && bytes % page == 0, "shmRegion: size must be a positive multiple of the page size");
  void* p = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw Napi::Error::New(env, errnoText("shmRegion: reserve " + std::to_string(bytes) + " bytes", errno));
  gRegion = static_cast<uint8_t*>(p);
  gRegionBytes = static_cast<size_t>(bytes);
  gRegionEnv = env;
  // Lives for the process: the reference keeps it from ever being collected.
  auto buf = Napi::ArrayBuffer::New(env, p, gRegionBytes);
  gRegionRef = new Napi::Reference<Napi::ArrayBuffer>(Napi::Persistent(buf));
  return buf;
}

void checkSlot(Napi::Env env, int64_t at, int64_t bytes, const std::string& what) {
  int64_t page = sysconf(_SC_PAGESIZE);
  require(env, gRegion != nullptr, what + ": call shmRegion first");
  require(env, at >= 0 && at % page == 0, what + ": slot offset must be page aligned");
  require(env, bytes >= 0 && static_cast<uint64_t>(at) + static_cast<uint64_t>(bytes) <= gRegionBytes, what + ": slot past the end of the region");
}

// shmMapAt(name, at, writable, maxBytes) → the segment's size; maps its first min(size, maxBytes)
// bytes at region offset `at`.
Napi::Value ShmMapAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = shmName(info, 0);
  int64_t at = intArg(info, 1, "at");
  bool writable = boolArg(info, 2, false);
  int64_t maxBytes = intArg(info, 3, "maxBytes");
  int fd = shm_open(name.c_str(), writable ? O_RDWR : O_RDONLY, 0);
  if (fd < 0) throw Napi::Error::New(env, errnoText("shmMapAt " + name, errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw Napi::Error::New(env, errnoText("shmMapAt " + name + " fstat", err));
  }
  int64_t size = st.st_size;
  int64_t bytes = size < maxBytes ? size : maxBytes;
  if (maxBytes < 0) {
    close(fd);
    throw Napi::RangeError::New(env, "shmMapAt " + name + ": negative maxBytes");
  }
  checkSlot(env, at, bytes, "shmMapAt " + name);
  if (bytes > 0) {
    void* p = mmap(gRegion + at, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, (writable ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) throw Napi::Error::New(env, errnoText("shmMapAt " + name + " mmap", err));
  } else {
    close(fd);
  }
  return Napi::Number::New(env, static_cast<double>(size));
}

// shmUnmapAt(at, bytes): the slot goes back to zero pages (views over it then read zeros).
Napi::Value ShmUnmapAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t at = intArg(info, 0, "at");
  int64_t bytes = intArg(info, 1, "bytes");
  checkSlot(env, at, bytes, "shmUnmapAt");
  int64_t page = sysconf(_SC_PAGESIZE);
  size_t len = static_cast<size_t>((bytes + page - 1) / page * page);
  if (len > 0 && !zeroFill(gRegion + at, len)) throw Napi::Error::New(env, errnoText("shmUnmapAt", errno));
  return env.Undefined();
}

void exportShm(Napi::Env env, Napi::Object exports) {
  exports.Set("shmRegion", Napi::Function::New(env, ShmRegion, "shmRegion"));
  exports.Set("shmMapAt", Napi::Function::New(env, ShmMapAt, "shmMapAt"));
  exports.Set("shmUnmapAt", Napi::Function::New(env, ShmUnmapAt, "shmUnmapAt"));
  exports.Set("shmCreate", Napi::Function::New(env, ShmCreate, "shmCreate"));
  exports.Set("shmCreateUnmapped", Napi::Function::New(env, ShmCreateUnmapped, "shmCreateUnmapped"));
  exports.Set("shmOpen", Napi::Function::New(env, ShmOpen, "shmOpen"));
  exports.Set("shmUnlink", Napi::Function::New(env, ShmUnlink, "shmUnlink"));
  exports.Set("mapFileRange", Napi::Function::New(env, MapFileRange, "mapFileRange"));
}
MOEQ_EXPORTS(exportShm);

}  // namespace
}  // namespace moeq
