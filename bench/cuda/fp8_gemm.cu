// The vendor's bar for lingc's FP8 GEMMs, measured on the H200: cuBLASLt's block-scaled FP8 GEMM
// (1x128 activation groups x 128x128 weight blocks, fp32 scales, e4m3 x e4m3 -> fp32 accumulate),
// on the shapes of a model's projections, next to cuBLASLt bf16 on the same shapes; and for the
// expert GEMMs, cuBLASLt FP8 run once per expert on given row counts. `check` also verifies the
// scale layouts lingc's runtime hands cuBLASLt against a plain dequantize-and-sum reference.
//
// build: nvcc -O2 -std=c++17 -arch=sm_90a bench/cuda/fp8_gemm.cu -lcublasLt -o /tmp/fp8_gemm
// usage: fp8_gemm check
//        fp8_gemm dense M N K [M N K ...]           (prints one JSON line per shape)
//        fp8_gemm experts E O I rows0,rows1,...     (row counts per expert; one JSON line)
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); std::exit(1); } } while (0)
#define CKB(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { std::fprintf(stderr, "%s:%d cuBLAS status %d\n", __FILE__, __LINE__, (int)s_); std::exit(1); } } while (0)

static cublasLtHandle_t lt;
static void* workspace;
static const size_t workspace_bytes = 64u << 20;

__global__ void fill(float* p, long n, unsigned seed, float a) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned h = (unsigned)i * 2654435761u ^ seed;
  h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
  p[i] = a * ((h & 0xffffff) / float(0xffffff) * 2.f - 1.f);
}

// Blocks of rb x 128 values of a [R, C] matrix: scale = amax / 448 (1 where amax is 0), codes = v / scale.
// One thread per block (setup only); s is [ceil(R/rb), ceil(C/128)] row-major.
__global__ void quantize_blocks(const float* v, long R, long C, int rb, __nv_fp8_e4m3* q, float* s) {
  const long cb = (C + 127) / 128, nb = (R + rb - 1) / rb * cb;
  const long b = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (b >= nb) return;
  const long r0 = b / cb * rb, c0 = b % cb * 128;
  const long r1 = R < r0 + rb ? R : r0 + rb, c1 = C < c0 + 128 ? C : c0 + 128;
  float amax = 0.f;
  for (long r = r0; r < r1; ++r)
    for (long c = c0; c < c1; ++c) amax = fmaxf(amax, fabsf(v[r * C + c]));
  const float sc = amax > 0.f ? amax / 448.f : 1.f;
  s[b] = sc;
  for (long r = r0; r < r1; ++r)
    for (long c = c0; c < c1; ++c) q[r * C + c] = __nv_fp8_e4m3(v[r * C + c] / sc);
}

__global__ void to_bf16(const float* v, __nv_bfloat16* o, long n) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i < n) o[i] = __float2bfloat16(v[i]);
}

// y[m, n] = sum_k x[m, k] xs[m, k/128] * w[n, k] ws[n/128, k/128] (the definition lingc's ops have).
__global__ void reference(const __nv_fp8_e4m3* x, const float* xs, const __nv_fp8_e4m3* w, const float* ws, float* y, long M, long N, long K) {
  const long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i >= M * N) return;
  const long m = i / N, n = i % N, kb = (K + 127) / 128;
  double acc = 0;
  for (long k = 0; k < K; ++k) acc += (double)float(x[m * K + k]) * xs[m * kb + k / 128] * (double)float(w[n * K + k]) * ws[n / 128 * kb + k / 128];
  y[i] = (float)acc;
}

