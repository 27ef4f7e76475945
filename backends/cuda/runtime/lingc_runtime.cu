// The lingc CUDA runtime (see lingc_runtime.h). Sections: errors; a small JSON reader (safetensors
// headers and index files); safetensors files; the hand-written kernels behind Ctx's routines, one
// file per job (lingc_device.cuh: helpers, lingc_experts.cuh, lingc_attention.cuh, lingc_misc.cuh);
// the Runtime (device, cuBLASLt, weights, graphs); Ctx's routines; the selftest command
// (lingc_selftest.cuh); generate and bench; pipeline stages across processes (lingc_pipeline.cuh);
// the command line.
#include "lingc_runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <cerrno>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "lingc_nccl.h"

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

size_t dtype_bytes(int dt) { return dt == DT_BF16 ? 2 : dt == DT_F8 ? 1 : 4; }

static const char* dtype_name(int dt) { return dt == DT_BF16 ? "bf16" : dt == DT_I32 ? "i32" : dt == DT_F8 ? "f8e4m3" : "f32"; }

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

static bool json_equal(const Json& a, const Json& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Json::NUL: return true;
    case Json::BOOL: return a.b == b.b;
    case Json::NUM: return a.num == b.num;
    case Json::STR: return a.str == b.str;
    case Json::ARR:
      if (a.arr.size() != b.arr.size()) return false;
      for (size_t i = 0; i < a.arr.size(); ++i)
        if (!json_equal(a.arr[i], b.arr[i])) return false;
      return true;
    case Json::OBJ:
      if (a.obj.size() != b.obj.size()) return false;
      for (auto& kv : a.obj) {
        const Json* o = b.get(kv.first);
        if (!o || !json_equal(kv.second, *o)) return false;
      }
      return true;
  }
  return false;
}

