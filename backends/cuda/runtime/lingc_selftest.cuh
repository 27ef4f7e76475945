// The runner's selftest command: the bf16 kernels that the fp32 golden checkpoint (head dim 16)
// does not reach (decode attention, the dense SwiGLU's GEMV and GEMM paths) against plain reference
// kernels. The model's own generated tile programs are checked after these, against the op table's
// direct forms of their steps (selftest_model in lingc_runtime.cu; the checks are in model.cu), and
// in CI by the kir simulator (tests/cuda/simulate*.test.ts).
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

/** A kernel's n bf16 results and the reference's n floats, on the host. */
static void fetch_results(Runtime& rt, const __nv_bfloat16* o, const float* ref, long n, std::vector<__nv_bfloat16>& ho, std::vector<float>& hr) {
  ho.resize(n);
  hr.resize(n);
  CK(cudaMemcpyAsync(ho.data(), o, n * 2, cudaMemcpyDeviceToHost, rt.stream));
  CK(cudaMemcpyAsync(hr.data(), ref, n * 4, cudaMemcpyDeviceToHost, rt.stream));
  CK(cudaStreamSynchronize(rt.stream));
}

/** Reference SwiGLU of two linears: a thread per output, fp32 dots, the unfused ops' bf16 roundings. */
__global__ void swiglu_reference(const __nv_bfloat16* x, const __nv_bfloat16* wg, const __nv_bfloat16* wu, float* out, long M, long N, long K) {
  const long i = linear_block() * blockDim.x + threadIdx.x;
  if (i >= M * N) return;
  const long r = i / N, o = i % N;
  float g = 0.f, u = 0.f;
  for (long c = 0; c < K; ++c) {
    const float xv = __bfloat162float(x[r * K + c]);
    g += xv * __bfloat162float(wg[o * K + c]);
    u += xv * __bfloat162float(wu[o * K + c]);
  }
  g = rnd<__nv_bfloat16>(g);
  out[i] = rnd<__nv_bfloat16>(rnd<__nv_bfloat16>(g / (1.f + __expf(-g))) * rnd<__nv_bfloat16>(u));
}

/** The dense SwiGLU's two paths (Ctx::gemv_swiglu's kernel at one row, Ctx::gemm_swiglu's GEMMs) against the reference. */
static int selftest_swiglu(Runtime& rt) {
  struct Case {
    const char* what;
    long M, N, K;
    bool gemv;
  };
  const Case cases[] = {
      {"one row, the SwiGLU GEMV (shared expert's size)", 1, 512, 2048, true},
      {"one row, the GEMMs", 1, 512, 2048, false},
      {"5 rows, the GEMMs (dense MLP's width)", 5, 5120, 2048, false},
  };
  int failed = 0;
  for (const Case& c : cases) {
    const long nx = c.M * c.K, nw = c.N * c.K, no = c.M * c.N;
    __nv_bfloat16 *x, *wg, *wu, *o, *gu;
    float* ref;
    CK(cudaMalloc(&x, nx * 2));
    CK(cudaMalloc(&wg, nw * 2));
    CK(cudaMalloc(&wu, nw * 2));
    CK(cudaMalloc(&o, no * 2));
    CK(cudaMalloc(&gu, 2 * no * 2));
    CK(cudaMalloc(&ref, no * 4));
    init_random<<<grid((nx + 255) / 256), 256, 0, rt.stream>>>(x, nx, 21, 2.f, 0.f);
    init_random<<<grid((nw + 255) / 256), 256, 0, rt.stream>>>(wg, nw, 22, 0.05f, 0.f);
    init_random<<<grid((nw + 255) / 256), 256, 0, rt.stream>>>(wu, nw, 23, 0.05f, 0.f);
    if (c.gemv) {
      expert_gemv<__nv_bfloat16, true, true, true><<<dim3((unsigned)((c.N + 7) / 8), 1), 256, 0, rt.stream>>>(x, nullptr, 1, wg, wu, nullptr, o, 1, c.N, c.K);
      check_launch("expert_gemv (SwiGLU, one expert)");
    } else {
      rt.gemm(DT_BF16, c.M, c.N, c.K, x, c.K, 0, wg, c.K, 0, true, gu, c.N, 0, 1);
      rt.gemm(DT_BF16, c.M, c.N, c.K, x, c.K, 0, wu, c.K, 0, true, gu + no, c.N, 0, 1);
      silu_mul<<<grid((no + 255) / 256), 256, 0, rt.stream>>>((const __nv_bfloat16*)gu, (const __nv_bfloat16*)(gu + no), o, no);
      check_launch("silu_mul");
    }
    swiglu_reference<<<grid((no + 127) / 128), 128, 0, rt.stream>>>(x, wg, wu, ref, c.M, c.N, c.K);
    check_launch("swiglu_reference");
    std::vector<__nv_bfloat16> ho;
    std::vector<float> hr;
    fetch_results(rt, o, ref, no, ho, hr);
    double worst = 0, biggest = 0;
    for (long i = 0; i < no; ++i) {
      const float got = __bfloat162float(ho[i]);
      worst = std::max(worst, std::isfinite(got) ? std::fabs((double)got - hr[i]) : INFINITY);
      biggest = std::max(biggest, (double)std::fabs(hr[i]));
    }
    // Sums in another order round g or u one bf16 step the other way: 2^-6 of the largest value covers it.
    const double tol = biggest / 64;
    const bool ok = worst <= tol && biggest > 0.01;
    failed += !ok;
    std::printf("selftest swiglu (%s): max abs diff %.3e, largest value %.3f (tolerance %.1e): %s\n", c.what, worst, biggest, tol, ok ? "PASS" : "FAIL");
    for (void* p : {(void*)x, (void*)wg, (void*)wu, (void*)o, (void*)gu, (void*)ref}) CK(cudaFree(p));
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
    attention_decode(rt, DT_BF16, q, k, v, o, c.B, c.nh, c.nkv, c.S, c.T, c.T, c.D, c.D, scale, c.causal, c.transposed, rt.sm_count);
    attn_reference<<<(unsigned)(c.B * c.nh * c.S), 128, c.T * sizeof(float), rt.stream>>>(q, k, v, ref, c.nh, c.nkv, c.S, c.T, (int)c.D, scale, c.causal);
    check_launch("attn_reference");
    std::vector<__nv_bfloat16> ho;
    std::vector<float> hr;
    fetch_results(rt, o, ref, nq, ho, hr);
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
  failed += selftest_swiglu(rt);
  return failed ? 1 : 0;
}