// The block-scaled FP8 GEMM as lingc's runtime calls it: Y[M,N] = X[M,K] . W[N,K]^T, cuBLASLt's A = W
// (col-major K x N, transposed) with 128x128 block scales ([N/128][L4], L4 = K/128 rounded up to 4),
// B = X (col-major K x M) with 1x128 scales stored K-block-major ([K/128][M]); D col-major N x M = Y.
static cublasLtMatmulAlgo_t fp8_algo(cublasLtMatmulDesc_t& desc, cublasLtMatrixLayout_t& a, cublasLtMatrixLayout_t& b, cublasLtMatrixLayout_t& d, long M, long N, long K, cudaDataType_t out, const float* ws, const float* xs, bool* ok, int batch = 1) {
  CKB(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  const cublasLtMatmulMatrixScale_t am = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, bm = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &am, sizeof am));
  CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bm, sizeof bm));
  CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws, sizeof ws));
  CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs, sizeof xs));
  CKB(cublasLtMatrixLayoutCreate(&a, CUDA_R_8F_E4M3, K, N, K));
  CKB(cublasLtMatrixLayoutCreate(&b, CUDA_R_8F_E4M3, K, M, K));
  CKB(cublasLtMatrixLayoutCreate(&d, out, N, M, N));
  if (batch > 1) {
    const int64_t sa = N * K, sb = M * K, sd = M * N;
    for (auto [l, st] : {std::pair{a, sa}, std::pair{b, sb}, std::pair{d, sd}}) {
      CKB(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch));
      CKB(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st, sizeof st));
    }
  }
  cublasLtMatmulPreference_t pref;
  CKB(cublasLtMatmulPreferenceCreate(&pref));
  CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes));
  cublasLtMatmulHeuristicResult_t res{};
  int got = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, d, d, pref, 1, &res, &got);
  cublasLtMatmulPreferenceDestroy(pref);
  *ok = st == CUBLAS_STATUS_SUCCESS && got > 0;
  return res.algo;
}

struct Fp8Gemm {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, d;
  cublasLtMatmulAlgo_t algo;
  bool ok = false;
  const void *w, *x;
  void* y;
  Fp8Gemm(long M, long N, long K, cudaDataType_t out, const void* w_, const float* ws, const void* x_, const float* xs, void* y_, int batch = 1) : w(w_), x(x_), y(y_) {
    algo = fp8_algo(desc, a, b, d, M, N, K, out, ws, xs, &ok, batch);
  }
  void run(cudaStream_t s) const {
    const float one = 1.f, zero = 0.f;
    CKB(cublasLtMatmul(lt, desc, &one, w, a, x, b, &zero, y, d, y, d, &algo, workspace, workspace_bytes, s));
  }
};

struct Bf16Gemm {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, d;
  cublasLtMatmulAlgo_t algo;
  const void *w, *x;
  void* y;
  Bf16Gemm(long M, long N, long K, const void* w_, const void* x_, void* y_) : w(w_), x(x_), y(y_) {
    CKB(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CKB(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, K, N, K));
    CKB(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, K, M, K));
    CKB(cublasLtMatrixLayoutCreate(&d, CUDA_R_16BF, N, M, N));
    cublasLtMatmulPreference_t pref;
    CKB(cublasLtMatmulPreferenceCreate(&pref));
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes));
    cublasLtMatmulHeuristicResult_t res{};
    int got = 0;
    CKB(cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, d, d, pref, 1, &res, &got));
    if (!got) { std::fprintf(stderr, "no bf16 algorithm\n"); std::exit(1); }
    algo = res.algo;
    cublasLtMatmulPreferenceDestroy(pref);
  }
  void run(cudaStream_t s) const {
    const float one = 1.f, zero = 0.f;
    CKB(cublasLtMatmul(lt, desc, &one, w, a, x, b, &zero, y, d, y, d, &algo, workspace, workspace_bytes, s));
  }
};

/** Median over 7 timings of `reps` back-to-back runs, in ms per run (after a warm-up). */
template <typename F>
static double time_ms(F f, int reps = 20) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> t;
  for (int r = 0; r < 7; ++r) {
    CK(cudaEventRecord(a));
    for (int i = 0; i < reps; ++i) f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / reps);
  }
  std::sort(t.begin(), t.end());
  return t[3];
}