static std::string json_text(const Json& j) {
  switch (j.kind) {
    case Json::NUL: return "null";
    case Json::BOOL: return j.b ? "true" : "false";
    case Json::NUM: { char buf[64]; std::snprintf(buf, sizeof buf, "%.17g", j.num); return buf; }
    case Json::STR: return "\"" + j.str + "\"";
    case Json::ARR: { std::string s = "["; for (size_t i = 0; i < j.arr.size(); ++i) s += (i ? ", " : "") + json_text(j.arr[i]); return s + "]"; }
    case Json::OBJ: { std::string s = "{"; for (size_t i = 0; i < j.obj.size(); ++i) s += (i ? ", \"" : "\"") + j.obj[i].first + "\": " + json_text(j.obj[i].second); return s + "}"; }
  }
  return "?";
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

/**
 * A checkpoint folder's config.json against the configuration the program was compiled from: every
 * key both give must agree (keys config.json leaves out take defaults the compiler resolved, and are
 * not judged here). A checkpoint of another configuration has the same tensor shapes more often than
 * not (rope_theta, routed_scaling_factor, rms_norm_eps) and would give other numbers silently.
 */
static void check_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!*MODEL_CONFIG || !exists(path)) return;
  const Json want = parse_json(MODEL_CONFIG, "the program's recorded config");
  const Json have = parse_json(read_file(path), path.c_str());
  if (have.kind != Json::OBJ) fail("%s: not a JSON object", path.c_str());
  for (auto& kv : want.obj) {
    const Json* h = have.get(kv.first);
    if (h && !json_equal(*h, kv.second))
      fail("%s: %s is %s, but this program was compiled for %s (a checkpoint of another configuration; compile again from this one)", path.c_str(), kv.first.c_str(), json_text(*h).c_str(), json_text(kv.second).c_str());
  }
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

  /** A checkpoint folder, or one .safetensors file. */
  void open(const std::string& d) {
    dir = d;
    std::vector<std::string> names;
    struct stat st;
    if (::stat(d.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      files.resize(1);
      files[0].open(d);
      for (auto& kv : files[0].entries) where[kv.first] = 0;
      return;
    }
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
// Kernels behind the routines, by job.

#include "lingc_device.cuh"
#include "lingc_experts.cuh"
#include "lingc_attention.cuh"
#include "lingc_misc.cuh"

// ---------------------------------------------------------------------------------------------
// Runtime

/**
 * A graph expanded for running: every function instance (frame) of the call tree gets its local
 * slots side by side in one global slot list, so the host code of a layer function serves all its
 * layers (each frame adds its base to local slot numbers). Parameters and call results become
 * aliases of the slots that hold their storage; weights get their full names (call scopes joined).
 */
struct Plan {
  const GraphDef* g = nullptr;
  std::vector<SlotMeta> slots;
  std::vector<Frame> frames;  // frames[0] is the entry
  std::vector<const char*> labels;
  int nsym = 0;
  std::vector<int> input_slots, output_slots;
  std::vector<int> growers;    // the results of cache_append: aliases of the input they grow
  std::vector<std::vector<int>> members;  // per storage slot: the alias slots that share it
  std::vector<char> is_output;            // per storage slot: a graph output lives in it
  std::vector<int> room_axis;  // per slot: the axis a grown input's buffer has room along, else -1

  static std::string join(const std::string& a, const char* b) {
    if (!b || !*b) return a;
    return a.empty() ? std::string(b) : a + "." + b;
  }

  int storage(int s) const {
    while (slots[s].source == SRC_ALIAS) s = slots[s].alias_of;
    return s;
  }

  /** Adds an instance of f whose parameters are the global slots args; returns its frame index. */
  int expand(const FuncDef* f, const std::string& prefix, const std::vector<int>& args, bool entry) {
    const int fi = (int)frames.size();
    frames.push_back(Frame{f, (int)slots.size(), nsym, (int)labels.size(), {}});
    nsym += f->nsyms;
    for (int l = 0; l < f->nlabels; ++l) labels.push_back(f->labels[l]);
    const int base = (int)slots.size();
    for (int l = 0; l < f->nslots; ++l) {
      const LocalSlot& ls = f->slots[l];
      SlotMeta m{ls.name && *ls.name ? join(prefix, ls.name) : "", "", ls.dtype, ls.source, -1, ls.rank, ls.resident, fi, l, ls.grows};
      if (ls.source == SRC_WEIGHT) m.weight = join(prefix, ls.weight);
      if (ls.source == SRC_PARAM) {
        m.source = entry ? SRC_INPUT : SRC_ALIAS;
        if (!entry) m.alias_of = args[ls.ref];
      }
      if (ls.source == SRC_ALIAS) m.alias_of = base + ls.ref;
      slots.push_back(m);
    }
    for (int k = 0; k < f->ncalls; ++k) {
      const CallSite& cs = f->calls[k];
      std::vector<int> a(cs.nargs);
      for (int i = 0; i < cs.nargs; ++i) a[i] = base + cs.args[i];
      const int child = expand(cs.callee, join(prefix, cs.scope), a, false);
      frames[fi].calls.push_back(child);
    }
    // A call's results share the storage of the callee's result slots.
    for (int l = 0; l < f->nslots; ++l) {
      const LocalSlot& ls = f->slots[l];
      if (ls.source != SRC_CALL) continue;
      const Frame& c = frames[frames[fi].calls[ls.ref]];
      slots[base + l].source = SRC_ALIAS;
      slots[base + l].alias_of = c.base + c.f->results[ls.ref2];
    }
    return fi;
  }

  void build(const GraphDef* graph) {
    g = graph;
    expand(g->entry, "", {}, true);
    for (auto& m : slots)
      if (m.source == SRC_ALIAS) m.alias_of = storage(m.alias_of);
    const Frame& e = frames[0];
    for (int i = 0; i < g->ninputs; ++i) {
      int s = -1;
      for (int l = 0; l < e.f->nslots; ++l)
        if (e.f->slots[l].source == SRC_PARAM && e.f->slots[l].ref == g->inputs[i].index) s = e.base + l;
      input_slots.push_back(s);
    }
    // The result slots themselves (their shapes), not their storage: a grown cache is longer than the input it lives in.
    for (int i = 0; i < g->noutputs; ++i) output_slots.push_back(e.base + (g->outputs[i].slot >= 0 ? g->outputs[i].slot : e.f->results[g->outputs[i].index]));
    members.assign(slots.size(), {});
    for (size_t s = 0; s < slots.size(); ++s)
      if (slots[s].source == SRC_ALIAS) members[slots[s].alias_of].push_back((int)s);
    is_output.assign(slots.size(), 0);
    for (int s : output_slots) is_output[storage(s)] = 1;
    room_axis.assign(slots.size(), -1);
    for (size_t s = 0; s < slots.size(); ++s) {
      if (slots[s].grows < 0) continue;
      const int st = storage((int)s);
      if (slots[st].source != SRC_INPUT) fail("graph %s: a cache_append grows %s, which is not a graph input", g->name, slots[st].name.c_str());
      growers.push_back((int)s);
      room_axis[st] = slots[s].grows;
    }
  }

  /** Every frame's symbols from the entry's (frames are in call order: a callee after its caller). */
  void bind_symbols(const long* entry, std::vector<long>& out) const {
    out.assign(std::max(nsym, 1), 0);
    for (int i = 0; i < frames[0].f->nsyms; ++i) out[i] = entry[i];
    for (const Frame& fr : frames)
      for (int k = 0; k < fr.f->ncalls; ++k) fr.f->calls[k].symbols(&out[fr.sym], &out[frames[fr.calls[k]].sym]);
  }

  void shape(int slot, const std::vector<long>& sym, long* out) const {
    const SlotMeta& m = slots[slot];
    const Frame& fr = frames[m.frame];
    fr.f->shape(m.local, &sym[fr.sym], out);
  }
};

struct GemmPlan {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
  bool has_algo;
  cublasLtMatrixLayout_t scales_in = nullptr, scales_out = nullptr;  // gemm_fp8's activation-scale transpose
};

class Runtime {
 public:
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 64u << 20;
  std::map<std::string, DevTensor> weights;
  std::map<std::string, Plan> plans_by_graph;
  std::map<const Plan*, std::vector<DevTensor>> resident;  // per graph: constants and load-time results by slot
  std::map<std::string, GemmPlan> plans;
  cublasLtMatrixTransformDesc_t scale_transpose = nullptr;  // gemm_fp8's activation-scale transpose
  bool profile = false;
  // The selftest's check of the tile programs (Ctx::checking): on while it runs the model, and what
  // each checked step's comparisons found, by label.
  struct StepCheck {
    long runs = 0, bad = 0;
    double worst = 0, tolerance = 0;
  };
  bool check_steps = false;
  std::map<std::string, StepCheck> step_checks;
  // run(): allocate each value's storage at its first write and free it after its last use (false:
  // every value of the graph allocated for the whole run, --eager-alloc).
  bool lazy_alloc = true;
  std::vector<cudaEvent_t> events;
  std::vector<int> event_labels;
  const Plan* profiling_plan = nullptr;
  std::map<std::string, std::pair<double, long>> timings;  // label -> (ms, calls)
  int sm_count = 0;  // of this GPU (the selftest's decode split; graphs get it from the plan)
  int* counters = nullptr;  // decode attention's combine counters, zero between launches (the last block resets its own)
  const long counter_slots = 1L << 16;  // (backends/kernels/gen/context.ts COUNTER_SLOTS: the generated kernels' bound)
  int* grid_bar = nullptr;  // the grid barrier's word (lingc::grid_sync): a count whose top bit flips at each barrier (low bits zero between), and the generation of the barriers whose last arrival runs work

  void init() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
      std::fprintf(stderr, "lingc_model: error: no CUDA device\n");
      std::exit(3);
    }
    CK(cudaStreamCreate(&stream));
    {
      int dev = 0;
      CK(cudaGetDevice(&dev));
      CK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev));
    }
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
    CKB(cublasLtMatrixTransformDescCreate(&scale_transpose, CUDA_R_32F));
    {
      const cublasOperation_t t = CUBLAS_OP_T;
      CKB(cublasLtMatrixTransformDescSetAttribute(scale_transpose, CUBLASLT_MATRIX_TRANSFORM_DESC_TRANSA, &t, sizeof t));
    }
    CK(cudaMalloc(&workspace, workspace_bytes));
    CK(cudaMalloc(&counters, counter_slots * sizeof(int)));
    CK(cudaMemset(counters, 0, counter_slots * sizeof(int)));
    CK(cudaMalloc(&grid_bar, 2 * sizeof(int)));
    CK(cudaMemset(grid_bar, 0, 2 * sizeof(int)));
  }

  // --- GEMM (row-major): C[M,N] = A[M,K] . op(B), B stored [N,K] (b_trans) or [K,N]; batched by strides.
  // C is of dtype out_dt (-1: dt's; bf16 operands into f32 results: a linear {out = f32}), summed in f32.
  void gemm(int dt, long M, long N, long K, const void* A, long lda, long sa, const void* B, long ldb, long sb, bool b_trans, void* C, long ldc, long sc, long batch, int out_dt = -1) {
    if (M == 0 || N == 0) return;
    if (out_dt < 0) out_dt = dt;
    const cudaDataType_t t = dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cudaDataType_t tc = out_dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
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
    std::snprintf(key, sizeof key, "%d>%d/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%ld/%d/%u/%u/%u", dt, out_dt, M, N, K, lda, sa, ldb, sb, ldc, sc, batch, (int)b_trans, al_a, al_b, al_c);
    auto it = plans.find(key);
    if (it == plans.end()) {
      GemmPlan p{};
      CKB(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      if (b_trans) CKB(cublasLtMatrixLayoutCreate(&p.a, t, K, N, ldb));
      else CKB(cublasLtMatrixLayoutCreate(&p.a, t, N, K, ldb));
      CKB(cublasLtMatrixLayoutCreate(&p.b, t, K, M, lda));
      CKB(cublasLtMatrixLayoutCreate(&p.c, tc, N, M, ldc));
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

  // --- block-scaled FP8 GEMM (cuBLAS 12.9+ on sm_90): Y[M,N] = X[M,K] . W[N,K]^T of e4m3 codes with fp32
  // scales, X in 1x128 groups and W in 128x128 blocks, accumulated in fp32 per 128-wide K slice.
  // cuBLASLt's A is W (column-major K x N, transposed) with BLK128x128 scales laid out [N/128][L4]
  // (L = K/128 blocks per row, rows padded to L4 = a multiple of 4); its B is X (column-major K x M)
  // with VEC128 scales laid out K-block-major, [L][M]. lingc's grids are row-major [N/128][L] and
  // [M][L], so the weight's is padded when L is not a multiple of 4 and the activations' transposed
  // (cuBLASLt's own transform) when it has more than one row and one block, unless the plan stored
  // them K-block-major already (xs_kmajor: the quantize kernel wrote them so). bench/cuda/fp8_gemm.cu
  // checks these layouts against a dequantize-and-sum reference.
  void gemm_fp8(int out_dt, long M, long N, long K, const void* X, const float* xs, bool xs_kmajor, const void* W, const float* ws, void* Y) {
    if (M == 0 || N == 0) return;
    if (M % 4 || K % 16 || N % 16) fail("gemm_fp8: %ldx%ldx%ld is not what cuBLASLt's block-scaled FP8 GEMM takes (rows a multiple of 4, K and N of 16; the plan must not choose it)", M, N, K);
    const long L = (K + 127) / 128, L4 = (L + 3) / 4 * 4, NB = (N + 127) / 128;
    const bool transpose = !xs_kmajor && M > 1 && L > 1;  // [M][L] and [L][M] are the same bytes otherwise
    char key[128];
    std::snprintf(key, sizeof key, "fp8/%d/%ld/%ld/%ld/%d", out_dt, M, N, K, transpose ? 1 : 0);
    auto it = plans.find(key);
    if (it == plans.end()) {
      GemmPlan p{};
      const cudaDataType_t ot = out_dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
      CKB(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      const cublasLtMatmulMatrixScale_t am = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, bm = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &am, sizeof am));
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bm, sizeof bm));
      CKB(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_8F_E4M3, K, N, K));
      CKB(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_8F_E4M3, K, M, K));
      CKB(cublasLtMatrixLayoutCreate(&p.c, ot, N, M, N));
      if (transpose) {
        // [M][L] row-major is column-major L x M; its transpose, column-major M x L, is [L][M].
        CKB(cublasLtMatrixLayoutCreate(&p.scales_in, CUDA_R_32F, L, M, L));
        CKB(cublasLtMatrixLayoutCreate(&p.scales_out, CUDA_R_32F, M, L, M));
      }
      cublasLtMatmulPreference_t pref;
      CKB(cublasLtMatmulPreferenceCreate(&pref));
      CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes));
      cublasLtMatmulHeuristicResult_t res{};
      int got = 0;
      // The scale pointers take part in choosing (the heuristic checks they are set); any will do.
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws, sizeof ws));
      CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs, sizeof xs));
      const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.a, p.b, p.c, p.c, pref, 1, &res, &got);
      CKB(cublasLtMatmulPreferenceDestroy(pref));
      if (st != CUBLAS_STATUS_SUCCESS || got == 0) fail("cuBLASLt has no block-scaled FP8 algorithm for a %ldx%ldx%ld GEMM on this GPU (it needs sm_90 and cuBLAS 12.9 or newer)", M, N, K);
      p.algo = res.algo;
      p.has_algo = true;
      it = plans.emplace(key, p).first;
    }
    const GemmPlan& p = it->second;
    // Scratch for the adapted grids (stream-ordered, so it also works inside a captured decode step).
    // The weight's padding is redone per call; it only happens where K/128 is not a multiple of 4,
    // which no Ling projection has.
    float* wpad = nullptr;
    float* xt = nullptr;
    if (L4 != L) {
      CK(cudaMallocAsync(&wpad, NB * L4 * sizeof(float), stream));
      CK(cudaMemsetAsync(wpad, 0, NB * L4 * sizeof(float), stream));
      CK(cudaMemcpy2DAsync(wpad, L4 * sizeof(float), ws, L * sizeof(float), L * sizeof(float), NB, cudaMemcpyDeviceToDevice, stream));
      ws = wpad;
    }
    if (transpose) {
      CK(cudaMallocAsync(&xt, M * L * sizeof(float), stream));
      const float one = 1.f, zero = 0.f;
      CKB(cublasLtMatrixTransform(lt, scale_transpose, &one, xs, p.scales_in, &zero, nullptr, nullptr, xt, p.scales_out, stream));
      xs = xt;
    }
    // The scale pointers are arguments of this call: the descriptor is read when the matmul is enqueued.
    CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws, sizeof ws));
    CKB(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs, sizeof xs));
    const float alpha = 1.f, beta = 0.f;
    CKB(cublasLtMatmul(lt, p.desc, &alpha, W, p.a, X, p.b, &beta, Y, p.c, Y, p.c, &p.algo, workspace, workspace_bytes, stream));
    if (wpad) CK(cudaFreeAsync(wpad, stream));
    if (xt) CK(cudaFreeAsync(xt, stream));
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
      // Random weights: matrices uniform within 1/sqrt(fan-in); vectors (norm scales, biases) 1 +- 0.05.
      // FP8 codes are uniform over the format's range (+-448) and their block scales (`*_scale_inv`, one
      // per 128x128 block) positive, within [0.5, 1.5] x 1/(448 sqrt(fan-in)): the dequantized weights
      // are as large as the bf16 ones.
      const bool norm = shape.size() == 1;
      const bool block_scales = name.size() > 10 && name.compare(name.size() - 10, 10, "_scale_inv") == 0;
      float a = norm ? 0.05f : 1.f / std::sqrt((float)shape.back());
      float center = norm ? 1.f : 0.f;
      if (block_scales) {
        center = 1.f / (448.f * std::sqrt(128.f * (float)shape.back()));
        a = 0.5f * center;
      }
      const long n = t.numel();
      if (dt == DT_BF16) init_random<<<grid((n + 255) / 256), 256, 0, stream>>>((__nv_bfloat16*)t.ptr, n, seed ^ std::hash<std::string>()(name), a, center);
      else if (dt == DT_F8) init_random<<<grid((n + 255) / 256), 256, 0, stream>>>((__nv_fp8_e4m3*)t.ptr, n, seed ^ std::hash<std::string>()(name), 448.f, 0.f);
      else init_random<<<grid((n + 255) / 256), 256, 0, stream>>>((float*)t.ptr, n, seed ^ std::hash<std::string>()(name), a, center);
      CK(cudaGetLastError());
      weights[name] = t;
      return;
    }
    const std::string want = dt == DT_BF16 ? "BF16" : dt == DT_F32 ? "F32" : dt == DT_F8 ? "F8_E4M3" : "I32";
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
      refuse_nonfinite(ck->dir, n, dt, (char*)t.ptr + e * part_bytes, part_shape);
    }
    weights[name] = t;
  }

  /**
   * A weight holding NaN or an infinity would make every output NaN without a word: refused as it is
   * loaded, naming the checkpoint tensor and the position (as the TypeScript hosts do).
   */
  void refuse_nonfinite(const std::string& dir, const std::string& tensor, int dt, const void* p, const std::vector<long>& shape) {
    long n = 1;
    for (long d : shape) n *= d;
    if (dt == DT_I32 || n == 0) return;
    if (!first_bad) CK(cudaMalloc(&first_bad, sizeof(unsigned long long)));
    const unsigned long long none = (unsigned long long)n;
    CK(cudaMemcpyAsync(first_bad, &none, sizeof none, cudaMemcpyHostToDevice, stream));
    const long blocks = std::min<long>((n + 255) / 256, 4096);
    if (dt == DT_BF16) first_nonfinite<<<grid(blocks), 256, 0, stream>>>((const __nv_bfloat16*)p, n, first_bad);
    else if (dt == DT_F8) first_nonfinite<<<grid(blocks), 256, 0, stream>>>((const __nv_fp8_e4m3*)p, n, first_bad);
    else first_nonfinite<<<grid(blocks), 256, 0, stream>>>((const float*)p, n, first_bad);
    CK(cudaGetLastError());
    unsigned long long at = none;
    CK(cudaMemcpyAsync(&at, first_bad, sizeof at, cudaMemcpyDeviceToHost, stream));
    CK(cudaStreamSynchronize(stream));
    if (at >= none) return;
    float v = 0;
    const char* src = (const char*)p + at * dtype_bytes(dt);
    if (dt == DT_BF16) {
      __nv_bfloat16 b;
      CK(cudaMemcpy(&b, src, 2, cudaMemcpyDeviceToHost));
      v = __bfloat162float(b);
    } else if (dt == DT_F8) {
      __nv_fp8_e4m3 b;
      CK(cudaMemcpy(&b, src, 1, cudaMemcpyDeviceToHost));
      v = float(b);
    } else {
      CK(cudaMemcpy(&v, src, 4, cudaMemcpyDeviceToHost));
    }
    std::string pos;
    long r = (long)at;
    for (int d = (int)shape.size() - 1; d >= 0; --d) {
      pos = std::to_string(r % shape[d]) + (pos.empty() ? "" : ", ") + pos;
      r /= shape[d];
    }
    fail("%s: weight \"%s\" holds %s at [%s]; lingc refuses non-finite weights (every output would be NaN)", dir.c_str(), tensor.c_str(), std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity", pos.c_str());
  }
  unsigned long long* first_bad = nullptr;  // refuse_nonfinite's result on the device

  /** The expanded graph named `name` (built on first use). */
  const Plan& plan(const std::string& name) {
    auto it = plans_by_graph.find(name);
    if (it != plans_by_graph.end()) return it->second;
    for (int i = 0; i < NGRAPHS; ++i) {
      if (name != GRAPHS[i]->name) continue;
      Plan& p = plans_by_graph[name];
      p.build(GRAPHS[i]);
      return p;
    }
    std::string have;
    for (int i = 0; i < NGRAPHS; ++i) have += std::string(i ? ", " : "") + GRAPHS[i]->name;
    fail("the program has no graph '%s' (it has %s)", name.c_str(), have.c_str());
  }

  /** Whether any graph reads weights (a program without any runs with no checkpoint). */
  bool declares_weights() {
    for (int gi = 0; gi < NGRAPHS; ++gi)
      for (const SlotMeta& m : plan(GRAPHS[gi]->name).slots)
        if (m.source == SRC_WEIGHT) return true;
    return false;
  }

  /** Loads every weight every graph declares (all checked before any kernel runs), then constants and load-time steps. */
  void load(const Checkpoint* ck, unsigned long long seed) {
    std::vector<long> shape(8);
    for (int gi = 0; gi < NGRAPHS; ++gi) {
      const Plan& p = plan(GRAPHS[gi]->name);
      std::vector<long> sym;
      std::vector<long> zeros(p.frames[0].f->nsyms + 1, 0);
      p.bind_symbols(zeros.data(), sym);
      for (size_t s = 0; s < p.slots.size(); ++s) {
        const SlotMeta& m = p.slots[s];
        if (m.source != SRC_WEIGHT) continue;
        p.shape((int)s, sym, shape.data());
        upload_weight(m.weight, m.dtype, std::vector<long>(shape.begin(), shape.begin() + m.rank), ck, seed);
      }
    }
    CK(cudaStreamSynchronize(stream));
    for (int gi = 0; gi < NGRAPHS; ++gi) prepare(plan(GRAPHS[gi]->name));
  }

  void prepare(const Plan& p) {
    std::vector<DevTensor>& res = resident[&p];
    res.assign(p.slots.size(), DevTensor());
    std::vector<long> shape(8);
    std::vector<long> sym;
    std::vector<long> zeros(p.frames[0].f->nsyms + 1, 0);
    p.bind_symbols(zeros.data(), sym);
    for (const Frame& fr : p.frames) {
      for (int c = 0; c < fr.f->nconsts; ++c) {
        const ConstDef& cd = fr.f->consts[c];
        const int slot = fr.base + cd.slot;
        const SlotMeta& m = p.slots[slot];
        p.shape(slot, sym, shape.data());
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
        res[slot] = t;
      }
    }
    for (size_t s = 0; s < p.slots.size(); ++s) {
      if (!p.slots[s].resident || p.slots[s].source != SRC_COMPUTED) continue;
      p.shape((int)s, sym, shape.data());
      DevTensor t;
      t.dtype = p.slots[s].dtype;
      for (int d = 0; d < p.slots[s].rank; ++d) t.shape.push_back(shape[d]);
      CK(cudaMalloc(&t.ptr, std::max<size_t>((size_t)t.numel() * dtype_bytes(t.dtype), 16)));
      res[s] = t;
    }
    Ctx c;
    bind(c, p, sym);
    p.frames[0].f->prepare(c, p.frames[0]);
    CK(cudaStreamSynchronize(stream));
  }

  void bind(Ctx& c, const Plan& p, const std::vector<long>& sym) {
    c.rt = this;
    c.plan = &p;
    c.stream = stream;
    c.sym = sym;
    c.ptrs.assign(p.slots.size(), nullptr);
    c.rows.assign(p.slots.size(), 0);
    const std::vector<DevTensor>& res = resident[&p];
    for (size_t s = 0; s < p.slots.size(); ++s) {
      const SlotMeta& m = p.slots[s];
      if (m.source == SRC_WEIGHT) c.ptrs[s] = weights.at(m.weight).ptr;
      else if (!res.empty() && res[s].ptr) c.ptrs[s] = res[s].ptr;
    }
  }

  /** The symbols of a plan's frames from its inputs' shapes. */
  std::vector<long> symbols_from(const Plan& p, const std::map<std::string, DevTensor>& inputs) {
    std::vector<long> entry(p.frames[0].f->nsyms + 1, 0);
    for (int i = 0; i < p.g->nbinds; ++i) {
      auto it = inputs.find(p.g->binds[i].input);
      if (it == inputs.end()) fail("graph %s: missing input '%s'", p.g->name, p.g->binds[i].input);
      entry[p.g->binds[i].sym] = it->second.shape.at(p.g->binds[i].axis);
    }
    std::vector<long> sym;
    p.bind_symbols(entry.data(), sym);
    return sym;
  }

  /** Points the aliases at their storage. */
  static void resolve_aliases(Ctx& c, const Plan& p) {
    for (size_t s = 0; s < p.slots.size(); ++s)
      if (p.slots[s].source == SRC_ALIAS) c.ptrs[s] = c.ptrs[p.slots[s].alias_of];
  }

  /**
   * `t` in a new buffer with room for `rows` positions along `axis` (one strided copy): how a KV
   * cache enters in-place growth.
   */
  DevTensor with_room(const DevTensor& t, int axis, long rows) {
    long outer = 1, inner = 1;
    for (int d = 0; d < axis; ++d) outer *= t.shape[d];
    for (size_t d = axis + 1; d < t.shape.size(); ++d) inner *= t.shape[d];
    const long len = t.shape.at(axis);
    if (rows < len) fail("a cache of %ld positions does not fit in room for %ld", len, rows);
    const size_t eb = dtype_bytes(t.dtype);
    DevTensor r = t;
    r.room_axis = axis;
    r.rows = rows;
    r.view = false;
    CK(cudaMallocAsync(&r.ptr, std::max<size_t>((size_t)(outer * rows * inner) * eb, 16), stream));
    if (outer > 0 && len * inner > 0)
      CK(cudaMemcpy2DAsync(r.ptr, rows * inner * eb, t.ptr, t.rows_along(axis) * inner * eb, len * inner * eb, outer, cudaMemcpyDeviceToDevice, stream));
    return r;
  }

  /** Whether `t` lies in a buffer with rows past its own (a cache grown in place). */
  static bool has_room(const DevTensor& t) { return t.room_axis >= 0 && t.rows != t.shape.at(t.room_axis); }

  /** `t` copied into a buffer of exactly its shape (for reading back a cache with room). */
  DevTensor packed(const DevTensor& t) {
    DevTensor r = with_room(t, t.room_axis, t.shape.at(t.room_axis));
    r.room_axis = -1;
    r.rows = 0;
    return r;
  }

  /**
   * Binds a run's inputs by name: checks their shapes and dtypes, points the input slots at them,
   * and gives each cache the plan grows in place (cache_append) a buffer with room for the rows it
   * adds: the caller's when it has the room, else a copy into a new buffer (listed in `grown`).
   */
  void bind_inputs(Ctx& c, const Plan& p, const std::map<std::string, DevTensor>& inputs, std::vector<int>& grown) {
    const GraphDef* g = p.g;
    std::vector<long> shape(8);
    c.rows.assign(p.slots.size(), 0);
    std::vector<const DevTensor*> given(p.slots.size(), nullptr);
    for (int i = 0; i < g->ninputs; ++i) {
      auto it = inputs.find(g->inputs[i].name);
      if (it == inputs.end()) fail("graph %s: missing input '%s'", g->name, g->inputs[i].name);
      const int s = p.input_slots[i];
      p.shape(s, c.sym, shape.data());
      if ((int)it->second.shape.size() != p.slots[s].rank || !std::equal(it->second.shape.begin(), it->second.shape.end(), shape.begin()))
        fail("graph %s: input '%s' has the wrong shape", g->name, g->inputs[i].name);
      if (it->second.dtype != p.slots[s].dtype) fail("graph %s: input '%s' is %s, the graph takes %s", g->name, g->inputs[i].name, dtype_name(it->second.dtype), dtype_name(p.slots[s].dtype));
      if (it->second.room_axis >= 0 && it->second.rows != it->second.shape[it->second.room_axis] && p.room_axis[s] != it->second.room_axis)
        fail("graph %s: input '%s' lies in a buffer with room to grow, which this graph does not grow", g->name, g->inputs[i].name);
      c.ptrs[s] = it->second.ptr;
      given[s] = &it->second;
    }
    for (int gs : p.growers) {
      const int st = p.storage(gs), axis = p.slots[gs].grows;
      p.shape(gs, c.sym, shape.data());
      const long need = shape[axis];
      const DevTensor& t = *given[st];
      const long have = t.rows_along(axis);
      if (have >= need) {
        c.rows[st] = have;
        continue;
      }
      DevTensor r = with_room(t, axis, need);  // stream-ordered: done before the graph's kernels read it
      c.ptrs[st] = r.ptr;
      c.rows[st] = need;
      grown.push_back(st);
    }
  }

  /** An output (or observed value) of a run: slot `s`'s value, a view when its storage is not the run's to give. */
  DevTensor result(const Ctx& c, const Plan& p, int s, bool view) {
    const int st = p.storage(s);
    DevTensor t;
    t.ptr = c.ptrs[st];
    t.dtype = p.slots[st].dtype;
    std::vector<long> shape(8);
    p.shape(s, c.sym, shape.data());
    for (int d = 0; d < p.slots[s].rank; ++d) t.shape.push_back(shape[d]);
    if (c.rows[st] > 0) {
      t.room_axis = p.room_axis[st];
      t.rows = c.rows[st];
    }
    t.view = view;
    return t;
  }

  /**
   * Runs a graph: inputs by name (device tensors), returns the outputs (device tensors the caller
   * owns, except views of its inputs: a cache grown in place); with observe, also every named value
   * the plan materializes.
   */
  std::map<std::string, DevTensor> run(const std::string& name, const std::map<std::string, DevTensor>& inputs, bool observe) {
    const Plan& p = plan(name);
    const GraphDef* g = p.g;
    Ctx c;
    bind(c, p, symbols_from(p, inputs));
    std::vector<int> grown;
    bind_inputs(c, p, inputs, grown);
    std::vector<long> shape(8);
    std::vector<int> allocated;
    c.lazy = lazy_alloc && !observe;
    if (c.lazy) c.held.assign(p.slots.size(), 0);
    for (size_t s = 0; s < p.slots.size(); ++s) {
      const SlotMeta& m = p.slots[s];
      if (m.source != SRC_COMPUTED || c.ptrs[s] || c.lazy) continue;
      p.shape((int)s, c.sym, shape.data());
      long n = 1;
      for (int d = 0; d < m.rank; ++d) n *= shape[d];
      CK(cudaMallocAsync(&c.ptrs[s], std::max<size_t>((size_t)n * dtype_bytes(m.dtype), 16), stream));
      allocated.push_back((int)s);
    }
    allocated.insert(allocated.end(), grown.begin(), grown.end());
    resolve_aliases(c, p);
    if (profile) begin_profile(p);
    p.frames[0].f->run(c, p.frames[0]);
    if (profile) end_profile(p);
    // What a lazy run still holds: its outputs' storage.
    if (c.lazy)
      for (size_t s = 0; s < c.held.size(); ++s)
        if (c.held[s]) allocated.push_back((int)s);
    std::map<std::string, DevTensor> out;
    std::vector<int> kept;
    // Storage this run allocated goes to the first value kept in it; the caller's inputs stay the caller's.
    auto keep = [&](const std::string& nm, int s) {
      const int st = p.storage(s);
      const bool mine = std::find(allocated.begin(), allocated.end(), st) != allocated.end();
      const bool first = std::find(kept.begin(), kept.end(), st) == kept.end();
      out[nm] = result(c, p, s, !(mine && first));
      kept.push_back(st);
    };
    for (int i = 0; i < g->noutputs; ++i) keep(g->outputs[i].name, p.output_slots[i]);
    if (observe)
      for (size_t s = 0; s < p.slots.size(); ++s) {
        const SlotMeta& m = p.slots[s];
        if (m.name.empty() || out.count(m.name)) continue;
        const SlotMeta& st = p.slots[p.storage((int)s)];
        if (st.source == SRC_COMPUTED && !st.resident) keep(m.name, (int)s);
      }
    for (int s : allocated)
      if (std::find(kept.begin(), kept.end(), s) == kept.end()) CK(cudaFreeAsync(c.ptrs[s], stream));
    return out;
  }

  /**
   * Runs a graph as a captured CUDA graph: the first call for a shape (and input buffers) allocates
   * every intermediate once and captures the launches; later calls replay them, with no host work
   * per kernel. Outputs live in that arena (or in the inputs they grow) and are overwritten by the
   * next replay. Only for graphs that need no host synchronization (decoding: the expert GEMV path).
   */
  std::map<std::string, DevTensor> run_graphed(const std::string& name, const std::map<std::string, DevTensor>& inputs) {
    const Plan& p = plan(name);
    const GraphDef* g = p.g;
    std::string key = g->name;
    for (auto& kv : inputs) key += "|" + kv.first + "@" + std::to_string((uintptr_t)kv.second.ptr);
    auto it = captured.find(key);
    if (it == captured.end()) {
      Captured cap;
      Ctx& c = cap.ctx;
      bind(c, p, symbols_from(p, inputs));
      std::vector<int> grown;
      bind_inputs(c, p, inputs, grown);
      for (int s : grown) cap.arena.push_back(c.ptrs[s]);
      std::vector<long> shape(8);
      for (size_t s = 0; s < p.slots.size(); ++s) {
        const SlotMeta& m = p.slots[s];
        if (m.source != SRC_COMPUTED || c.ptrs[s]) continue;
        p.shape((int)s, c.sym, shape.data());
        long n = 1;
        for (int d = 0; d < m.rank; ++d) n *= shape[d];
        CK(cudaMalloc(&c.ptrs[s], std::max<size_t>((size_t)n * dtype_bytes(m.dtype), 16)));
        cap.arena.push_back(c.ptrs[s]);
      }
      resolve_aliases(c, p);
      const bool was = profile;
      profile = false;
      p.frames[0].f->run(c, p.frames[0]);  // once outside capture: cuBLASLt plans and lazy module loads happen here
      CK(cudaStreamSynchronize(stream));
      cudaGraph_t graph;
      CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      p.frames[0].f->run(c, p.frames[0]);
      CK(cudaStreamEndCapture(stream, &graph));
      // LINGC_GRAPH_KERNELS=1: how many kernels the captured graph launches (a decode step's launches, counted).
      if (const char* e = std::getenv("LINGC_GRAPH_KERNELS"); e && *e == '1') {
        size_t n = 0;
        CK(cudaGraphGetNodes(graph, nullptr, &n));
        std::vector<cudaGraphNode_t> nodes(n);
        CK(cudaGraphGetNodes(graph, nodes.data(), &n));
        long kernels = 0;
        for (auto node : nodes) {
          cudaGraphNodeType t;
          CK(cudaGraphNodeGetType(node, &t));
          kernels += t == cudaGraphNodeTypeKernel;
        }
        std::fprintf(stderr, "graph %s captured: %ld kernel launches (%zu nodes)\n", g->name, kernels, n);
      }
      CK(cudaGraphInstantiate(&cap.exec, graph, 0));
      CK(cudaGraphDestroy(graph));
      profile = was;
      it = captured.emplace(key, std::move(cap)).first;
    }
    CK(cudaGraphLaunch(it->second.exec, stream));
    std::map<std::string, DevTensor> out;
    for (int i = 0; i < g->noutputs; ++i) out[g->outputs[i].name] = result(it->second.ctx, p, p.output_slots[i], true);
    return out;
  }

  struct Captured {
    Ctx ctx;
    std::vector<void*> arena;
    cudaGraphExec_t exec = nullptr;
  };
  std::map<std::string, Captured> captured;

  /** Frees a tensor the caller owns (a view's buffer belongs to the tensor it views). */
  void free_tensor(DevTensor& t) {
    if (t.ptr && !t.view) CK(cudaFreeAsync(t.ptr, stream));
    t.ptr = nullptr;
  }

  // --- profiling: an event at each mark; the time between marks is charged to the earlier label.
  void begin_profile(const Plan& p) {
    profiling_plan = &p;
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
  void end_profile(const Plan& p) {
    mark(-1);
    CK(cudaStreamSynchronize(stream));
    for (size_t i = 0; i + 1 < event_labels.size(); ++i) {
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, events[i], events[i + 1]));
      auto& t = timings[p.labels[event_labels[i]]];
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

// ---------------------------------------------------------------------------------------------
// Ctx routines

void Ctx::mark(int label) { rt->mark(label); }

int Ctx::dtype(int slot) const { return plan->slots[slot].dtype; }

void Ctx::acquire(int slot) {
  if (!lazy) return;
  const int r = plan->storage(slot);
  if (ptrs[r]) return;
  const SlotMeta& m = plan->slots[r];
  std::vector<long> shape(8);
  plan->shape(r, sym, shape.data());
  long n = 1;
  for (int d = 0; d < m.rank; ++d) n *= shape[d];
  CK(cudaMallocAsync(&ptrs[r], std::max<size_t>((size_t)n * dtype_bytes(m.dtype), 16), stream));
  for (int a : plan->members[r]) ptrs[a] = ptrs[r];
  held[r] = 1;
}

void Ctx::release(int slot) {
  if (!lazy) return;
  const int r = plan->storage(slot);
  if (!held[r] || plan->is_output[r]) return;
  CK(cudaFreeAsync(ptrs[r], stream));
  ptrs[r] = nullptr;
  for (int a : plan->members[r]) ptrs[a] = nullptr;
  held[r] = 0;
}

long Ctx::rows_of(int slot, long extent) const {
  const long r = rows[plan->storage(slot)];
  return r > 0 ? r : extent;
}

long Ctx::room_for(int slot, long need) const {
  const long room = rows_of(slot, 0);
  if (room < need) fail("a kernel grows a cache to %ld rows in place, but its buffer has %ld", need, room);
  return room;
}

void Ctx::append(int out, int src, long outer, long len, long n, long inner) {
  const long room = rows[plan->storage(out)];
  if (room < len + n) fail("cache_append: %ld + %ld rows do not fit the cache's buffer (%ld rows)", len, n, room);
  const size_t eb = dtype_bytes(dtype(src));
  if (outer > 0 && n * inner > 0)
    CK(cudaMemcpy2DAsync((char*)ptr(out) + len * inner * eb, room * inner * eb, ptr(src), n * inner * eb, n * inner * eb, outer, cudaMemcpyDeviceToDevice, stream));
}

void Ctx::call(const Frame& fr, int k) {
  const Frame& child = plan->frames[fr.calls[k]];
  child.f->run(*this, child);
}

void Ctx::prepare_call(const Frame& fr, int k) {
  const Frame& child = plan->frames[fr.calls[k]];
  child.f->prepare(*this, child);
}

void Ctx::allow_smem(const void* kern, size_t bytes) {
  static std::map<const void*, size_t> allowed;  // the runtime is single-threaded
  auto& got = allowed[kern];
  if (got >= bytes) return;
  launch_status = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (launch_status == cudaSuccess) got = bytes;
}

void Ctx::prefer_shared(const void* kern) {
  static std::map<const void*, bool> done;  // the runtime is single-threaded
  if (done[kern]) return;
  CK(cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, (int)cudaSharedmemCarveoutMaxShared));
  done[kern] = true;
}

int* Ctx::counters() { return rt->counters; }

int* Ctx::grid_sync() { return rt->grid_bar; }

dim3 Ctx::resident(const void* kern, long wanted, unsigned threads, size_t smem, int per_sm) {
  // The occupancy of a kernel does not change: asked once (the runtime is single-threaded).
  static std::map<const void*, int> fits;
  auto it = fits.find(kern);
  if (it == fits.end()) {
    int n = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kern, (int)threads, smem));
    if (n < 1) fail("a grid-synced kernel does not fit on a multiprocessor (%u threads, %zu bytes of shared memory)", threads, smem);
    it = fits.emplace(kern, n).first;
  }
  const long most = (long)std::min(it->second, per_sm) * rt->sm_count;
  return dim3((unsigned)std::max(1L, std::min(wanted, most)));
}

