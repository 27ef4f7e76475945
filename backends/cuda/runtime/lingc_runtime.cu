// The lingc CUDA runtime (see lingc_runtime.h). Sections: errors; a small JSON reader (safetensors
// headers and index files); safetensors files; the Runtime (device, cuBLASLt, weights, graphs);
// the hand-written kernels behind Ctx's routines (expert GEMV, split-K decode attention, softmax);
// generate and bench; the command line.
#include "lingc_runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lingc {

// ---------------------------------------------------------------------------------------------
// Errors: one line on stderr and a non-zero exit.

[[noreturn]] static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "lingc_model: error: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::exit(1);
}

#define CK(call)                                                                                   \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) lingc::fail("%s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
  } while (0)

#define CKB(call)                                                                                  \
  do {                                                                                             \
    cublasStatus_t s_ = (call);                                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS) lingc::fail("%s failed with cuBLAS status %d", #call, (int)s_); \
  } while (0)

size_t dtype_bytes(int dt) { return dt == DT_BF16 ? 2 : 4; }

static const char* dtype_name(int dt) { return dt == DT_BF16 ? "bf16" : dt == DT_I32 ? "i32" : "f32"; }

// ---------------------------------------------------------------------------------------------
// JSON (enough for safetensors headers and index files).

struct Json {
  enum Kind { NUL, BOOL, NUM, STR, ARR, OBJ } kind = NUL;
  double num = 0;
  bool b = false;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;
  const Json* get(const std::string& k) const {
    for (auto& kv : obj)
      if (kv.first == k) return &kv.second;
    return nullptr;
  }
};

struct JsonReader {
  const char* p;
  const char* end;
  const char* what;
  [[noreturn]] void bad(const char* msg) { fail("%s: bad JSON (%s at byte %ld)", what, msg, (long)(p - (end - 0))); }
  void ws() {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  }
  Json value() {
    ws();
    if (p >= end) bad("unexpected end");
    Json j;
    if (*p == '{') {
      j.kind = Json::OBJ;
      ++p;
      ws();
      if (p < end && *p == '}') { ++p; return j; }
      for (;;) {
        ws();
        Json k = value();
        if (k.kind != Json::STR) bad("object key is not a string");
        ws();
        if (p >= end || *p != ':') bad("expected ':'");
        ++p;
        j.obj.emplace_back(k.str, value());
        ws();
        if (p < end && *p == ',') { ++p; continue; }
        if (p < end && *p == '}') { ++p; return j; }
        bad("expected ',' or '}'");
      }
    }
    if (*p == '[') {
      j.kind = Json::ARR;
      ++p;
      ws();
      if (p < end && *p == ']') { ++p; return j; }
      for (;;) {
        j.arr.push_back(value());
        ws();
        if (p < end && *p == ',') { ++p; continue; }
        if (p < end && *p == ']') { ++p; return j; }
        bad("expected ',' or ']'");
      }
    }
    if (*p == '"') {
      j.kind = Json::STR;
      ++p;
      while (p < end && *p != '"') {
        if (*p == '\\' && p + 1 < end) {
          ++p;
          char c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
          j.str.push_back(c);
          ++p;
        } else {
          j.str.push_back(*p++);
        }
      }
      if (p >= end) bad("unterminated string");
      ++p;
      return j;
    }
    if (!std::strncmp(p, "true", 4)) { p += 4; j.kind = Json::BOOL; j.b = true; return j; }
    if (!std::strncmp(p, "false", 5)) { p += 5; j.kind = Json::BOOL; return j; }
    if (!std::strncmp(p, "null", 4)) { p += 4; return j; }
    char* e = nullptr;
    j.num = std::strtod(p, &e);
    if (e == p) bad("unexpected character");
    j.kind = Json::NUM;
    p = e;
    return j;
  }
};

static Json parse_json(const std::string& text, const char* what) {
  JsonReader r{text.data(), text.data() + text.size(), what};
  return r.value();
}

static std::string read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("cannot open %s", path.c_str());
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

static bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// ---------------------------------------------------------------------------------------------
// safetensors

struct StEntry {
  std::string dtype;
  std::vector<long> shape;
  long begin = 0, end = 0;  // absolute file offsets
};

struct StFile {
  std::string path;
  int fd = -1;
  std::map<std::string, StEntry> entries;

  void open(const std::string& p) {
    path = p;
    fd = ::open(p.c_str(), O_RDONLY);
    if (fd < 0) fail("cannot open %s", p.c_str());
    struct stat st;
    fstat(fd, &st);
    const long size = (long)st.st_size;
    if (size < 8) fail("%s: too short for a safetensors header", p.c_str());
    uint64_t n = 0;
    if (pread(fd, &n, 8, 0) != 8) fail("%s: cannot read the header length", p.c_str());
    if (n > 100u * 1024 * 1024) fail("%s: header length %llu is absurd", p.c_str(), (unsigned long long)n);
    if ((long)(8 + n) > size) fail("%s: header length %llu runs past the end of the %ld-byte file", p.c_str(), (unsigned long long)n, size);
    std::string h(n, '\0');
    if (pread(fd, &h[0], n, 8) != (ssize_t)n) fail("%s: cannot read the header", p.c_str());
    Json j = parse_json(h, p.c_str());
    if (j.kind != Json::OBJ) fail("%s: the header is not a JSON object", p.c_str());
    const long data = 8 + (long)n;
    for (auto& kv : j.obj) {
      if (kv.first == "__metadata__") continue;
      const Json* dt = kv.second.get("dtype");
      const Json* sh = kv.second.get("shape");
      const Json* off = kv.second.get("data_offsets");
      if (!dt || dt->kind != Json::STR || !sh || sh->kind != Json::ARR || !off || off->kind != Json::ARR || off->arr.size() != 2)
        fail("%s: tensor \"%s\" has a malformed entry", p.c_str(), kv.first.c_str());
      StEntry e;
      e.dtype = dt->str;
      for (auto& d : sh->arr) e.shape.push_back((long)d.num);
      e.begin = data + (long)off->arr[0].num;
      e.end = data + (long)off->arr[1].num;
      if (e.end < e.begin || e.end > size) fail("%s: tensor \"%s\" runs past the end of the file (truncated?)", p.c_str(), kv.first.c_str());
      entries[kv.first] = e;
    }
  }

  void read(const StEntry& e, void* dst) const {
    long done = 0;
    const long n = e.end - e.begin;
    while (done < n) {
      ssize_t got = pread(fd, (char*)dst + done, n - done, e.begin + done);
      if (got <= 0) fail("%s: read failed", path.c_str());
      done += got;
    }
  }
};

static void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, std::pair<std::string, std::pair<std::vector<long>, std::string>>>>& tensors) {
  // tensors: name -> (dtype, (shape, bytes))
  std::string header = "{";
  long off = 0;
  bool first = true;
  for (auto& t : tensors) {
    char buf[256];
    header += first ? "" : ",";
    first = false;
    header += "\"" + t.first + "\":{\"dtype\":\"" + t.second.first + "\",\"shape\":[";
    for (size_t i = 0; i < t.second.second.first.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%s%ld", i ? "," : "", t.second.second.first[i]);
      header += buf;
    }
    const long n = (long)t.second.second.second.size();
    std::snprintf(buf, sizeof buf, "],\"data_offsets\":[%ld,%ld]}", off, off + n);
    header += buf;
    off += n;
  }
  header += "}";
  while ((header.size() + 8) % 8) header += " ";
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write %s", path.c_str());
  uint64_t n = header.size();
  std::fwrite(&n, 8, 1, f);
  std::fwrite(header.data(), 1, header.size(), f);
  for (auto& t : tensors) std::fwrite(t.second.second.second.data(), 1, t.second.second.second.size(), f);
  if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot write %s", path.c_str());
}

struct Checkpoint {
  std::string dir;
  std::vector<StFile> files;
  std::map<std::string, int> where;

  void open(const std::string& d) {
    dir = d;
    std::vector<std::string> names;
    if (exists(d + "/model.safetensors.index.json")) {
      Json idx = parse_json(read_file(d + "/model.safetensors.index.json"), "model.safetensors.index.json");
      const Json* wm = idx.get("weight_map");
      if (!wm || wm->kind != Json::OBJ) fail("%s/model.safetensors.index.json: no weight_map", d.c_str());
      for (auto& kv : wm->obj)
        if (std::find(names.begin(), names.end(), kv.second.str) == names.end()) names.push_back(kv.second.str);
    } else if (exists(d + "/model.safetensors")) {
      names.push_back("model.safetensors");
    } else {
      fail("%s: no weights found (model.safetensors or model.safetensors.index.json)", d.c_str());
    }
    files.resize(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      files[i].open(d + "/" + names[i]);
      for (auto& kv : files[i].entries) where[kv.first] = (int)i;
    }
  }

  const StEntry* entry(const std::string& name, const StFile** file) const {
    auto it = where.find(name);
    if (it == where.end()) return nullptr;
    *file = &files[it->second];
    return &files[it->second].entries.at(name);
  }
};

// ---------------------------------------------------------------------------------------------
// Kernels behind the routines.