/** An [R, C] operand: random values, its e4m3 codes and scales (rb x 128 blocks), and bf16 copy. */
struct Operand {
  long R, C;
  int rb;
  float *v = nullptr, *s = nullptr;
  __nv_fp8_e4m3* q = nullptr;
  __nv_bfloat16* h = nullptr;
  long sblocks() const { return (R + rb - 1) / rb * ((C + 127) / 128); }
  Operand(long R_, long C_, int rb_, unsigned seed) : R(R_), C(C_), rb(rb_) {
    const long n = R * C;
    CK(cudaMalloc(&v, n * 4));
    CK(cudaMalloc(&q, n));
    CK(cudaMalloc(&h, n * 2));
    CK(cudaMalloc(&s, sblocks() * 4));
    fill<<<(n + 255) / 256, 256>>>(v, n, seed, 1.f / std::sqrt((float)C));
    quantize_blocks<<<(sblocks() + 127) / 128, 128>>>(v, R, C, rb, q, s);
    to_bf16<<<(n + 255) / 256, 256>>>(v, h, n);
    CK(cudaGetLastError());
  }
  void release() { cudaFree(v); cudaFree(q); cudaFree(h); cudaFree(s); }
};

/** Weight scales [Nb][L] -> cuBLASLt's [Nb][L4] (rows padded to a multiple of 4 K-blocks). */
static float* weight_scales_lt(const Operand& w) {
  const long nb = (w.R + 127) / 128, L = (w.C + 127) / 128, L4 = (L + 3) / 4 * 4;
  float* out;
  CK(cudaMalloc(&out, nb * L4 * 4));
  CK(cudaMemset(out, 0, nb * L4 * 4));
  CK(cudaMemcpy2D(out, L4 * 4, w.s, L * 4, L * 4, nb, cudaMemcpyDeviceToDevice));
  return out;
}

/** Activation scales [M][L] -> [L][M] (K-block-major). */
static float* act_scales_lt(const Operand& x) {
  const long L = (x.C + 127) / 128;
  std::vector<float> h(x.R * L), t(x.R * L);
  CK(cudaMemcpy(h.data(), x.s, h.size() * 4, cudaMemcpyDeviceToHost));
  for (long m = 0; m < x.R; ++m)
    for (long k = 0; k < L; ++k) t[k * x.R + m] = h[m * L + k];
  float* out;
  CK(cudaMalloc(&out, t.size() * 4));
  CK(cudaMemcpy(out, t.data(), t.size() * 4, cudaMemcpyHostToDevice));
  return out;
}

