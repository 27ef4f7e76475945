// Attention kernels: decode (key chunks, GQA-sharing) and the unfused prefill path's softmax rows,
// K/V repeat and transpose. (Fused bf16 prefill attention is a generated tile program:
// backends/kernels/gen/flash-attention.ts.)
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