template <typename T> __device__ __forceinline__ float ld(const T* p, long i);
template <> __device__ __forceinline__ float ld<float>(const float* p, long i) { return p[i]; }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16* p, long i) { return __bfloat162float(p[i]); }
template <typename T> __device__ __forceinline__ void st(T* p, long i, float v);
template <> __device__ __forceinline__ void st<float>(float* p, long i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void st<__nv_bfloat16>(__nv_bfloat16* p, long i, float v) { p[i] = __float2bfloat16_rn(v); }
/** Rounds to the storage type's precision (what HF's bf16 tensors hold after each op). */
template <typename T> __device__ __forceinline__ float rnd(float v);
template <> __device__ __forceinline__ float rnd<float>(float v) { return v; }
template <> __device__ __forceinline__ float rnd<__nv_bfloat16>(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/** First thing in a kernel launched by launch_pdl: see lingc_runtime.h. */
__device__ __forceinline__ void pdl_enter() {
  asm volatile("griddepcontrol.launch_dependents;");
  asm volatile("griddepcontrol.wait;" ::: "memory");
}

__device__ __forceinline__ long linear_block() { return (long)blockIdx.x + (long)blockIdx.y * gridDim.x; }

/** Eight consecutive elements as floats (one 16-byte load for bf16, two for f32). */
__device__ __forceinline__ void load8(const __nv_bfloat16* p, long i, float* o) {
  const uint4 v = *reinterpret_cast<const uint4*>(p + i);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 f = __bfloat1622float2(h[j]);
    o[2 * j] = f.x;
    o[2 * j + 1] = f.y;
  }
}
__device__ __forceinline__ void load8(const float* p, long i, float* o) {
  const float4 a = *reinterpret_cast<const float4*>(p + i), b = *reinterpret_cast<const float4*>(p + i + 4);
  o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}

/** The expert that row r belongs to: the largest e with offsets[e] <= r. */
__device__ __forceinline__ int expert_of(const int* offsets, int E, int r) {
  int lo = 0, hi = E;
  while (lo + 1 < hi) {
    const int mid = (lo + hi) >> 1;
    if (offsets[mid] <= r) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Expert GEMV for the few rows experts get while decoding. Each warp owns one output column o and
 * reads that column's weight row once per group of up to four rows (VEC: eight elements per lane per
 * load, so a warp moves 512 contiguous bytes of bf16 at a time). Two grids: BY_ROW (block per (o-tile,
 * row), for a handful of rows) or by expert (block per (o-tile, expert), blocks of idle experts exit).
 * With SWIGLU, gate and up are read together and the result is silu(g) * u, rounded as HF rounds.
 */
template <typename T, bool SWIGLU, bool VEC, bool BY_ROW>
__global__ void __launch_bounds__(256) expert_gemv(const T* __restrict__ x, const int* __restrict__ order, int k, const T* __restrict__ wg, const T* __restrict__ wu,
                                                   const int* __restrict__ offsets, T* __restrict__ out, int E, long O, long I) {
  pdl_enter();
  int e, lo, hi;
  if (BY_ROW) {
    lo = blockIdx.y;
    hi = lo + 1;
    e = expert_of(offsets, E, lo);
  } else {
    e = blockIdx.y;
    lo = offsets[e];
    hi = offsets[e + 1];
    if (lo >= hi) return;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const long o = (long)blockIdx.x * 8 + warp;
  if (o >= O) return;
  const T* rg = wg + ((long)e * O + o) * I;
  const T* ru = SWIGLU ? wu + ((long)e * O + o) * I : nullptr;
  for (int r0 = lo; r0 < hi; r0 += 4) {
    const int nr = min(4, hi - r0);
    long xr[4];
    for (int j = 0; j < 4; ++j) xr[j] = j < nr ? (long)(order ? order[r0 + j] / k : r0 + j) * I : 0;
    float ag[4] = {0, 0, 0, 0}, au[4] = {0, 0, 0, 0};
    if (VEC) {
#pragma unroll 4
      for (long c = lane * 8; c < I; c += 256) {
        float g[8], u[8], xv[8];
        load8(rg, c, g);
        if (SWIGLU) load8(ru, c, u);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j < nr) {
            load8(x, xr[j] + c, xv);
#pragma unroll
            for (int t = 0; t < 8; ++t) {
              ag[j] += g[t] * xv[t];
              if (SWIGLU) au[j] += u[t] * xv[t];
            }
          }
        }
      }
    } else {
      for (long c = lane; c < I; c += 32) {
        const float g = ld(rg, c);
        const float u = SWIGLU ? ld(ru, c) : 0.f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j < nr) {
            const float xv = ld(x, xr[j] + c);
            ag[j] += g * xv;
            if (SWIGLU) au[j] += u * xv;
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float g = rnd<T>(warp_sum(ag[j]));
      const float u = SWIGLU ? rnd<T>(warp_sum(au[j])) : 0.f;
      if (lane == 0 && j < nr) {
        const float y = SWIGLU ? rnd<T>(rnd<T>(g / (1.f + __expf(-g))) * u) : g;
        st(out, (long)(r0 + j) * O + o, y);
      }
    }
  }
}

/** Row r's source row in x: order[r] / k with the token gather, else r. */
__device__ __forceinline__ long source_row(const int* order, int k, long r) { return order ? order[r] / k : r; }

/**
 * Rows into a [E, cap, H] buffer, each expert's first cap rows at its slot (for one strided-batched
 * GEMM over experts); a block per row. Rows past cap (an expert above the capacity) are left out.
 */
template <typename T>
__global__ void pad_rows(const T* __restrict__ x, const int* __restrict__ order, int k, const int* __restrict__ offsets, int E, T* __restrict__ out, long rows, long H, long cap) {
  const long r = linear_block();
  if (r >= rows) return;
  const int e = expert_of(offsets, E, (int)r);
  const long slot = r - offsets[e];
  if (slot >= cap) return;
  const T* src = x + source_row(order, k, r) * H;
  T* dst = out + ((long)e * cap + slot) * H;
  for (long c = threadIdx.x; c < H; c += blockDim.x) dst[c] = src[c];
}

/** The inverse of pad_rows for the results: out[r] = padded[e, r - offsets[e]] for the rows within cap. */
template <typename T>
__global__ void unpad_rows(const T* __restrict__ padded, const int* __restrict__ offsets, int E, T* __restrict__ out, long rows, long H, long cap) {
  const long r = linear_block();
  if (r >= rows) return;
  const int e = expert_of(offsets, E, (int)r);
  const long slot = r - offsets[e];
  if (slot >= cap) return;
  const T* src = padded + ((long)e * cap + slot) * H;
  for (long c = threadIdx.x; c < H; c += blockDim.x) out[r * H + c] = src[c];
}

/** moe_dispatch in parallel: counts per expert, prefix sums, then each pair takes the next row of its expert. */
__global__ void dispatch_count(const int* __restrict__ idx, long n, int* __restrict__ offsets) {
  const long p = linear_block() * blockDim.x + threadIdx.x;
  if (p < n) atomicAdd(&offsets[idx[p] + 1], 1);
}
__global__ void dispatch_scan(int* __restrict__ offsets, int* __restrict__ cursor, int E) {
  if (threadIdx.x != 0) return;
  for (int e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  for (int e = 0; e < E; ++e) cursor[e] = offsets[e];
}
__global__ void dispatch_place(const int* __restrict__ idx, long n, int* __restrict__ cursor, int* __restrict__ order, int* __restrict__ row_of) {
  const long p = linear_block() * blockDim.x + threadIdx.x;
  if (p >= n) return;
  const int r = atomicAdd(&cursor[idx[p]], 1);
  order[r] = (int)p;
  row_of[p] = r;
}

/**
 * moe_dispatch in one block (for up to DISPATCH_ONE_BLOCK pairs, i.e. decode and short prefill): the
 * counts and cursors live in shared memory, so the whole dispatch is one launch instead of four.
 */
constexpr long DISPATCH_ONE_BLOCK = 1 << 16;
__global__ void __launch_bounds__(1024) dispatch_one_block(const int* __restrict__ idx, long n, int E, int* __restrict__ offsets, int* __restrict__ order, int* __restrict__ row_of) {
  pdl_enter();
  extern __shared__ int counts[];  // [E] counts, then [E] cursors
  int* cursor = counts + E;
  for (int e = threadIdx.x; e < E; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (long p = threadIdx.x; p < n; p += blockDim.x) atomicAdd(&counts[idx[p]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int sum = 0;
    for (int e = 0; e < E; ++e) {
      offsets[e] = sum;
      cursor[e] = sum;
      sum += counts[e];
    }
    offsets[E] = sum;
  }
  __syncthreads();
  for (long p = threadIdx.x; p < n; p += blockDim.x) {
    const int r = atomicAdd(&cursor[idx[p]], 1);
    order[r] = (int)p;
    row_of[p] = r;
  }
}

/** out[r, :] = x[order[r] / k, :] (the token gather before grouped GEMMs). */
template <typename T>
__global__ void silu_mul(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ out, long n) {
  const long i = linear_block() * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float a = ld(g, i);
  st(out, i, rnd<T>(rnd<T>(a / (1.f + __expf(-a))) * ld(u, i)));
}

/**
 * Decode attention (flash-decoding). A block takes one query position of up to DEC_ROWS query heads
 * that share a KV head (GQA), and one chunk of keys: each key and value row is read once for all of
 * those heads. Scores: a quad of lanes per key, each lane a quarter of the head dim in 16-byte
 * loads, against the queries in shared memory; softmax per head over the chunk; P.V: groups of
 * threads take keys, a thread 8 value columns, and the groups' sums meet in shared memory. With several chunks
 * (nsplit > 1) each block leaves (max, sum, acc) per head in `part`, and the last block of an item to
 * finish (counted in `counters`, which it resets) combines them into `out`. Loops are unrolled so
 * that each thread has several loads in flight: a decode step is latency-bound, not bandwidth-bound.
 */
constexpr int DEC_ROWS = 8, DEC_CHUNK = 256, DEC_THREADS = 128, DEC_MAX_SPLIT = 128;

/** Elements [0, 8) of p as floats: VEC, the 16-byte loads of load8 above; else one element at a time. */
template <typename T, bool VEC>
__device__ __forceinline__ void load8(const T* __restrict__ p, float* f) {
  if constexpr (VEC) {
    load8(p, 0L, f);
  } else {
#pragma unroll
    for (int t = 0; t < 8; ++t) f[t] = ld(p, t);
  }
}

template <typename T, bool VEC>
__global__ void __launch_bounds__(DEC_THREADS) attn_decode(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, float* __restrict__ part, int* __restrict__ counters,
                                                         T* __restrict__ out, long nh, long nkv, long S, long Tk, int D, int DV, float scale, int causal, int chunk, int nsplit, int transposed) {
  pdl_enter();
  const int rep = (int)(nh / nkv), ngroups = (rep + DEC_ROWS - 1) / DEC_ROWS;
  const long item = blockIdx.x;
  const int split = blockIdx.y;
  long t = item / ngroups;
  const long i = t % S;
  t /= S;
  const long g = t % nkv, b = t / nkv;
  const int hg = (int)(item % ngroups), h0 = (int)g * rep + hg * DEC_ROWS, R = min(DEC_ROWS, rep - hg * DEC_ROWS);
  const long visible = causal ? Tk - S + i + 1 : Tk;
  const long j0 = (long)split * chunk;
  const int n = (int)max(0L, min((long)chunk, visible - j0));
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  __shared__ __align__(16) float sq[DEC_ROWS][256];  // the queries, then the P.V sums
  __shared__ float sp[DEC_ROWS][DEC_CHUNK];
  __shared__ float sm[DEC_ROWS], sl[DEC_ROWS];
  __shared__ float sw[DEC_ROWS][DEC_MAX_SPLIT];
  __shared__ int last;
#pragma unroll 8
  for (int e = tid; e < DEC_ROWS * D; e += DEC_THREADS) {
    const int r = e / D, c = e % D;
    sq[r][c] = r < R ? ld(q, ((b * nh + h0 + r) * S + i) * D + c) : 0.f;
  }
  __syncthreads();
  const T* kb = k + ((b * nkv + g) * Tk + j0) * D;
  const T* vb = v + ((b * nkv + g) * Tk + j0) * DV;
  const int quad = tid >> 2, qp = tid & 3, ngrp = D / 8;
#pragma unroll 2
  for (int base = 0; base < n; base += DEC_THREADS / 4) {
    const int jj = base + quad;
    float acc[DEC_ROWS];
#pragma unroll
    for (int r = 0; r < DEC_ROWS; ++r) acc[r] = 0.f;
    if (jj < n) {
      const T* kr = kb + (long)jj * D;
#pragma unroll 4
      for (int gi = qp; gi < ngrp; gi += 4) {
        float kv[8];
        load8<T, VEC>(kr + gi * 8, kv);
#pragma unroll
        for (int r = 0; r < DEC_ROWS; ++r) {
          const float4 qa = *reinterpret_cast<const float4*>(&sq[r][gi * 8]), qb = *reinterpret_cast<const float4*>(&sq[r][gi * 8 + 4]);
          acc[r] += qa.x * kv[0] + qa.y * kv[1] + qa.z * kv[2] + qa.w * kv[3] + qb.x * kv[4] + qb.y * kv[5] + qb.z * kv[6] + qb.w * kv[7];
        }
      }
      if (qp == 0)
        for (int c = ngrp * 8; c < D; ++c) {
          const float kv = ld(kr, c);
#pragma unroll
          for (int r = 0; r < DEC_ROWS; ++r) acc[r] += sq[r][c] * kv;
        }
    }
#pragma unroll
    for (int r = 0; r < DEC_ROWS; ++r) {
      acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], 1);
      acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], 2);
    }
    if (jj < n && qp == 0)
#pragma unroll
      for (int r = 0; r < DEC_ROWS; ++r) sp[r][jj] = rnd<T>(rnd<T>(acc[r]) * scale);
  }
  __syncthreads();
  for (int r = warp; r < DEC_ROWS; r += DEC_THREADS / 32) {
    float m = -INFINITY;
    for (int jj = lane; jj < n; jj += 32) m = fmaxf(m, sp[r][jj]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float l = 0.f;
    for (int jj = lane; jj < n; jj += 32) {
      const float p = r < R ? __expf(sp[r][jj] - m) : 0.f;
      sp[r][jj] = p;
      l += p;
    }
    l = warp_sum(l);
    if (lane == 0) { sm[r] = m; sl[r] = l; }
  }
  __syncthreads();
  // P.V, summed over the threads that took other keys into sq (the queries are no longer needed),
  // in turns: no two threads add to one element at once and nothing needs atomics. VEC: a thread
  // takes 8 columns of one key at a time (16-byte loads), DV / 8 threads per key, the other threads
  // of the block other keys; otherwise lanes take columns lane + 32 u and the warps split the keys.
  float acc[DEC_ROWS][8];
#pragma unroll
  for (int r = 0; r < DEC_ROWS; ++r)
#pragma unroll
    for (int u = 0; u < 8; ++u) acc[r][u] = 0.f;
  int turns = DEC_THREADS / 32, my_turn = warp, c0 = lane, cstep = 32;
  bool holder = true;
  if constexpr (VEC) {
    const int tpr = DV / 8, kg = DEC_THREADS / tpr, kgi = tid / tpr;
    c0 = (tid % tpr) * 8;
    cstep = 1;
    if (kgi < kg) {
#pragma unroll 8
      for (int jj = kgi; jj < n; jj += kg) {
        float vv[8];
        load8<T, true>(vb + (long)jj * DV + c0, vv);
#pragma unroll
        for (int r = 0; r < DEC_ROWS; ++r) {
          const float p = sp[r][jj];
#pragma unroll
          for (int u = 0; u < 8; ++u) acc[r][u] += p * vv[u];
        }
      }
    }
    if (32 % tpr == 0) {
      // The key groups of a warp first, by shuffles; then one turn per warp.
      for (int o = tpr; o < 32; o <<= 1)
#pragma unroll
        for (int r = 0; r < DEC_ROWS; ++r)
#pragma unroll
          for (int u = 0; u < 8; ++u) acc[r][u] += __shfl_xor_sync(0xffffffffu, acc[r][u], o);
      holder = lane < tpr;
    } else {
      turns = kg;
      my_turn = kgi;
      holder = kgi < kg;
    }
  } else {
#pragma unroll 4
    for (int jj = warp; jj < n; jj += DEC_THREADS / 32) {
      const T* vr = vb + (long)jj * DV;
      float vv[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) vv[u] = lane + 32 * u < DV ? ld(vr, lane + 32 * u) : 0.f;
#pragma unroll
      for (int r = 0; r < DEC_ROWS; ++r) {
        const float p = sp[r][jj];
#pragma unroll
        for (int u = 0; u < 8; ++u) acc[r][u] += p * vv[u];
      }
    }
  }
  for (int turn = 0; turn < turns; ++turn) {
    if (my_turn == turn && holder)
#pragma unroll
      for (int r = 0; r < DEC_ROWS; ++r)
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          const int c = c0 + u * cstep;
          if (r < R && c < DV) sq[r][c] = (turn ? sq[r][c] : 0.f) + acc[r][u];
        }
    __syncthreads();
  }
  // Partials: acc [item][split][row][DV], then (max, sum) [item][split][row][2].
  const long nacc = gridDim.x * (long)nsplit * DEC_ROWS * DV;
  for (int e = tid; e < R * DV; e += DEC_THREADS) {
    const int r = e / DV, c = e % DV;
    if (nsplit == 1) {
      const long h = h0 + r;
      st(out, transposed ? ((b * S + i) * nh + h) * DV + c : ((b * nh + h) * S + i) * DV + c, sq[r][c] / sl[r]);
    } else {
      const long pr = (item * nsplit + split) * DEC_ROWS + r;
      part[pr * DV + c] = sq[r][c];
      if (c == 0) {
        part[nacc + 2 * pr] = n > 0 ? sm[r] : -INFINITY;
        part[nacc + 2 * pr + 1] = n > 0 ? sl[r] : 0.f;
      }
    }
  }
  if (nsplit == 1) return;
  // The last of the item's blocks to get here combines the chunks (the fence publishes this
  // block's partials before its count; the reader's fence orders its loads after the count).
  __threadfence();
  __syncthreads();
  if (tid == 0) last = atomicAdd(&counters[item], 1) == nsplit - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int r = warp; r < R; r += DEC_THREADS / 32) {
    const float* ml = part + nacc + 2 * ((item * nsplit) * DEC_ROWS + r);
    float M = -INFINITY;
    for (int s2 = lane; s2 < nsplit; s2 += 32) M = fmaxf(M, __ldcg(ml + 2L * s2 * DEC_ROWS));
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float L = 0.f;
    for (int s2 = lane; s2 < nsplit; s2 += 32) {
      const float ms = __ldcg(ml + 2L * s2 * DEC_ROWS);
      const float w = ms == -INFINITY ? 0.f : __expf(ms - M);
      sw[r][s2] = w;
      L += w * __ldcg(ml + 2L * s2 * DEC_ROWS + 1);
    }
    L = warp_sum(L);
    if (lane == 0) sl[r] = L;
  }
  __syncthreads();
  // Four columns per thread where DV allows (16-byte loads), so each thread has one pass over the chunks.
  const int cw = DV % 4 == 0 ? 4 : 1;
  for (int e = tid; e < R * DV / cw; e += DEC_THREADS) {
    const int r = e / (DV / cw), c = (e % (DV / cw)) * cw;
    const float* pc = part + (item * nsplit * DEC_ROWS + r) * (long)DV + c;
    const long stride = (long)DEC_ROWS * DV;
    const long h = h0 + r;
    const long ob = transposed ? ((b * S + i) * nh + h) * DV + c : ((b * nh + h) * S + i) * DV + c;
    if (cw == 4) {
      float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 16
      for (int s2 = 0; s2 < nsplit; ++s2) {
        const float w = sw[r][s2];
        const float4 x = __ldcg(reinterpret_cast<const float4*>(pc + s2 * stride));
        a.x += w * x.x;
        a.y += w * x.y;
        a.z += w * x.z;
        a.w += w * x.w;
      }
      st(out, ob, a.x / sl[r]);
      st(out, ob + 1, a.y / sl[r]);
      st(out, ob + 2, a.z / sl[r]);
      st(out, ob + 3, a.w / sl[r]);
    } else {
      float a = 0.f;
#pragma unroll 16
      for (int s2 = 0; s2 < nsplit; ++s2) a += sw[r][s2] * __ldcg(pc + s2 * stride);
      st(out, ob, a / sl[r]);
    }
  }
  if (tid == 0) counters[item] = 0;
}

/**
 * Softmax of attention score rows in place (scale, causal mask, fp32, probabilities rounded to T).
 * Rows come in blocks of Sq queries; row r sees keys [0, first_visible + r % Sq) under the mask.
 */
template <typename T>
__global__ void __launch_bounds__(256) softmax_rows(T* __restrict__ s, long rows, long Sq, long Tk, long first_visible, float scale, int causal) {
  const long r = linear_block();
  if (r >= rows) return;
  const long visible = causal ? first_visible + r % Sq : Tk;
  T* row = s + r * Tk;
  __shared__ float red[32];
  float m = -INFINITY;
  for (long j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, rnd<T>(ld(row, j) * scale));
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  m = -INFINITY;
  for (int w = 0; w < (int)(blockDim.x >> 5); ++w) m = fmaxf(m, red[w]);
  __syncthreads();
  float sum = 0.f;
  for (long j = threadIdx.x; j < visible; j += blockDim.x) sum += __expf(rnd<T>(ld(row, j) * scale) - m);
  sum = warp_sum(sum);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = sum;
  __syncthreads();
  sum = 0.f;
  for (int w = 0; w < (int)(blockDim.x >> 5); ++w) sum += red[w];
  for (long j = threadIdx.x; j < Tk; j += blockDim.x) st(row, j, j < visible ? __expf(rnd<T>(ld(row, j) * scale) - m) / sum : 0.f);
}

