// Can a chain of dependent decode GEMVs run at the weights' bandwidth? The question behind issue 10's
// decode bar (docs/ARCHITECTURE.md: every merge so far kept a device-wide wait between dependent steps;
// "a persistent kernel whose workgroups wait on per-tile ready counts ... and stream the next step's
// weights into L2 or shared memory while they wait" was the form left unbuilt). This measures that form
// against lingc's, on a chain of S square GEMVs y_{s+1} = W_s y_s (bf16 weights [D, D], f32 vectors),
// each step reading the whole vector the step before wrote:
//   pdl:    a kernel a step, launched with programmatic dependent launch in one CUDA graph, each
//           workgroup prefetching its weight rows into L2 before it waits (lingc's decode GEMVs);
//   count, flags, ll: one persistent kernel, its steps waiting in three ways (enum Wait below: one
//           count a step, a flag a workgroup a step, or flags in the data words themselves);
//   +staged: each workgroup's weight rows of the next two steps (staged3: three) already on their
//           way into its shared memory (bulk async copies of 8 KB, an mbarrier a buffer) while it
//           waits; +l2aheadN: on their way into L2 only (bulk prefetches), N steps ahead; otherwise
//           it reads them from global memory after the wait;
//   none:   the persistent kernel with nothing to wait for (every step reads the first vector): the
//           ceiling of its loads, plain or staged.
// Every form computes each output row by the same warp sum in the same order: the final vectors must
// be bit for bit equal (checked). D / 128 rows a workgroup, 128 workgroups (one a multiprocessor for
// the staged forms' 2 or 3 x 64 KB buffers at D = 2048).
// Build and run: nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o /tmp/flagchain bench/cuda/flagchain.cu && /tmp/flagchain
// Prints one JSON line per (D, form): microseconds a step (median of 21 graph runs), the weights'
// read rate, and the copy bandwidth measured in the same run (a D2D cudaMemcpy: 2 x bytes / time).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include "graph_timing.cuh"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>


constexpr int THREADS = 256;
constexpr int WARPS = THREADS / 32;
constexpr int GROUPS = 128;  // workgroups; each takes D / GROUPS rows
constexpr int STEPS = 64;

// Row r of W (D bf16) against x (D floats in shared memory): lane l reads 8 weights (16 bytes) at
// k = 8 l + 256 j and the 8 matching inputs, sums in f32, then a butterfly over the warp.
template <int D>
__device__ __forceinline__ float dot_row(const __nv_bfloat16* w, const float* x, int lane) {
  float acc = 0.f;
#pragma unroll
  for (int k = lane * 8; k < D; k += 256) {
    const uint4 v = *reinterpret_cast<const uint4*>(w + k);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
    const float4 xa = *reinterpret_cast<const float4*>(x + k), xb = *reinterpret_cast<const float4*>(x + k + 4);
    const float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float2 f = __bfloat1622float2(h[t]);
      acc += f.x * xv[2 * t] + f.y * xv[2 * t + 1];
    }
  }
#pragma unroll
  for (int o = 16; o; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  return acc;
}

// The workgroup's rows r0 .. r0 + D / GROUPS - 1 of W (its rows from `w`, row-major) against x into y.
template <int D>
__device__ __forceinline__ void rows(const __nv_bfloat16* w, const float* x, float* y, int r0) {
  constexpr int PER_WARP = D / GROUPS / WARPS;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < PER_WARP; ++i) {
    const int lr = warp * PER_WARP + i;
    const float v = dot_row<D>(w + (size_t)lr * D, x, lane);
    if (lane == 0) y[r0 + lr] = v;
  }
}

// The vector x (global, written by another workgroup or kernel) into shared memory: every thread's
// 16-byte loads issued together (through L2: never a stale L1 line), then stored.
template <int D>
__device__ __forceinline__ void stage_x(const float* x, float* xsh) {
  constexpr int N = D / (4 * THREADS);
  float4 v[N];
#pragma unroll
  for (int j = 0; j < N; ++j) v[j] = __ldcg(reinterpret_cast<const float4*>(x) + threadIdx.x + j * THREADS);
#pragma unroll
  for (int j = 0; j < N; ++j) reinterpret_cast<float4*>(xsh)[threadIdx.x + j * THREADS] = v[j];
}

