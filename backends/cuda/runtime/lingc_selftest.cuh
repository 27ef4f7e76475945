// The runner's selftest command: the bf16 kernels that the fp32 golden checkpoint (head dim 16)
// does not reach (fused prefill and decode attention) against plain reference kernels. (The bf16
// grouped expert GEMM, a generated tile program, is checked against the interpreter by
// bench/cuda/device.sh tiles.)
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
  return failed ? 1 : 0;
}
