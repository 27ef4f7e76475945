// MoE kernels: the expert GEMV (decode), moe_dispatch, the padded path's pad/unpad/SwiGLU/
// overflow kernels, and the grouped expert GEMM (bf16 prefill).
// A part of lingc_runtime.cu kept in its own file: lingc_runtime.cu includes it inside namespace
// lingc (one translation unit), after the parts listed before it there. Not a standalone header.

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

/** moe_dispatch in parallel: counts per expert, prefix sums, then each pair takes the next row of its expert. */
__global__ void dispatch_count(const int* __restrict__ idx, long n, int* __restrict__ offsets) {
  const long p = linear_block() * blockDim.x + threadIdx.x;
  if (p < n) atomicAdd(&offsets[idx[p] + 1], 1);
}
__global__ void dispatch_prefix(int* __restrict__ offsets, int* __restrict__ cursor, int E) {
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
  __shared__ int warp_total[32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nthreads = blockDim.x;
  for (int e = tid; e < E; e += nthreads) counts[e] = 0;
  __syncthreads();
  for (long p = tid; p < n; p += nthreads) atomicAdd(&counts[idx[p]], 1);
  __syncthreads();
  // The exclusive prefix sum of the counts, by the whole block (one thread summing E counts in turn
  // was most of a decode step's dispatch): each thread a run of experts, a warp scan of the runs'
  // sums by shuffles, then of the warps' totals.
  const int per = (E + nthreads - 1) / nthreads, e0 = min(E, tid * per), e1 = min(E, e0 + per);
  int run = 0;
  for (int e = e0; e < e1; ++e) run += counts[e];
  int incl = run;
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int nw = (nthreads + 31) >> 5;
    int t = lane < nw ? warp_total[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) t += y;
    }
    if (lane < nw) warp_total[lane] = t;  // inclusive over warps
  }
  __syncthreads();
  int sum = incl - run + (warp > 0 ? warp_total[warp - 1] : 0);
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