static int check() {
  int bad = 0;
  const long shapes[][3] = {{1, 512, 256}, {2, 512, 256}, {4, 512, 256}, {8, 512, 256}, {12, 512, 256}, {16, 512, 256}, {24, 512, 256}, {7, 384, 640}, {64, 256, 128},
                            {128, 640, 640}, {130, 640, 256}, {256, 2048, 2048}, {33, 4608, 2048}, {32, 4608, 2048}, {16, 256, 384}};
  for (auto& sh : shapes) {
    const long M = sh[0], N = sh[1], K = sh[2];
    Operand x(M, K, 1, 11), w(N, K, 128, 29);
    float *ref, *y;
    CK(cudaMalloc(&ref, M * N * 4));
    CK(cudaMalloc(&y, M * N * 4));
    reference<<<(M * N + 255) / 256, 256>>>(x.q, x.s, w.q, w.s, ref, M, N, K);
    float* wsl = weight_scales_lt(w);
    float* xsl = act_scales_lt(x);
    Fp8Gemm g(M, N, K, CUDA_R_32F, w.q, wsl, x.q, xsl, y);
    if (!g.ok) { std::printf("{\"check\": [%ld, %ld, %ld], \"supported\": false}\n", M, N, K); ++bad; continue; }
    g.run(0);
    CK(cudaDeviceSynchronize());
    std::vector<float> a(M * N), b(M * N);
    CK(cudaMemcpy(a.data(), ref, a.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), y, b.size() * 4, cudaMemcpyDeviceToHost));
    double maxabs = 0, diff = 0;
    for (long i = 0; i < M * N; ++i) { maxabs = std::max(maxabs, (double)std::fabs(a[i])); diff = std::max(diff, (double)std::fabs(a[i] - b[i])); }
    // Hopper's FP8 MMA accumulates with fewer bits than fp32 inside each 128-wide K slice (DeepSeek-V3
    // section 3.3.2), so cuBLASLt's result is about 1e-4 of max |y| from the exact sum; a scale read
    // from the wrong place is off by O(1). This tells the two apart.
    const bool pass = diff <= 2e-3 * maxabs;
    bad += !pass;
    std::printf("{\"check\": [%ld, %ld, %ld], \"max_abs\": %.4e, \"max_diff\": %.4e, \"relative\": %.2e, \"layout_ok\": %s}\n", M, N, K, maxabs, diff, diff / maxabs, pass ? "true" : "false");
    cudaFree(ref); cudaFree(y); cudaFree(wsl); cudaFree(xsl);
    x.release(); w.release();
  }
  return bad ? 1 : 0;
}

static void dense(long M, long N, long K) {
  Operand x(M, K, 1, 3), w(N, K, 128, 5);
  float* wsl = weight_scales_lt(w);
  float* xsl = act_scales_lt(x);
  void *y8, *y16;
  CK(cudaMalloc(&y8, M * N * 2));
  CK(cudaMalloc(&y16, M * N * 2));
  Fp8Gemm g8(M, N, K, CUDA_R_16BF, w.q, wsl, x.q, xsl, y8);
  Bf16Gemm g16(M, N, K, w.h, x.h, y16);
  const double t8 = g8.ok ? time_ms([&] { g8.run(0); }) : NAN, t16 = time_ms([&] { g16.run(0); });
  const double flop = 2.0 * M * N * K;
  std::printf("{\"dense\": [%ld, %ld, %ld], \"fp8_block_ms\": %.5f, \"bf16_ms\": %.5f, \"fp8_tflops\": %.1f, \"bf16_tflops\": %.1f, \"fp8_gbps\": %.0f}\n", M, N, K, t8, t16, flop / t8 / 1e9,
              flop / t16 / 1e9, (double)(N * K + M * K) / t8 / 1e6);
  cudaFree(y8); cudaFree(y16); cudaFree(wsl); cudaFree(xsl);
  x.release(); w.release();
}