/** A float cast (bf16 <-> f32, or a copy), 8 elements per thread when n and the pointers allow 16-byte access. */
template <typename A, typename B, bool VEC>
__global__ void convert(const A* __restrict__ in, B* __restrict__ out, long n) {
  pdl_enter();
  const long i = (linear_block() * blockDim.x + threadIdx.x) * (VEC ? 8 : 1);
  if (i >= n) return;
  if constexpr (VEC) {
    float f[8];
    load8<A, true>(in + i, f);
    if constexpr (sizeof(B) == 2) {
      uint4 u;
      __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
      for (int t = 0; t < 4; ++t) h[t] = __floats2bfloat162_rn(f[2 * t], f[2 * t + 1]);
      *reinterpret_cast<uint4*>(out + i) = u;
    } else {
      reinterpret_cast<float4*>(out + i)[0] = make_float4(f[0], f[1], f[2], f[3]);
      reinterpret_cast<float4*>(out + i)[1] = make_float4(f[4], f[5], f[6], f[7]);
    }
  } else {
    st(out, i, ld(in, i));
  }
}

/** Up to 4 sources of a concat, each [rows, cols[j]] (in units of U), side by side in out [rows, sum cols]. */
struct ConcatSources {
  const void* src[4];
  long cols[4];
  int count;
};

template <typename U>
__global__ void concat_rows(ConcatSources in, U* __restrict__ out, long rows, long out_cols) {
  pdl_enter();
  for (long r = blockIdx.y; r < rows; r += gridDim.y) {
    for (long c = (long)blockIdx.x * blockDim.x + threadIdx.x; c < out_cols; c += (long)gridDim.x * blockDim.x) {
      long cc = c;
      int j = 0;
      while (j + 1 < in.count && cc >= in.cols[j]) cc -= in.cols[j++];
      out[r * out_cols + c] = static_cast<const U*>(in.src[j])[r * in.cols[j] + cc];
    }
  }
}

/** The SwiGLU experts' results out of the padded GEMM outputs: out[r] = silu(g) * u at r's padded slot. */
template <typename T>
__global__ void unpad_swiglu(const T* __restrict__ g, const T* __restrict__ u, const int* __restrict__ offsets, int E, T* __restrict__ out, long rows, long H, long cap) {
  const long r = linear_block();
  if (r >= rows) return;
  const int e = expert_of(offsets, E, (int)r);
  const long slot = r - offsets[e];
  if (slot >= cap) return;
  const long base = ((long)e * cap + slot) * H;
  for (long c = threadIdx.x; c < H; c += blockDim.x) {
    const float a = ld(g, base + c);
    st(out, r * H + c, rnd<T>(rnd<T>(a / (1.f + __expf(-a))) * ld(u, base + c)));
  }
}

/** The rows past each expert's first cap (those the per-expert GEMMs take), gathered to the same row index. */
template <typename T>
__global__ void gather_overflow(const T* __restrict__ x, const int* __restrict__ order, int k, const int* __restrict__ offsets, int E, T* __restrict__ out, long rows, long H, long cap) {
  const long r = linear_block();
  if (r >= rows) return;
  const int e = expert_of(offsets, E, (int)r);
  if (r - offsets[e] < cap) return;
  const T* src = x + source_row(order, k, r) * H;
  for (long c = threadIdx.x; c < H; c += blockDim.x) out[r * H + c] = src[c];
}

/**
 * Prefill attention, bf16, fused (flash attention 2): a block takes 64 queries of one head, a warp 16
 * of them; key/value tiles of 64 rows stream through shared memory (cp.async, double-buffered) while
 * the warps compute S = Q K^T with mma.sync m16n8k16 (fp32 accumulate), the online softmax in
 * registers, and O += P V with P re-packed from the S accumulators as the A operand. Scores are
 * rounded as the unfused path rounds them (bf16 product, bf16 after the scale). Nothing of size
 * S x T touches memory. HD is the head dim (queries, keys and values alike).
 */
constexpr int FA_BM = 64, FA_BN = 64, FA_THREADS = 128;

template <int HD>
constexpr int flash_smem_bytes() { return 4 * FA_BN * (HD + 8) * 2; }

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&v);
}

/**
 * Four 8x8 bf16 blocks from shared memory; lane t gives the address of row t % 8 of block t / 8.
 * Lane t gets (row t / 4, cols 2 (t % 4) and + 1) of each block, or with TRANS (rows 2 (t % 4) and + 1,
 * col t / 4): the layouts of mma's B fragment for a block stored [n][k], or [k][n] with TRANS.
 */
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const __nv_bfloat16* p) {
  const unsigned sa = (unsigned)__cvta_generic_to_shared(p);
  if constexpr (TRANS) asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sa));
  else asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sa));
}

/** c += a . b for one m16n8k16 tile (a: 16x16 row-major fragment, b: 16x8 column fragment). */
__device__ __forceinline__ void mma_bf16(float* c, const unsigned* a, unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** 16 bytes global -> shared without a register stop; zeros when !valid (rows past the keys). */
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(gmem), "r"(valid ? 16 : 0));
}

template <int HD>
__global__ void __launch_bounds__(FA_THREADS) flash_attn(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
                                                       __nv_bfloat16* __restrict__ out, long nh, long nkv, long S, long Tk, float scale, int causal, int transposed) {
  constexpr int LD = HD + 8;  // padded shared row: the fragment reads below hit 32 distinct banks
  extern __shared__ __align__(16) unsigned char fa_smem[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(fa_smem);  // [2][FA_BN][LD]
  __nv_bfloat16* Vs = Ks + 2 * FA_BN * LD;                          // [2][FA_BN][LD]
  const long bh = blockIdx.y, h = bh % nh, b = bh / nh, g = h / (nh / nkv);
  const long q0 = (long)(gridDim.x - 1 - blockIdx.x) * FA_BM;  // the longest (causal) tiles first
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, tq = lane & 3;
  const long off = Tk - S;  // query i sits at key position i + off
  const __nv_bfloat16* kb = k + (b * nkv + g) * Tk * HD;
  const __nv_bfloat16* vb = v + (b * nkv + g) * Tk * HD;
  const long r0 = q0 + warp * 16 + gr, r1 = r0 + 8;
  unsigned qa[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    const int c = kk * 16 + 2 * tq;
    qa[kk][0] = r0 < S ? *reinterpret_cast<const unsigned*>(q + (bh * S + r0) * HD + c) : 0u;
    qa[kk][1] = r1 < S ? *reinterpret_cast<const unsigned*>(q + (bh * S + r1) * HD + c) : 0u;
    qa[kk][2] = r0 < S ? *reinterpret_cast<const unsigned*>(q + (bh * S + r0) * HD + c + 8) : 0u;
    qa[kk][3] = r1 < S ? *reinterpret_cast<const unsigned*>(q + (bh * S + r1) * HD + c + 8) : 0u;
  }
  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const long last_query = min(S, q0 + FA_BM) - 1;
  const long kend = causal ? min(Tk, last_query + off + 1) : Tk;
  const int nblocks = (int)((kend + FA_BN - 1) / FA_BN);
  auto load_tile = [&](int blk, int buf) {
    const long j0 = (long)blk * FA_BN;
    for (int e = tid; e < FA_BN * (HD / 8); e += FA_THREADS) {
      const int r = e / (HD / 8), c = (e % (HD / 8)) * 8;
      const bool ok = j0 + r < Tk;
      const long j = ok ? j0 + r : 0;
      cp_async16(Ks + (buf * FA_BN + r) * LD + c, kb + j * HD + c, ok);
      cp_async16(Vs + (buf * FA_BN + r) * LD + c, vb + j * HD + c, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };
  load_tile(0, 0);
  for (int blk = 0; blk < nblocks; ++blk) {
    const int buf = blk & 1;
    if (blk + 1 < nblocks) {
      load_tile(blk + 1, buf ^ 1);
      asm volatile("cp.async.wait_group 1;\n" ::);
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::);
    }
    __syncthreads();
    const __nv_bfloat16* Kt = Ks + buf * FA_BN * LD;
    const __nv_bfloat16* Vt = Vs + buf * FA_BN * LD;
    float s[FA_BN / 8][4];
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
    // K fragments by ldmatrix.x4: 8x8 blocks (keys nt.., dims kk..), (keys nt.., dims kk+8..),
    // (keys nt+8.., dims kk..), (keys nt+8.., dims kk+8..): b0, b1 of key tiles nt and nt + 1.
    const int mi = lane >> 3, mr = lane & 7;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
#pragma unroll
      for (int nt = 0; nt < FA_BN / 8; nt += 2) {
        unsigned b[4];
        ldmatrix_x4<false>(b, Kt + ((nt + (mi >> 1)) * 8 + mr) * LD + kk * 16 + (mi & 1) * 8);
        mma_bf16(s[nt], qa[kk], b[0], b[1]);
        mma_bf16(s[nt + 1], qa[kk], b[2], b[3]);
      }
    const long j0 = (long)blk * FA_BN;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long j = j0 + nt * 8 + 2 * tq + e;
        float a0 = rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(s[nt][e]) * scale), a1 = rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(s[nt][2 + e]) * scale);
        if (j >= Tk || (causal && j > r0 + off)) a0 = -INFINITY;
        if (j >= Tk || (causal && j > r1 + off)) a1 = -INFINITY;
        s[nt][e] = a0;
        s[nt][2 + e] = a1;
        mx0 = fmaxf(mx0, a0);
        mx1 = fmaxf(mx1, a1);
      }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o2));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    // A row that has seen no key yet (past S, or masked so far) keeps a finite base.
    const float base0 = mn0 == -INFINITY ? 0.f : mn0, base1 = mn1 == -INFINITY ? 0.f : mn1;
    const float c0 = __expf(m0 - base0), c1 = __expf(m1 - base1);
    float ls0 = 0.f, ls1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[nt][e] = __expf(s[nt][e] - base0);
        s[nt][2 + e] = __expf(s[nt][2 + e] - base1);
        ls0 += s[nt][e];
        ls1 += s[nt][2 + e];
      }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      ls0 += __shfl_xor_sync(0xffffffffu, ls0, o2);
      ls1 += __shfl_xor_sync(0xffffffffu, ls1, o2);
    }
    l0 = l0 * c0 + ls0;
    l1 = l1 * c1 + ls1;
    m0 = mn0;
    m1 = mn1;
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) {
      o[d][0] *= c0;
      o[d][1] *= c0;
      o[d][2] *= c1;
      o[d][3] *= c1;
    }
#pragma unroll
    for (int kk = 0; kk < FA_BN / 16; ++kk) {
      const unsigned pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]), pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      // V fragments by ldmatrix.x4.trans: blocks (keys kk.., dims d..), (keys kk+8.., dims d..),
      // (keys kk.., dims d+8..), (keys kk+8.., dims d+8..): b0, b1 of dim tiles d and d + 1.
#pragma unroll
      for (int d = 0; d < HD / 8; d += 2) {
        unsigned b[4];
        ldmatrix_x4<true>(b, Vt + (kk * 16 + (mi & 1) * 8 + mr) * LD + (d + (mi >> 1)) * 8);
        mma_bf16(o[d], pa, b[0], b[1]);
        mma_bf16(o[d + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // this buffer is the next iteration's load target but one
  }
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) {
    const int c = d * 8 + 2 * tq;
    if (r0 < S) *reinterpret_cast<unsigned*>(out + (transposed ? ((b * S + r0) * nh + h) * HD : (bh * S + r0) * HD) + c) = pack_bf16(o[d][0] * inv0, o[d][1] * inv0);
    if (r1 < S) *reinterpret_cast<unsigned*>(out + (transposed ? ((b * S + r1) * nh + h) * HD : (bh * S + r1) * HD) + c) = pack_bf16(o[d][2] * inv1, o[d][3] * inv1);
  }
}

/**
 * Grouped expert GEMM, bf16 (prefill): rows grouped by expert (offsets), each 128-row tile of an
 * expert's rows against that expert's weights, so no rows are padded and none overflow. Row r of
 * the A operand is gathered on the fly from x (order[r] / k with the token gather), so nothing is
 * copied first. 8 warps, each 64 rows x 32 columns of mma.sync m16n8k16 (fp32 accumulate), a
 * 3-stage cp.async pipeline over k-steps of 32, fragments by ldmatrix. SWIGLU: the block's 128
 * columns are 64 gate and the same 64 up columns, paired in each thread, and the epilogue writes
 * silu(g) * u rounded as the unfused kernels round it; else it writes the 128 columns.
 * tiles[t] = (expert, first row) of tile blockIdx.x; blockIdx.y picks the output columns.
 */
constexpr int EG_BM = 128, EG_BN = 128, EG_BK = 32, EG_LD = EG_BK + 8, EG_STAGES = 3, EG_THREADS = 256;
constexpr int expert_gemm_smem_bytes() { return EG_STAGES * (EG_BM + EG_BN) * EG_LD * 2; }

template <bool SWIGLU>
__global__ void __launch_bounds__(EG_THREADS) expert_gemm(const __nv_bfloat16* __restrict__ x, const int* __restrict__ order, int k, const __nv_bfloat16* __restrict__ wg,
                                                        const __nv_bfloat16* __restrict__ wu, const int* __restrict__ offsets, const int2* __restrict__ tiles,
                                                        __nv_bfloat16* __restrict__ out, long O, long I) {
  extern __shared__ __align__(16) unsigned char eg_smem[];
  __nv_bfloat16* As = reinterpret_cast<__nv_bfloat16*>(eg_smem);  // [STAGES][BM][LD]
  __nv_bfloat16* Bs = As + EG_STAGES * EG_BM * EG_LD;             // [STAGES][BN][LD]
  const int2 tile = tiles[blockIdx.x];
  const int e = tile.x;
  const long row0 = tile.y, row_end = min((long)offsets[e + 1], row0 + EG_BM);
  const long col0 = (long)blockIdx.y * (SWIGLU ? EG_BN / 2 : EG_BN);  // first output column
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, tq = lane & 3;
  const int wm = warp >> 2, wn = warp & 3, mi = lane >> 3, mr = lane & 7;
  // Each thread copies two 16-byte chunks of A and two of B per stage: rows tid / 4 and + 64, k chunk (tid % 4) * 8.
  const int lr = tid >> 2, lk = (tid & 3) * 8;
  const __nv_bfloat16* arow[2];
  const __nv_bfloat16* brow[2];
  bool aok[2], bok[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const long r = row0 + lr + 64 * h;
    aok[h] = r < row_end;
    arow[h] = x + (aok[h] ? (order ? (long)(order[r] / k) : r) : 0) * I;
    const int br = lr + 64 * h;  // B tile row: SWIGLU rows 0..63 gate, 64..127 up
    const long o = SWIGLU ? col0 + (br & 63) : col0 + br;
    bok[h] = o < O;
    const __nv_bfloat16* w = SWIGLU && br >= 64 ? wu : wg;
    brow[h] = w + ((long)e * O + (bok[h] ? o : 0)) * I;
  }
  auto load_stage = [&](int kt, int st) {
    const long kk = (long)kt * EG_BK + lk;
    const bool kin = kk < I;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      cp_async16(As + (st * EG_BM + lr + 64 * h) * EG_LD + lk, arow[h] + (kin ? kk : 0), aok[h] && kin);
      cp_async16(Bs + (st * EG_BN + lr + 64 * h) * EG_LD + lk, brow[h] + (kin ? kk : 0), bok[h] && kin);
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };
  float acc[4][4][4];
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b) acc[a][b][0] = acc[a][b][1] = acc[a][b][2] = acc[a][b][3] = 0.f;
  const int nk = (int)((I + EG_BK - 1) / EG_BK);
#pragma unroll
  for (int st = 0; st < EG_STAGES - 1; ++st) {
    if (st < nk) load_stage(st, st);
    else asm volatile("cp.async.commit_group;\n" ::);
  }
  // B rows of this warp's n-tile pairs: SWIGLU (gate 16, up 16), else 32 consecutive.
  const int bpair[2] = {SWIGLU ? wn * 16 : wn * 32, SWIGLU ? 64 + wn * 16 : wn * 32 + 16};
  for (int kt = 0; kt < nk; ++kt) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(EG_STAGES - 2));
    __syncthreads();
    // The stage consumed last iteration is free again: fill it with k-step kt + STAGES - 1.
    if (kt + EG_STAGES - 1 < nk) load_stage(kt + EG_STAGES - 1, (kt + EG_STAGES - 1) % EG_STAGES);
    else asm volatile("cp.async.commit_group;\n" ::);
    const __nv_bfloat16* At = As + (kt % EG_STAGES) * EG_BM * EG_LD;
    const __nv_bfloat16* Bt = Bs + (kt % EG_STAGES) * EG_BN * EG_LD;
