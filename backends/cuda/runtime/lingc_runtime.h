// The lingc CUDA runtime: what generated model.cu files call. A generated file defines the graphs
// (slot tables, shapes, the straight-line host code that launches kernels and calls the routines
// below) and MODEL; this runtime loads weights from safetensors, runs graphs with device-resident
// tensors, and provides the command line (run, generate, bench).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>
#include "lingc_blas.h"

namespace lingc {

enum Dtype { DT_F32 = 0, DT_BF16 = 1, DT_I32 = 2, DT_F8 = 3 };  // DT_F8: e4m3, one byte

/** The smallest power of two at least x (x > 0, finite): a UE8M0 scale (generated kernels call it). */
__device__ __forceinline__ float pow2_ceil(float x) {
  const unsigned b = __float_as_uint(x);
  return (b & 0x007fffffu) == 0u ? x : __uint_as_float((b & 0x7f800000u) + 0x00800000u);
}
/** Two floats rounded to bf16 in one 32-bit word, lo in the low half: an mma A fragment (generated kernels call it). */
__device__ __forceinline__ unsigned pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&v);
}
/** Four floats as e4m3 codes (to nearest even, saturating) in one 32-bit word, a in the lowest byte (kir packE4m3). */
__device__ __forceinline__ unsigned pack_e4m3x4(float a, float b, float c, float d) {
  const unsigned lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  const unsigned hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return lo | (hi << 16);
}
/**
 * a / b rounded once (as a / b is), given r = 1 / b rounded once (kir quot: a quantize's codes, one
 * reciprocal a group): q0 = a r is within an ulp of a / b, the residual a - q0 b is exact in one FMA,
 * and q0 + (a - q0 b) r rounds to the quotient (Markstein's theorem; with b finite, positive and
 * normal, and a quotient that neither overflows nor falls below the normal range, as a quantize's
 * codes do not; its sign is a's, which a zero result takes from a). Three instructions and a copysign
 * where IEEE division takes about ten. A b that is not finite divides.
 */
__device__ __forceinline__ float quot(float a, float b, float r) {
  if (!isfinite(b)) return a / b;
  const float q0 = a * r;
  return copysignf(fmaf(fmaf(-q0, b, a), r, q0), a);
}
/**
 * 2^x in one instruction (ex2.approx.ftz): exp2f is ex2.approx without ftz, which ptxas wraps in
 * three more for subnormal results. The softmaxes that call it (kir exp2) lose nothing by the flush:
 * a probability under 2^-126 adds nothing to a row's sum (at least 1) and moves no output.
 */
__device__ __forceinline__ float ex2(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
/**
 * The e4m3 code in byte b of word w (a 16-byte load of four codes a word, kir e4m3Byte) as a float:
 * the hardware's e4m3-to-half conversion, then half to float (both exact).
 */
__device__ __forceinline__ float e4m3_byte(unsigned w, int b) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)((w >> (8 * b)) & 0xffu), __NV_E4M3)));
}
/**
 * The largest x of the warp's 32 lanes (not NaN), in every lane: one integer max (redux.sync) over
 * bits that order as the floats do (sign set: all bits flipped; clear: the sign bit set). Generated
 * kernels call it (kir warpMax); every lane of the warp must.
 */
__device__ __forceinline__ float warp_max(float x) {
  const unsigned b = __float_as_uint(x);
  const unsigned key = __reduce_max_sync(0xffffffffu, (b & 0x80000000u) ? ~b : (b | 0x80000000u));
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}
/**
 * A grid-wide barrier (kir gridSync) for a launch whose n workgroups are all resident (Ctx::resident
 * sizes it), on one word: each workgroup's first thread adds to it once, workgroup 0 2^31 - (n - 1)
 * and the others 1, so that its top bit flips exactly when the last arrives and its low bits are back
 * where they were (zero: any n, launch after launch); each then waits, with acquire loads, for the bit
 * to differ from the one its add saw. The add is a release (after the workgroup barrier, so it
 * carries every thread's writes), the loads acquire everyone's. One atomic a workgroup: the count and
 * generation form (a reset and a second atomic on the last arrival's path) cost more (bench/cuda/gridsync.cu).
 */