void* Ctx::scratch_acquire(size_t bytes) {
  void* p = nullptr;
  CK(cudaMallocAsync(&p, bytes, stream));
  return p;
}

void Ctx::scratch_release(void* p) { CK(cudaFreeAsync(p, stream)); }

bool Ctx::checking() const { return rt->check_steps; }

void* Ctx::check_begin(int slot, long n) {
  void* p = nullptr;
  const size_t bytes = std::max<size_t>((size_t)n * dtype_bytes(dtype(slot)), 16);
  CK(cudaMalloc(&p, bytes));
  CK(cudaMemsetAsync(p, 0xff, bytes, stream));  // NaN in f32 and bf16
  return p;
}

/** n elements of dtype dt at p on the device, as floats on the host (e4m3 and i32 by value). */
static std::vector<float> host_floats(cudaStream_t stream, const void* p, int dt, long n) {
  std::vector<unsigned char> raw((size_t)n * dtype_bytes(dt));
  CK(cudaMemcpyAsync(raw.data(), p, raw.size(), cudaMemcpyDeviceToHost, stream));
  CK(cudaStreamSynchronize(stream));
  std::vector<float> out((size_t)n);
  for (long i = 0; i < n; ++i) {
    const unsigned char* e = raw.data() + (size_t)i * dtype_bytes(dt);
    if (dt == DT_BF16) out[i] = __bfloat162float(*(const __nv_bfloat16*)e);
    else if (dt == DT_F8) out[i] = (float)*(const __nv_fp8_e4m3*)e;
    else if (dt == DT_I32) out[i] = (float)*(const int*)e;
    else out[i] = *(const float*)e;
  }
  return out;
}

