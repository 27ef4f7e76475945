// Attention kernels: decode (key chunks, GQA-sharing), fused bf16 prefill (flash attention),
// and the unfused prefill path's softmax rows, K/V repeat and transpose.
// A part of lingc_runtime.cu kept in its own file: lingc_runtime.cu includes it inside namespace
// lingc (one translation unit), after the parts listed before it there. Not a standalone header.

/**
 * Decode attention (flash-decoding). A block takes one query position of up to ROWS query heads (the
 * power of two from 1 to DEC_ROWS that holds a KV head's query heads: no rows computed for nothing)
 * that share a KV head (GQA), and one chunk of keys: each key and value row is read once for all of
 * those heads. Scores: a quad of lanes per key, each lane a quarter of the head dim in 16-byte
 * loads, against the queries in shared memory; softmax per head over the chunk; P.V: groups of
 * threads take keys, a thread 8 value columns, and the groups' sums meet in shared memory. With several chunks
 * (nsplit > 1) each block leaves (max, sum, acc) per head in `part`, and the last block of an item to
 * finish (counted in `counters`, which it resets) combines them into `out`. Loops are unrolled so
 * that each thread has several loads in flight: a decode step is latency-bound, not bandwidth-bound.
 * Keys and values are Tk rows of heads that lie Tr rows apart (Tr > Tk: a KV cache grown in place).
 */
constexpr int DEC_ROWS = 8, DEC_CHUNK = 256, DEC_THREADS = 128, DEC_MAX_SPLIT = 128;

template <typename T, bool VEC, int ROWS>
__global__ void __launch_bounds__(DEC_THREADS) attn_decode(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, float* __restrict__ part, int* __restrict__ counters,
                                                         T* __restrict__ out, long nh, long nkv, long S, long Tk, long Tr, int D, int DV, float scale, int causal, int chunk, int nsplit, int transposed) {
  pdl_enter();
  const int rep = (int)(nh / nkv), ngroups = (rep + ROWS - 1) / ROWS;
  const long item = blockIdx.x;
  const int split = blockIdx.y;
  long t = item / ngroups;
  const long i = t % S;
  t /= S;
  const long g = t % nkv, b = t / nkv;
  const int hg = (int)(item % ngroups), h0 = (int)g * rep + hg * ROWS, R = min(ROWS, rep - hg * ROWS);
  const long visible = causal ? Tk - S + i + 1 : Tk;
  const long j0 = (long)split * chunk;
  const int n = (int)max(0L, min((long)chunk, visible - j0));
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  __shared__ __align__(16) float sq[ROWS][256];  // the queries, then the P.V sums
  __shared__ float sp[ROWS][DEC_CHUNK];
  __shared__ float sm[ROWS], sl[ROWS];
  __shared__ float sw[ROWS][DEC_MAX_SPLIT];
  __shared__ int last;
#pragma unroll 8
  for (int e = tid; e < ROWS * D; e += DEC_THREADS) {
    const int r = e / D, c = e % D;
    sq[r][c] = r < R ? ld(q, ((b * nh + h0 + r) * S + i) * D + c) : 0.f;
  }
  __syncthreads();
  const T* kb = k + ((b * nkv + g) * Tr + j0) * D;
  const T* vb = v + ((b * nkv + g) * Tr + j0) * DV;
  const int quad = tid >> 2, qp = tid & 3, ngrp = D / 8;
#pragma unroll 2
  for (int base = 0; base < n; base += DEC_THREADS / 4) {
    const int jj = base + quad;
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) acc[r] = 0.f;
    if (jj < n) {
      const T* kr = kb + (long)jj * D;
#pragma unroll 4
      for (int gi = qp; gi < ngrp; gi += 4) {
        float kv[8];
        load8<T, VEC>(kr + gi * 8, kv);
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const float4 qa = *reinterpret_cast<const float4*>(&sq[r][gi * 8]), qb = *reinterpret_cast<const float4*>(&sq[r][gi * 8 + 4]);
          acc[r] += qa.x * kv[0] + qa.y * kv[1] + qa.z * kv[2] + qa.w * kv[3] + qb.x * kv[4] + qb.y * kv[5] + qb.z * kv[6] + qb.w * kv[7];
        }
      }
      if (qp == 0)
        for (int c = ngrp * 8; c < D; ++c) {
          const float kv = ld(kr, c);
#pragma unroll
          for (int r = 0; r < ROWS; ++r) acc[r] += sq[r][c] * kv;
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], 1);
      acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], 2);
    }
    if (jj < n && qp == 0)