__device__ __forceinline__ void grid_sync(int* bar, int n) {
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* count = reinterpret_cast<unsigned*>(bar);
    const unsigned add = blockIdx.x == 0 ? 0x80000000u - static_cast<unsigned>(n - 1) : 1u;
    unsigned old, now;
    asm volatile("atom.add.release.gpu.global.u32 %0, [%1], %2;" : "=r"(old) : "l"(count), "r"(add) : "memory");
    do asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(count) : "memory");
    while (((now ^ old) & 0x80000000u) == 0);
  }
  __syncthreads();
}
/**
 * A grid barrier whose last arrival runs work before the others go on (kir gridSync's `last`), on
 * two words: the count as grid_sync's, and a generation that each such barrier advances. A launch
 * reads the generation once, after its wait for the kernel before (grid_generation: no barrier of
 * this launch can have moved it yet, as none has seen every workgroup arrive), and counts the
 * barriers it passes: the k-th (from 0) releases at generation + k + 1, so no read sits on the
 * barrier's path. grid_arrive (every thread) returns whether this workgroup arrived last: its first
 * thread adds as grid_sync's does, acquiring the others' writes and releasing its own. The last runs
 * the work, then grid_release advances the generation (a release, after the workgroup barrier: it
 * carries every thread's writes); the others grid_wait until it passes `gen` (acquire loads).
 */
__device__ __forceinline__ unsigned grid_generation(const int* bar) {
  unsigned gen = 0;
  if (threadIdx.x == 0) asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(gen) : "l"(reinterpret_cast<const unsigned*>(bar) + 1) : "memory");
  return gen;
}
__device__ __forceinline__ bool grid_arrive(int* bar, int n) {
  __shared__ int last;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* count = reinterpret_cast<unsigned*>(bar);
    const unsigned add = blockIdx.x == 0 ? 0x80000000u - static_cast<unsigned>(n - 1) : 1u;
    unsigned old;
    asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], %2;" : "=r"(old) : "l"(count), "r"(add) : "memory");
    last = ((old ^ (old + add)) & 0x80000000u) != 0;
  }
  __syncthreads();
  return last;
}
__device__ __forceinline__ void grid_release(int* bar) {
  __syncthreads();
  if (threadIdx.x == 0) asm volatile("red.release.gpu.global.add.u32 [%0], 1;" :: "l"(reinterpret_cast<unsigned*>(bar) + 1) : "memory");
}
__device__ __forceinline__ void grid_wait(int* bar, unsigned gen) {
  if (threadIdx.x == 0) {
    unsigned now;
    do asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(reinterpret_cast<unsigned*>(bar) + 1) : "memory");
    while (now == gen);
  }
  __syncthreads();
}
// Where a slot's storage comes from. A function's own slots (LocalSlot) use PARAM and CALL too; a
// graph's expanded slots (SlotMeta) use INPUT for the entry's parameters and ALIAS for the rest.
enum Source { SRC_INPUT = 0, SRC_WEIGHT = 1, SRC_CONSTANT = 2, SRC_COMPUTED = 3, SRC_ALIAS = 4, SRC_PARAM = 5, SRC_CALL = 6 };

struct Ctx;
struct FuncDef;