// One step as its own kernel (lingc's form): L2 prefetch of the workgroup's rows, then the wait.
template <int D>
__global__ void __launch_bounds__(THREADS) step_pdl(const __nv_bfloat16* W, const float* x, float* y) {
  asm volatile("griddepcontrol.launch_dependents;");
  const int r0 = blockIdx.x * (D / GROUPS);
  if (threadIdx.x == 0)
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(W + (size_t)r0 * D), "r"((unsigned)(D / GROUPS * D * 2)) : "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
  __shared__ __align__(16) float xsh[D];
  stage_x<D>(x, xsh);
  __syncthreads();
  rows<D>(W + (size_t)r0 * D, xsh, y, r0);
}

__device__ __forceinline__ unsigned smem_addr(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// A workgroup's weight rows of one step into a shared buffer: the bytes announced on the buffer's
// mbarrier, then bulk async copies of PIECE bytes each (several requests in flight, where one copy of
// the whole 64 KB would be one).
constexpr unsigned PIECE = 8192;
__device__ __forceinline__ void bulk_load(void* dst, const void* src, unsigned bytes, uint64_t* bar) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
  for (unsigned o = 0; o < bytes; o += PIECE)
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_addr((char*)dst + o)), "l"((const char*)src + o), "r"(min(PIECE, bytes - o)), "r"(smem_addr(bar)) : "memory");
}

__device__ __forceinline__ void bar_wait(uint64_t* bar, unsigned parity) {
  unsigned done = 0;
  while (!done)
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n" : "=r"(done) : "r"(smem_addr(bar)), "r"(parity) : "memory");
}

// How a persistent step waits for the vector the step before wrote:
//   COUNT: one count a step (ready[s]); each workgroup's thread 0 adds 1 (release) when its rows are
//          written and polls the count (acquire) until every workgroup has;
//   FLAGS: a flag a workgroup a step (ready[s * GROUPS + g]), written without contention; a
//          workgroup's first GROUPS threads poll one producer's flag each;
//   LL:    no flags: each element is stored with its flag in one 8-byte word (NCCL's LL protocol), so
//          the consumer polls the data itself and no fence or count is on the path;
//   NONE:  no dependency at all (every step reads the first vector): what the same workgroups move
//          when nothing waits, the ceiling for this kernel's loads.
enum Wait { COUNT, FLAGS, LL, NONE };

__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
  unsigned n;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(n) : "l"(p) : "memory");
  return n;
}

// All STEPS in one launch. xs holds STEPS + 1 vectors (step s reads vector s, writes s + 1; under
// LL, vectors 1 .. STEPS are (value, flag) words in ll); ready: the counts or flags (zeroed before
// the launch, as ll is).
// The workgroup's weight rows of a step prefetched into L2 (not shared memory), in PIECE-byte requests.
__device__ __forceinline__ void prefetch_l2(const void* src, unsigned bytes) {
  for (unsigned o = 0; o < bytes; o += PIECE)
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"((const char*)src + o), "r"(min(PIECE, bytes - o)) : "memory");
}

