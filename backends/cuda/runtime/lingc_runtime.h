// The lingc CUDA runtime: what generated model.cu files call. A generated file defines the graphs
// (slot tables, shapes, the straight-line host code that launches kernels and calls the routines
// below) and MODEL; this runtime loads weights from safetensors, runs graphs with device-resident
// tensors, and provides the command line (run, generate, bench).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <map>
#include <string>
#include <vector>
#include "lingc_blas.h"

namespace lingc {

enum Dtype { DT_F32 = 0, DT_BF16 = 1, DT_I32 = 2 };
enum Source { SRC_INPUT = 0, SRC_WEIGHT = 1, SRC_CONSTANT = 2, SRC_COMPUTED = 3, SRC_ALIAS = 4 };

struct SlotMeta {
  const char* name;    // full IR name ("" when unnamed)
  const char* weight;  // checkpoint name for weights (a stacked one has ".*.")
  int dtype;
  int source;
  int alias_of;  // storage slot of an alias
  int rank;
  int resident;  // computed once at load (reads only weights)
};
struct ConstDef {
  int slot;
  const float* values;
  int count;  // 1: splat
};
struct IoDef {
  const char* name;
  int slot;
};
struct SymBind {
  int sym;
  const char* input;
  int axis;
};

struct Ctx;
struct GraphDef {
  const char* name;
  int nslots;
  const SlotMeta* slots;
  void (*shape)(int slot, const long* sym, long* out);
  int nconsts;
  const ConstDef* consts;
  int ninputs;
  const IoDef* inputs;
  int noutputs;
  const IoDef* outputs;
  int nsyms;
  const SymBind* binds;
  int nlabels;
  const char* const* labels;
  void (*prepare)(Ctx&);
  void (*run)(Ctx&);
};
struct ModelDef {
  const char* name;
  long vocab;
  long layers;
  long kv_heads;
  long head_dim;
  long mtp_layers;
  int bf16;
  double decode_weight_bytes;  // weight bytes a batch-1 decode step reads (K routed experts, one embedding row)
};

/** A tensor on the device. `owned` tensors are freed by their holder. */
struct DevTensor {
  void* ptr = nullptr;
  int dtype = DT_F32;
  std::vector<long> shape;
  long numel() const {
    long n = 1;
    for (long d : shape) n *= d;
    return n;
  }
};

size_t dtype_bytes(int dt);

class Runtime;

/**
 * Launches kern with programmatic dependent launch: the kernel may be scheduled while the one
 * before it drains. Every lingc kernel launched so starts with launch_dependents (let the next one
 * be scheduled) and wait (for the previous kernel's results), so only launch latency overlaps.
 */
template <typename... P, typename... A>
inline cudaError_t launch_pdl(cudaStream_t stream, void (*kern)(P...), dim3 grid, dim3 threads, size_t smem, A... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = threads;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kern, static_cast<P>(args)...);
}

/** What generated host code sees while a graph runs. */
struct Ctx {
  Runtime* rt;
  const GraphDef* g;
  cudaStream_t stream;
  long sym[8] = {0};
  std::vector<void*> ptrs;
  void* ptr(int slot) const { return ptrs[slot]; }
  int dtype(int slot) const { return g->slots[slot].dtype; }
  void mark(int label);
  void launched(const char* kernel);
  cudaError_t launch_status = cudaSuccess;  // of the last launch(); launched() reports it
  template <typename... P, typename... A>
  void launch(void (*kern)(P...), dim3 grid, unsigned threads, A... args) {
    launch_status = launch_pdl(stream, kern, grid, dim3(threads), 0, args...);
  }
  // Y[M,N] = X[M,K] . W[N,K]^T (cuBLASLt), in the slots' dtype with fp32 accumulation.
  void linear(int x, int w, int out, long M, long N, long K);
  // Expert matmuls over rows grouped by expert (offsets[E+1]): with wu >= 0, silu(x.Wg^T) * (x.Wu^T);
  // with order >= 0, row r reads x[order[r] / k] (the token gather).
  void expert_linear(int x, int order, int k, int wg, int wu, int offsets, int out, long rows, long E, long O, long I);
  // A float cast of n elements (bf16 <-> f32), vectorized where the pointers allow.
  void cast(int in, int out, long n);
  // out [rows, sum cols] = the sources [rows, cols[j]] side by side (a concat along an axis whose
  // outer dims multiply to rows); 1 to 4 sources.
  void concat(int out, long rows, int count, const int* srcs, const long* cols);
  // moe_dispatch: pairs sorted by expert (order), offsets[E+1], and the row each pair landed in.
  void moe_dispatch(int idx, int order, int offsets, int row_of, long n, long E);
  // Causal GQA attention; q [B,nh,S,d], k [B,nkv,T,d], v [B,nkv,T,dv]; out [B,nh,S,dv] or [B,S,nh,dv].
  void attention(int q, int k, int v, int out, long B, long nh, long nkv, long S, long T, long d, long dv, float scale, bool causal, bool transposed_out);
};

inline dim3 grid(long blocks) {
  if (blocks <= 65535) return dim3((unsigned)blocks, 1, 1);
  const long y = (blocks + 65534) / 65535;
  return dim3(65535, (unsigned)y, 1);
}

}  // namespace lingc

extern const lingc::ModelDef MODEL;
extern const lingc::GraphDef GRAPH_forward;
extern const lingc::GraphDef GRAPH_decode;
