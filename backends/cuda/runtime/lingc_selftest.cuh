// The runner's selftest command: the bf16 kernels that the fp32 golden checkpoint (head dim 16)
// does not reach (fused prefill and decode attention, the grouped expert GEMM) against plain
// reference kernels.
// A part of lingc_runtime.cu kept in its own file: lingc_runtime.cu includes it inside namespace
// lingc (one translation unit), after the parts listed before it there. Not a standalone header.

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
      {"decode, 3 heads per KV head (a 4-row block, one row idle)", 1, 6, 2, 1, 700, 128, true, false},
      {"decode, 8 heads per KV head, batch 4", 4, 64, 8, 1, 4100, 128, true, true},
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
    // The cases up to 16 query positions are the decode kernel's, the rest the fused prefill kernel's.
    if (c.S <= 16) attention_decode(rt, DT_BF16, q, k, v, o, c.B, c.nh, c.nkv, c.S, c.T, c.T, c.D, c.D, scale, c.causal, c.transposed, rt.sm_count);
    else attention_flash(rt, DT_BF16, q, k, v, o, c.B, c.nh, c.nkv, c.S, c.T, c.T, c.D, c.D, scale, c.causal, c.transposed);
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