#pragma unroll
    for (int ks = 0; ks < EG_BK; ks += 16) {
      unsigned af[4][4], bf[2][4];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) ldmatrix_x4<false>(af[mt], At + (wm * 64 + mt * 16 + (mi & 1) * 8 + mr) * EG_LD + ks + (mi >> 1) * 8);
#pragma unroll
      for (int p = 0; p < 2; ++p) ldmatrix_x4<false>(bf[p], Bt + (bpair[p] + (mi >> 1) * 8 + mr) * EG_LD + ks + (mi & 1) * 8);
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int p = 0; p < 2; ++p) {
          mma_bf16(acc[mt][2 * p], af[mt], bf[p][0], bf[p][1]);
          mma_bf16(acc[mt][2 * p + 1], af[mt], bf[p][2], bf[p][3]);
        }
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  // Epilogue: acc[mt][j] holds rows wm*64 + mt*16 + gr (+8), columns 2 tq (+1) of n-tile j.
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const long r = row0 + wm * 64 + mt * 16 + gr + hh * 8;
      if (r >= row_end) continue;
#pragma unroll
      for (int j = 0; j < (SWIGLU ? 2 : 4); ++j) {
        const long o = SWIGLU ? col0 + wn * 16 + j * 8 + 2 * tq : col0 + wn * 32 + j * 8 + 2 * tq;
        if (o >= O) continue;
        float y[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float gv = rnd<__nv_bfloat16>(acc[mt][j][hh * 2 + c]);
          if (SWIGLU) {
            const float uv = rnd<__nv_bfloat16>(acc[mt][j + 2][hh * 2 + c]);
            y[c] = rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(gv / (1.f + __expf(-gv))) * uv);
          } else {
            y[c] = gv;
          }
        }
        if (o + 1 < O) *reinterpret_cast<unsigned*>(out + r * O + o) = pack_bf16(y[0], y[1]);
        else out[r * O + o] = __float2bfloat16_rn(y[0]);
      }
    }
}

/** K or V per query head: [B, nkv, T, D] -> [B, nkv * rep, T, D] (GQA expanded, so one batched GEMM covers all heads). */
template <typename T>
__global__ void repeat_kv(const T* __restrict__ in, T* __restrict__ out, long B, long nkv, long rep, long TD) {
  const long idx = linear_block() * blockDim.x + threadIdx.x;
  if (idx >= B * nkv * rep * TD) return;
  const long bh = idx / TD, h = bh % (nkv * rep), b = bh / (nkv * rep);
  out[idx] = in[(b * nkv + h / rep) * TD + idx % TD];
}

/** [B, nh, S, D] -> [B, S, nh, D]. */
template <typename T>
__global__ void bhsd_to_bshd(const T* __restrict__ in, T* __restrict__ out, long B, long nh, long S, long D) {
  const long idx = linear_block() * blockDim.x + threadIdx.x;
  if (idx >= B * nh * S * D) return;
  const long c = idx % D, i = (idx / D) % S, h = (idx / (D * S)) % nh, b = idx / (D * S * nh);
  out[((b * S + i) * nh + h) * D + c] = in[idx];
}

/** One row's argmax (lowest index on ties). */
__global__ void argmax_rows(const float* __restrict__ x, long V, long stride, int* __restrict__ out) {
  const float* row = x + blockIdx.x * stride;
  float best = -INFINITY;
  long bi = 0x7fffffff;
  for (long j = threadIdx.x; j < V; j += blockDim.x) {
    const float v = row[j];
    if (v > best || (v == best && j < bi)) { best = v; bi = j; }
  }
  __shared__ float sv[256];
  __shared__ long si[256];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      const float ov = sv[threadIdx.x + s];
      const long oi = si[threadIdx.x + s];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) { sv[threadIdx.x] = ov; si[threadIdx.x] = oi; }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = (int)si[0];
}

/** Deterministic pseudo-random weights for benchmarks: uniform in [-a, a] (or 1 +- a for norms). */
template <typename T>
__global__ void init_random(T* __restrict__ p, long n, unsigned long long seed, float a, float center) {
  const long i = linear_block() * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned long long z = (unsigned long long)i * 0x9E3779B97F4A7C15ull + seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const float u = (float)(z >> 40) / (float)(1ull << 24) * 2.f - 1.f;
  st(p, i, center + a * u);
}

// ---------------------------------------------------------------------------------------------
// Runtime

struct GemmPlan {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
  bool has_algo;
};

class Runtime {
 public:
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 64u << 20;
  std::map<std::string, DevTensor> weights;
  std::map<const GraphDef*, std::vector<DevTensor>> resident;  // per graph: constants and load-time results by slot
  std::map<std::string, GemmPlan> plans;
  bool profile = false;
  std::vector<cudaEvent_t> events;
  std::vector<int> event_labels;
  const GraphDef* profiling_graph = nullptr;
  std::map<std::string, std::pair<double, long>> timings;  // label -> (ms, calls)
  std::string expert_path, attention_path;  // "" (automatic), "gemv"/"gemm", "split"/"gemm"
  long attention_tile = -1;  // LINGC_ATTENTION_TILE: query rows per prefill attention tile (tests the tiling)
  long expert_cap = -1;  // LINGC_EXPERT_CAP: rows per expert in the batched expert GEMM (tests the overflow GEMMs)
  int* counters = nullptr;  // decode attention's combine counters, zero between launches (the last block resets its own)
  const long counter_slots = 1L << 16;

  void init() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
      std::fprintf(stderr, "lingc_model: error: no CUDA device\n");
      std::exit(3);
    }
    CK(cudaStreamCreate(&stream));
    // Keep freed stream-ordered memory in the pool: by default it goes back to the driver at every
    // synchronize (the expert GEMMs sync for their offsets), and mapping it again costs milliseconds.
    {
      int dev = 0;
      CK(cudaGetDevice(&dev));
      cudaMemPool_t pool;
      CK(cudaDeviceGetDefaultMemPool(&pool, dev));
      uint64_t keep = UINT64_MAX;
      CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    }
    CKB(cublasLtCreate(&lt));
    CK(cudaMalloc(&workspace, workspace_bytes));
    CK(cudaMalloc(&counters, counter_slots * sizeof(int)));
    CK(cudaMemset(counters, 0, counter_slots * sizeof(int)));
    CK(cudaFuncSetAttribute(flash_attn<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, flash_smem_bytes<64>()));
    CK(cudaFuncSetAttribute(flash_attn<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, flash_smem_bytes<128>()));
    CK(cudaFuncSetAttribute(expert_gemm<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, expert_gemm_smem_bytes()));
    CK(cudaFuncSetAttribute(expert_gemm<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, expert_gemm_smem_bytes()));
    if (const char* e = std::getenv("LINGC_EXPERT_PATH")) expert_path = e;
    if (const char* e = std::getenv("LINGC_ATTENTION_PATH")) attention_path = e;
    if (const char* e = std::getenv("LINGC_EXPERT_CAP")) expert_cap = std::atol(e);
    if (const char* e = std::getenv("LINGC_ATTENTION_TILE")) attention_tile = std::atol(e);
  }

  // --- GEMM (row-major): C[M,N] = A[M,K] . op(B), B stored [N,K] (b_trans) or [K,N]; batched by strides.
  void gemm(int dt, long M, long N, long K, const void* A, long lda, long sa, const void* B, long ldb, long sb, bool b_trans, void* C, long ldc, long sc, long batch) {
    if (M == 0 || N == 0) return;
    const cudaDataType_t t = dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    // cuBLASLt is column-major: C^T[N,M] = op(B)^T . A^T, i.e. m = N, n = M with B as the first operand.
    const cublasOperation_t ta = b_trans ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    // The algorithm must suit the pointers' alignment (cuBLASLt assumes 256 bytes unless told), and
    // views into a tensor (a query tile, an expert's rows) may be less aligned than that.
    auto align = [](const void* p) -> uint32_t {
      const uintptr_t a = (uintptr_t)p;
      uint32_t al = 256;
      while (al > 1 && a % al) al >>= 1;
      return al;
    };
    const uint32_t al_a = align(B), al_b = align(A), al_c = align(C);
    char key[256];
    std::snprintf(key, sizeof key, "%d/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%d/%u/%u/%u", dt, M, N, K, lda, sa, ldb, sb, ldc, sc, batch, (int)b_trans, al_a, al_b, al_c);
    auto it = plans.find(key);
    if (it == plans.end()) {
      GemmPlan p{};
      CKB(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      if (b_trans) CKB(cublasLtMatrixLayoutCreate(&p.a, t, K, N, ldb));
      else CKB(cublasLtMatrixLayoutCreate(&p.a, t, N, K, ldb));
      CKB(cublasLtMatrixLayoutCreate(&p.b, t, K, M, lda));
      CKB(cublasLtMatrixLayoutCreate(&p.c, t, N, M, ldc));
      if (batch > 1) {
        const int bc = (int)batch;
        const int64_t s1 = sb, s2 = sa, s3 = sc;
        CKB(cublasLtMatrixLayoutSetAttribute(p.a, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        CKB(cublasLtMatrixLayoutSetAttribute(p.a, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s1, sizeof s1));
        CKB(cublasLtMatrixLayoutSetAttribute(p.b, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        CKB(cublasLtMatrixLayoutSetAttribute(p.b, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s2, sizeof s2));
        CKB(cublasLtMatrixLayoutSetAttribute(p.c, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        CKB(cublasLtMatrixLayoutSetAttribute(p.c, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s3, sizeof s3));
      }
      cublasLtMatmulPreference_t pref;
      CKB(cublasLtMatmulPreferenceCreate(&pref));
      CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes));
      CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
      CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
      CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
      CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
      cublasLtMatmulHeuristicResult_t res{};
      int got = 0;
      CKB(cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.a, p.b, p.c, p.c, pref, 1, &res, &got));
      CKB(cublasLtMatmulPreferenceDestroy(pref));
      if (got == 0) fail("cuBLASLt has no algorithm for a %ldx%ldx%ld %s GEMM", M, N, K, dtype_name(dt));
      p.algo = res.algo;
      p.has_algo = true;
      it = plans.emplace(key, p).first;
    }
    const float alpha = 1.f, beta = 0.f;
    const GemmPlan& p = it->second;
    CKB(cublasLtMatmul(lt, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo, workspace, workspace_bytes, stream));
  }

  // --- weights

  void upload_weight(const std::string& name, int dt, const std::vector<long>& shape, const Checkpoint* ck, unsigned long long seed) {
    if (weights.count(name)) return;
    DevTensor t;
    t.dtype = dt;
    t.shape = shape;
    const size_t bytes = (size_t)t.numel() * dtype_bytes(dt);
    CK(cudaMalloc(&t.ptr, std::max<size_t>(bytes, 16)));
    if (!ck) {
      const bool norm = name.size() > 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0;
      const float a = norm ? 0.05f : 1.f / std::sqrt((float)shape.back());
      const long n = t.numel();
      if (dt == DT_BF16) init_random<<<grid((n + 255) / 256), 256, 0, stream>>>((__nv_bfloat16*)t.ptr, n, seed ^ std::hash<std::string>()(name), a, norm ? 1.f : 0.f);
      else init_random<<<grid((n + 255) / 256), 256, 0, stream>>>((float*)t.ptr, n, seed ^ std::hash<std::string>()(name), a, norm ? 1.f : 0.f);
      CK(cudaGetLastError());
      weights[name] = t;
      return;
    }
    const std::string want = dt == DT_BF16 ? "BF16" : dt == DT_F32 ? "F32" : "I32";
    const size_t star = name.find(".*.");
    const long parts = star == std::string::npos ? 1 : shape[0];
    const std::vector<long> part_shape = star == std::string::npos ? shape : std::vector<long>(shape.begin() + 1, shape.end());
    const size_t part_bytes = bytes / (size_t)parts;
    std::vector<char> host(part_bytes);
    for (long e = 0; e < parts; ++e) {
      const std::string n = star == std::string::npos ? name : name.substr(0, star) + "." + std::to_string(e) + "." + name.substr(star + 3);
      const StFile* f = nullptr;
      const StEntry* en = ck->entry(n, &f);
      if (!en) fail("%s: tensor \"%s\" is missing", ck->dir.c_str(), n.c_str());
      if (en->dtype != want) fail("%s: tensor \"%s\" has dtype %s, the model expects %s", f->path.c_str(), n.c_str(), en->dtype.c_str(), want.c_str());
      if (en->shape != part_shape) {
        std::string got, exp;
        for (long d : en->shape) got += std::to_string(d) + ",";
        for (long d : part_shape) exp += std::to_string(d) + ",";
        fail("%s: tensor \"%s\" has shape [%s], the model expects [%s]", f->path.c_str(), n.c_str(), got.c_str(), exp.c_str());
      }
      f->read(*en, host.data());
      CK(cudaMemcpy((char*)t.ptr + e * part_bytes, host.data(), part_bytes, cudaMemcpyHostToDevice));
    }
    weights[name] = t;
  }

  /** Loads every weight both graphs declare (all checked before any kernel runs), then constants and load-time steps. */
  void load(const Checkpoint* ck, unsigned long long seed) {
    std::vector<long> shape(8);
    for (const GraphDef* g : {&GRAPH_forward, &GRAPH_decode}) {
      for (int s = 0; s < g->nslots; ++s) {
        const SlotMeta& m = g->slots[s];
        if (m.source != SRC_WEIGHT) continue;
        long sym[8] = {0};
        g->shape(s, sym, shape.data());
        std::vector<long> dims;
        for (int d = 0; d < m.rank; ++d) dims.push_back(shape[d]);
        upload_weight(m.weight, m.dtype, dims, ck, seed);
      }
    }
    CK(cudaStreamSynchronize(stream));
    for (const GraphDef* g : {&GRAPH_forward, &GRAPH_decode}) prepare(g);
  }

  void prepare(const GraphDef* g) {
    std::vector<DevTensor>& res = resident[g];
    res.assign(g->nslots, DevTensor());
    std::vector<long> shape(8);
    long sym[8] = {0};
    for (int c = 0; c < g->nconsts; ++c) {
      const ConstDef& cd = g->consts[c];
      if (cd.slot < 0) continue;
      const SlotMeta& m = g->slots[cd.slot];
      g->shape(cd.slot, sym, shape.data());
      DevTensor t;
      t.dtype = m.dtype;
      for (int d = 0; d < m.rank; ++d) t.shape.push_back(shape[d]);
      const long n = t.numel();
      std::vector<char> host((size_t)std::max<long>(n, 1) * dtype_bytes(m.dtype));
      for (long i = 0; i < n; ++i) {
        const float v = cd.values[cd.count == 1 ? 0 : i];
        if (m.dtype == DT_F32) ((float*)host.data())[i] = v;
        else if (m.dtype == DT_I32) ((int*)host.data())[i] = (int)v;
        else ((__nv_bfloat16*)host.data())[i] = __float2bfloat16(v);
      }
      CK(cudaMalloc(&t.ptr, host.size()));
      CK(cudaMemcpy(t.ptr, host.data(), host.size(), cudaMemcpyHostToDevice));
      res[cd.slot] = t;
    }
    for (int s = 0; s < g->nslots; ++s) {
      if (!g->slots[s].resident) continue;
      g->shape(s, sym, shape.data());
      DevTensor t;
      t.dtype = g->slots[s].dtype;
      for (int d = 0; d < g->slots[s].rank; ++d) t.shape.push_back(shape[d]);
      CK(cudaMalloc(&t.ptr, std::max<size_t>((size_t)t.numel() * dtype_bytes(t.dtype), 16)));
      res[s] = t;
    }
    Ctx c;
    bind(c, g, sym);
    g->prepare(c);
    CK(cudaStreamSynchronize(stream));
  }

  void bind(Ctx& c, const GraphDef* g, const long* sym) {
    c.rt = this;
    c.g = g;
    c.stream = stream;
    for (int i = 0; i < g->nsyms; ++i) c.sym[i] = sym[i];
    c.ptrs.assign(g->nslots, nullptr);
    const std::vector<DevTensor>& res = resident[g];
    for (int s = 0; s < g->nslots; ++s) {
      const SlotMeta& m = g->slots[s];
      if (m.source == SRC_WEIGHT) c.ptrs[s] = weights.at(m.weight).ptr;
      else if (!res.empty() && res[s].ptr) c.ptrs[s] = res[s].ptr;
    }
  }

  /**
   * Runs a graph: inputs by name (device tensors), returns the outputs (device tensors the caller
   * owns); with observe, also every named value the plan materializes.
   */
  std::map<std::string, DevTensor> run(const GraphDef* g, const std::map<std::string, DevTensor>& inputs, bool observe) {
    long sym[8] = {0};
    for (int i = 0; i < g->nsyms; ++i) {
      auto it = inputs.find(g->binds[i].input);
      if (it == inputs.end()) fail("graph %s: missing input '%s'", g->name, g->binds[i].input);
      sym[g->binds[i].sym] = it->second.shape.at(g->binds[i].axis);
    }
    Ctx c;
    bind(c, g, sym);
    std::vector<long> shape(8);
    for (int i = 0; i < g->ninputs; ++i) {
      auto it = inputs.find(g->inputs[i].name);
      if (it == inputs.end()) fail("graph %s: missing input '%s'", g->name, g->inputs[i].name);
      const int s = g->inputs[i].slot;
      g->shape(s, sym, shape.data());
      if ((int)it->second.shape.size() != g->slots[s].rank || !std::equal(it->second.shape.begin(), it->second.shape.end(), shape.begin()))
        fail("graph %s: input '%s' has the wrong shape", g->name, g->inputs[i].name);
      if (it->second.dtype != g->slots[s].dtype) fail("graph %s: input '%s' is %s, the graph takes %s", g->name, g->inputs[i].name, dtype_name(it->second.dtype), dtype_name(g->slots[s].dtype));
      c.ptrs[s] = it->second.ptr;
    }
    std::vector<int> allocated;
    for (int s = 0; s < g->nslots; ++s) {
      const SlotMeta& m = g->slots[s];
      if (m.source != SRC_COMPUTED || c.ptrs[s]) continue;
      g->shape(s, sym, shape.data());
      long n = 1;
      for (int d = 0; d < m.rank; ++d) n *= shape[d];
      CK(cudaMallocAsync(&c.ptrs[s], std::max<size_t>((size_t)n * dtype_bytes(m.dtype), 16), stream));
      allocated.push_back(s);
    }
    for (int s = 0; s < g->nslots; ++s)
      if (g->slots[s].source == SRC_ALIAS) c.ptrs[s] = c.ptrs[g->slots[s].alias_of];
    if (profile) begin_profile(g);
    g->run(c);
    if (profile) end_profile(g);
    std::map<std::string, DevTensor> out;
    std::vector<int> kept;
    auto keep = [&](const std::string& name, int s) {
      DevTensor t;
      t.ptr = c.ptrs[s];
      t.dtype = g->slots[s].dtype;
      g->shape(s, sym, shape.data());
      for (int d = 0; d < g->slots[s].rank; ++d) t.shape.push_back(shape[d]);
      out[name] = t;
      kept.push_back(s);
    };
    for (int i = 0; i < g->noutputs; ++i) keep(g->outputs[i].name, g->outputs[i].slot);
    if (observe)
      for (int s = 0; s < g->nslots; ++s)
        if (g->slots[s].source == SRC_COMPUTED && g->slots[s].name[0] && !out.count(g->slots[s].name) && !g->slots[s].resident) keep(g->slots[s].name, s);
    for (int s : allocated)
      if (std::find(kept.begin(), kept.end(), s) == kept.end()) CK(cudaFreeAsync(c.ptrs[s], stream));
    return out;
  }

  /**
   * Runs a graph as a captured CUDA graph: the first call for a shape (and input buffers) allocates
   * every intermediate once and captures the launches; later calls replay them, with no host work
   * per kernel. Outputs live in that arena and are overwritten by the next replay. Only for graphs
   * that need no host synchronization (decoding: the expert GEMV path).
   */
  std::map<std::string, DevTensor> run_graphed(const GraphDef* g, const std::map<std::string, DevTensor>& inputs) {
    std::string key = g->name;
    for (auto& kv : inputs) key += "|" + kv.first + "@" + std::to_string((uintptr_t)kv.second.ptr);
    auto it = captured.find(key);
    if (it == captured.end()) {
      Captured cap;
      long sym[8] = {0};
      for (int i = 0; i < g->nsyms; ++i) sym[g->binds[i].sym] = inputs.at(g->binds[i].input).shape.at(g->binds[i].axis);
      Ctx& c = cap.ctx;
      bind(c, g, sym);
      std::vector<long> shape(8);
      for (int i = 0; i < g->ninputs; ++i) c.ptrs[g->inputs[i].slot] = inputs.at(g->inputs[i].name).ptr;
      for (int s = 0; s < g->nslots; ++s) {
        const SlotMeta& m = g->slots[s];
        if (m.source != SRC_COMPUTED || c.ptrs[s]) continue;
        g->shape(s, sym, shape.data());
        long n = 1;
        for (int d = 0; d < m.rank; ++d) n *= shape[d];
        CK(cudaMalloc(&c.ptrs[s], std::max<size_t>((size_t)n * dtype_bytes(m.dtype), 16)));
        cap.arena.push_back(c.ptrs[s]);
      }
      for (int s = 0; s < g->nslots; ++s)
        if (g->slots[s].source == SRC_ALIAS) c.ptrs[s] = c.ptrs[g->slots[s].alias_of];
      const bool was = profile;
      profile = false;
      g->run(c);  // once outside capture: cuBLASLt plans and lazy module loads happen here
      CK(cudaStreamSynchronize(stream));
      cudaGraph_t graph;
      CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      g->run(c);
      CK(cudaStreamEndCapture(stream, &graph));
      CK(cudaGraphInstantiate(&cap.exec, graph, 0));
      CK(cudaGraphDestroy(graph));
      profile = was;
      it = captured.emplace(key, std::move(cap)).first;
    }
    CK(cudaGraphLaunch(it->second.exec, stream));
    std::map<std::string, DevTensor> out;
    const Ctx& c = it->second.ctx;
    std::vector<long> shape(8);
    for (int i = 0; i < g->noutputs; ++i) {
      const int s = g->outputs[i].slot;
      DevTensor t;
      t.ptr = c.ptrs[s];
      t.dtype = g->slots[s].dtype;
      g->shape(s, c.sym, shape.data());
      for (int d = 0; d < g->slots[s].rank; ++d) t.shape.push_back(shape[d]);
      out[g->outputs[i].name] = t;
    }
    return out;
  }

  struct Captured {
    Ctx ctx;
    std::vector<void*> arena;
    cudaGraphExec_t exec = nullptr;
  };
  std::map<std::string, Captured> captured;

  void free_tensor(DevTensor& t) {
    if (t.ptr) CK(cudaFreeAsync(t.ptr, stream));
    t.ptr = nullptr;
  }

  // --- profiling: an event at each mark; the time between marks is charged to the earlier label.
  void begin_profile(const GraphDef* g) {
    profiling_graph = g;
    event_labels.clear();
  }
  void mark(int label) {
    if (!profile) return;
    if (events.size() <= event_labels.size()) {
      cudaEvent_t e;
      CK(cudaEventCreate(&e));
      events.push_back(e);
    }
    CK(cudaEventRecord(events[event_labels.size()], stream));
    event_labels.push_back(label);
  }
  void end_profile(const GraphDef* g) {
    mark(-1);
    CK(cudaStreamSynchronize(stream));
    for (size_t i = 0; i + 1 < event_labels.size(); ++i) {
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, events[i], events[i + 1]));
      auto& t = timings[g->labels[event_labels[i]]];
      t.first += ms;
      t.second += 1;
    }
  }
  void print_timings() {
    std::vector<std::pair<std::string, std::pair<double, long>>> v(timings.begin(), timings.end());
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
    double total = 0;
    for (auto& t : v) total += t.second.first;
    std::fprintf(stderr, "per-kernel times (%.3f ms in all):\n", total);
    for (auto& t : v) std::fprintf(stderr, "  %10.3f ms %6ld x  %s\n", t.second.first, t.second.second, t.first.c_str());
  }
};

static void check_launch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail("kernel %s did not launch: %s", kernel, cudaGetErrorString(e));
}