/** A slot of one function, as generated: names relative to the function's call scope. */
struct LocalSlot {
  const char* name;    // IR value name ("" when unnamed)
  const char* weight;  // weight name (SRC_WEIGHT; a stacked one has ".*.")
  int dtype;
  int source;
  int ref;   // SRC_PARAM: parameter index; SRC_ALIAS: the slot it aliases; SRC_CALL: call site
  int ref2;  // SRC_CALL: which result of the call
  int rank;
  int resident;  // computed once at load (reads only weights and constants)
  int grows;     // SRC_ALIAS of a cache_append's result: the axis its storage (a graph input) grows along, else -1
};
struct ConstDef {
  int slot;
  const float* values;
  int count;  // 1: splat
};
/** A call of a layer function: arguments and results as slots of the caller. */
struct CallSite {
  const FuncDef* callee;
  const char* scope;  // prefix of the callee's names
  int nargs;
  const int* args;
  /** The callee's symbols from the caller's. */
  void (*symbols)(const long* caller, long* callee);
};
/** One instance of a function while a graph runs: its first global slot, symbols and labels. */
struct Frame {
  const FuncDef* f;
  int base;       // global slot of local slot 0
  int sym;        // index of its first symbol in Ctx::sym
  int label;      // global label of local label 0
  std::vector<int> calls;  // frame index of each call site's callee
};
/** A function of the program (the entry or a layer function): slots, shapes, host code. */
struct FuncDef {
  const char* name;
  int nslots;
  const LocalSlot* slots;
  void (*shape)(int slot, const long* sym, long* out);
  int nsyms;
  int nresults;
  const int* results;
  int ncalls;
  const CallSite* calls;
  int nconsts;
  const ConstDef* consts;
  int nlabels;
  const char* const* labels;
  void (*prepare)(Ctx&, const Frame&);
  void (*run)(Ctx&, const Frame&);
};
struct IoDef {
  const char* name;
  int index;  // inputs: parameter index of the entry; outputs: result index
  int slot;   // outputs: >= 0 for the entry's local slot to output instead (a scaled result's scale grid)
};
struct SymBind {
  int sym;
  const char* input;
  int axis;
};
/** A graph: its entry function and how its inputs and outputs are named. */
struct GraphDef {
  const char* name;
  const FuncDef* entry;
  int ninputs;
  const IoDef* inputs;
  int noutputs;
  const IoDef* outputs;
  int nbinds;
  const SymBind* binds;  // how each entry symbol is read from an input's shape
};
/** A decode cache input, the output (of the step before) that feeds it, its axis and declared capacity. */
struct CacheDef {
  const char* input;
  const char* output;
  int axis;
  long capacity;
};
/** Greedy generation as the program declares it (module attributes); prefill < 0 when it declares none. */
struct GenerationDef {
  int prefill;
  int decode;
  const char* prefill_tokens;
  const char* prefill_logits;
  const char* decode_tokens;
  const char* decode_logits;
  int ncache;
  const CacheDef* cache;
  // Speculative decoding: the draft graph (-1: none), its token, logits and hidden-state names, the
  // hidden-state outputs of prefill and decode it reads, and its own cache.
  int draft;
  const char* draft_tokens;
  const char* draft_logits;
  const char* draft_hidden;
  const char* prefill_hidden;
  const char* decode_hidden;
  int ndraft_cache;
  const CacheDef* draft_cache;
};
/** A slot of an expanded graph (every function instance's slots side by side). */
struct SlotMeta {
  std::string name;    // full IR name ("" when unnamed)
  std::string weight;  // full checkpoint name (SRC_WEIGHT)
  int dtype;
  int source;    // SRC_INPUT, SRC_WEIGHT, SRC_CONSTANT, SRC_COMPUTED or SRC_ALIAS
  int alias_of;  // SRC_ALIAS: the slot holding the storage
  int rank;
  int resident;
  int frame;  // the instance it belongs to, and its slot there
  int local;
  int grows;  // as LocalSlot::grows
};

/**
 * A tensor on the device. With room_axis >= 0 its buffer holds `rows` positions along that axis
 * (a KV cache grown in place; the rows past shape[room_axis] are not the tensor's). A view shares
 * the buffer of another tensor (a graph input it grew) and is not freed on its own.
 */