void Ctx::check_end(int slot, void* ref, long n, const char* what, float accuracy) {
  const int dt = dtype(slot);
  const std::vector<float> got = host_floats(stream, ptr(slot), dt, n), want = host_floats(stream, ref, dt, n);
  CK(cudaFree(ref));
  Runtime::StepCheck& c = rt->step_checks[what];
  // Of the largest reference value: bf16 results may round a step apart (another summation order),
  // f32 ones only by the order's own error; integers must be equal.
  c.tolerance = std::max<double>(accuracy, dt == DT_BF16 ? 1.0 / 64 : dt == DT_F32 ? 1e-4 : dt == DT_F8 ? 1.0 / 8 : 0);
  double worst = 0, biggest = 0;
  for (long i = 0; i < n; ++i) {
    if (!std::isfinite(want[i])) {
      // The reference's own non-finite values must be the tile program's too (a NaN left by check_begin is not).
      c.bad += !(std::isinf(want[i]) && got[i] == want[i]);
      continue;
    }
    worst = std::max(worst, std::isfinite(got[i]) ? std::fabs((double)got[i] - want[i]) : INFINITY);
    biggest = std::max(biggest, (double)std::fabs(want[i]));
  }
  c.runs += 1;
  c.worst = std::max(c.worst, biggest > 0 ? worst / biggest : worst > 0 ? INFINITY : 0);
}

void Ctx::launched(const char* kernel) {
  if (launch_status != cudaSuccess) fail("kernel %s did not launch: %s", kernel, cudaGetErrorString(launch_status));
  check_launch(kernel);
}

// The routines below run the kernel the plan chose (the dispatch in model.cu); none chooses itself.

void Ctx::gemm(int x, int w, int out, long M, long N, long K) { rt->gemm(dtype(x), M, N, K, ptr(x), K, 0, ptr(w), K, 0, true, ptr(out), N, 0, 1, dtype(out)); }

void Ctx::gemm_fp8(int x, int xs, bool xs_kmajor, int w, int ws, int out, long M, long N, long K) {
  if (dtype(x) != DT_F8 || dtype(w) != DT_F8) fail("gemm_fp8: operands of %s and %s (it takes e4m3 codes)", dtype_name(dtype(x)), dtype_name(dtype(w)));
  rt->gemm_fp8(dtype(out), M, N, K, ptr(x), (const float*)ptr(xs), xs_kmajor, ptr(w), (const float*)ptr(ws), ptr(out));
  launched("gemm_fp8");
}

void Ctx::gemv(int x, int w, int out, long N, long K) {
  // One row (a batch-1 decode step), as one expert over one row: expert_of never reads the offsets when E is 1.
  if (K % 256) fail("gemv: K = %ld is not a multiple of 256 (the plan must not choose it)", K);
  const dim3 g((unsigned)((N + 7) / 8), 1);
  if (dtype(x) == DT_BF16) CK(launch_pdl(stream, lingc::expert_gemv<__nv_bfloat16, false, true, true>, g, 256, 0, (const __nv_bfloat16*)ptr(x), (const int*)nullptr, 1, (const __nv_bfloat16*)ptr(w), (const __nv_bfloat16*)nullptr, (const int*)nullptr, (__nv_bfloat16*)ptr(out), 1, N, K));
  else CK(launch_pdl(stream, lingc::expert_gemv<float, false, true, true>, g, 256, 0, (const float*)ptr(x), (const int*)nullptr, 1, (const float*)ptr(w), (const float*)nullptr, (const int*)nullptr, (float*)ptr(out), 1, N, K));
  launched("gemv");
}

void Ctx::gemv_swiglu(int x, int wg, int wu, int out, long N, long K) {
  // One row as one expert (expert_of reads no offsets when E is 1), gate and up in one pass over x.
  if (K % 256) fail("gemv_swiglu: K = %ld is not a multiple of 256 (the plan must not choose it)", K);
  const dim3 g((unsigned)((N + 7) / 8), 1);
  if (dtype(x) == DT_BF16) CK(launch_pdl(stream, lingc::expert_gemv<__nv_bfloat16, true, true, true>, g, 256, 0, (const __nv_bfloat16*)ptr(x), (const int*)nullptr, 1, (const __nv_bfloat16*)ptr(wg), (const __nv_bfloat16*)ptr(wu), (const int*)nullptr, (__nv_bfloat16*)ptr(out), 1, N, K));
  else CK(launch_pdl(stream, lingc::expert_gemv<float, true, true, true>, g, 256, 0, (const float*)ptr(x), (const int*)nullptr, 1, (const float*)ptr(wg), (const float*)ptr(wu), (const int*)nullptr, (float*)ptr(out), 1, N, K));
  launched("gemv_swiglu");
}

// out = silu(gate) * up (silu_mul, rounded as the unfused ops round), gate and up of M x N put side by
// side in a stream-ordered scratch by gemms(gate, up) (a graph capture records it as memory nodes):
// the GEMM forms of gemm_swiglu and gemm_fp8_swiglu.
template <typename Gemms>
static void swiglu_through_scratch(Ctx& c, int out, long M, long N, Gemms gemms) {
  const int dt = c.dtype(out);
  const size_t eb = dtype_bytes(dt);
  char* gu = nullptr;
  CK(cudaMallocAsync((void**)&gu, 2 * (size_t)M * N * eb, c.stream));
  char* up = gu + (size_t)M * N * eb;
  gemms(gu, up);
  const long n = M * N;
  if (dt == DT_BF16) silu_mul<<<grid((n + 255) / 256), 256, 0, c.stream>>>((const __nv_bfloat16*)gu, (const __nv_bfloat16*)up, (__nv_bfloat16*)c.ptr(out), n);
  else silu_mul<<<grid((n + 255) / 256), 256, 0, c.stream>>>((const float*)gu, (const float*)up, (float*)c.ptr(out), n);
  c.launched("silu_mul");
  CK(cudaFreeAsync(gu, c.stream));
}

void Ctx::gemm_swiglu(int x, int wg, int wu, int out, long M, long N, long K) {
  if (M == 0) return;
  swiglu_through_scratch(*this, out, M, N, [&](char* gate, char* up) {
    rt->gemm(dtype(x), M, N, K, ptr(x), K, 0, ptr(wg), K, 0, true, gate, N, 0, 1);
    rt->gemm(dtype(x), M, N, K, ptr(x), K, 0, ptr(wu), K, 0, true, up, N, 0, 1);
  });
}

