// What a dependent step costs at batch-1 decode sizes, three ways, on the GPU at hand: a chain of
// tiny kernels launched with programmatic dependent launch (as lingc launches its kernels) in one
// CUDA graph, the same chain without PDL, and one persistent kernel whose phases are separated by
// grid-wide barriers (what a one-launch-per-layer decode kernel would pay instead of a launch), by
// two barriers: a count and a generation, and one atomic a workgroup (the form lingc's runtime uses).
// Each phase reads, in every workgroup, a value another workgroup wrote in the phase before, so a
// phase boundary must order memory as a kernel boundary does.
// Build and run: nvcc -O3 -gencode arch=compute_90a,code=sm_90a -o /tmp/gridsync bench/cuda/gridsync.cu && /tmp/gridsync
// Prints one JSON line per (workgroups, form): microseconds per step, median of 21 graph runs.
#include <cuda_runtime.h>
#include "graph_timing.cuh"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>


constexpr int THREADS = 256;
constexpr int STEPS = 200;

// One step of work: workgroup b adds what workgroup (b + 1) % n wrote last step to its own value.
__device__ __forceinline__ void step(unsigned* vals, int n, int from, int to) {
  if (threadIdx.x == 0) {
    const int b = blockIdx.x;
    vals[to * n + b] = vals[from * n + (b + 1) % n] + 1;
  }
}

__global__ void chain_pdl(unsigned* vals, int n, int from, int to) {
  asm volatile("griddepcontrol.launch_dependents;");
  asm volatile("griddepcontrol.wait;" ::: "memory");
  step(vals, n, from, to);
}

__global__ void chain_plain(unsigned* vals, int n, int from, int to) { step(vals, n, from, to); }

// A sense-reversing grid barrier: the last workgroup to arrive resets the count and moves the
// generation on; the others wait for the generation to move (every workgroup resident at once).
__device__ __forceinline__ void grid_sync(unsigned* count, volatile unsigned* gen, unsigned n) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned g = *gen;
    __threadfence();
    if (atomicAdd(count, 1u) == n - 1) {
      *count = 0;
      __threadfence();
      atomicAdd((unsigned*)gen, 1u);
    } else {
      while (*gen == g) {
      }
    }
    __threadfence();
  }
  __syncthreads();
}

// One atomic a workgroup (lingc's grid_sync): workgroup 0 adds 2^31 - (n - 1), the others 1, so the
// count's top bit flips exactly when the last arrives (and the low bits are back where they were);
// each waits, with acquire loads, for the bit to differ from the one it saw. The add releases the
// workgroup's writes (after the workgroup barrier: cumulative), the acquire load takes everyone's.
// With backoff, each wait sleeps between its loads (fewer loads on the word the arrivals add to).
template <bool BACKOFF>
__device__ __forceinline__ void grid_sync_flip(unsigned* count, unsigned n) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned add = blockIdx.x == 0 ? 0x80000000u - (n - 1) : 1u;
    unsigned old, now;
    asm volatile("atom.add.release.gpu.global.u32 %0, [%1], %2;" : "=r"(old) : "l"(count), "r"(add) : "memory");
    for (;;) {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(count) : "memory");
      if ((now ^ old) & 0x80000000u) break;
      if (BACKOFF) __nanosleep(32);
    }
  }
  __syncthreads();
}

enum Barrier { COUNT_AND_GENERATION, ONE_ATOMIC, ONE_ATOMIC_BACKOFF };

// STEPS dependent steps in one launch, a grid barrier of the given form between each two.
template <Barrier FORM>
__global__ void persistent(unsigned* vals, int n, unsigned* count, unsigned* gen) {
  asm volatile("griddepcontrol.launch_dependents;");
  asm volatile("griddepcontrol.wait;" ::: "memory");
  for (int s = 0; s < STEPS; ++s) {
    if (s) {
      if (FORM == COUNT_AND_GENERATION) grid_sync(count, gen, n);
      else grid_sync_flip<FORM == ONE_ATOMIC_BACKOFF>(count, n);
    }
    step(vals, n, s & 1, (s + 1) & 1);
  }
}

// Microseconds a step of a graph of STEPS steps.
template <typename F>
static double per_step(cudaStream_t st, F record) { return median_graph_us(st, record) / STEPS; }

static void launch(cudaStream_t st, void (*k)(unsigned*, int, int, int), bool pdl, int n, unsigned* vals, int from, int to) {
  launch_pdl(st, k, dim3(n), dim3(THREADS), pdl, vals, n, from, to);
}

int main() {
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  int resident = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, persistent<COUNT_AND_GENERATION>, THREADS, 0));
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  unsigned *vals, *count, *gen, *flip_count;  // (the two barriers' counts apart: each leaves its own in its own state)
  CK(cudaMalloc(&vals, 2 * 4096 * sizeof(unsigned)));
  CK(cudaMalloc(&count, sizeof(unsigned)));
  CK(cudaMalloc(&gen, sizeof(unsigned)));
  CK(cudaMalloc(&flip_count, sizeof(unsigned)));
  CK(cudaMemset(flip_count, 0, sizeof(unsigned)));
  CK(cudaMemset(vals, 0, 2 * 4096 * sizeof(unsigned)));
  CK(cudaMemset(count, 0, sizeof(unsigned)));
  CK(cudaMemset(gen, 0, sizeof(unsigned)));
  for (int per : {1, 2, 4, 8}) {
    const int n = per * p.multiProcessorCount;
    if (per > resident) continue;  // the persistent kernel's workgroups must all be resident
    const double pdl = per_step(st, [&] { for (int s = 0; s < STEPS; ++s) launch(st, chain_pdl, true, n, vals, s & 1, (s + 1) & 1); });
    const double plain = per_step(st, [&] { for (int s = 0; s < STEPS; ++s) launch(st, chain_plain, false, n, vals, s & 1, (s + 1) & 1); });
    const auto persistent_us = [&](void (*k)(unsigned*, int, unsigned*, unsigned*), unsigned* count) {
      return per_step(st, [&] {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(n);
        cfg.blockDim = dim3(THREADS);
        cfg.stream = st;
        CK(cudaLaunchKernelEx(&cfg, k, vals, n, count, gen));
      });
    };
    const double grid = persistent_us(persistent<COUNT_AND_GENERATION>, count), flip = persistent_us(persistent<ONE_ATOMIC>, flip_count), backoff = persistent_us(persistent<ONE_ATOMIC_BACKOFF>, flip_count);
    std::printf("{\"gpu\": \"%s\", \"workgroups\": %d, \"threads\": %d, \"steps\": %d, \"us_per_step\": {\"kernels_pdl\": %.3f, \"kernels\": %.3f, \"grid_barrier\": %.3f, \"grid_barrier_one_atomic\": %.3f, \"grid_barrier_one_atomic_backoff\": %.3f}}\n", p.name, n, THREADS, STEPS, pdl, plain, grid, flip, backoff);
  }
  unsigned h[2] = {0, 0};
  CK(cudaMemcpy(h, vals, sizeof h, cudaMemcpyDeviceToHost));
  std::printf("{\"check\": %u}\n", h[0] + h[1]);  // keeps the work observable
  return 0;
}