/**
 * The grouped expert GEMM (bf16) over rows grouped by the host copy `off` of the offsets: one tile
 * per 128 rows of each expert. False when the sizes or pointers do not suit it (the caller then
 * takes the padded cuBLASLt path).
 */
static bool expert_grouped(Runtime& rt, const void* x, const int* order, int k, const void* wg, const void* wu, const int* offsets, const std::vector<int>& off, void* out, long E, long O, long I) {
  auto aligned = [](const void* p) { return (uintptr_t)p % 16 == 0; };
  if (I % 8 || O % 2 || !aligned(x) || !aligned(wg) || (wu && !aligned(wu))) return false;
  std::vector<int2> tiles;
  for (long e = 0; e < E; ++e)
    for (int r = off[e]; r < off[e + 1]; r += EG_BM) tiles.push_back(make_int2((int)e, r));
  if (tiles.empty()) return true;
  int2* dev;
  CK(cudaMallocAsync(&dev, tiles.size() * sizeof(int2), rt.stream));
  CK(cudaMemcpyAsync(dev, tiles.data(), tiles.size() * sizeof(int2), cudaMemcpyHostToDevice, rt.stream));
  const auto* xb = (const __nv_bfloat16*)x;
  if (wu) {
    const dim3 g((unsigned)tiles.size(), (unsigned)((O + EG_BN / 2 - 1) / (EG_BN / 2)));
    expert_gemm<true><<<g, EG_THREADS, expert_gemm_smem_bytes(), rt.stream>>>(xb, order, k, (const __nv_bfloat16*)wg, (const __nv_bfloat16*)wu, offsets, dev, (__nv_bfloat16*)out, O, I);
  } else {
    const dim3 g((unsigned)tiles.size(), (unsigned)((O + EG_BN - 1) / EG_BN));
    expert_gemm<false><<<g, EG_THREADS, expert_gemm_smem_bytes(), rt.stream>>>(xb, order, k, (const __nv_bfloat16*)wg, nullptr, offsets, dev, (__nv_bfloat16*)out, O, I);
  }
  check_launch("expert_gemm");
  CK(cudaFreeAsync(dev, rt.stream));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Ctx routines

void Ctx::mark(int label) { rt->mark(label); }

void Ctx::launched(const char* kernel) {
  if (launch_status != cudaSuccess) fail("kernel %s did not launch: %s", kernel, cudaGetErrorString(launch_status));
  check_launch(kernel);
}

void Ctx::linear(int x, int w, int out, long M, long N, long K) {
  // One row (a batch-1 decode step): the GEMV kernel (16-byte loads, PDL-launched like the kernels
  // around it) where cuBLASLt's GEMM for M = 1 moves less; the LM head stays on cuBLASLt.
  const int dt = dtype(x);
  if (M == 1 && K % 256 == 0 && N * K <= (64L << 20) && dtype(out) == dt) {
    // As one expert over one row: expert_of never reads the offsets when E is 1.
    const dim3 g((unsigned)((N + 7) / 8), 1);
    if (dt == DT_BF16) CK(launch_pdl(stream, expert_gemv<__nv_bfloat16, false, true, true>, g, 256, 0, (const __nv_bfloat16*)ptr(x), (const int*)nullptr, 1, (const __nv_bfloat16*)ptr(w), (const __nv_bfloat16*)nullptr, (const int*)nullptr, (__nv_bfloat16*)ptr(out), 1, N, K));
    else CK(launch_pdl(stream, expert_gemv<float, false, true, true>, g, 256, 0, (const float*)ptr(x), (const int*)nullptr, 1, (const float*)ptr(w), (const float*)nullptr, (const int*)nullptr, (float*)ptr(out), 1, N, K));
    launched("gemv");
    return;
  }
  rt->gemm(dt, M, N, K, ptr(x), K, 0, ptr(w), K, 0, true, ptr(out), N, 0, 1);
}

void Ctx::cast(int in, int out, long n) {
  if (n == 0) return;
  const int a = dtype(in), b = dtype(out);
  const bool vec = n % 8 == 0 && (uintptr_t)ptr(in) % 16 == 0 && (uintptr_t)ptr(out) % 16 == 0;
  const dim3 gr = grid(((vec ? n / 8 : n) + 255) / 256);
#define LINGC_CONVERT(A, B)                                                                        \
  if (vec) CK(launch_pdl(stream, convert<A, B, true>, gr, 256, 0, (const A*)ptr(in), (B*)ptr(out), n)); \
  else CK(launch_pdl(stream, convert<A, B, false>, gr, 256, 0, (const A*)ptr(in), (B*)ptr(out), n));
  if (a == DT_BF16 && b == DT_F32) { LINGC_CONVERT(__nv_bfloat16, float) }
  else if (a == DT_F32 && b == DT_BF16) { LINGC_CONVERT(float, __nv_bfloat16) }
  else if (a == DT_F32 && b == DT_F32) { LINGC_CONVERT(float, float) }
  else if (a == DT_BF16 && b == DT_BF16) { LINGC_CONVERT(__nv_bfloat16, __nv_bfloat16) }
  else fail("cast: %s to %s is not a float cast", dtype_name(a), dtype_name(b));
#undef LINGC_CONVERT
  launched("convert");
}

void Ctx::concat(int out, long rows, int count, const int* srcs, const long* cols) {
  if (count < 1 || count > 4) fail("concat: %d inputs (the runtime's concat takes 1 to 4)", count);
  const size_t eb = dtype_bytes(dtype(out));
  // The widest unit (16, 8, 4 or 2 bytes) that every row width and pointer is a multiple of.
  size_t unit = 16;
  auto fits = [&](size_t u) {
    if ((uintptr_t)ptr(out) % u) return false;
    for (int j = 0; j < count; ++j)
      if ((cols[j] * eb) % u || (uintptr_t)ptr(srcs[j]) % u) return false;
    return true;
  };
  while (unit > eb && !fits(unit)) unit /= 2;
  ConcatSources in{};
  long out_cols = 0;
  in.count = count;
  for (int j = 0; j < count; ++j) {
    in.src[j] = ptr(srcs[j]);
    in.cols[j] = cols[j] * (long)eb / (long)unit;
    out_cols += in.cols[j];
  }
  if (rows == 0 || out_cols == 0) return;
  const dim3 gr((unsigned)std::min<long>((out_cols + 255) / 256, 4096), (unsigned)std::min<long>(rows, 65535));
  if (unit == 16) CK(launch_pdl(stream, concat_rows<uint4>, gr, 256, 0, in, (uint4*)ptr(out), rows, out_cols));
  else if (unit == 8) CK(launch_pdl(stream, concat_rows<uint2>, gr, 256, 0, in, (uint2*)ptr(out), rows, out_cols));
  else if (unit == 4) CK(launch_pdl(stream, concat_rows<unsigned>, gr, 256, 0, in, (unsigned*)ptr(out), rows, out_cols));
  else CK(launch_pdl(stream, concat_rows<unsigned short>, gr, 256, 0, in, (unsigned short*)ptr(out), rows, out_cols));
  launched("concat_rows");
}

void Ctx::moe_dispatch(int idx, int order, int offsets, int row_of, long n, long E) {
  if (n <= DISPATCH_ONE_BLOCK && E <= 4096) {
    CK(launch_pdl(stream, dispatch_one_block, 1, 1024, 2 * E * sizeof(int), (const int*)ptr(idx), n, (int)E, (int*)ptr(offsets), (int*)ptr(order), (int*)ptr(row_of)));
    launched("dispatch_one_block");
    return;
  }
  CK(cudaMemsetAsync(ptr(offsets), 0, (E + 1) * sizeof(int), stream));
  int* cursor;
  CK(cudaMallocAsync(&cursor, E * sizeof(int), stream));
  const long blocks = std::max<long>(1, (n + 255) / 256);
  dispatch_count<<<grid(blocks), 256, 0, stream>>>((const int*)ptr(idx), n, (int*)ptr(offsets));
  dispatch_scan<<<1, 32, 0, stream>>>((int*)ptr(offsets), cursor, (int)E);
  dispatch_place<<<grid(blocks), 256, 0, stream>>>((const int*)ptr(idx), n, cursor, (int*)ptr(order), (int*)ptr(row_of));
  launched("moe_dispatch");
  CK(cudaFreeAsync(cursor, stream));
}

void Ctx::expert_linear(int x, int order, int k, int wg, int wu, int offsets, int out, long rows, long E, long O, long I) {
  if (rows == 0) return;
  const int dt = dtype(out);
  const bool swiglu = wu >= 0;
  const bool gemv = rt->expert_path == "gemv" || (rt->expert_path.empty() && rows <= 4 * E);
  const int* ord = order >= 0 ? (const int*)ptr(order) : nullptr;
  if (gemv) {
    // A handful of rows: a block per row; more: a block per expert, reading each weight row once for its rows.
    const bool by_row = rows <= E / 4;
    const dim3 g((unsigned)((O + 7) / 8), (unsigned)(by_row ? rows : E));
    const bool vec = I % 256 == 0;
#define LINGC_GEMV(T, SW, V, R) CK(launch_pdl(stream, expert_gemv<T, SW, V, R>, g, 256, 0, (const T*)ptr(x), ord, k, (const T*)ptr(wg), swiglu ? (const T*)ptr(wu) : nullptr, (const int*)ptr(offsets), (T*)ptr(out), (int)E, O, I))
#define LINGC_GEMV_T(T)                                                          \
  if (swiglu) {                                                                  \
    if (vec) { if (by_row) LINGC_GEMV(T, true, true, true); else LINGC_GEMV(T, true, true, false); }     \
    else { if (by_row) LINGC_GEMV(T, true, false, true); else LINGC_GEMV(T, true, false, false); }       \
  } else {                                                                       \
    if (vec) { if (by_row) LINGC_GEMV(T, false, true, true); else LINGC_GEMV(T, false, true, false); }   \
    else { if (by_row) LINGC_GEMV(T, false, false, true); else LINGC_GEMV(T, false, false, false); }     \
  }
    if (dt == DT_BF16) { LINGC_GEMV_T(__nv_bfloat16) } else { LINGC_GEMV_T(float) }
#undef LINGC_GEMV_T
#undef LINGC_GEMV
    launched("expert_gemv");
    return;
  }
  // Many rows: the offsets come to the host once. bf16 takes the grouped GEMM (expert_gemm: a tile
  // per 128 rows of an expert, the token gather and SwiGLU fused), unless a test asks for the padded
  // path (LINGC_EXPERT_PATH=gemm or loop), which fp32 always takes.
  std::vector<int> off(E + 1);
  CK(cudaMemcpyAsync(off.data(), ptr(offsets), (E + 1) * sizeof(int), cudaMemcpyDeviceToHost, stream));
  CK(cudaStreamSynchronize(stream));
  if (dt == DT_BF16 && rt->expert_path != "gemm" && rt->expert_path != "loop" &&
      expert_grouped(*rt, ptr(x), ord, k, ptr(wg), swiglu ? ptr(wu) : nullptr, (const int*)ptr(offsets), off, ptr(out), E, O, I))
    return;
  // The padded path: each expert's first `cap` rows go through one strided-batched cuBLASLt GEMM
  // over all experts (rows padded to cap); an expert with more rows than cap (skewed routing) runs
  // its remaining rows as GEMMs of its own. cap minimizes an estimate of the cost: padded rows, plus
  // for each expert over cap the launches of its own GEMMs counted as the rows the batched GEMM would
  // do in that time (about 20 us at 500 TFLOP/s), so neither a skewed router nor a flood of tiny
  // per-expert GEMMs decides the time.
  std::vector<long> counts(E);
  for (long e = 0; e < E; ++e) counts[e] = off[e + 1] - off[e];
  const long maxr = *std::max_element(counts.begin(), counts.end());
  const double launch_rows = 1e10 / ((double)I * O * (swiglu ? 2 : 1));
  long cap = maxr;
  double best = (double)E * maxr;
  std::vector<long> sorted = counts;
  std::sort(sorted.begin(), sorted.end());
  for (long e = 0; e < E; ++e) {
    const long c = std::min(maxr, (sorted[e] + 15) / 16 * 16);
    const long over = E - (std::upper_bound(sorted.begin(), sorted.end(), c) - sorted.begin());
    const double cost = (double)E * c + launch_rows * over;
    if (c > 0 && cost < best) { best = cost; cap = c; }
  }
  if (rt->expert_cap >= 0) cap = std::min(cap, rt->expert_cap);
  if (rt->expert_path == "loop") cap = 0;
  const size_t eb = dtype_bytes(dt);
  if (cap > 0) {
    void *xp, *gp, *up = nullptr;
    CK(cudaMallocAsync(&xp, (size_t)E * cap * I * eb, stream));
    CK(cudaMallocAsync(&gp, (size_t)E * cap * O * eb, stream));
    if (swiglu) CK(cudaMallocAsync(&up, (size_t)E * cap * O * eb, stream));
    if (dt == DT_BF16) pad_rows<<<grid(rows), 256, 0, stream>>>((const __nv_bfloat16*)ptr(x), ord, k, (const int*)ptr(offsets), (int)E, (__nv_bfloat16*)xp, rows, I, cap);
    else pad_rows<<<grid(rows), 256, 0, stream>>>((const float*)ptr(x), ord, k, (const int*)ptr(offsets), (int)E, (float*)xp, rows, I, cap);
    launched("pad_rows");
    rt->gemm(dt, cap, O, I, xp, I, cap * I, ptr(wg), I, O * I, true, gp, O, cap * O, E);
    if (swiglu) {
      rt->gemm(dt, cap, O, I, xp, I, cap * I, ptr(wu), I, O * I, true, up, O, cap * O, E);
      if (dt == DT_BF16) unpad_swiglu<<<grid(rows), 256, 0, stream>>>((const __nv_bfloat16*)gp, (const __nv_bfloat16*)up, (const int*)ptr(offsets), (int)E, (__nv_bfloat16*)ptr(out), rows, O, cap);
      else unpad_swiglu<<<grid(rows), 256, 0, stream>>>((const float*)gp, (const float*)up, (const int*)ptr(offsets), (int)E, (float*)ptr(out), rows, O, cap);
      launched("unpad_swiglu");
    } else {
      if (dt == DT_BF16) unpad_rows<<<grid(rows), 256, 0, stream>>>((const __nv_bfloat16*)gp, (const int*)ptr(offsets), (int)E, (__nv_bfloat16*)ptr(out), rows, O, cap);
      else unpad_rows<<<grid(rows), 256, 0, stream>>>((const float*)gp, (const int*)ptr(offsets), (int)E, (float*)ptr(out), rows, O, cap);
      launched("unpad_rows");
    }
    CK(cudaFreeAsync(xp, stream));
    CK(cudaFreeAsync(gp, stream));
    if (up) CK(cudaFreeAsync(up, stream));
    if (cap == maxr) return;
  }
  // Rows past cap (all rows on the "loop" path): one GEMM per expert over its remaining rows, which
  // are first gathered (with the token gather) to their own row index.
  const char* xs = (const char*)ptr(x);
  void* gathered = nullptr;
  if (ord) {
    CK(cudaMallocAsync(&gathered, (size_t)rows * I * eb, stream));
    if (dt == DT_BF16) gather_overflow<<<grid(rows), 256, 0, stream>>>((const __nv_bfloat16*)xs, ord, k, (const int*)ptr(offsets), (int)E, (__nv_bfloat16*)gathered, rows, I, cap);
    else gather_overflow<<<grid(rows), 256, 0, stream>>>((const float*)xs, ord, k, (const int*)ptr(offsets), (int)E, (float*)gathered, rows, I, cap);
    launched("gather_overflow");
    xs = (const char*)gathered;
  }
  void* g = ptr(out);
  void* u = nullptr;
  if (swiglu) {
    CK(cudaMallocAsync(&g, (size_t)rows * O * eb, stream));
    CK(cudaMallocAsync(&u, (size_t)rows * O * eb, stream));
  }
  for (long e = 0; e < E; ++e) {
    const long lo = off[e] + cap, n = off[e + 1] - lo;
    if (n <= 0) continue;
    rt->gemm(dt, n, O, I, xs + lo * I * eb, I, 0, (const char*)ptr(wg) + e * O * I * eb, I, 0, true, (char*)g + lo * O * eb, O, 0, 1);
    if (!swiglu) continue;
    rt->gemm(dt, n, O, I, xs + lo * I * eb, I, 0, (const char*)ptr(wu) + e * O * I * eb, I, 0, true, (char*)u + lo * O * eb, O, 0, 1);
    const long m = n * O;
    if (dt == DT_BF16) silu_mul<<<grid((m + 255) / 256), 256, 0, stream>>>((const __nv_bfloat16*)g + lo * O, (const __nv_bfloat16*)u + lo * O, (__nv_bfloat16*)ptr(out) + lo * O, m);
    else silu_mul<<<grid((m + 255) / 256), 256, 0, stream>>>((const float*)g + lo * O, (const float*)u + lo * O, (float*)ptr(out) + lo * O, m);
    launched("silu_mul");
  }
  if (swiglu) {
    CK(cudaFreeAsync(g, stream));
    CK(cudaFreeAsync(u, stream));
  }
  if (gathered) CK(cudaFreeAsync(gathered, stream));
}

static void run_attention(Runtime& rt, int dt, const void* qp, const void* kp, const void* vp, void* op, long B, long nh, long nkv, long S, long T, long d, long dv, float scale, bool causal, bool transposed) {
  cudaStream_t stream = rt.stream;
  if (d > 256 || dv > 256) fail("attention: head dims above 256 are not supported (d=%ld, dv=%ld)", d, dv);
  // The decode kernel takes up to 16 query positions (more is prefill: the GEMM path) and caches of
  // up to DEC_CHUNK * DEC_MAX_SPLIT keys, in no more items than it has combine counters.
  const long items = B * nkv * S * ((nh / nkv + DEC_ROWS - 1) / DEC_ROWS);
  const bool fits = T <= (long)DEC_CHUNK * DEC_MAX_SPLIT && items <= rt.counter_slots;
  const bool split = fits && (rt.attention_path == "split" || (rt.attention_path.empty() && S <= 16));
  if (split) {
    // Items are (batch, KV head, query position, group of up to DEC_ROWS query heads). Enough key
    // chunks for about a block per SM, but none under 32 keys or over DEC_CHUNK, at most
    // DEC_MAX_SPLIT.
    long want = std::max<long>({1, (132 + items - 1) / items, (T + DEC_CHUNK - 1) / DEC_CHUNK});
    want = std::min<long>({want, (T + 31) / 32, DEC_MAX_SPLIT});  // chunks of 32 keys at least
    const int chunk = (int)((T + want - 1) / want);
    const int nsplit = (int)((T + chunk - 1) / chunk);
    float* part = nullptr;
    if (nsplit > 1) CK(cudaMallocAsync(&part, (size_t)items * nsplit * DEC_ROWS * (2 + dv) * sizeof(float), stream));  // acc, then (max, sum)
    const dim3 g1((unsigned)items, (unsigned)nsplit);
    const size_t eb = dtype_bytes(dt);
    // 16-byte key and value loads: rows a multiple of 16 bytes (and of 8 elements, for the P.V columns).
    const bool vec = (d * eb) % 16 == 0 && (dv * eb) % 16 == 0 && dv % 8 == 0 && (uintptr_t)kp % 16 == 0 && (uintptr_t)vp % 16 == 0;
#define LINGC_DEC(E, V) CK(launch_pdl(stream, attn_decode<E, V>, g1, DEC_THREADS, 0, (const E*)qp, (const E*)kp, (const E*)vp, part, rt.counters, (E*)op, nh, nkv, S, T, (int)d, (int)dv, scale, causal, chunk, nsplit, (int)transposed))
    if (dt == DT_BF16) { if (vec) LINGC_DEC(__nv_bfloat16, true); else LINGC_DEC(__nv_bfloat16, false); }
    else { if (vec) LINGC_DEC(float, true); else LINGC_DEC(float, false); }
#undef LINGC_DEC
    check_launch("attn_decode");
    if (part) CK(cudaFreeAsync(part, stream));
    return;
  }
  // Prefill, bf16, head dims 64 or 128: the fused kernel.
  const bool flash = dt == DT_BF16 && d == dv && (d == 64 || d == 128) && rt.attention_path != "gemm";
  if (flash) {
    const dim3 gf((unsigned)((S + FA_BM - 1) / FA_BM), (unsigned)(B * nh));
    if (d == 64) flash_attn<64><<<gf, FA_THREADS, flash_smem_bytes<64>(), stream>>>((const __nv_bfloat16*)qp, (const __nv_bfloat16*)kp, (const __nv_bfloat16*)vp, (__nv_bfloat16*)op, nh, nkv, S, T, scale, causal, transposed);
    else flash_attn<128><<<gf, FA_THREADS, flash_smem_bytes<128>(), stream>>>((const __nv_bfloat16*)qp, (const __nv_bfloat16*)kp, (const __nv_bfloat16*)vp, (__nv_bfloat16*)op, nh, nkv, S, T, scale, causal, transposed);
    check_launch("flash_attn");
    return;
  }
  // Otherwise (fp32, other head dims, LINGC_ATTENTION_PATH=gemm): query tiles of Tq rows; per tile, scores = Q K^T over the keys the tile can see (the
  // causal mask cuts the rest) as one strided-batched GEMM over all heads, softmax in place, then
  // P V into the tile's rows. Grouped K/V are first repeated per query head so the batch strides are
  // uniform. Tiles bound the score buffer (about 256 MB) and skip the masked half of the work.
  const long rep = nh / nkv, BH = B * nh;
  const size_t eb = dtype_bytes(dt);
  const void* kx = kp;
  const void* vx = vp;
  void *kr = nullptr, *vr = nullptr;
  if (rep > 1) {
    CK(cudaMallocAsync(&kr, (size_t)BH * T * d * eb, stream));
    CK(cudaMallocAsync(&vr, (size_t)BH * T * dv * eb, stream));
    const long nk = BH * T * d, nv = BH * T * dv;
    if (dt == DT_BF16) {
      repeat_kv<<<grid((nk + 255) / 256), 256, 0, stream>>>((const __nv_bfloat16*)kx, (__nv_bfloat16*)kr, B, nkv, rep, T * d);
      repeat_kv<<<grid((nv + 255) / 256), 256, 0, stream>>>((const __nv_bfloat16*)vx, (__nv_bfloat16*)vr, B, nkv, rep, T * dv);
    } else {
      repeat_kv<<<grid((nk + 255) / 256), 256, 0, stream>>>((const float*)kx, (float*)kr, B, nkv, rep, T * d);
      repeat_kv<<<grid((nv + 255) / 256), 256, 0, stream>>>((const float*)vx, (float*)vr, B, nkv, rep, T * dv);
    }
    check_launch("repeat_kv");
    kx = kr;
    vx = vr;
  }
  long Tq = std::max<long>(1, std::min<long>(S, (256L << 20) / std::max<long>(1, BH * T * (long)eb)));
  if (rt.attention_tile > 0) Tq = std::min(Tq, rt.attention_tile);
  void* scores;
  CK(cudaMallocAsync(&scores, (size_t)BH * Tq * T * eb, stream));
  char* o = (char*)op;
  if (transposed) CK(cudaMallocAsync((void**)&o, (size_t)BH * S * dv * eb, stream));
  for (long s0 = 0; s0 < S; s0 += Tq) {
    const long sq = std::min(Tq, S - s0);
    const long first_visible = T - S + s0 + 1;
    const long keys = causal ? std::min(T, first_visible + sq - 1) : T;
    rt.gemm(dt, sq, keys, d, (const char*)qp + s0 * d * eb, d, S * d, kx, d, T * d, true, scores, keys, sq * keys, BH);
    const long rows = BH * sq;
    if (dt == DT_BF16) softmax_rows<<<grid(rows), 256, 0, stream>>>((__nv_bfloat16*)scores, rows, sq, keys, first_visible, scale, causal);
    else softmax_rows<<<grid(rows), 256, 0, stream>>>((float*)scores, rows, sq, keys, first_visible, scale, causal);
    check_launch("softmax_rows");
    rt.gemm(dt, sq, dv, keys, scores, keys, sq * keys, vx, dv, T * dv, false, o + s0 * dv * eb, dv, S * dv, BH);
  }
  if (transposed) {
    const long n = BH * S * dv;
    if (dt == DT_BF16) bhsd_to_bshd<<<grid((n + 255) / 256), 256, 0, stream>>>((const __nv_bfloat16*)o, (__nv_bfloat16*)op, B, nh, S, dv);
    else bhsd_to_bshd<<<grid((n + 255) / 256), 256, 0, stream>>>((const float*)o, (float*)op, B, nh, S, dv);
    check_launch("bhsd_to_bshd");
    CK(cudaFreeAsync(o, stream));
  }
  CK(cudaFreeAsync(scores, stream));
  if (kr) CK(cudaFreeAsync(kr, stream));
  if (vr) CK(cudaFreeAsync(vr, stream));
}

void Ctx::attention(int q, int k, int v, int out, long B, long nh, long nkv, long S, long T, long d, long dv, float scale, bool causal, bool transposed) {
  run_attention(*rt, dtype(q), ptr(q), ptr(k), ptr(v), ptr(out), B, nh, nkv, S, T, d, dv, scale, causal, transposed);
}

// ---------------------------------------------------------------------------------------------
// Self-test: the bf16 attention kernels (fused prefill, decode) against a plain reference, on
// shapes the golden checkpoint (fp32, head dim 16) does not reach.

/** Reference attention: a block per query row, fp32, with the unfused path's rounding; out [B,nh,S,D]. */
__global__ void attn_reference(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, float* out, long nh, long nkv, long S, long Tk, int D, float scale, int causal) {
  extern __shared__ float sc[];
  __shared__ float stat[2];
  const long row = blockIdx.x, i = row % S, bh = row / S, h = bh % nh, b = bh / nh, g = h / (nh / nkv);
  const long visible = causal ? Tk - S + i + 1 : Tk;
  for (long j = threadIdx.x; j < Tk; j += blockDim.x) {
    float dot = 0.f;
    for (int c = 0; c < D; ++c) dot += __bfloat162float(q[row * D + c]) * __bfloat162float(k[((b * nkv + g) * Tk + j) * D + c]);
    sc[j] = j < visible ? rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(dot) * scale) : -INFINITY;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = -INFINITY, sum = 0.f;
    for (long j = 0; j < Tk; ++j) m = fmaxf(m, sc[j]);
    for (long j = 0; j < Tk; ++j) sum += __expf(sc[j] - m);
    stat[0] = m;
    stat[1] = sum;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float a = 0.f;
    for (long j = 0; j < visible; ++j) a += rnd<__nv_bfloat16>(__expf(sc[j] - stat[0]) / stat[1]) * __bfloat162float(v[((b * nkv + g) * Tk + j) * D + c]);
    out[row * D + c] = a;
  }
}