void Ctx::gemm_fp8_swiglu(int x, int xs, bool xs_kmajor, int wg, int wgs, int wu, int wus, int out, long M, long N, long K) {
  if (M == 0) return;
  if (dtype(x) != DT_F8 || dtype(wg) != DT_F8 || dtype(wu) != DT_F8) fail("gemm_fp8_swiglu: operands of %s, %s and %s (it takes e4m3 codes)", dtype_name(dtype(x)), dtype_name(dtype(wg)), dtype_name(dtype(wu)));
  const int dt = dtype(out);
  swiglu_through_scratch(*this, out, M, N, [&](char* gate, char* up) {
    rt->gemm_fp8(dt, M, N, K, ptr(x), (const float*)ptr(xs), xs_kmajor, ptr(wg), (const float*)ptr(wgs), gate);
    rt->gemm_fp8(dt, M, N, K, ptr(x), (const float*)ptr(xs), xs_kmajor, ptr(wu), (const float*)ptr(wus), up);
  });
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

void Ctx::round_f16(int buf, long n) {
  if (n == 0) return;
  if (dtype(buf) != DT_F32) fail("round_f16: buffer %d holds %s, not the f32 that an f16 tensor is held in", buf, dtype_name(dtype(buf)));
  CK(launch_pdl(stream, lingc::round_f16_in_place, grid((n + 255) / 256), 256, 0, (float*)ptr(buf), n));
  launched("round_f16");
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

void Ctx::dispatch_block(int idx, int order, int offsets, int row_of, long n, long E) {
  // As many threads as there are experts or pairs (a multiple of 32, at most 1024): a decode step's
  // few pairs do not wait for 32 warps at each barrier.
  const int threads = (int)std::min<long>(1024, (std::max<long>({E, std::min<long>(n, 1024), 32}) + 31) / 32 * 32);
  CK(launch_pdl(stream, dispatch_one_block, 1, threads, 2 * E * sizeof(int), (const int*)ptr(idx), n, (int)E, (int*)ptr(offsets), (int*)ptr(order), (int*)ptr(row_of)));
  launched("dispatch_one_block");
}

void Ctx::dispatch_scan(int idx, int order, int offsets, int row_of, long n, long E) {
  CK(cudaMemsetAsync(ptr(offsets), 0, (E + 1) * sizeof(int), stream));
  int* cursor;
  CK(cudaMallocAsync(&cursor, E * sizeof(int), stream));
  const long blocks = std::max<long>(1, (n + DISPATCH_CHUNK - 1) / DISPATCH_CHUNK);
  CK(launch_pdl(stream, dispatch_count, grid(blocks), DISPATCH_THREADS, E * sizeof(int), (const int*)ptr(idx), n, (int)E, (int*)ptr(offsets)));
  CK(launch_pdl(stream, dispatch_prefix, 1, (int)std::min<long>(1024, (E + 31) / 32 * 32), 0, (int*)ptr(offsets), cursor, (int)E));
  CK(launch_pdl(stream, dispatch_place, grid(blocks), DISPATCH_THREADS, 2 * E * sizeof(int), (const int*)ptr(idx), n, (int)E, cursor, (int*)ptr(order), (int*)ptr(row_of)));
  launched("moe_dispatch");
  CK(cudaFreeAsync(cursor, stream));
}

void Ctx::expert_gemv(int x, int order, int k, int wg, int wu, int offsets, int out, long rows, long E, long O, long I, bool by_row, bool vec) {
  if (rows == 0) return;
  const bool swiglu = wu >= 0;
  const int* ord = order >= 0 ? (const int*)ptr(order) : nullptr;
  // by_row: a block per row; else a block per expert, reading each weight row once for its rows.
  // Columns a warp: 4 for rows of up to 2 KB (the down projection's 1 KB rows: decode batch 32 on
  // the H200 9.40 ms a step instead of 10.32), 1 from 4 KB up (Ling-mini's SwiGLU, 8 KB for gate and
  // up: 2 columns a warp measured slower, 9.79 ms).
  const long row_bytes = I * (long)dtype_bytes(dtype(out)) * (swiglu ? 2 : 1);
  const int cpw = !vec ? 1 : row_bytes <= 2048 ? 4 : row_bytes <= 4096 ? 2 : 1;  // (the scalar-load form: one)
  const dim3 g((unsigned)((O + 8 * cpw - 1) / (8 * cpw)), (unsigned)(by_row ? rows : E));
#define LINGC_GEMV_C(T, SW, V, R, C) CK(launch_pdl(stream, lingc::expert_gemv<T, SW, V, R, C>, g, 256, 0, (const T*)ptr(x), ord, k, (const T*)ptr(wg), swiglu ? (const T*)ptr(wu) : nullptr, (const int*)ptr(offsets), (T*)ptr(out), (int)E, O, I))
#define LINGC_GEMV(T, SW, V, R) \
  do { if (cpw == 4) LINGC_GEMV_C(T, SW, V, R, 4); else if (cpw == 2) LINGC_GEMV_C(T, SW, V, R, 2); else LINGC_GEMV_C(T, SW, V, R, 1); } while (0)
#define LINGC_GEMV_T(T)                                                                          \
  if (swiglu) {                                                                                  \
    if (vec) { if (by_row) LINGC_GEMV(T, true, true, true); else LINGC_GEMV(T, true, true, false); }     \
    else { if (by_row) LINGC_GEMV_C(T, true, false, true, 1); else LINGC_GEMV_C(T, true, false, false, 1); }       \
  } else {                                                                                       \
    if (vec) { if (by_row) LINGC_GEMV(T, false, true, true); else LINGC_GEMV(T, false, true, false); }   \
    else { if (by_row) LINGC_GEMV_C(T, false, false, true, 1); else LINGC_GEMV_C(T, false, false, false, 1); }     \
  }
  if (dtype(out) == DT_BF16) { LINGC_GEMV_T(__nv_bfloat16) } else { LINGC_GEMV_T(float) }
#undef LINGC_GEMV_T
#undef LINGC_GEMV
#undef LINGC_GEMV_C
  launched("expert_gemv");
}

/** The offsets on the host (the per-expert GEMMs size their launches by them). */
static std::vector<int> host_offsets(Ctx& c, int offsets, long E) {
  std::vector<int> off(E + 1);
  CK(cudaMemcpyAsync(off.data(), c.ptr(offsets), (E + 1) * sizeof(int), cudaMemcpyDeviceToHost, c.stream));
  CK(cudaStreamSynchronize(c.stream));
  return off;
}

void Ctx::expert_loop(int x, int order, int k, int wg, int wu, int offsets, int out, long rows, long E, long O, long I) {
  if (rows == 0) return;
  // One cuBLASLt GEMM per expert over its rows, which are first gathered (with the token gather) to their own row index.
  const int dt = dtype(out);
  const bool swiglu = wu >= 0;
  const int* ord = order >= 0 ? (const int*)ptr(order) : nullptr;
  const std::vector<int> off = host_offsets(*this, offsets, E);
  const size_t eb = dtype_bytes(dt);
  const char* xs = (const char*)ptr(x);
  void* gathered = nullptr;
  if (ord) {
    CK(cudaMallocAsync(&gathered, (size_t)rows * I * eb, stream));
    if (dt == DT_BF16) gather_overflow<<<grid(rows), 256, 0, stream>>>((const __nv_bfloat16*)xs, ord, k, (const int*)ptr(offsets), (int)E, (__nv_bfloat16*)gathered, rows, I, 0L);
    else gather_overflow<<<grid(rows), 256, 0, stream>>>((const float*)xs, ord, k, (const int*)ptr(offsets), (int)E, (float*)gathered, rows, I, 0L);
    launched("gather_rows");
    xs = (const char*)gathered;
  }
  void* g = ptr(out);
  void* u = nullptr;
  if (swiglu) {
    CK(cudaMallocAsync(&g, (size_t)rows * O * eb, stream));
    CK(cudaMallocAsync(&u, (size_t)rows * O * eb, stream));
  }
  for (long e = 0; e < E; ++e) {
    const long lo = off[e], n = off[e + 1] - lo;
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

/**
 * Decode attention (flash-decoding): items are (batch, KV head, query position, group of up to
 * `rows` query heads: the power of two up to DEC_ROWS that holds a KV head's query heads); keys are
 * split into enough chunks for about DEC_BLOCKS_PER_SM blocks per SM (`sms` from the target profile),
 * none under 32 keys or over DEC_CHUNK, at most DEC_MAX_SPLIT. A block's work is a chain of dependent
 * steps (latency-bound at one warp per scheduler: measured on the H200 with one block per SM at
 * batch 1, each warp issued an instruction every 13 cycles), so more, smaller blocks finish sooner.
 */
constexpr long DEC_BLOCKS_PER_SM = 2;

static void attention_decode(Runtime& rt, int dt, const void* qp, const void* kp, const void* vp, void* op, long B, long nh, long nkv, long S, long T, long Tr, long d, long dv, float scale, bool causal, bool transposed, int sms) {
  cudaStream_t stream = rt.stream;
  if (d > 256 || dv > 256) fail("attention: head dims above 256 are not supported (d=%ld, dv=%ld)", d, dv);
  const long rep = nh / nkv;
  const int rows = rep <= 1 ? 1 : rep <= 2 ? 2 : rep <= 4 ? 4 : DEC_ROWS;
  const long items = B * nkv * S * ((rep + rows - 1) / rows);
  if (T > (long)DEC_CHUNK * DEC_MAX_SPLIT || items > rt.counter_slots) fail("attn_decode: %ld keys or %ld items are past the kernel's reach (the plan must not choose it)", T, items);
  long want = std::max<long>({1, (DEC_BLOCKS_PER_SM * sms + items - 1) / items, (T + DEC_CHUNK - 1) / DEC_CHUNK});
  want = std::min<long>({want, (T + 31) / 32, DEC_MAX_SPLIT});
  const int chunk = (int)((T + want - 1) / want);
  const int nsplit = (int)((T + chunk - 1) / chunk);
  float* part = nullptr;
  if (nsplit > 1) CK(cudaMallocAsync(&part, (size_t)items * nsplit * rows * (2 + dv) * sizeof(float), stream));  // acc, then (max, sum)
  const dim3 g1((unsigned)items, (unsigned)nsplit);
  const size_t eb = dtype_bytes(dt);
  // 16-byte key and value loads: rows a multiple of 16 bytes (and of 8 elements, for the P.V columns).
  const bool vec = (d * eb) % 16 == 0 && (dv * eb) % 16 == 0 && dv % 8 == 0 && (uintptr_t)kp % 16 == 0 && (uintptr_t)vp % 16 == 0;
#define LINGC_DEC_R(E, V, R) CK(launch_pdl(stream, attn_decode<E, V, R>, g1, DEC_THREADS, 0, (const E*)qp, (const E*)kp, (const E*)vp, part, rt.counters, (E*)op, nh, nkv, S, T, Tr, (int)d, (int)dv, scale, causal, chunk, nsplit, (int)transposed))
#define LINGC_DEC(E, V) switch (rows) { case 1: LINGC_DEC_R(E, V, 1); break; case 2: LINGC_DEC_R(E, V, 2); break; case 4: LINGC_DEC_R(E, V, 4); break; default: LINGC_DEC_R(E, V, DEC_ROWS); }
  if (dt == DT_BF16) { if (vec) LINGC_DEC(__nv_bfloat16, true) else LINGC_DEC(__nv_bfloat16, false) }
  else { if (vec) LINGC_DEC(float, true) else LINGC_DEC(float, false) }
#undef LINGC_DEC
#undef LINGC_DEC_R
  check_launch("attn_decode");
  if (part) CK(cudaFreeAsync(part, stream));
}

/**
 * Any attention through cuBLASLt: query tiles; per tile, scores = Q K^T over the keys the tile can
 * see (the causal mask cuts the rest) as one strided-batched GEMM over all heads, softmax in place,
 * then P V into the tile's rows. Grouped K/V are first repeated per query head so the batch strides
 * are uniform. The tile keeps at most `score_bytes` of scores (the plan's budget).
 */
static void attention_tiles(Runtime& rt, int dt, const void* qp, const void* kp, const void* vp, void* op, long B, long nh, long nkv, long S, long T, long Tr, long d, long dv, float scale, bool causal, bool transposed, long score_bytes) {
  cudaStream_t stream = rt.stream;
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
      repeat_kv<<<grid((nk + 255) / 256), 256, 0, stream>>>((const __nv_bfloat16*)kx, (__nv_bfloat16*)kr, B, nkv, rep, T * d, Tr * d);
      repeat_kv<<<grid((nv + 255) / 256), 256, 0, stream>>>((const __nv_bfloat16*)vx, (__nv_bfloat16*)vr, B, nkv, rep, T * dv, Tr * dv);
    } else {
      repeat_kv<<<grid((nk + 255) / 256), 256, 0, stream>>>((const float*)kx, (float*)kr, B, nkv, rep, T * d, Tr * d);
      repeat_kv<<<grid((nv + 255) / 256), 256, 0, stream>>>((const float*)vx, (float*)vr, B, nkv, rep, T * dv, Tr * dv);
    }
    check_launch("repeat_kv");
    kx = kr;
    vx = vr;
  }
  // The heads of K and V as the GEMMs read them: T rows apart once repeated, else as they lie.
  const long kv_rows = rep > 1 ? T : Tr;
  const long Tq = std::max<long>(1, std::min<long>(S, score_bytes / std::max<long>(1, BH * T * (long)eb)));
  void* scores;
  CK(cudaMallocAsync(&scores, (size_t)BH * Tq * T * eb, stream));
  char* o = (char*)op;
  if (transposed) CK(cudaMallocAsync((void**)&o, (size_t)BH * S * dv * eb, stream));
  for (long s0 = 0; s0 < S; s0 += Tq) {
    const long sq = std::min(Tq, S - s0);
    const long first_visible = T - S + s0 + 1;
    const long keys = causal ? std::min(T, first_visible + sq - 1) : T;
    rt.gemm(dt, sq, keys, d, (const char*)qp + s0 * d * eb, d, S * d, kx, d, kv_rows * d, true, scores, keys, sq * keys, BH);
    const long rows = BH * sq;
    if (dt == DT_BF16) softmax_rows<<<grid(rows), 256, 0, stream>>>((__nv_bfloat16*)scores, rows, sq, keys, first_visible, scale, causal);
    else softmax_rows<<<grid(rows), 256, 0, stream>>>((float*)scores, rows, sq, keys, first_visible, scale, causal);
    check_launch("softmax_rows");
    rt.gemm(dt, sq, dv, keys, scores, keys, sq * keys, vx, dv, kv_rows * dv, false, o + s0 * dv * eb, dv, S * dv, BH);
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

/** The rows K's and V's heads lie apart: T, or a KV cache's buffer rows (the same for both). */
long Ctx::kv_rows(int k, int v, long T) const {
  const long rk = rows_of(k, T), rv = rows_of(v, T);
  if (rk != rv) fail("attention: the key and value caches lie in buffers of different room (%ld and %ld rows)", rk, rv);
  return rk;
}

void Ctx::attn_decode(int q, int k, int v, int out, long B, long nh, long nkv, long S, long T, long d, long dv, float scale, bool causal, bool transposed, int sms) {
  attention_decode(*rt, dtype(q), ptr(q), ptr(k), ptr(v), ptr(out), B, nh, nkv, S, T, kv_rows(k, v, T), d, dv, scale, causal, transposed, sms);
}

void Ctx::attn_tiles(int q, int k, int v, int out, long B, long nh, long nkv, long S, long T, long d, long dv, float scale, bool causal, bool transposed, long score_bytes) {
  attention_tiles(*rt, dtype(q), ptr(q), ptr(k), ptr(v), ptr(out), B, nh, nkv, S, T, kv_rows(k, v, T), d, dv, scale, causal, transposed, score_bytes);
}

// ---------------------------------------------------------------------------------------------
// Self-test: the bf16 kernels against references (the selftest command).

#include "lingc_selftest.cuh"

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

static std::string to_bytes_f32(Runtime& rt, const DevTensor& given) {
  if (given.dtype == DT_F8) {
    // e4m3 codes, decoded on the host.
    const long n = given.numel();
    std::vector<__nv_fp8_e4m3> codes(n);
    CK(cudaMemcpyAsync(codes.data(), given.ptr, n, cudaMemcpyDeviceToHost, rt.stream));
    CK(cudaStreamSynchronize(rt.stream));
    std::string out((size_t)n * 4, '\0');
    for (long i = 0; i < n; ++i) ((float*)&out[0])[i] = float(codes[i]);
    return out;
  }
  if (Runtime::has_room(given)) {
    DevTensor t = rt.packed(given);
    std::string out = to_bytes_f32(rt, t);
    rt.free_tensor(t);
    return out;
  }
  const DevTensor& t = given;
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

/** Each sequence's greedy pick at position `at` of logits [B, S, V] (default: the last). */
static std::vector<int> argmax_last(Runtime& rt, const DevTensor& logits, long at = -1) {
  const long B = logits.shape[0], S = logits.shape[1], V = logits.shape[2];
  if (at < 0) at = S - 1;
  int* d;
  CK(cudaMallocAsync(&d, B * sizeof(int), rt.stream));
  argmax_rows<<<(unsigned)B, 256, 0, rt.stream>>>((const float*)logits.ptr + at * V, V, S * V, d);
  CK(cudaGetLastError());
  std::vector<int> h(B);
  CK(cudaMemcpyAsync(h.data(), d, B * sizeof(int), cudaMemcpyDeviceToHost, rt.stream));
  CK(cudaStreamSynchronize(rt.stream));
  CK(cudaFreeAsync(d, rt.stream));
  return h;
}

/** The program's generation declaration, or a clear error when it has none. */
static const GenerationDef& generation() {
  if (GENERATION.prefill < 0) fail("this program declares no prefill and decode graphs to generate with");
  return GENERATION;
}

/**
 * Greedy generation for one batch of equal-length prompts: prefill once, then decode steps. The KV
 * cache stays on the device, in buffers with room for the whole generation: prefill's cache is
 * copied in once, and each decode step's cache_append writes only the new rows (its outputs are
 * views of the same buffers).
 */
/**
 * What a generation of `steps` tokens after `prompts` (equal lengths) needs first: the cache
 * positions it will hold, checked against each cache's declared capacity, and the prompts' ids in
 * one row-major array.
 */
static long generation_positions(const GenerationDef& gen, const std::vector<std::vector<int>>& prompts, int steps, std::vector<int>& flat) {
  const long positions = (long)prompts[0].size() + steps - 1;
  for (int i = 0; i < gen.ncache; ++i)
    if (positions > gen.cache[i].capacity)
      fail("generation needs a KV cache of %ld positions (prompt + new tokens - 1), over the capacity of %ld that graph %s declares for %s", positions, gen.cache[i].capacity, GRAPHS[gen.decode]->name, gen.cache[i].input);
  for (auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());
  return positions;
}

/** The cache outputs of a run become the cache: grown in place (the same buffer), or replaced. */
static void advance_cache(Runtime& rt, const CacheDef* defs, int n, std::map<std::string, DevTensor>& cache, std::map<std::string, DevTensor>& res) {
  for (int i = 0; i < n; ++i) {
    DevTensor& out = res.at(defs[i].output);
    DevTensor& mine = cache[defs[i].input];
    if (out.ptr == mine.ptr) {
      mine.shape = out.shape;  // grown in place
      out.view = true;         // the cache's buffer: freeing the run's outputs leaves it
    } else {
      // A graph that makes a new cache (a concat): it is the cache now.
      rt.free_tensor(mine);
      mine = out;
      out.view = true;
    }
  }
}

static std::vector<std::vector<int>> generate_batch(Runtime& rt, const std::vector<std::vector<int>>& prompts, int steps, std::vector<std::string>* step_logits) {
  const GenerationDef& gen = generation();
  const std::string prefill = GRAPHS[gen.prefill]->name, decode = GRAPHS[gen.decode]->name;
  const long B = (long)prompts.size(), S = (long)prompts[0].size();
  std::vector<int> flat;
  const long positions = generation_positions(gen, prompts, steps, flat);
  std::vector<std::vector<int>> outs(B);
  DevTensor ids = upload_ids(rt, flat, B, S);
  auto res = rt.run(prefill, {{gen.prefill_tokens, ids}}, false);
  rt.free_tensor(ids);
  std::map<std::string, DevTensor> cache;  // by decode input
  for (int i = 0; i < gen.ncache; ++i) cache[gen.cache[i].input] = rt.with_room(res.at(gen.cache[i].output), gen.cache[i].axis, positions);
  const char* logits_name = gen.prefill_logits;
  for (int step = 0; step < steps; ++step) {
    DevTensor& logits = res.at(logits_name);
    std::vector<int> next = argmax_last(rt, logits);
    if (step_logits) {
      std::string all = to_bytes_f32(rt, logits);
      const long Sx = logits.shape[1], V = logits.shape[2];
      for (long b = 0; b < B; ++b) step_logits->push_back(all.substr(((b * Sx + Sx - 1) * V) * 4, V * 4));
    }
    for (long b = 0; b < B; ++b) outs[b].push_back(next[b]);
    for (auto& kv : res) rt.free_tensor(kv.second);
    if (step + 1 == steps) break;
    std::map<std::string, DevTensor> in = cache;
    DevTensor nid = upload_ids(rt, next, B, 1);
    in[gen.decode_tokens] = nid;
    res = rt.run(decode, in, false);
    rt.free_tensor(nid);
    advance_cache(rt, gen.cache, gen.ncache, cache, res);
    logits_name = gen.decode_logits;
  }
  for (auto& kv : cache) rt.free_tensor(kv.second);
  return outs;
}

/** How speculative decoding's drafts fared (printed to stderr as one line). */
struct DraftStats {
  long drafted = 0, accepted = 0, main_forwards = 0, draft_runs = 0;
};

/**
 * Greedy generation of one prompt with the draft graph (the MTP layer) proposing the token after
 * next, checked by one decode run on two tokens; a rejected draft's position is dropped from the KV
 * cache (its length shortened in place). The same loop as backends/speculative.ts: every token kept
 * is the main model's greedy pick, so the ids equal plain greedy decoding.
 */
static std::vector<int> generate_drafted(Runtime& rt, const std::vector<int>& prompt, int steps, std::vector<std::string>* step_logits, DraftStats& st) {
  const GenerationDef& gen = generation();
  if (gen.draft < 0) fail("this program has no draft graph to speculate with (it is compiled in when the model has an MTP layer and the draft graph is asked for: lingc generate --draft mtp)");
  const std::string prefill = GRAPHS[gen.prefill]->name, decode = GRAPHS[gen.decode]->name, draft = GRAPHS[gen.draft]->name;
  const long S = (long)prompt.size();
  std::vector<int> flat;
  // Room for the positions plain decoding reaches, plus the one a rejected draft takes for a step.
  const long positions = generation_positions(gen, {prompt}, steps + 1, flat);
  std::vector<int> out;
  auto keep = [&](const DevTensor& logits, long at) {
    const int id = argmax_last(rt, logits, at)[0];
    if (step_logits) {
      // Only that row (the logits are f32, as argmax reads them).
      const long V = logits.shape[2];
      std::string row((size_t)V * 4, '\0');
      CK(cudaMemcpyAsync(&row[0], (const float*)logits.ptr + at * V, V * 4, cudaMemcpyDeviceToHost, rt.stream));
      CK(cudaStreamSynchronize(rt.stream));
      step_logits->push_back(std::move(row));
    }
    out.push_back(id);
    return id;
  };
  auto release = [&](std::map<std::string, DevTensor>& res) {
    for (auto& kv : res) rt.free_tensor(kv.second);
    res.clear();
  };
  DevTensor ids = upload_ids(rt, flat, 1, S);
  auto res = rt.run(prefill, {{gen.prefill_tokens, ids}}, false);
  rt.free_tensor(ids);
  ++st.main_forwards;
  std::map<std::string, DevTensor> cache, dcache;
  for (int i = 0; i < gen.ncache; ++i) cache[gen.cache[i].input] = rt.with_room(res.at(gen.cache[i].output), gen.cache[i].axis, positions);
  // The draft's cache starts empty: the main cache's layout (the MTP layer is a decoder layer of the same shapes) at 0 positions.
  for (int i = 0; i < gen.ndraft_cache; ++i) {
    const CacheDef& c = gen.draft_cache[i];
    DevTensor empty = cache.at(gen.cache[0].input);
    empty.shape.at(c.axis) = 0;
    dcache[c.input] = rt.with_room(empty, c.axis, positions);
  }
  DevTensor& prompt_logits = res.at(gen.prefill_logits);
  int last = keep(prompt_logits, prompt_logits.shape[1] - 1);  // its last position (prefill may output only that one)
  std::vector<int> next(prompt.begin() + 1, prompt.end());
  next.push_back(last);
  std::map<std::string, DevTensor> held = std::move(res);  // holds the hidden states the draft reads next
  DevTensor hidden = held.at(gen.prefill_hidden);
  while ((int)out.size() < steps) {
    if ((int)out.size() + 1 == steps) {
      // One token left: no use drafting past it.
      std::map<std::string, DevTensor> in = cache;
      DevTensor nid = upload_ids(rt, {last}, 1, 1);
      in[gen.decode_tokens] = nid;
      auto r = rt.run(decode, in, false);
      rt.free_tensor(nid);
      ++st.main_forwards;
      advance_cache(rt, gen.cache, gen.ncache, cache, r);
      keep(r.at(gen.decode_logits), 0);
      release(r);
      break;
    }
    // The draft over the positions whose next token is settled.
    std::map<std::string, DevTensor> din = dcache;
    DevTensor dids = upload_ids(rt, next, 1, (long)next.size());
    din[gen.draft_tokens] = dids;
    din[gen.draft_hidden] = hidden;
    auto dr = rt.run(draft, din, false);
    rt.free_tensor(dids);
    ++st.draft_runs;
    advance_cache(rt, gen.draft_cache, gen.ndraft_cache, dcache, dr);
    const int d = argmax_last(rt, dr.at(gen.draft_logits))[0];
    release(dr);
    release(held);
    // The main model on [last, draft].
    std::map<std::string, DevTensor> in = cache;
    DevTensor vid = upload_ids(rt, {last, d}, 1, 2);
    in[gen.decode_tokens] = vid;
    held = rt.run(decode, in, false);
    rt.free_tensor(vid);
    ++st.main_forwards;
    ++st.drafted;
    advance_cache(rt, gen.cache, gen.ncache, cache, held);
    const DevTensor& logits = held.at(gen.decode_logits);
    const int a = keep(logits, 0);
    hidden = held.at(gen.decode_hidden);
    if (a != d) {
      for (int i = 0; i < gen.ncache; ++i) cache[gen.cache[i].input].shape.at(gen.cache[i].axis) -= 1;  // the draft's position
      hidden.shape.at(1) = 1;  // the first position's row (rows are contiguous [1, S, H])
      hidden.view = true;
      next = {a};
      last = a;
      continue;
    }
    ++st.accepted;
    const int b = keep(logits, 1);
    next = {a, b};
    last = b;
  }
  release(held);
  for (auto& kv : cache) rt.free_tensor(kv.second);
  for (auto& kv : dcache) rt.free_tensor(kv.second);
  return out;
}

/** The vocabulary size: the last axis of the prefill graph's logits output. */
static long vocab_size(Runtime& rt) {
  const GenerationDef& gen = generation();
  const Plan& p = rt.plan(GRAPHS[gen.prefill]->name);
  for (int i = 0; i < p.g->noutputs; ++i) {
    if (std::strcmp(p.g->outputs[i].name, gen.prefill_logits)) continue;
    const int s = p.output_slots[i];
    std::vector<long> sym, shape(8);
    std::vector<long> ones(p.frames[0].f->nsyms + 1, 1);
    p.bind_symbols(ones.data(), sym);
    p.shape(s, sym, shape.data());
    return shape[p.slots[s].rank - 1];
  }
  fail("graph %s has no output %s", p.g->name, gen.prefill_logits);
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
  if (n == 0) return t;
  if (dt == DT_BF16) init_random<<<grid((n + 255) / 256), 256, 0, rt.stream>>>((__nv_bfloat16*)t.ptr, n, seed, 1.f, 0.f);
  else init_random<<<grid((n + 255) / 256), 256, 0, rt.stream>>>((float*)t.ptr, n, seed, 1.f, 0.f);
  CK(cudaGetLastError());
  return t;
}

/**
 * The symbols of a graph with its tokens input at batch B (and, for prefill, length S) and its cache
 * inputs at length P: each entry symbol is read off those inputs' axes. Not strict: a symbol read off
 * another input (a pipeline stage's activations) is left at 1 (for sizing the caches alone).
 */
static std::vector<long> bench_symbols(Runtime& rt, const Plan& p, const char* tokens, long B, long S, long P, bool strict = true) {
  std::vector<long> entry(p.frames[0].f->nsyms + 1, 0);
  const GenerationDef& gen = GENERATION;
  for (int i = 0; i < p.g->nbinds; ++i) {
    const SymBind& b = p.g->binds[i];
    long v = -1;
    if (!std::strcmp(b.input, tokens)) v = b.axis == 0 ? B : S;
    for (int c = 0; c < gen.ncache; ++c)
      if (!std::strcmp(b.input, gen.cache[c].input)) v = b.axis == 0 ? B : b.axis == gen.cache[c].axis ? P : -1;
    if (v < 0 && !strict) v = 1;
    if (v < 0) fail("bench: cannot size symbol %d of graph %s (axis %d of input %s)", b.sym, p.g->name, b.axis, b.input);
    entry[b.sym] = v;
  }
  std::vector<long> sym;
  p.bind_symbols(entry.data(), sym);
  (void)rt;
  return sym;
}

/**
 * The decode graph's inputs at batch B: token ids, and the caches at P positions of random values,
 * shaped and typed as the graph declares them, with room for the step's new position as generation
 * holds them (the step grows them in place); their bytes added to *cache_bytes.
 */
static std::map<std::string, DevTensor> decode_inputs(Runtime& rt, long B, long P, long vocab, double* cache_bytes) {
  const GenerationDef& gen = generation();
  const Plan& dp = rt.plan(GRAPHS[gen.decode]->name);
  std::map<std::string, DevTensor> in;
  std::vector<int> ids((size_t)B);
  for (long b = 0; b < B; ++b) ids[b] = (int)((b * 31 + 7) % vocab);
  in[gen.decode_tokens] = upload_ids(rt, ids, B, 1);
  const std::vector<long> sym = bench_symbols(rt, dp, gen.decode_tokens, B, 1, P);
  std::vector<long> shape(8);
  for (int c = 0; c < gen.ncache; ++c) {
    for (int k = 0; k < dp.g->ninputs; ++k) {
      if (std::strcmp(dp.g->inputs[k].name, gen.cache[c].input)) continue;
      const int s = dp.input_slots[k];
      dp.shape(s, sym, shape.data());
      DevTensor t = random_tensor(rt, dp.slots[s].dtype, std::vector<long>(shape.begin(), shape.begin() + dp.slots[s].rank), 100 + c);
      *cache_bytes += (double)t.numel() * dtype_bytes(t.dtype);
      in[gen.cache[c].input] = rt.with_room(t, gen.cache[c].axis, P + 1);
      rt.free_tensor(t);
    }
  }
  return in;
}

/**
 * selftest's check of this model's own tile programs (CHECKED_STEPS of them): random weights, a
 * prefill of 1 x 333 tokens, then decode steps at batch 1, 5 and 40 over 333-position caches (the
 * sizes take different kernels: the grouped GEMM or the GEMVs, decode attention's split forms);
 * each checked step's results are computed again by the op table's direct form of the step and
 * compared (Ctx::check_end). Odd sizes, so that tiles end part-filled.
 */
static int selftest_model(Runtime& rt) {
  if (!CHECKED_STEPS) {
    std::printf("selftest model: this build has no tile programs to check\n");
    return 0;
  }
  if (GENERATION.prefill < 0) {
    // Inputs are made only for generation's graphs (token ids and caches); another graph's are unknown.
    std::printf("selftest model: NOT RUN (this program has no prefill and decode graphs to run the model with, so its %d tile-program checks did not run; compile it with its generation graphs, the default)\n", CHECKED_STEPS);
    return 0;
  }
  const GenerationDef& gen = generation();
  rt.load(nullptr, 1234);
  const long vocab = vocab_size(rt), P = 333;
  rt.check_steps = true;
  std::vector<int> ids((size_t)P);
  for (long j = 0; j < P; ++j) ids[j] = (int)((j * 7919 + 13) % vocab);
  DevTensor t = upload_ids(rt, ids, 1, P);
  for (auto& kv : rt.run(GRAPHS[gen.prefill]->name, {{gen.prefill_tokens, t}}, false)) rt.free_tensor(kv.second);
  rt.free_tensor(t);
  for (const long B : {1L, 5L, 40L}) {
    double bytes = 0;
    std::map<std::string, DevTensor> in = decode_inputs(rt, B, P, vocab, &bytes);
    for (auto& kv : rt.run(GRAPHS[gen.decode]->name, in, false)) rt.free_tensor(kv.second);
    for (auto& kv : in) rt.free_tensor(kv.second);
  }
  rt.check_steps = false;
  CK(cudaStreamSynchronize(rt.stream));
  int failed = 0;
  for (const auto& [what, c] : rt.step_checks) {
    const bool ok = c.bad == 0 && c.worst <= c.tolerance;
    failed += !ok;
    std::printf("selftest step %s: %ld run(s), max error / max |reference| %.3e (tolerance %.1e)%s: %s\n", what.c_str(), c.runs, c.worst, c.tolerance,
                c.bad ? (" and " + std::to_string(c.bad) + " element(s) not equal where the reference is not finite").c_str() : "", ok ? "PASS" : "FAIL");
  }
  if (rt.step_checks.empty()) {
    std::printf("selftest model: FAIL (none of the %d checked steps ran at these sizes)\n", CHECKED_STEPS);
    return 1;
  }
  return failed ? 1 : 0;
}

#include "lingc_pipeline.cuh"

static std::vector<StampAttach>& stamp_attachers() {
  static std::vector<StampAttach> attachers;
  return attachers;
}
bool stamp_register(StampAttach attach) {
  stamp_attachers().push_back(attach);
  return true;
}
/**
 * With LINGC_STAMPS_OUT=FILE and a model.cu built with stamps (lingc_runtime.h): one more run of
 * `step` (a captured decode step, its kernels already loaded) with the stamp buffer attached, the
 * buffer written to FILE-bB.bin (B: the batch). Off otherwise (the buffer detached, the kernels'
 * stamps skipped).
 */
static void stamp_graph(long B, const std::function<void()>& step) {
  const char* out = std::getenv("LINGC_STAMPS_OUT");
  if (!out || !*out) return;
  if (stamp_attachers().empty()) fail("LINGC_STAMPS_OUT is set but this program was compiled without stamps (compile with LINGC_STAMPS=on)");
  unsigned long long* buf = nullptr;
  CK(cudaMalloc(&buf, STAMP_WORDS * 8));
  CK(cudaMemset(buf, 0, STAMP_WORDS * 8));
  for (auto a : stamp_attachers()) a(buf);
  CK(cudaDeviceSynchronize());
  step();
  CK(cudaDeviceSynchronize());
  for (auto a : stamp_attachers()) a(nullptr);
  std::vector<unsigned long long> host(STAMP_WORDS);
  CK(cudaMemcpy(host.data(), buf, STAMP_WORDS * 8, cudaMemcpyDeviceToHost));
  CK(cudaFree(buf));
  const std::string path = std::string(out) + "-b" + std::to_string(B) + ".bin";
  // Written beside it and renamed, so that a failed write leaves no partial file.
  const std::string part = path + ".part";
  FILE* f = std::fopen(part.c_str(), "wb");
  const bool wrote = f && std::fwrite(host.data(), 8, host.size(), f) == host.size();
  if (!f || std::fclose(f) != 0 || !wrote || std::rename(part.c_str(), path.c_str()) != 0) {
    std::remove(part.c_str());
    fail("cannot write %s", path.c_str());
  }
  std::fprintf(stderr, "stamps of one graphed decode step (batch %ld) written to %s\n", B, path.c_str());
}

/**
 * bench: prefill B x S (whole, and with chunks > 1 also in that many chunks of the sequence through
 * the decode graph, one after another) and decode B with a P-token cache, median of repeats; plus
 * this GPU's copy bandwidth and bf16 GEMM rate.
 */
static void bench(Runtime& rt, const std::vector<std::pair<long, long>>& prefill, const std::vector<long>& chunk_counts, const std::vector<std::pair<long, long>>& decode, int repeats, const std::string& whole_graph) {
  const GenerationDef& gen = generation();
  // The prefill rows run generation's prefill graph, or --graph's (e.g. forward: every position's logits).
  const std::string prefill_graph = whole_graph.empty() ? GRAPHS[gen.prefill]->name : whole_graph, decode_graph = GRAPHS[gen.decode]->name;
  {
    const Plan& p = rt.plan(prefill_graph);
    bool takes = false;
    for (int i = 0; i < p.g->ninputs; ++i) takes = takes || !std::strcmp(p.g->inputs[i].name, gen.prefill_tokens);
    if (!takes || p.g->ninputs != 1) fail("bench --graph %s: the prefill rows run a graph whose one input is %s", prefill_graph.c_str(), gen.prefill_tokens);
  }
  const long vocab = vocab_size(rt);
  std::printf("{\n  \"model\": \"%s\",\n", MODEL_NAME);
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
    for (size_t j = 0; j < ids.size(); ++j) ids[j] = (int)((j * 7919) % vocab);
    DevTensor t = upload_ids(rt, ids, B, S);
    auto once = [&] {
      auto r = rt.run(prefill_graph, {{gen.prefill_tokens, t}}, false);
      for (auto& kv : r) rt.free_tensor(kv.second);
    };
    once();
    rt.timings.clear();
    const double ms = time_ms(rt, repeats, once);
    std::printf("%s\n    {\"batch\": %ld, \"seq\": %ld, \"ms\": %.3f, \"tokens_per_s\": %.1f", i ? "," : "", B, S, ms, B * S / (ms * 1e-3));
    if (rt.profile) {
      std::fprintf(stderr, "prefill %ldx%ld, %d run(s): ", B, S, repeats);
      rt.print_timings();
    }
    for (const long chunks : chunk_counts) {
      if (chunks < 2 || S % chunks) fail("bench: --chunks %ld does not divide the prefill length %ld into 2 or more chunks", chunks, S);
      const long L = S / chunks;
      auto chunked = [&] {
        std::map<std::string, DevTensor> cache = random_caches(rt, B, L, 0, S);
        for (long c = 0; c < chunks; ++c) {
          std::vector<int> part;
          for (long b = 0; b < B; ++b) part.insert(part.end(), ids.begin() + b * S + c * L, ids.begin() + b * S + (c + 1) * L);
          std::map<std::string, DevTensor> in = cache;
          DevTensor tc = upload_ids(rt, part, B, L);
          in[gen.decode_tokens] = tc;
          auto r = rt.run(decode_graph, in, false);
          rt.free_tensor(tc);
          advance_cache(rt, gen.cache, gen.ncache, cache, r);
          for (auto& kv : r) rt.free_tensor(kv.second);
        }
        for (auto& kv : cache) rt.free_tensor(kv.second);
      };
      chunked();
      rt.timings.clear();
      const double cms = time_ms(rt, repeats, chunked);
      std::printf(", \"chunks_%ld_ms\": %.3f", chunks, cms);
      if (rt.profile) {
        std::fprintf(stderr, "prefill %ldx%ld in %ld chunks, %d run(s): ", B, S, chunks, repeats);
        rt.print_timings();
      }
    }
    std::printf("}");
    rt.free_tensor(t);
  }
  std::printf("\n  ],\n  \"decode\": [");
  for (size_t i = 0; i < decode.size(); ++i) {
    const long B = decode[i].first, P = decode[i].second;
    double cache_bytes = 0;
    std::map<std::string, DevTensor> in = decode_inputs(rt, B, P, vocab, &cache_bytes);
    auto once = [&] {
      auto r = rt.run(decode_graph, in, false);
      for (auto& kv : r) rt.free_tensor(kv.second);
    };
    once();
    rt.timings.clear();
    const double ms = time_ms(rt, repeats, once);
    double graphed = 0;
    if (!rt.profile) {
      rt.run_graphed(decode_graph, in);
      graphed = time_ms(rt, repeats, [&] { rt.run_graphed(decode_graph, in); });
      stamp_graph(B, [&] { rt.run_graphed(decode_graph, in); });
    }
    std::printf("%s\n    {\"batch\": %ld, \"cache\": %ld, \"ms_per_step\": %.3f, \"tokens_per_s\": %.1f, \"graph_ms_per_step\": %.3f, \"graph_tokens_per_s\": %.1f", i ? "," : "", B, P, ms,
                B / (ms * 1e-3), graphed, graphed > 0 ? B / (graphed * 1e-3) : 0.0);
    if (B == 1 && DECODE_WEIGHT_BYTES > 0) {
      // What one step must read at least: the weights one token uses (its K routed experts, one
      // embedding row) and the whole KV cache; as a share of the copy bandwidth measured above.
      const double bytes = DECODE_WEIGHT_BYTES + cache_bytes, best = std::min(ms, graphed > 0 ? graphed : ms);
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

/** "2,4,8" as numbers (each at least 1). */
static std::vector<long> parse_counts(const std::string& s) {
  std::vector<long> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    char* end = nullptr;
    const long v = std::strtol(s.c_str() + i, &end, 10);
    if (end != s.c_str() + j || v < 1) fail("bad count '%s' (expected positive integers separated by commas)", s.substr(i, j - i).c_str());
    out.push_back(v);
    i = j + 1;
  }
  return out;
}

static std::vector<std::vector<int>> parse_prompts(const std::string& s, long vocab) {
  std::vector<std::vector<int>> out(1);
  std::string num;
  for (size_t i = 0; i <= s.size(); ++i) {
    const char c = i < s.size() ? s[i] : ';';
    if (c >= '0' && c <= '9') num.push_back(c);
    else if (c == ',' || c == ';') {
      if (num.empty()) fail("--prompt: empty token id");
      const long v = std::atol(num.c_str());
      if (v < 0 || v >= vocab) fail("--prompt: id %ld is not in the vocabulary (0..%ld)", v, vocab - 1);
      out.back().push_back((int)v);
      num.clear();
      if (c == ';' && i < s.size()) out.emplace_back();
    } else if (c != ' ') fail("--prompt: unexpected character '%c'", c);
  }
  return out;
}

/**
 * A training graph's step on random tokens: its time, and its memory: the stream-ordered pool's
 * high-water mark over one run (every value the graph computes lives there; weights do not) and the
 * bytes of its outputs (losses, gradients, counts), so that peak minus outputs is the activations'.
 */
static void trainbench(Runtime& rt, const std::string& graph, long B, long S, int repeats) {
  const GraphDef* g = nullptr;
  for (int i = 0; i < NGRAPHS; ++i)
    if (graph == GRAPHS[i]->name) g = GRAPHS[i];
  if (!g) fail("trainbench: no graph '%s'", graph.c_str());
  long vocab = 0;
  for (auto& kv : rt.weights)
    if (kv.first.find("word_embeddings") != std::string::npos) vocab = kv.second.shape.at(0);
  if (vocab <= 0) fail("trainbench: no word_embeddings weight to take the vocabulary size from");
  size_t weight_bytes = 0;
  for (auto& kv : rt.weights) weight_bytes += (size_t)kv.second.numel() * dtype_bytes(kv.second.dtype);
  std::vector<int> ids((size_t)(B * S));
  for (size_t j = 0; j < ids.size(); ++j) ids[j] = (int)((j * 7919 + 17) % vocab);
  DevTensor t = upload_ids(rt, ids, B, S);
  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaMemPool_t pool;
  CK(cudaDeviceGetDefaultMemPool(&pool, dev));
  size_t out_bytes = 0;
  double loss = 0;
  unsigned long long after = 0;  // pool bytes in use after the run, its outputs still held
  auto once = [&](bool measure) {
    auto r = rt.run(graph, {{"input_ids", t}}, false);
    if (measure) {
      out_bytes = 0;
      for (auto& kv : r) out_bytes += (size_t)kv.second.numel() * dtype_bytes(kv.second.dtype);
      CK(cudaStreamSynchronize(rt.stream));
      CK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &after));
      if (r.count("loss")) {
        float l = 0;
        CK(cudaMemcpyAsync(&l, r["loss"].ptr, 4, cudaMemcpyDeviceToHost, rt.stream));
        CK(cudaStreamSynchronize(rt.stream));
        loss = l;
      }
    }
    for (auto& kv : r) rt.free_tensor(kv.second);
  };
  once(false);  // warm-up: kernels loaded, cuBLASLt plans made
  CK(cudaStreamSynchronize(rt.stream));
  unsigned long long zero = 0, high = 0, used = 0;  // the pool attributes are 64-bit
  CK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used));
  CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
  once(true);
  CK(cudaStreamSynchronize(rt.stream));
  CK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high));
  const double ms = time_ms(rt, repeats, [&] { once(false); });
  std::printf("{\"graph\": \"%s\", \"batch\": %ld, \"seq\": %ld, \"lazy_alloc\": %s, \"step_ms\": %.2f, \"loss\": %.6f, \"pool_peak_bytes\": %llu, \"pool_in_use_before_bytes\": %llu, \"pool_in_use_after_bytes\": %llu, \"output_bytes\": %zu, \"weight_bytes\": %zu}\n",
              graph.c_str(), B, S, rt.lazy_alloc ? "true" : "false", ms, loss, (unsigned long long)high, (unsigned long long)used, after, out_bytes, weight_bytes);
  rt.free_tensor(t);
}