template <int D, int DEPTH, Wait WAIT, int L2AHEAD = 0>
__global__ void __launch_bounds__(THREADS, 1) chain_flags(const __nv_bfloat16* W, float* xs, unsigned* ready, uint2* ll) {
  constexpr int R = D / GROUPS;
  constexpr unsigned BYTES = R * D * 2;
  constexpr int NB = DEPTH ? DEPTH : 1;  // weight buffers (staged forms)
  extern __shared__ __align__(128) unsigned char smem[];
  float* xsh = reinterpret_cast<float*>(smem);
  __nv_bfloat16* buf = reinterpret_cast<__nv_bfloat16*>(smem + D * 4);
  __shared__ __align__(8) uint64_t bars[3];
  const int r0 = blockIdx.x * R;
  const __nv_bfloat16* mine = W + (size_t)r0 * D;  // step s's rows: mine + s * D * D
  if (DEPTH && threadIdx.x == 0) {
    for (int b = 0; b < DEPTH; ++b) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bars[b])) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    for (int s = 0; s < DEPTH && s < STEPS; ++s) bulk_load(buf + s * R * D, mine + (size_t)s * D * D, BYTES, &bars[s]);
  }
  if (L2AHEAD && threadIdx.x == 0)
    for (int s = 0; s < L2AHEAD && s < STEPS; ++s) prefetch_l2(mine + (size_t)s * D * D, BYTES);
  __syncthreads();
  for (int s = 0; s < STEPS; ++s) {
    if (s > 0 && WAIT == COUNT) {
      if (threadIdx.x == 0) while (ld_acquire(ready + s - 1) < GROUPS) {}
      __syncthreads();
    }
    if (s > 0 && WAIT == FLAGS) {
      if (threadIdx.x < GROUPS) while (!ld_acquire(ready + (s - 1) * GROUPS + threadIdx.x)) {}
      __syncthreads();
    }
    if (s > 0 && WAIT == LL) {
      // Each thread's elements (two a 16-byte word, with their flags), all loaded at once and
      // reloaded until every flag says the step before stored them.
      constexpr int N = D / (2 * THREADS);
      const uint4* src = reinterpret_cast<const uint4*>(ll + (size_t)s * D);
      uint4 v[N];
      for (bool ready = false; !ready;) {
#pragma unroll
        for (int j = 0; j < N; ++j)
          asm volatile("ld.relaxed.gpu.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v[j].x), "=r"(v[j].y), "=r"(v[j].z), "=r"(v[j].w) : "l"(src + threadIdx.x + j * THREADS) : "memory");
        ready = true;
#pragma unroll
        for (int j = 0; j < N; ++j) ready = ready && v[j].y == 1u && v[j].w == 1u;
      }
#pragma unroll
      for (int j = 0; j < N; ++j) reinterpret_cast<float2*>(xsh)[threadIdx.x + j * THREADS] = make_float2(__uint_as_float(v[j].x), __uint_as_float(v[j].z));
    } else {
      stage_x<D>(xs + (WAIT == NONE ? 0 : (size_t)s * D), xsh);
    }
    __syncthreads();
    const __nv_bfloat16* w = mine + (size_t)s * D * D;
    if (DEPTH) {
      bar_wait(&bars[s % NB], (s / NB) & 1);
      w = buf + (s % NB) * R * D;
    }
    if (WAIT == LL) {
      // Rows computed as rows() does, each stored with its flag in one 8-byte word (and plainly, for the check).
      constexpr int PER_WARP = R / WARPS;
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
      for (int i = 0; i < PER_WARP; ++i) {
        const int lr = warp * PER_WARP + i;
        const float v = dot_row<D>(w + (size_t)lr * D, xsh, lane);
        if (lane == 0) {
          xs[(size_t)(s + 1) * D + r0 + lr] = v;
          if (s + 1 < STEPS) asm volatile("st.relaxed.gpu.global.v2.u32 [%0], {%1, %2};" ::"l"(ll + (size_t)(s + 1) * D + r0 + lr), "r"(__float_as_uint(v)), "r"(1u) : "memory");
        }
      }
    } else {
      rows<D>(w, xsh, xs + (size_t)(s + 1) * D, r0);
    }
    __syncthreads();  // every row written (and the buffer read) before the count and the next copy
    if (threadIdx.x == 0) {
      if (DEPTH && s + DEPTH < STEPS) bulk_load(buf + (s % NB) * R * D, mine + (size_t)(s + DEPTH) * D * D, BYTES, &bars[s % NB]);
      if (L2AHEAD && s + L2AHEAD < STEPS) prefetch_l2(mine + (size_t)(s + L2AHEAD) * D * D, BYTES);
      if (WAIT == COUNT) {
        __threadfence();
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(ready + s) : "memory");
      }
      if (WAIT == FLAGS) {
        __threadfence();
        asm volatile("st.release.gpu.global.u32 [%0], 1;" ::"l"(ready + s * GROUPS + blockIdx.x) : "memory");
      }
    }
  }
}