/** Reference expert matmul: a block per row (grouped by expert), fp32 sums, the unfused rounding; out [rows, O]. */
__global__ void expert_reference(const __nv_bfloat16* x, const int* order, int k, const __nv_bfloat16* wg, const __nv_bfloat16* wu, const int* offsets, int E, float* out, long O, long I) {
  const long r = blockIdx.x;
  const int e = expert_of(offsets, E, (int)r);
  const __nv_bfloat16* xr = x + (long)(order[r] / k) * I;
  for (long o = threadIdx.x; o < O; o += blockDim.x) {
    float g = 0.f, u = 0.f;
    for (long c = 0; c < I; ++c) {
      g += __bfloat162float(xr[c]) * __bfloat162float(wg[((long)e * O + o) * I + c]);
      if (wu) u += __bfloat162float(xr[c]) * __bfloat162float(wu[((long)e * O + o) * I + c]);
    }
    g = rnd<__nv_bfloat16>(g);
    out[r * O + o] = wu ? rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(g / (1.f + __expf(-g))) * rnd<__nv_bfloat16>(u)) : g;
  }
}

/** The grouped expert GEMM against expert_reference on routings with empty and crowded experts. */
static int selftest_experts(Runtime& rt) {
  struct Case {
    const char* what;
    long tokens, k, E, O, I;
    bool swiglu;
  };
  const Case cases[] = {
      {"SwiGLU, a k-step tail, a partial column tile", 300, 2, 8, 96, 200, true},
      {"down projection, partial column tile", 300, 2, 8, 96, 200, false},
      {"SwiGLU, Ling-mini widths", 2000, 8, 32, 512, 2048, true},
      {"down projection, Ling-mini widths", 2000, 8, 32, 2048, 512, false},
  };
  int failed = 0;
  for (const Case& c : cases) {
    const long rows = c.tokens * c.k;
    // Routing: expert 0 gets nothing, expert 1 a third of the pairs, the rest spread.
    std::vector<int> idx(rows);
    unsigned long long z = 99;
    for (long p = 0; p < rows; ++p) {
      z = z * 6364136223846793005ull + 1442695040888963407ull;
      const unsigned v = (unsigned)(z >> 33);
      idx[p] = v % 3 == 0 ? 1 : 1 + (int)(v / 3 % (c.E - 1));
    }
    std::vector<int> order(rows), off(c.E + 1, 0);
    for (long p = 0; p < rows; ++p) off[idx[p] + 1]++;
    for (long e = 0; e < c.E; ++e) off[e + 1] += off[e];
    std::vector<int> cursor(off.begin(), off.end() - 1);
    for (long p = 0; p < rows; ++p) order[cursor[idx[p]]++] = (int)p;
    const long nx = c.tokens * c.I, nw = c.E * c.O * c.I;
    __nv_bfloat16 *x, *wg, *wu = nullptr, *o;
    int *dord, *doff;
    float* ref;
    CK(cudaMalloc(&x, nx * 2));
    CK(cudaMalloc(&wg, nw * 2));
    if (c.swiglu) CK(cudaMalloc(&wu, nw * 2));
    CK(cudaMalloc(&o, rows * c.O * 2));
    CK(cudaMalloc(&ref, rows * c.O * 4));
    CK(cudaMalloc(&dord, rows * 4));
    CK(cudaMalloc(&doff, (c.E + 1) * 4));
    CK(cudaMemcpy(dord, order.data(), rows * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(doff, off.data(), (c.E + 1) * 4, cudaMemcpyHostToDevice));
    init_random<<<grid((nx + 255) / 256), 256, 0, rt.stream>>>(x, nx, 21, 1.f, 0.f);
    init_random<<<grid((nw + 255) / 256), 256, 0, rt.stream>>>(wg, nw, 22, 0.1f, 0.f);
    if (wu) init_random<<<grid((nw + 255) / 256), 256, 0, rt.stream>>>(wu, nw, 23, 0.1f, 0.f);
    if (!expert_grouped(rt, x, dord, (int)c.k, wg, wu, doff, off, o, c.E, c.O, c.I)) fail("selftest: the grouped expert GEMM refused its sizes");
    expert_reference<<<(unsigned)rows, 128, 0, rt.stream>>>(x, dord, (int)c.k, wg, wu, doff, (int)c.E, ref, c.O, c.I);
    check_launch("expert_reference");
    std::vector<__nv_bfloat16> ho(rows * c.O);
    std::vector<float> hr(rows * c.O);
    CK(cudaMemcpyAsync(ho.data(), o, rows * c.O * 2, cudaMemcpyDeviceToHost, rt.stream));
    CK(cudaMemcpyAsync(hr.data(), ref, rows * c.O * 4, cudaMemcpyDeviceToHost, rt.stream));
    CK(cudaStreamSynchronize(rt.stream));
    double worst = 0, biggest = 0;
    for (long i = 0; i < rows * c.O; ++i) {
      const float got = __bfloat162float(ho[i]);
      worst = std::max(worst, std::isfinite(got) ? std::fabs((double)got - hr[i]) : INFINITY);
      biggest = std::max(biggest, (double)std::fabs(hr[i]));
    }
    // Summation order differs from the reference's, so a result near a rounding boundary may land
    // one bf16 step away, twice over for SwiGLU (g and u, then the product): 2^-6 of the largest.
    const double tol = biggest / 64;
    const bool ok = worst <= tol && biggest > 0.01;
    failed += !ok;
    std::printf("selftest expert GEMM (%s): max abs diff %.3e, largest value %.3f (tolerance %.1e): %s\n", c.what, worst, biggest, tol, ok ? "PASS" : "FAIL");
    for (void* p : {(void*)x, (void*)wg, (void*)wu, (void*)o, (void*)ref, (void*)dord, (void*)doff})
      if (p) CK(cudaFree(p));
  }
  return failed;
}

static int selftest(Runtime& rt) {
  struct Case {
    const char* what;
    long B, nh, nkv, S, T, D;
    bool causal, transposed;
  };
  const Case cases[] = {
      {"fused prefill, GQA 4:1, causal", 1, 4, 1, 200, 200, 128, true, false},
      {"fused prefill, S < T, transposed out", 2, 4, 2, 70, 150, 128, true, true},
      {"fused prefill, head dim 64, not causal", 1, 2, 2, 64, 64, 64, false, false},
      {"fused prefill, head dim 64, 8 heads", 1, 8, 8, 130, 130, 64, true, false},
      {"decode, batch 1, 2048 keys, GQA 4:1", 1, 16, 4, 1, 2048, 128, true, true},
      {"decode, 5 queries, batch 2", 2, 4, 1, 5, 300, 128, true, false},
      {"decode, 16 heads per KV head (two row groups)", 1, 16, 1, 3, 1000, 64, true, true},
      {"decode, one chunk", 3, 2, 2, 1, 40, 128, true, false},
      {"decode, head dim 36 (scalar loads)", 1, 4, 2, 2, 100, 36, true, false},
  };
  const float tol = 1e-2f;  // of the largest value: about 2.5 bf16 roundings
  int failed = 0;
  for (const Case& c : cases) {
    const long nq = c.B * c.nh * c.S * c.D, nk = c.B * c.nkv * c.T * c.D;
    __nv_bfloat16 *q, *k, *v, *o;
    float* ref;
    CK(cudaMalloc(&q, nq * 2));
    CK(cudaMalloc(&k, nk * 2));
    CK(cudaMalloc(&v, nk * 2));
    CK(cudaMalloc(&o, nq * 2));
    CK(cudaMalloc(&ref, nq * 4));
    init_random<<<grid((nq + 255) / 256), 256, 0, rt.stream>>>(q, nq, 11, 2.f, 0.f);
    init_random<<<grid((nk + 255) / 256), 256, 0, rt.stream>>>(k, nk, 12, 1.f, 0.f);
    init_random<<<grid((nk + 255) / 256), 256, 0, rt.stream>>>(v, nk, 13, 1.f, 0.f);
    const float scale = 1.f / std::sqrt((float)c.D);
    run_attention(rt, DT_BF16, q, k, v, o, c.B, c.nh, c.nkv, c.S, c.T, c.D, c.D, scale, c.causal, c.transposed);
    attn_reference<<<(unsigned)(c.B * c.nh * c.S), 128, c.T * sizeof(float), rt.stream>>>(q, k, v, ref, c.nh, c.nkv, c.S, c.T, (int)c.D, scale, c.causal);
    check_launch("attn_reference");
    std::vector<__nv_bfloat16> ho(nq);
    std::vector<float> hr(nq);
    CK(cudaMemcpyAsync(ho.data(), o, nq * 2, cudaMemcpyDeviceToHost, rt.stream));
    CK(cudaMemcpyAsync(hr.data(), ref, nq * 4, cudaMemcpyDeviceToHost, rt.stream));
    CK(cudaStreamSynchronize(rt.stream));
    double worst = 0, biggest = 0;
    for (long b = 0; b < c.B; ++b)
      for (long h = 0; h < c.nh; ++h)
        for (long i = 0; i < c.S; ++i)
          for (long d = 0; d < c.D; ++d) {
            const float r = hr[((b * c.nh + h) * c.S + i) * c.D + d];
            const float got = __bfloat162float(ho[c.transposed ? ((b * c.S + i) * c.nh + h) * c.D + d : ((b * c.nh + h) * c.S + i) * c.D + d]);
            const double diff = std::isfinite(got) ? std::fabs((double)got - r) : INFINITY;
            worst = std::max(worst, diff);
            biggest = std::max(biggest, (double)std::fabs(r));
          }
    const bool ok = worst <= tol * biggest && biggest > 0.01;
    failed += !ok;
    std::printf("selftest attention (%s): max abs diff %.3e, largest value %.3f (tolerance %.1e): %s\n", c.what, worst, biggest, tol * biggest, ok ? "PASS" : "FAIL");
    for (void* p : {(void*)q, (void*)k, (void*)v, (void*)o, (void*)ref}) CK(cudaFree(p));
  }
  failed += selftest_experts(rt);
  return failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Host helpers, generate, bench, command line

static DevTensor upload_ids(Runtime& rt, const std::vector<int>& ids, long B, long S) {
  DevTensor t;
  t.dtype = DT_I32;
  t.shape = {B, S};
  CK(cudaMallocAsync(&t.ptr, std::max<size_t>(ids.size() * 4, 16), rt.stream));
  CK(cudaMemcpyAsync(t.ptr, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice, rt.stream));
  return t;
}

static std::string to_bytes_f32(Runtime& rt, const DevTensor& t) {
  const long n = t.numel();
  std::string out((size_t)n * 4, '\0');
  if (t.dtype == DT_F32 || t.dtype == DT_I32) {
    CK(cudaMemcpyAsync(&out[0], t.ptr, n * 4, cudaMemcpyDeviceToHost, rt.stream));
    CK(cudaStreamSynchronize(rt.stream));
    return out;
  }
  std::vector<__nv_bfloat16> tmp(n);
  CK(cudaMemcpyAsync(tmp.data(), t.ptr, n * 2, cudaMemcpyDeviceToHost, rt.stream));
  CK(cudaStreamSynchronize(rt.stream));
  for (long i = 0; i < n; ++i) ((float*)&out[0])[i] = __bfloat162float(tmp[i]);
  return out;
}

static std::vector<int> argmax_last(Runtime& rt, const DevTensor& logits) {
  const long B = logits.shape[0], S = logits.shape[1], V = logits.shape[2];
  int* d;
  CK(cudaMallocAsync(&d, B * sizeof(int), rt.stream));
  argmax_rows<<<(unsigned)B, 256, 0, rt.stream>>>((const float*)logits.ptr + (S - 1) * V, V, S * V, d);
  CK(cudaGetLastError());
  std::vector<int> h(B);
  CK(cudaMemcpyAsync(h.data(), d, B * sizeof(int), cudaMemcpyDeviceToHost, rt.stream));
  CK(cudaStreamSynchronize(rt.stream));
  CK(cudaFreeAsync(d, rt.stream));
  return h;
}

/** Greedy generation for one batch of equal-length prompts: forward once, then decode steps; the KV cache stays on the device. */
static std::vector<std::vector<int>> generate_batch(Runtime& rt, const std::vector<std::vector<int>>& prompts, int steps, std::vector<std::string>* step_logits) {
  const long B = (long)prompts.size(), S = (long)prompts[0].size();
  std::vector<int> flat;
  for (auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());
  std::vector<std::vector<int>> outs(B);
  DevTensor ids = upload_ids(rt, flat, B, S);
  auto res = rt.run(&GRAPH_forward, {{"input_ids", ids}}, false);
  rt.free_tensor(ids);
  for (int step = 0; step < steps; ++step) {
    DevTensor& logits = res.at("logits");
    std::vector<int> next = argmax_last(rt, logits);
    if (step_logits) {
      std::string all = to_bytes_f32(rt, logits);
      const long Sx = logits.shape[1], V = logits.shape[2];
      for (long b = 0; b < B; ++b) step_logits->push_back(all.substr(((b * Sx + Sx - 1) * V) * 4, V * 4));
    }
    for (long b = 0; b < B; ++b) outs[b].push_back(next[b]);
    if (step + 1 == steps) break;
    std::map<std::string, DevTensor> in;
    DevTensor nid = upload_ids(rt, next, B, 1);
    in["input_ids"] = nid;
    for (long l = 0; l < MODEL.layers; ++l) {
      in["past." + std::to_string(l) + ".key"] = res.at("present." + std::to_string(l) + ".key");
      in["past." + std::to_string(l) + ".value"] = res.at("present." + std::to_string(l) + ".value");
    }
    auto next_res = rt.run(&GRAPH_decode, in, false);
    for (auto& kv : res) rt.free_tensor(kv.second);
    rt.free_tensor(nid);
    res = next_res;
  }
  for (auto& kv : res) rt.free_tensor(kv.second);
  return outs;
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static double time_ms(Runtime& rt, int repeats, const std::function<void()>& fn) {
  std::vector<double> t;
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int r = 0; r < repeats; ++r) {
    CK(cudaEventRecord(a, rt.stream));
    fn();
    CK(cudaEventRecord(b, rt.stream));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  return median(t);
}

static DevTensor random_tensor(Runtime& rt, int dt, std::vector<long> shape, unsigned long long seed) {
  DevTensor t;
  t.dtype = dt;
  t.shape = shape;
  const long n = t.numel();
  CK(cudaMalloc(&t.ptr, std::max<size_t>((size_t)n * dtype_bytes(dt), 16)));
  if (dt == DT_BF16) init_random<<<grid((n + 255) / 256), 256, 0, rt.stream>>>((__nv_bfloat16*)t.ptr, n, seed, 1.f, 0.f);
  else init_random<<<grid((n + 255) / 256), 256, 0, rt.stream>>>((float*)t.ptr, n, seed, 1.f, 0.f);
  CK(cudaGetLastError());
  return t;
}

/** bench: prefill B x S and decode B with a P-token cache, median of repeats; plus this GPU's copy bandwidth and bf16 GEMM rate. */
static void bench(Runtime& rt, const std::vector<std::pair<long, long>>& prefill, const std::vector<std::pair<long, long>>& decode, int repeats) {
  std::printf("{\n  \"model\": \"%s\",\n", MODEL.name);
  // Ceilings measured in this run.
  double copy_GBps = 0;
  {
    const size_t bytes = 4ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemsetAsync(a, 1, bytes, rt.stream));
    const double ms = time_ms(rt, 10, [&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, rt.stream)); });
    copy_GBps = 2.0 * bytes / (ms * 1e-3) / 1e9;
    std::printf("  \"copy_bandwidth_GBps\": %.1f,\n", copy_GBps);
    CK(cudaFree(a));
    CK(cudaFree(b));
    const long n = 8192;
    DevTensor A = random_tensor(rt, DT_BF16, {n, n}, 1), B = random_tensor(rt, DT_BF16, {n, n}, 2), C = random_tensor(rt, DT_BF16, {n, n}, 3);
    const double gms = time_ms(rt, 10, [&] { rt.gemm(DT_BF16, n, n, n, A.ptr, n, 0, B.ptr, n, 0, true, C.ptr, n, 0, 1); });
    std::printf("  \"bf16_gemm_TFLOPs\": %.1f,\n", 2.0 * n * n * n / (gms * 1e-3) / 1e12);
    CK(cudaFree(A.ptr));
    CK(cudaFree(B.ptr));
    CK(cudaFree(C.ptr));
  }
  std::printf("  \"prefill\": [");
  for (size_t i = 0; i < prefill.size(); ++i) {
    const long B = prefill[i].first, S = prefill[i].second;
    std::vector<int> ids((size_t)(B * S));
    for (size_t j = 0; j < ids.size(); ++j) ids[j] = (int)((j * 7919) % MODEL.vocab);
    DevTensor t = upload_ids(rt, ids, B, S);
    auto once = [&] {
      auto r = rt.run(&GRAPH_forward, {{"input_ids", t}}, false);
      for (auto& kv : r) rt.free_tensor(kv.second);
    };
    once();
    rt.timings.clear();
    const double ms = time_ms(rt, repeats, once);
    std::printf("%s\n    {\"batch\": %ld, \"seq\": %ld, \"ms\": %.3f, \"tokens_per_s\": %.1f}", i ? "," : "", B, S, ms, B * S / (ms * 1e-3));
    if (rt.profile) {
      std::fprintf(stderr, "prefill %ldx%ld, %d run(s): ", B, S, repeats);
      rt.print_timings();
    }
    rt.free_tensor(t);
  }
  std::printf("\n  ],\n  \"decode\": [");
  for (size_t i = 0; i < decode.size(); ++i) {
    const long B = decode[i].first, P = decode[i].second;
    std::map<std::string, DevTensor> in;
    std::vector<int> ids((size_t)B);
    for (long b = 0; b < B; ++b) ids[b] = (int)((b * 31 + 7) % MODEL.vocab);
    in["input_ids"] = upload_ids(rt, ids, B, 1);
    const int dt = MODEL.bf16 ? DT_BF16 : DT_F32;
    for (long l = 0; l < MODEL.layers; ++l)
      for (const char* kv : {"key", "value"}) in["past." + std::to_string(l) + "." + kv] = random_tensor(rt, dt, {B, MODEL.kv_heads, P, MODEL.head_dim}, 100 + l);
    auto once = [&] {
      auto r = rt.run(&GRAPH_decode, in, false);
      for (auto& kv : r) rt.free_tensor(kv.second);
    };
    once();
    rt.timings.clear();
    const double ms = time_ms(rt, repeats, once);
    double graphed = 0;
    if (!rt.profile) {
      rt.run_graphed(&GRAPH_decode, in);
      graphed = time_ms(rt, repeats, [&] { rt.run_graphed(&GRAPH_decode, in); });
    }
    std::printf("%s\n    {\"batch\": %ld, \"cache\": %ld, \"ms_per_step\": %.3f, \"tokens_per_s\": %.1f, \"graph_ms_per_step\": %.3f, \"graph_tokens_per_s\": %.1f", i ? "," : "", B, P, ms,
                B / (ms * 1e-3), graphed, graphed > 0 ? B / (graphed * 1e-3) : 0.0);
    if (B == 1) {
      // What one step must read at least: the weights one token uses (its K routed experts, one
      // embedding row) and the whole KV cache; as a share of the copy bandwidth measured above.
      const double cache = 2.0 * MODEL.layers * MODEL.kv_heads * P * MODEL.head_dim * dtype_bytes(dt);
      const double bytes = MODEL.decode_weight_bytes + cache, best = std::min(ms, graphed > 0 ? graphed : ms);
      std::printf(", \"bytes_per_step\": %.0f, \"GBps\": %.1f, \"bandwidth_fraction\": %.3f", bytes, bytes / (best * 1e-3) / 1e9, bytes / (best * 1e-3) / 1e9 / copy_GBps);
    }
    std::printf("}");
    if (rt.profile) {
      std::fprintf(stderr, "decode %ldx%ld, %d step(s): ", B, P, repeats);
      rt.print_timings();
    }
    for (auto& kv : in) CK(cudaFree(kv.second.ptr));
  }
  std::printf("\n  ]\n}\n");
}

