// MoE kernels: the expert GEMV (decode), moe_dispatch, and the per-expert path's gather/SwiGLU
// kernels. (The grouped expert GEMM of a prefill is a generated tile program:
// backends/kernels/gen/grouped-gemm.ts.)
// A part of lingc_runtime.cu kept in its own file: lingc_runtime.cu includes it inside namespace
// lingc (one translation unit), after the parts listed before it there. Not a standalone header.

/**
 * Expert GEMV for the few rows experts get while decoding. Each warp owns CPW output columns and
 * reads each column's weight row once per group of up to four rows (VEC: eight elements per lane per
 * load, so a warp moves 512 contiguous bytes of bf16 a row at a time). Two grids: BY_ROW (block per
 * (o-tile, row), for a handful of rows) or by expert (block per (o-tile, expert), blocks of idle
 * experts exit). With SWIGLU, gate and up are read together and the result is silu(g) * u, rounded
 * as HF rounds. CPW > 1 for short rows (the down projection's 512 elements: 1 KB a row): with one
 * column a warp each block read 8 KB and the kernel ran at the rate blocks start (1.6 TB/s at decode
 * batch 32 on the H200), not at the memory's; CPW rows' loads are in flight together. A column's sum
 * is the same with any CPW (the same lanes, the same order).
 */
template <typename T, bool SWIGLU, bool VEC, bool BY_ROW, int CPW = 1>
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
  const long o0 = ((long)blockIdx.x * 8 + warp) * CPW;
  if (o0 >= O) return;
  const int nc = (int)min((long)CPW, O - o0);
  const T* rg[CPW];
  const T* ru[CPW];
#pragma unroll
  for (int cc = 0; cc < CPW; ++cc) {
    const long o = o0 + min(cc, nc - 1);  // past O: the last column again, not stored
    rg[cc] = wg + ((long)e * O + o) * I;
    ru[cc] = SWIGLU ? wu + ((long)e * O + o) * I : nullptr;
  }
  for (int r0 = lo; r0 < hi; r0 += 4) {
    const int nr = min(4, hi - r0);
    long xr[4];
    for (int j = 0; j < 4; ++j) xr[j] = j < nr ? (long)(order ? order[r0 + j] / k : r0 + j) * I : 0;
    float ag[CPW][4], au[CPW][4];
#pragma unroll
    for (int cc = 0; cc < CPW; ++cc)
#pragma unroll
      for (int j = 0; j < 4; ++j) ag[cc][j] = au[cc][j] = 0.f;
    if (VEC) {
#pragma unroll 4
      for (long c = lane * 8; c < I; c += 256) {
        float g[CPW][8], u[CPW][8], xv[8];
#pragma unroll
        for (int cc = 0; cc < CPW; ++cc) {
          load8(rg[cc], c, g[cc]);
          if (SWIGLU) load8(ru[cc], c, u[cc]);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j < nr) {
            load8(x, xr[j] + c, xv);
#pragma unroll
            for (int cc = 0; cc < CPW; ++cc)
#pragma unroll
              for (int t = 0; t < 8; ++t) {
                ag[cc][j] += g[cc][t] * xv[t];
                if (SWIGLU) au[cc][j] += u[cc][t] * xv[t];
              }
          }
        }
      }
    } else {
      for (long c = lane; c < I; c += 32) {
        float g[CPW], u[CPW];
#pragma unroll
        for (int cc = 0; cc < CPW; ++cc) {
          g[cc] = ld(rg[cc], c);
          u[cc] = SWIGLU ? ld(ru[cc], c) : 0.f;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j < nr) {
            const float xv = ld(x, xr[j] + c);
#pragma unroll
            for (int cc = 0; cc < CPW; ++cc) {
              ag[cc][j] += g[cc] * xv;
              if (SWIGLU) au[cc][j] += u[cc] * xv;
            }
          }
        }
      }
    }
#pragma unroll
    for (int cc = 0; cc < CPW; ++cc)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float g = rnd<T>(warp_sum(ag[cc][j]));
        const float u = SWIGLU ? rnd<T>(warp_sum(au[cc][j])) : 0.f;
        if (lane == 0 && j < nr && cc < nc) {
          const float y = SWIGLU ? rnd<T>(rnd<T>(g / (1.f + __expf(-g))) * u) : g;
          st(out, (long)(r0 + j) * O + o0 + cc, y);
        }
      }
  }
}

/**
 * The block's exclusive prefix sum of one int a thread (every thread of the block calls it): each
 * warp's by shuffles, then the warps' totals; ends with a barrier, so it may be called again.
 */
__device__ __forceinline__ int block_exclusive_scan(int run) {
  __shared__ int warp_total[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = run;
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int nw = (blockDim.x + 31) >> 5;
    int t = lane < nw ? warp_total[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) t += y;
    }
    if (lane < nw) warp_total[lane] = t;  // inclusive over warps
  }
  __syncthreads();
  const int before = incl - run + (warp > 0 ? warp_total[warp - 1] : 0);
  __syncthreads();
  return before;
}