struct DevTensor {
  void* ptr = nullptr;
  int dtype = DT_F32;
  std::vector<long> shape;
  int room_axis = -1;
  long rows = 0;
  bool view = false;
  long numel() const {
    long n = 1;
    for (long d : shape) n *= d;
    return n;
  }
  /** Rows along `axis` of the buffer: `rows` on the room axis, else the extent. */
  long rows_along(int axis) const { return axis == room_axis ? rows : shape.at(axis); }
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

struct Plan;

/** What generated host code sees while a graph runs. */
struct Ctx {
  Runtime* rt;
  const Plan* plan;
  cudaStream_t stream;
  std::vector<long> sym;  // every frame's symbols (Frame::sym indexes it)
  std::vector<void*> ptrs;
  std::vector<long> rows;  // per storage slot: the buffer's rows along its growth axis (0: exactly its shape)
  void* ptr(int slot) const { return ptrs[slot]; }
  // Storage allocated when first written and freed after its last use (a run without capture and
  // without observe): the generated code brackets its steps with these; otherwise they do nothing.
  bool lazy = false;
  std::vector<char> held;  // per storage slot: allocated by acquire, not yet released
  void acquire(int slot);
  void release(int slot);
  /** The rows along its growth axis of the buffer holding `slot` (`extent` when it has no room). */
  long rows_of(int slot, long extent) const;
  /** The rows of the buffer of a cache a kernel grows in place to `need` rows (fails when it has fewer). */
  long room_for(int slot, long need) const;
  long kv_rows(int k, int v, long T) const;
  int dtype(int slot) const;
  /** Runs (or prepares) the callee of call site k of frame fr. */
  void call(const Frame& fr, int k);
  void prepare_call(const Frame& fr, int k);
  void mark(int label);
  void launched(const char* kernel);
  cudaError_t launch_status = cudaSuccess;  // of the last launch(); launched() reports it
  template <typename... P, typename... A>
  void launch(void (*kern)(P...), dim3 grid, unsigned threads, A... args) {
    launch_status = launch_pdl(stream, kern, grid, dim3(threads), 0, args...);
  }
  // The same for a kernel whose shared arrays (smem bytes) are dynamic: past the 48 KB a static
  // declaration may hold, opted in to once per kernel.
  template <typename... P, typename... A>
  void launch_smem(void (*kern)(P...), dim3 grid, unsigned threads, size_t smem, A... args) {
    allow_smem(reinterpret_cast<const void*>(kern), smem);
    launch_status = launch_pdl(stream, kern, grid, dim3(threads), smem, args...);
  }
  void allow_smem(const void* kern, size_t bytes);
  /** Asks for the largest shared-memory carveout for a kernel that must keep several large blocks resident (kir minBlocks). */
  void prefer_shared(const void* kern);
  /**
   * A generated step's scratch (GeneratedKernel.scratch: what a split computation's first kernel
   * leaves for the second), stream-ordered (CUDA graphs capture it), freed by scratch_release after
   * the step's last launch.
   */
  void* scratch_acquire(size_t bytes);
  // The runtime's counters (counter_slots i32, zero between launches): a generated kernel whose last
  // workgroup finishes the others' work counts them here and sets each it used back to zero.
  int* counters();
  // The grid barrier's words (lingc::grid_sync, grid_arrive), and the grid of a grid-synced kernel: the workgroups
  // `wanted`, but no more than fit on the device at once (at most per_sm a multiprocessor), which
  // its barrier needs: a workgroup waiting for one that cannot be scheduled would wait forever.
  int* grid_sync();
  dim3 resident(const void* kern, long wanted, unsigned threads, size_t smem, int per_sm);
  void scratch_release(void* p);
  // The selftest's check of the tile programs (model.cu's CHECKED_STEPS): while checking() holds, a
  // checked step's reference form writes its results into buffers from check_begin (n elements of the
  // slot's dtype, filled with NaN so that an element it leaves unwritten fails), and check_end
  // compares them with the tile program's, recording the worst error under `what` (allowed: the
  // result dtype's rounding, or `accuracy` where the tile program's hardware sums coarser). Synchronous:
  // never on while a CUDA graph is captured.
  bool checking() const;
  void* check_begin(int slot, long n);
  void check_end(int slot, void* ref, long n, const char* what, float accuracy);
  // The routines the plan's dispatches call (each runs the one kernel it names).
  // Y[M,N] = X[M,K] . W[N,K]^T with cuBLASLt, in the slots' dtype with fp32 accumulation.
  void gemm(int x, int w, int out, long M, long N, long K);
  // The same of e4m3 operands with fp32 scales, x in 1x128 groups (xs [M, K/128]) and w in 128x128 blocks
  // (ws [N/128, K/128]): cuBLASLt's block-scaled FP8 GEMM (sm_90; M a multiple of 4), out f32 or bf16.
  void gemm_fp8(int x, int xs, bool xs_kmajor, int w, int ws, int out, long M, long N, long K);
  // The same for one row (M = 1) with the runtime's GEMV (K a multiple of 256).
  void gemv(int x, int w, int out, long N, long K);
  // SwiGLU of two linears of one input: out[M,N] = silu(X.Wg^T) * (X.Wu^T), rounded as the unfused ops
  // round. One row: the expert GEMV's SwiGLU form over one expert (gate and up read together, one
  // launch); more: two cuBLASLt GEMMs into a stream-ordered scratch, then silu_mul.
  void gemv_swiglu(int x, int wg, int wu, int out, long N, long K);
  void gemm_swiglu(int x, int wg, int wu, int out, long M, long N, long K);
  // silu(X . Wg^T) * (X . Wu^T) of e4m3 codes with block scales: cuBLASLt's block-scaled FP8 GEMM twice, then silu_mul.
  void gemm_fp8_swiglu(int x, int xs, bool xs_kmajor, int wg, int wgs, int wu, int wus, int out, long M, long N, long K);
  // Expert matmuls over rows grouped by expert (offsets[E+1]): with wu >= 0, silu(x.Wg^T) * (x.Wu^T);
  // with order >= 0, row r reads x[order[r] / k]. The GEMV (a block per row, or per expert), or one
  // cuBLASLt GEMM per expert (the grouped GEMM of many rows is a generated tile program).
  void expert_gemv(int x, int order, int k, int wg, int wu, int offsets, int out, long rows, long E, long O, long I, bool by_row, bool vec);
  void expert_loop(int x, int order, int k, int wg, int wu, int offsets, int out, long rows, long E, long O, long I);
  // A float cast of n elements (bf16 <-> f32), vectorized where the pointers allow.
  void cast(int in, int out, long n);
  // Rounds an f16 tensor's n values (held in f32) to f16 in place, after a library step that wrote them in f32.
  void round_f16(int buf, long n);
  // out [rows, sum cols] = the sources [rows, cols[j]] side by side (a concat along an axis whose
  // outer dims multiply to rows); 1 to 4 sources.
  void concat(int out, long rows, int count, const int* srcs, const long* cols);
  // cache_append in place: the n new rows of src [outer, n, inner] written after the len rows that
  // out's storage (a graph input with room) holds, as one strided copy.
  void append(int out, int src, long outer, long len, long n, long inner);
  // moe_dispatch: pairs sorted by expert (order), offsets[E+1], and the row each pair landed in;
  // in one block (counts in shared memory), or by count / scan / place kernels.
  void dispatch_block(int idx, int order, int offsets, int row_of, long n, long E);
  void dispatch_scan(int idx, int order, int offsets, int row_of, long n, long E);
  // Causal GQA attention; q [B,nh,S,d], k [B,nkv,T,d], v [B,nkv,T,dv]; out [B,nh,S,dv] or [B,S,nh,dv]:
  // decode (split keys over about `sms` blocks), fused bf16 prefill, or cuBLASLt tiles.
  void attn_decode(int q, int k, int v, int out, long B, long nh, long nkv, long S, long T, long d, long dv, float scale, bool causal, bool transposed_out, int sms);
  void attn_tiles(int q, int k, int v, int out, long B, long nh, long nkv, long S, long T, long d, long dv, float scale, bool causal, bool transposed_out, long score_bytes);
};

inline dim3 grid(long blocks) {
  if (blocks <= 65535) return dim3((unsigned)blocks, 1, 1);
  const long y = (blocks + 65534) / 65535;
  return dim3(65535, (unsigned)y, 1);
}

/**
 * Timeline stamps, a diagnostic (a model.cu rendered with LINGC_STAMPS=on defines LINGC_STAMPS
 * before including this header): each generated kernel stamps %globaltimer at events of each launch,
 * the earliest and the latest over its workgroups' first threads: event 0 when a workgroup passes
 * the wait for the kernel before, 1 to 14 at its grid barriers (arrival, then departure), 15 at its
 * end. A launch is told from the kernel's earlier launches by how many workgroups started before
 * it (a count a kernel). `lingc_model bench` with LINGC_STAMPS_OUT=FILE stamps one CUDA-graph decode
 * step after its timed ones and writes the buffer (bench/cuda/stamps.py reads it). The buffer: the
 * counts (STAMP_KERNELS words), then per kernel id, launch and event two words: ~min and max time
 * (both kept by atomicMax, so zero is "none").
 */
constexpr int STAMP_KERNELS = 1024, STAMP_LAUNCHES = 64, STAMP_EVENTS = 16;
constexpr size_t STAMP_WORDS = STAMP_KERNELS + (size_t)STAMP_KERNELS * STAMP_LAUNCHES * STAMP_EVENTS * 2;
using StampAttach = void (*)(unsigned long long* buffer);
/** Each translation unit that stamps registers how to point its kernels at the buffer (nullptr: off). */
bool stamp_register(StampAttach attach);

}  // namespace lingc

