// Copies and small kernels: float casts, concat copies, row argmax, random weights for bench.
// A part of lingc_runtime.cu kept in its own file: lingc_runtime.cu includes it inside namespace
// lingc (one translation unit), after the parts listed before it there. Not a standalone header.

/** A float cast (bf16 <-> f32, or a copy), 8 elements per thread when n and the pointers allow 16-byte access. */
template <typename A, typename B, bool VEC>
__global__ void convert(const A* __restrict__ in, B* __restrict__ out, long n) {
  pdl_enter();
  const long i = (linear_block() * blockDim.x + threadIdx.x) * (VEC ? 8 : 1);
  if (i >= n) return;
  if constexpr (VEC) {
    float f[8];
    load8<A, true>(in + i, f);
    if constexpr (sizeof(B) == 2) {
      uint4 u;
      __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
      for (int t = 0; t < 4; ++t) h[t] = __floats2bfloat162_rn(f[2 * t], f[2 * t + 1]);
      *reinterpret_cast<uint4*>(out + i) = u;
    } else {
      reinterpret_cast<float4*>(out + i)[0] = make_float4(f[0], f[1], f[2], f[3]);
      reinterpret_cast<float4*>(out + i)[1] = make_float4(f[4], f[5], f[6], f[7]);
    }
  } else {
    st(out, i, ld(in, i));
  }
}

/** Rounds n f32 values to f16 in place: an f16 tensor is held in f32, and a library step's result is rounded after it. */
__global__ void round_f16_in_place(float* __restrict__ p, long n) {
  pdl_enter();
  const long i = linear_block() * blockDim.x + threadIdx.x;
  if (i < n) p[i] = __half2float(__float2half_rn(p[i]));
}

/** Up to 4 sources of a concat, each [rows, cols[j]] (in units of U), side by side in out [rows, sum cols]. */
struct ConcatSources {
  const void* src[4];
  long cols[4];
  int count;
};

template <typename U>
__global__ void concat_rows(ConcatSources in, U* __restrict__ out, long rows, long out_cols) {
  pdl_enter();
  for (long r = blockIdx.y; r < rows; r += gridDim.y) {
    for (long c = (long)blockIdx.x * blockDim.x + threadIdx.x; c < out_cols; c += (long)gridDim.x * blockDim.x) {
      long cc = c;
      int j = 0;
      while (j + 1 < in.count && cc >= in.cols[j]) cc -= in.cols[j++];
      out[r * out_cols + c] = static_cast<const U*>(in.src[j])[r * in.cols[j] + cc];
    }
  }
}

/** One row's argmax (lowest index on ties). */
__global__ void argmax_rows(const float* __restrict__ x, long V, long stride, int* __restrict__ out) {
  const float* row = x + blockIdx.x * stride;
  float best = -INFINITY;
  long bi = 0x7fffffff;
  for (long j = threadIdx.x; j < V; j += blockDim.x) {
    const float v = row[j];
    if (v > best || (v == best && j < bi)) { best = v; bi = j; }
  }
  __shared__ float sv[256];
  __shared__ long si[256];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      const float ov = sv[threadIdx.x + s];
      const long oi = si[threadIdx.x + s];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) { sv[threadIdx.x] = ov; si[threadIdx.x] = oi; }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = (int)si[0];
}

/** Deterministic pseudo-random weights for benchmarks: uniform in [-a, a] (or 1 +- a for norms). */
template <typename T>
__global__ void init_random(T* __restrict__ p, long n, unsigned long long seed, float a, float center) {
  const long i = linear_block() * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned long long z = (unsigned long long)i * 0x9E3779B97F4A7C15ull + seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const float u = (float)(z >> 40) / (float)(1ull << 24) * 2.f - 1.f;
  st(p, i, center + a * u);
}

/** The first element of p[0..n) that is NaN or infinite, as an index (*first stays n when there is none). */
template <typename T>
__global__ void first_nonfinite(const T* __restrict__ p, long n, unsigned long long* __restrict__ first) {
  for (long i = linear_block() * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * gridDim.y * blockDim.x)
    if (!isfinite(ld(p, i))) atomicMin(first, (unsigned long long)i);
}