/** A run's inputs from a safetensors file: the tensors `wanted` names (others in the file are not read). */
static std::map<std::string, DevTensor> read_inputs(const std::string& path, const std::function<bool(const std::string&)>& wanted) {
  StFile in;
  in.open(path);
  std::map<std::string, DevTensor> inputs;
  for (auto& kv : in.entries) {
    if (!wanted(kv.first)) continue;
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
    } else fail("%s: tensor \"%s\" has dtype %s, which the runner does not read", path.c_str(), kv.first.c_str(), e.dtype.c_str());
    CK(cudaMalloc(&t.ptr, std::max<size_t>(dev.size(), 16)));
    CK(cudaMemcpy(t.ptr, dev.data(), dev.size(), cudaMemcpyHostToDevice));
    inputs[kv.first] = t;
  }
  return inputs;
}

/** A run's outputs as a safetensors file (f32, or i32 for integers). */
static void write_outputs(Runtime& rt, const std::string& path, const std::map<std::string, DevTensor>& out) {
  std::vector<std::pair<std::string, std::pair<std::string, std::pair<std::vector<long>, std::string>>>> tensors;
  for (auto& kv : out) tensors.push_back({kv.first, {kv.second.dtype == DT_I32 ? "I32" : "F32", {kv.second.shape, to_bytes_f32(rt, kv.second)}}});
  write_safetensors(path, tensors);
}