static std::vector<std::pair<long, long>> parse_shapes(const std::string& s) {
  std::vector<std::pair<long, long>> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    const std::string t = s.substr(i, j - i);
    const size_t x = t.find('x');
    if (x == std::string::npos) fail("bad shape '%s' (expected BxS)", t.c_str());
    out.emplace_back(std::atol(t.substr(0, x).c_str()), std::atol(t.substr(x + 1).c_str()));
    i = j + 1;
  }
  return out;
}

static std::vector<std::vector<int>> parse_prompts(const std::string& s) {
  std::vector<std::vector<int>> out(1);
  std::string num;
  for (size_t i = 0; i <= s.size(); ++i) {
    const char c = i < s.size() ? s[i] : ';';
    if (c >= '0' && c <= '9') num.push_back(c);
    else if (c == ',' || c == ';') {
      if (num.empty()) fail("--prompt: empty token id");
      const long v = std::atol(num.c_str());
      if (v < 0 || v >= MODEL.vocab) fail("--prompt: id %ld is not in the vocabulary (0..%ld)", v, MODEL.vocab - 1);
      out.back().push_back((int)v);
      num.clear();
      if (c == ';' && i < s.size()) out.emplace_back();
    } else if (c != ' ') fail("--prompt: unexpected character '%c'", c);
  }
  return out;
}