/** Per-expert cuBLASLt FP8 over the given row counts (rows of one expert contiguous), and the bf16 loop. */
static void experts(long E, long O, long I, const std::vector<long>& rows) {
  long total = 0;
  for (long r : rows) total += r;
  Operand x(total, I, 1, 7), w(E * O, I, 128, 9);  // E weights [O, I] stacked (O a multiple of 128)
  float* wsl = weight_scales_lt(w);
  void* y;
  CK(cudaMalloc(&y, total * O * 2));
  std::vector<Fp8Gemm*> g8;
  std::vector<Bf16Gemm*> g16;
  std::vector<float*> xsls;
  const long L = (I + 127) / 128, L4 = (L + 3) / 4 * 4;
  long lo = 0;
  for (long e = 0; e < E; ++e) {
    const long n = rows[e];
    if (n > 0) {
      // This expert's activation scales, K-block-major over its own rows.
      std::vector<float> h(n * L), t(n * L);
      CK(cudaMemcpy(h.data(), x.s + lo * L, h.size() * 4, cudaMemcpyDeviceToHost));
      for (long m = 0; m < n; ++m)
        for (long k = 0; k < L; ++k) t[k * n + m] = h[m * L + k];
      float* xs;
      CK(cudaMalloc(&xs, t.size() * 4));
      CK(cudaMemcpy(xs, t.data(), t.size() * 4, cudaMemcpyHostToDevice));
      xsls.push_back(xs);
      g8.push_back(new Fp8Gemm(n, O, I, CUDA_R_16BF, w.q + e * O * I, wsl + e * (O / 128) * L4, x.q + lo * I, xs, (__nv_bfloat16*)y + lo * O));
      g16.push_back(new Bf16Gemm(n, O, I, w.h + e * O * I, x.h + lo * I, (__nv_bfloat16*)y + lo * O));
    }
    lo += n;
  }
  const double t8 = time_ms([&] { for (auto* g : g8) g->run(0); }, 5);
  const double t16 = time_ms([&] { for (auto* g : g16) g->run(0); }, 5);
  // The padded batched GEMM: every expert's rows padded to the most any expert has, one strided-batch call.
  long most = 0;
  for (long r : rows) most = std::max(most, r);
  most = (most + 15) / 16 * 16;
  double tb = NAN;
  {
    __nv_fp8_e4m3* xp;
    float* xsp;
    void* yp;
    CK(cudaMalloc(&xp, E * most * I));
    CK(cudaMemset(xp, 0, E * most * I));
    CK(cudaMalloc(&xsp, E * L * most * 4));
    CK(cudaMemset(xsp, 0, E * L * most * 4));
    CK(cudaMalloc(&yp, E * most * O * 2));
    Fp8Gemm gb(most, O, I, CUDA_R_16BF, w.q, wsl, xp, xsp, yp, (int)E);
    if (gb.ok) tb = time_ms([&] { gb.run(0); }, 5);
    cudaFree(xp); cudaFree(xsp); cudaFree(yp);
  }
  const double flop = 2.0 * total * O * I;
  std::printf("{\"padded_batched\": [%ld, %ld, %ld], \"rows_per_expert\": %ld, \"fp8_ms\": %.5f, \"tflops_of_real_rows\": %.1f}\n", E, O, I, most, tb, flop / tb / 1e9);
  std::printf("{\"experts\": [%ld, %ld, %ld], \"rows\": %ld, \"fp8_per_expert_ms\": %.5f, \"bf16_per_expert_ms\": %.5f, \"fp8_tflops\": %.1f, \"bf16_tflops\": %.1f}\n", E, O, I, total, t8, t16,
              flop / t8 / 1e9, flop / t16 / 1e9);
  for (auto* p : xsls) cudaFree(p);
  cudaFree(y); cudaFree(wsl);
  x.release(); w.release();
}

int main(int argc, char** argv) {
  CKB(cublasLtCreate(&lt));
  CK(cudaMalloc(&workspace, workspace_bytes));
  std::printf("{\"cublasLt_version\": %zu}\n", cublasLtGetVersion());
  const std::string mode = argc > 1 ? argv[1] : "check";
  if (mode == "check") return check();
  if (mode == "dense") {
    for (int i = 2; i + 2 < argc; i += 3) dense(std::atol(argv[i]), std::atol(argv[i + 1]), std::atol(argv[i + 2]));
    return 0;
  }
  if (mode == "experts" && argc == 6) {
    std::vector<long> rows;
    for (const char* p = argv[5]; *p;) {
      rows.push_back(std::strtol(p, (char**)&p, 10));
      if (*p == ',') ++p;
    }
    if ((long)rows.size() != std::atol(argv[2])) { std::fprintf(stderr, "experts: %zu row counts for %s experts\n", rows.size(), argv[2]); return 2; }
    experts(std::atol(argv[2]), std::atol(argv[3]), std::atol(argv[4]), rows);
    return 0;
  }
  std::fprintf(stderr, "usage: fp8_gemm check | dense M N K ... | experts E O I rows,...\n");
  return 2;
}