/**
 * The generate command: prompts grouped by length, each group generated by `batch` (one process, or
 * this rank's part of a pipeline); `writes`: this process prints the tokens and writes --logits-out
 * (the last stage's, in a pipeline).
 */
static void generate_command(std::map<std::string, std::string>& opt, long vocab, bool writes,
                             const std::function<std::vector<std::vector<int>>(const std::vector<std::vector<int>>&, int, std::vector<std::string>*)>& batch_fn) {
  if (!opt.count("prompt") || !opt.count("max-new-tokens")) fail("generate needs --prompt and --max-new-tokens");
  const auto prompts = parse_prompts(opt["prompt"], vocab);
  const int steps = std::atoi(opt["max-new-tokens"].c_str());
  std::vector<std::vector<int>> result(prompts.size());
  std::vector<std::string> logits(prompts.size() * std::max(steps, 0));
  std::map<size_t, std::vector<size_t>> by_len;
  for (size_t i = 0; i < prompts.size(); ++i) by_len[prompts[i].size()].push_back(i);
  for (auto& kv : by_len) {
    std::vector<std::vector<int>> batch;
    for (size_t i : kv.second) batch.push_back(prompts[i]);
    std::vector<std::string> lg;
    auto r = steps > 0 ? batch_fn(batch, steps, &lg) : std::vector<std::vector<int>>(batch.size());
    for (size_t j = 0; j < kv.second.size(); ++j) {
      result[kv.second[j]] = r[j];
      if (writes)
        for (int s = 0; s < steps; ++s) logits[kv.second[j] * steps + s] = lg[s * batch.size() + j];
    }
  }
  if (!writes) return;
  for (auto& r : result) {
    for (size_t j = 0; j < r.size(); ++j) std::printf("%s%d", j ? " " : "", r[j]);
    std::printf("\n");
  }
  if (opt.count("logits-out") && steps > 0) {
    std::string all;
    for (auto& l : logits) all += l;
    const long V = (long)(logits[0].size() / 4);
    write_safetensors(opt["logits-out"], {{"step_logits", {"F32", {{(long)prompts.size(), (long)steps, V}, all}}}});
  }
}