template <int D>
static void run(cudaStream_t st, double copy_gbps) {
  const size_t wn = (size_t)STEPS * D * D;
  std::vector<__nv_bfloat16> hw(wn);
  uint32_t seed = 12345u + D;
  const float a = std::sqrt(3.0f / D);
  for (size_t i = 0; i < wn; ++i) {
    seed = seed * 1664525u + 1013904223u;
    hw[i] = __float2bfloat16((seed >> 8) * (2.0f / 16777216.0f) * a - a);
  }
  std::vector<float> hx(D);
  for (int k = 0; k < D; ++k) hx[k] = std::sin(0.37f * k);
  __nv_bfloat16* W;
  float* xs;
  unsigned* ready;
  uint2* ll;
  CK(cudaMalloc(&W, wn * 2));
  CK(cudaMalloc(&ll, (size_t)STEPS * D * 8));
  CK(cudaMalloc(&xs, (size_t)(STEPS + 1) * D * 4));
  CK(cudaMalloc(&ready, STEPS * GROUPS * 4));
  CK(cudaMemcpy(W, hw.data(), wn * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(xs, hx.data(), D * 4, cudaMemcpyHostToDevice));
  const double bytes = (double)wn * 2;
  std::vector<float> final_pdl(D), got(D);

  auto report = [&](const char* form, double us) {
    const double gbps = bytes / (us * 1e3);
    std::printf("{\"D\": %d, \"steps\": %d, \"form\": \"%s\", \"us_per_step\": %.3f, \"weights_GBps\": %.1f, \"copy_GBps\": %.1f, \"fraction_of_copy\": %.3f, \"ideal_us_per_step\": %.3f}\n", D, STEPS, form, us / STEPS,
                gbps, copy_gbps, gbps / copy_gbps, bytes / STEPS / (copy_gbps * 1e3));
  };

  double us = median_graph_us(st, [&] {
    for (int s = 0; s < STEPS; ++s)
      launch_pdl(st, step_pdl<D>, dim3(GROUPS), dim3(THREADS), true, (const __nv_bfloat16*)(W + (size_t)s * D * D), (const float*)(xs + (size_t)s * D), xs + (size_t)(s + 1) * D);
  });
  report("pdl", us);
  CK(cudaMemcpy(final_pdl.data(), xs + (size_t)STEPS * D, D * 4, cudaMemcpyDeviceToHost));

  auto persistent = [&](auto kern, int depth, const char* form) {
    const size_t smem = D * 4 + depth * (size_t)(D / GROUPS) * D * 2;
    CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, THREADS, smem));
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    if (per_sm * sms < GROUPS) {
      std::printf("{\"D\": %d, \"form\": \"%s\", \"skipped\": \"%d workgroups do not fit at once\"}\n", D, form, GROUPS);
      return;
    }
    CK(cudaMemset(xs + D, 0, (size_t)STEPS * D * 4));
    const double t = median_graph_us(st, [&] {
      CK(cudaMemsetAsync(ready, 0, STEPS * GROUPS * 4, st));
      CK(cudaMemsetAsync(ll, 0, (size_t)STEPS * D * 8, st));
      kern<<<GROUPS, THREADS, smem, st>>>(W, xs, ready, ll);
      CK(cudaGetLastError());
    });
    report(form, t);
    CK(cudaMemcpy(got.data(), xs + (size_t)STEPS * D, D * 4, cudaMemcpyDeviceToHost));
    if (strstr(form, "none")) return;
    const bool same = std::memcmp(got.data(), final_pdl.data(), D * 4) == 0;
    std::printf("{\"D\": %d, \"form\": \"%s\", \"final_vector_equals_pdl\": %s}\n", D, form, same ? "true" : "false");
  };
  persistent(chain_flags<D, 0, COUNT>, 0, "count");
  persistent(chain_flags<D, 2, COUNT>, 2, "count+staged");
  persistent(chain_flags<D, 0, FLAGS>, 0, "flags");
  persistent(chain_flags<D, 2, FLAGS>, 2, "flags+staged");
  persistent(chain_flags<D, 0, LL>, 0, "ll");
  persistent(chain_flags<D, 2, LL>, 2, "ll+staged");
  persistent(chain_flags<D, 3, LL>, 3, "ll+staged3");
  persistent(chain_flags<D, 0, LL, 1>, 0, "ll+l2ahead1");
  persistent(chain_flags<D, 0, LL, 2>, 0, "ll+l2ahead2");
  persistent(chain_flags<D, 0, NONE>, 0, "none");
  persistent(chain_flags<D, 2, NONE>, 2, "none+staged");
  CK(cudaFree(W));
  CK(cudaFree(xs));
  CK(cudaFree(ready));
  CK(cudaFree(ll));
}

int main() {
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  // The copy bandwidth in this run: a D2D copy of 1 GiB, median of 11.
  const size_t n = (size_t)1 << 30;
  void *a, *b;
  CK(cudaMalloc(&a, n));
  CK(cudaMalloc(&b, n));
  std::vector<float> ms;
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int r = 0; r < 11; ++r) {
    CK(cudaEventRecord(e0, st));
    CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double copy_gbps = 2.0 * n / (ms[ms.size() / 2] * 1e6);
  CK(cudaFree(a));
  CK(cudaFree(b));
  run<1024>(st, copy_gbps);
  run<2048>(st, copy_gbps);
  return 0;
}