static const char* USAGE =
    "usage: lingc_model COMMAND [options]\n"
    "  run       --checkpoint DIR --graph forward|decode --input IN.safetensors --out OUT.safetensors [--observe] [--profile]\n"
    "  generate  --checkpoint DIR --prompt '1,2,3;4,5' --max-new-tokens N [--logits-out F.safetensors] [--profile]\n"
    "  selftest  (the bf16 attention and grouped expert kernels against references; no checkpoint)\n"
    "  bench     (--checkpoint DIR | --random-weights) [--prefill 1x2048,1x8192] [--decode 1x2048,32x2048] [--repeats N] [--profile]\n";

}  // namespace lingc

using namespace lingc;

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help")) {
    std::printf("%s", USAGE);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  std::map<std::string, std::string> opt;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) fail("unexpected argument '%s'", a.c_str());
    a = a.substr(2);
    if (a == "observe" || a == "profile" || a == "random-weights") opt[a] = "1";
    else if (i + 1 < argc) opt[a] = argv[++i];
    else fail("option --%s needs a value", a.c_str());
  }
  Runtime rt;
  rt.init();
  rt.profile = opt.count("profile") > 0;
  if (cmd == "selftest") return selftest(rt);
  Checkpoint ck;
  const bool random = opt.count("random-weights") > 0;
  if (!random) {
    if (!opt.count("checkpoint")) fail("--checkpoint DIR is required (or --random-weights for bench)");
    ck.open(opt["checkpoint"]);
  }
  rt.load(random ? nullptr : &ck, 1234);
  if (cmd == "run") {
    const GraphDef* g = opt["graph"] == "decode" ? &GRAPH_decode : &GRAPH_forward;
    if (!opt.count("input") || !opt.count("out")) fail("run needs --input and --out");
    StFile in;
    in.open(opt["input"]);
    std::map<std::string, DevTensor> inputs;
    for (auto& kv : in.entries) {
      const StEntry& e = kv.second;
      std::vector<char> host(e.end - e.begin);
      in.read(e, host.data());
      DevTensor t;
      t.shape = e.shape;
      const long n = t.numel();
      std::vector<char> dev;
      if (e.dtype == "I64") {
        t.dtype = DT_I32;
        dev.resize(n * 4);
        for (long i = 0; i < n; ++i) ((int*)dev.data())[i] = (int)((const long long*)host.data())[i];
      } else if (e.dtype == "I32" || e.dtype == "F32") {
        t.dtype = e.dtype == "I32" ? DT_I32 : DT_F32;
        dev = host;
      } else if (e.dtype == "BF16") {
        t.dtype = DT_BF16;
        dev = host;
      } else fail("%s: tensor \"%s\" has dtype %s, which the runner does not read", opt["input"].c_str(), kv.first.c_str(), e.dtype.c_str());
      CK(cudaMalloc(&t.ptr, std::max<size_t>(dev.size(), 16)));
      CK(cudaMemcpy(t.ptr, dev.data(), dev.size(), cudaMemcpyHostToDevice));
      inputs[kv.first] = t;
    }
    auto out = rt.run(g, inputs, opt.count("observe") > 0);
    std::vector<std::pair<std::string, std::pair<std::string, std::pair<std::vector<long>, std::string>>>> tensors;
    for (auto& kv : out) tensors.push_back({kv.first, {kv.second.dtype == DT_I32 ? "I32" : "F32", {kv.second.shape, to_bytes_f32(rt, kv.second)}}});
    write_safetensors(opt["out"], tensors);
  } else if (cmd == "generate") {
    if (!opt.count("prompt") || !opt.count("max-new-tokens")) fail("generate needs --prompt and --max-new-tokens");
    const auto prompts = parse_prompts(opt["prompt"]);
    const int steps = std::atoi(opt["max-new-tokens"].c_str());
    std::vector<std::vector<int>> result(prompts.size());
    std::vector<std::string> logits(prompts.size() * std::max(steps, 0));
    std::map<size_t, std::vector<size_t>> by_len;
    for (size_t i = 0; i < prompts.size(); ++i) by_len[prompts[i].size()].push_back(i);
    for (auto& kv : by_len) {
      std::vector<std::vector<int>> batch;
      for (size_t i : kv.second) batch.push_back(prompts[i]);
      std::vector<std::string> lg;
      auto r = steps > 0 ? generate_batch(rt, batch, steps, &lg) : std::vector<std::vector<int>>(batch.size());
      for (size_t j = 0; j < kv.second.size(); ++j) {
        result[kv.second[j]] = r[j];
        for (int s = 0; s < steps; ++s) logits[kv.second[j] * steps + s] = lg[s * batch.size() + j];
      }
    }
    for (auto& r : result) {
      for (size_t j = 0; j < r.size(); ++j) std::printf("%s%d", j ? " " : "", r[j]);
      std::printf("\n");
    }
    if (opt.count("logits-out") && steps > 0) {
      std::string all;
      for (auto& l : logits) all += l;
      write_safetensors(opt["logits-out"], {{"step_logits", {"F32", {{(long)prompts.size(), (long)steps, MODEL.vocab}, all}}}});
    }
  } else if (cmd == "bench") {
    bench(rt, parse_shapes(opt.count("prefill") ? opt["prefill"] : "1x2048,1x8192"), parse_shapes(opt.count("decode") ? opt["decode"] : "1x2048,32x2048"), opt.count("repeats") ? std::atoi(opt["repeats"].c_str()) : 10);
  } else {
    fail("unknown command '%s'\n%s", cmd.c_str(), USAGE);
  }
  if (rt.profile && cmd != "bench") rt.print_timings();
  CK(cudaStreamSynchronize(rt.stream));
  return 0;
}