static const char* USAGE =
    "usage: lingc_model COMMAND [options]\n"
    "  run       --checkpoint DIR|FILE.safetensors --graph NAME --input IN.safetensors --out OUT.safetensors [--observe] [--profile]\n"
    "  generate  --checkpoint DIR --prompt '1,2,3;4,5' --max-new-tokens N [--logits-out F.safetensors] [--profile]\n"
    "            [--draft mtp [--draft-stats F]]: speculative decoding with the program's draft graph (the MTP layer); greedy, the same ids\n"
    "  selftest  (the runtime's bf16 attention and SwiGLU kernels against references; then, with random weights, the model's\n"
    "            tile programs (attentions, grouped expert GEMM/GEMVs, dense GEMVs) against the op table's direct forms; no checkpoint)\n"
    "  bench     (--checkpoint DIR | --random-weights) [--prefill 1x2048,1x8192] [--decode 1x2048,32x2048] [--repeats N] [--profile]\n"
    "            [--chunks N[,N...]]: also prefill in N chunks of the sequence through the decode graph (in flight across a pipeline's stages)\n"
    "            [--graph NAME]: the prefill rows run this graph (its one input the tokens; default: generation's prefill graph,\n"
    "            whose logits are the last position's; forward: every position's)\n"
    "  trainbench (--checkpoint DIR | --random-weights) [--graph train] [--shape 1x4096] [--repeats N]: step time and memory of a training graph\n"
    "  (any command: --eager-alloc allocates every value of a run for the whole run instead of first write to last use)\n"
    "  A program of a pipeline stage (lingc_stageK) runs as one process per stage (RANK, WORLD_SIZE, LOCAL_RANK,\n"
    "  MASTER_ADDR, MASTER_PORT as torchrun sets them; see launch.sh); run's outputs are written by the last rank.\n";

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
    if (a == "observe" || a == "profile" || a == "random-weights" || a == "eager-alloc") opt[a] = "1";
    else if (i + 1 < argc) opt[a] = argv[++i];
    else fail("option --%s needs a value", a.c_str());
  }
  // A pipeline stage: this process's GPU comes from the launch (before the runtime starts on it).
  Pipeline pp;
  const bool staged = STAGE_COUNT > 1 && cmd != "selftest";
  if (staged) pp.select_device();
  Runtime rt;
  rt.init();
  // The stages meet before each loads its weights (which may take minutes, more on one than another).
  if (staged) pp.connect(rt);
  rt.profile = opt.count("profile") > 0;
  rt.lazy_alloc = opt.count("eager-alloc") == 0;
  if (cmd == "selftest") {
    // The runtime's kernels against references, then (in a one-stage program) the model's own tile programs.
    const int failed = selftest(rt);
    if (STAGE_COUNT > 1) {
      std::printf("selftest model: run in the one-stage program (a stage program holds part of the model)\n");
      return failed;
    }
    return selftest_model(rt) | failed;
  }
  Checkpoint ck;
  const bool random = opt.count("random-weights") > 0;
  if (!random) {
    if (opt.count("checkpoint")) {
      check_config(opt["checkpoint"]);
      ck.open(opt["checkpoint"]);
    }
    else if (rt.declares_weights()) fail("--checkpoint DIR is required (or --random-weights for bench)");
  }
  rt.load(random || !opt.count("checkpoint") ? nullptr : &ck, 1234);
  if (staged && cmd == "run") {
    if (!opt.count("graph")) fail("run needs --graph NAME");
    const std::string g = opt["graph"];
    if (!opt.count("input") || !opt.count("out")) fail("run needs --input and --out");
    auto inputs = read_inputs(opt["input"], [&](const std::string& n) { return pp.reads_input(g, n); });
    auto out = pp.run(g, inputs, true);
    if (pp.rank == pp.last()) write_outputs(rt, opt["out"], out);
  } else if (staged && cmd == "generate") {
    if (opt.count("draft")) fail("--draft: speculative decoding runs in a one-stage program (not across pipeline stages yet)");
    if (pp.vocab <= 0) fail("this pipeline's graphs record no vocabulary size (the 'vocab' module attribute), so prompt ids cannot be checked; compile it from a model");
    generate_command(opt, pp.vocab, pp.rank == pp.last(),
                     [&](const std::vector<std::vector<int>>& batch, int steps, std::vector<std::string>* lg) { return pipeline_generate(rt, pp, batch, steps, lg); });
  } else if (staged && cmd == "bench") {
    if (opt.count("graph")) fail("bench --graph: a pipeline's prefill rows run its prefill graph (--graph is for a one-stage program)");
    pipeline_bench(rt, pp, parse_shapes(opt.count("prefill") ? opt["prefill"] : "1x2048,1x8192"), parse_counts(opt.count("chunks") ? opt["chunks"] : ""),
                   parse_shapes(opt.count("decode") ? opt["decode"] : "1x2048,32x2048"), opt.count("repeats") ? std::atoi(opt["repeats"].c_str()) : 10);
  } else if (staged) {
    fail("a pipeline stage program runs run, generate or bench (got '%s')", cmd.c_str());
  }
  if (staged) pp.finish(); else if (cmd == "run") {
    if (!opt.count("graph")) fail("run needs --graph NAME");
    const std::string g = opt["graph"];
    if (!opt.count("input") || !opt.count("out")) fail("run needs --input and --out");
    const Plan& p = rt.plan(g);
    auto inputs = read_inputs(opt["input"], [&](const std::string& n) {
      for (int i = 0; i < p.g->ninputs; ++i)
        if (n == p.g->inputs[i].name) return true;
      return false;
    });
    write_outputs(rt, opt["out"], rt.run(g, inputs, opt.count("observe") > 0));
  } else if (cmd == "generate" && opt.count("draft")) {
    if (opt["draft"] != "mtp") fail("--draft: '%s' is not a draft this program knows (mtp: the model's MTP layer)", opt["draft"].c_str());
    DraftStats st;
    generate_command(opt, vocab_size(rt), true, [&](const std::vector<std::vector<int>>& batch, int steps, std::vector<std::string>* lg) {
      // One sequence at a time (their cache lengths diverge with what they accept); logits step-major as generate_command reads them.
      std::vector<std::vector<int>> r;
      std::vector<std::vector<std::string>> per(batch.size());
      for (size_t j = 0; j < batch.size(); ++j) r.push_back(generate_drafted(rt, batch[j], steps, lg ? &per[j] : nullptr, st));
      if (lg)
        for (int s = 0; s < steps; ++s)
          for (size_t j = 0; j < batch.size(); ++j) lg->push_back(per[j].at(s));
      return r;
    });
    // How the drafts fared: into --draft-stats (the lingc driver reads it), else to stderr.
    char line[160];
    std::snprintf(line, sizeof line, "drafted %ld accepted %ld main_forwards %ld draft_runs %ld\n", st.drafted, st.accepted, st.main_forwards, st.draft_runs);
    if (opt.count("draft-stats")) {
      FILE* f = std::fopen(opt["draft-stats"].c_str(), "w");
      if (!f || std::fputs(line, f) < 0 || std::fclose(f) != 0) fail("cannot write %s", opt["draft-stats"].c_str());
    } else std::fprintf(stderr, "draft (mtp): %s", line);
  } else if (cmd == "generate") {
    generate_command(opt, vocab_size(rt), true, [&](const std::vector<std::vector<int>>& batch, int steps, std::vector<std::string>* lg) { return generate_batch(rt, batch, steps, lg); });
  } else if (cmd == "trainbench") {
    const auto shape = parse_shapes(opt.count("shape") ? opt["shape"] : "1x4096");
    if (shape.size() != 1) fail("trainbench: --shape takes one BxS");
    trainbench(rt, opt.count("graph") ? opt["graph"] : "train", shape[0].first, shape[0].second, opt.count("repeats") ? std::atoi(opt["repeats"].c_str()) : 3);
  } else if (cmd == "bench") {
    bench(rt, parse_shapes(opt.count("prefill") ? opt["prefill"] : "1x2048,1x8192"), parse_counts(opt.count("chunks") ? opt["chunks"] : ""), parse_shapes(opt.count("decode") ? opt["decode"] : "1x2048,32x2048"), opt.count("repeats") ? std::atoi(opt["repeats"].c_str()) : 10,
          opt.count("graph") ? opt["graph"] : "");
  } else {
    fail("unknown command '%s'\n%s", cmd.c_str(), USAGE);
  }
  if (rt.profile && cmd != "bench") rt.print_timings();
  CK(cudaStreamSynchronize(rt.stream));
  return 0;
}