#ifdef LINGC_STAMPS
static __device__ unsigned long long* lingc_stamp_buf_;
static void lingc_stamp_attach_(unsigned long long* p) { cudaMemcpyToSymbol(lingc_stamp_buf_, &p, sizeof p); }
[[maybe_unused]] static const bool lingc_stamp_registered_ = lingc::stamp_register(lingc_stamp_attach_);
namespace lingc {
__device__ __forceinline__ void stamp_at(int kid, int launch, int ev) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  unsigned long long* r = lingc_stamp_buf_ + STAMP_KERNELS + (((size_t)kid * STAMP_LAUNCHES + launch) * STAMP_EVENTS + ev) * 2;
  atomicMax(r, ~t);
  atomicMax(r + 1, t);
}
/** Event 0 of this workgroup (its first thread); returns the launch's number (-1: not stamped). */
__device__ __forceinline__ int stamp_begin(int kid) {
  if (threadIdx.x != 0 || !lingc_stamp_buf_) return -1;
  const int launch = (int)(atomicAdd(lingc_stamp_buf_ + kid, 1ull) / ((unsigned long long)gridDim.x * gridDim.y));
  if (launch >= STAMP_LAUNCHES) return -1;
  stamp_at(kid, launch, 0);
  return launch;
}
}  // namespace lingc
#define LINGC_STAMP_BEGIN(kid) const int stamp_launch_ = lingc::stamp_begin(kid)
#define LINGC_STAMP(kid, ev) \
  do {                       \
    if (stamp_launch_ >= 0) lingc::stamp_at(kid, stamp_launch_, ev); \
  } while (0)
#endif

// What a generated model.cu defines.
extern const char* const MODEL_NAME;
/** The configuration the program was compiled from, as JSON (config.json's keys), or "". */
extern const char* const MODEL_CONFIG;
extern const int NGRAPHS;
extern const lingc::GraphDef* const GRAPHS[];
extern const lingc::GenerationDef GENERATION;
/** Weight bytes one token of a decode step reads (the benchmark's bandwidth share); 0 when unknown. */
extern const double DECODE_WEIGHT_BYTES;
/** Which pipeline stage this program is, of how many (1: the whole graph), and the chain that links them (JSON, "" for one). */
extern const int STAGE_INDEX;
extern const int STAGE_COUNT;
extern const char* const STAGE_CHAIN;
/** Steps whose tile program the selftest checks against the op table's direct form (0: none). */
extern const int CHECKED_STEPS;