#pragma unroll
      for (int r = 0; r < ROWS; ++r) sp[r][jj] = rnd<T>(rnd<T>(acc[r]) * scale);
  }
  __syncthreads();
  for (int r = warp; r < ROWS; r += DEC_THREADS / 32) {
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
  float acc[ROWS][8];
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
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
        for (int r = 0; r < ROWS; ++r) {
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
        for (int r = 0; r < ROWS; ++r)
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
      for (int r = 0; r < ROWS; ++r) {
        const float p = sp[r][jj];
#pragma unroll
        for (int u = 0; u < 8; ++u) acc[r][u] += p * vv[u];
      }
    }
  }
  for (int turn = 0; turn < turns; ++turn) {
    if (my_turn == turn && holder)
#pragma unroll
      for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          const int c = c0 + u * cstep;
          if (r < R && c < DV) sq[r][c] = (turn ? sq[r][c] : 0.f) + acc[r][u];
        }
    __syncthreads();
  }
  // Partials: acc [item][split][row][DV], then (max, sum) [item][split][row][2].
  const long nacc = gridDim.x * (long)nsplit * ROWS * DV;
  for (int e = tid; e < R * DV; e += DEC_THREADS) {
    const int r = e / DV, c = e % DV;
    if (nsplit == 1) {
      const long h = h0 + r;
      st(out, transposed ? ((b * S + i) * nh + h) * DV + c : ((b * nh + h) * S + i) * DV + c, sq[r][c] / sl[r]);
    } else {
      const long pr = (item * nsplit + split) * ROWS + r;
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
    const float* ml = part + nacc + 2 * ((item * nsplit) * ROWS + r);
    float M = -INFINITY;
    for (int s2 = lane; s2 < nsplit; s2 += 32) M = fmaxf(M, __ldcg(ml + 2L * s2 * ROWS));
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float L = 0.f;
    for (int s2 = lane; s2 < nsplit; s2 += 32) {
      const float ms = __ldcg(ml + 2L * s2 * ROWS);
      const float w = ms == -INFINITY ? 0.f : __expf(ms - M);
      sw[r][s2] = w;
      L += w * __ldcg(ml + 2L * s2 * ROWS + 1);
    }
    L = warp_sum(L);
    if (lane == 0) sl[r] = L;
  }
  __syncthreads();
  // Four columns per thread where DV allows (16-byte loads), so each thread has one pass over the chunks.
  const int cw = DV % 4 == 0 ? 4 : 1;
  for (int e = tid; e < R * DV / cw; e += DEC_THREADS) {
    const int r = e / (DV / cw), c = (e % (DV / cw)) * cw;
    const float* pc = part + (item * nsplit * ROWS + r) * (long)DV + c;
    const long stride = (long)ROWS * DV;
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

/**
 * Prefill attention, bf16, fused (flash attention 2): a block takes 64 queries of one head, a warp 16
 * of them; key/value tiles of 64 rows stream through shared memory (cp.async, double-buffered) while
 * the warps compute S = Q K^T with mma.sync m16n8k16 (fp32 accumulate), the online softmax in
 * registers, and O += P V with P re-packed from the S accumulators as the A operand. Scores are
 * rounded as the unfused path rounds them (bf16 product, bf16 after the scale). Nothing of size
 * S x T touches memory. HD is the head dim (queries, keys and values alike).
 */
constexpr int FA_BM = 64, FA_BN = 64, FA_THREADS = 128;
// Three blocks per SM (12 warps): at two (the registers ptxas chose and the default shared-memory
// carveout each allowed only two) the warps stalled on mma and shared-memory latency with 60% of
// the issue slots idle (Nsight Compute, prefill 1x8192). Three need at most 168 registers a thread
// and the largest carveout (set where the runtime starts).
constexpr int FA_BLOCKS_PER_SM = 3;

template <int HD>
constexpr int flash_smem_bytes() { return 4 * FA_BN * (HD + 8) * 2; }

template <int HD>
__global__ void __launch_bounds__(FA_THREADS, FA_BLOCKS_PER_SM) flash_attn(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
                                                       __nv_bfloat16* __restrict__ out, long nh, long nkv, long S, long Tk, long Tr, float scale, int causal, int transposed) {
  constexpr int LD = HD + 8;  // padded shared row: the fragment reads below hit 32 distinct banks
  extern __shared__ __align__(16) unsigned char fa_smem[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(fa_smem);  // [2][FA_BN][LD]
  __nv_bfloat16* Vs = Ks + 2 * FA_BN * LD;                          // [2][FA_BN][LD]
  const long bh = blockIdx.y, h = bh % nh, b = bh / nh, g = h / (nh / nkv);
  // Positions in 32 bits (fewer registers: 64-bit ones pushed the kernel past 168 and into spills).
  const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * FA_BM;  // the longest (causal) tiles first
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, tq = lane & 3;
  const int Tk32 = (int)Tk, off = (int)(Tk - S);  // query i sits at key position i + off
  const __nv_bfloat16* kb = k + (b * nkv + g) * Tr * HD;
  const __nv_bfloat16* vb = v + (b * nkv + g) * Tr * HD;
  const int r0 = q0 + warp * 16 + gr, r1 = r0 + 8;
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
  const int last_query = (int)min(S, (long)q0 + FA_BM) - 1;
  const int kend = causal ? min(Tk32, last_query + off + 1) : Tk32;
  const int nblocks = (int)((kend + FA_BN - 1) / FA_BN);
  auto load_tile = [&](int blk, int buf) {
    const int j0 = blk * FA_BN;
    for (int e = tid; e < FA_BN * (HD / 8); e += FA_THREADS) {
      const int r = e / (HD / 8), c = (e % (HD / 8)) * 8;
      const bool ok = j0 + r < Tk32;
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
    const int j0 = blk * FA_BN;
    // Only a tile past the keys' end or across the causal diagonal masks (the same for the whole
    // block: every key of the tile is at most the block's first query's position).
    const bool masked = j0 + FA_BN > Tk32 || (causal && j0 + FA_BN - 1 > q0 + off);
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int j = j0 + nt * 8 + 2 * tq + e;
        float a0 = rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(s[nt][e]) * scale), a1 = rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(s[nt][2 + e]) * scale);
        if (masked && (j >= Tk32 || (causal && j > r0 + off))) a0 = -INFINITY;
        if (masked && (j >= Tk32 || (causal && j > r1 + off))) a1 = -INFINITY;
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
 * K or V per query head: [B, nkv, T, D] -> [B, nkv * rep, T, D] (GQA expanded, so one batched GEMM
 * covers all heads); the source's heads are TRD apart (a cache with room: more than T rows).
 */
template <typename T>
__global__ void repeat_kv(const T* __restrict__ in, T* __restrict__ out, long B, long nkv, long rep, long TD, long TRD) {
  const long idx = linear_block() * blockDim.x + threadIdx.x;
  if (idx >= B * nkv * rep * TD) return;
  const long bh = idx / TD, h = bh % (nkv * rep), b = bh / (nkv * rep);
  out[idx] = in[(b * nkv + h / rep) * TRD + idx % TD];
}

/** [B, nh, S, D] -> [B, S, nh, D]. */
template <typename T>
__global__ void bhsd_to_bshd(const T* __restrict__ in, T* __restrict__ out, long B, long nh, long S, long D) {
  const long idx = linear_block() * blockDim.x + threadIdx.x;
  if (idx >= B * nh * S * D) return;
  const long c = idx % D, i = (idx / D) % S, h = (idx / (D * S)) % nh, b = idx / (D * S * nh);
  out[((b * S + i) * nh + h) * D + c] = in[idx];
}