/**
 * moe_dispatch over many blocks (more pairs than one block sorts quickly): each block takes
 * DISPATCH_CHUNK consecutive pairs and counts them by expert in shared memory, adding each nonzero
 * count to the global counts once (a pair each a global atomic was most of the old form's time);
 * one block scans the counts; each block then counts its chunk again, takes a run of rows of each
 * expert by one global atomic a count, and places its pairs in that run. One block sorting 65,536
 * pairs (Ling-mini at 1x8192) took 60 us a layer on the H200, all of it on one SM.
 */
constexpr int DISPATCH_THREADS = 256;
constexpr long DISPATCH_CHUNK = 1024;
/** local[e] = how many of pairs p0 .. p1 - 1 go to expert e (every thread of the block calls it; ends with a barrier). */
__device__ __forceinline__ void chunk_counts(const int* __restrict__ idx, long p0, long p1, int E, int* local) {
  for (int e = threadIdx.x; e < E; e += blockDim.x) local[e] = 0;
  __syncthreads();
  for (long p = p0 + threadIdx.x; p < p1; p += blockDim.x) atomicAdd(&local[idx[p]], 1);
  __syncthreads();
}
__global__ void __launch_bounds__(DISPATCH_THREADS) dispatch_count(const int* __restrict__ idx, long n, int E, int* __restrict__ offsets) {
  pdl_enter();
  extern __shared__ int local[];  // [E]
  const long p0 = linear_block() * DISPATCH_CHUNK, p1 = min(n, p0 + DISPATCH_CHUNK);
  chunk_counts(idx, p0, p1, E, local);
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    if (local[e]) atomicAdd(&offsets[e + 1], local[e]);
}
/** offsets[1..E] hold the counts: the inclusive sums in place (offsets[0] is 0), and cursor = offsets[0..E). One block. */
__global__ void __launch_bounds__(1024) dispatch_prefix(int* __restrict__ offsets, int* __restrict__ cursor, int E) {
  pdl_enter();
  const int tid = threadIdx.x, nthreads = blockDim.x;
  // Each thread a run of experts, then the block's scan of the runs' sums.
  const int per = (E + nthreads - 1) / nthreads, e0 = min(E, tid * per), e1 = min(E, e0 + per);
  int run = 0;
  for (int e = e0; e < e1; ++e) run += offsets[e + 1];
  int sum = block_exclusive_scan(run);
  for (int e = e0; e < e1; ++e) {
    const int c = offsets[e + 1];
    cursor[e] = sum;
    sum += c;
    offsets[e + 1] = sum;
  }
}
__global__ void __launch_bounds__(DISPATCH_THREADS) dispatch_place(const int* __restrict__ idx, long n, int E, int* __restrict__ cursor, int* __restrict__ order, int* __restrict__ row_of) {
  pdl_enter();
  extern __shared__ int local[];  // [E] counts, then [E] this block's next row of each expert
  int* next = local + E;
  const long p0 = linear_block() * DISPATCH_CHUNK, p1 = min(n, p0 + DISPATCH_CHUNK);
  chunk_counts(idx, p0, p1, E, local);
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    if (local[e]) next[e] = atomicAdd(&cursor[e], local[e]);
  __syncthreads();
  for (long p = p0 + threadIdx.x; p < p1; p += blockDim.x) {
    const int r = atomicAdd(&next[idx[p]], 1);
    order[r] = (int)p;
    row_of[p] = r;
  }
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
  const int tid = threadIdx.x, nthreads = blockDim.x;
  for (int e = tid; e < E; e += nthreads) counts[e] = 0;
  __syncthreads();
  for (long p = tid; p < n; p += nthreads) atomicAdd(&counts[idx[p]], 1);
  __syncthreads();
  // The exclusive prefix sum of the counts, by the whole block (one thread summing E counts in turn
  // was most of a decode step's dispatch): each thread a run of experts, then the block's scan of
  // the runs' sums.
  const int per = (E + nthreads - 1) / nthreads, e0 = min(E, tid * per), e1 = min(E, e0 + per);
  int run = 0;
  for (int e = e0; e < e1; ++e) run += counts[e];
  int sum = block_exclusive_scan(run);
  for (int e = e0; e < e1; ++e) {
    offsets[e] = sum;
    cursor[e] = sum;
    sum += counts[e];
  }
  if (e0 < E && e1 == E) offsets[E] = sum;
  __syncthreads();
  for (long p = tid; p < n; p += nthreads) {
    const int r = atomicAdd(&cursor[idx[p]], 1);
    order[r] = (int)p;
    row_of[p] = r;
  }
}

template <typename T>
__global__ void silu_mul(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ out, long n) {
  const long i = linear_block() * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float a = ld(g, i);
  st(out, i, rnd<T>(rnd<T>(a / (1.f + __expf(-a))) * ld(u, i)));
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
