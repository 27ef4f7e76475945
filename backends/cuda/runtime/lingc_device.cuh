// Device helpers of the runtime kernels: loads and stores with the storage type's rounding,
// warp sums, the PDL entry, 16-byte loads, the expert of a row, and the mma.sync, ldmatrix
// and cp.async wrappers of the tensor-core kernels.
// A part of lingc_runtime.cu kept in its own file: lingc_runtime.cu includes it inside namespace
// lingc (one translation unit), after the parts listed before it there. Not a standalone header.

template <typename T> __device__ __forceinline__ float ld(const T* p, long i);
template <> __device__ __forceinline__ float ld<float>(const float* p, long i) { return p[i]; }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16* p, long i) { return __bfloat162float(p[i]); }
template <> __device__ __forceinline__ float ld<__nv_fp8_e4m3>(const __nv_fp8_e4m3* p, long i) { return float(p[i]); }
template <typename T> __device__ __forceinline__ void st(T* p, long i, float v);
template <> __device__ __forceinline__ void st<float>(float* p, long i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void st<__nv_bfloat16>(__nv_bfloat16* p, long i, float v) { p[i] = __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ void st<__nv_fp8_e4m3>(__nv_fp8_e4m3* p, long i, float v) { p[i] = __nv_fp8_e4m3(v); }  // RNE, saturating
/** Rounds to the storage type's precision (what HF's bf16 tensors hold after each op). */
template <typename T> __device__ __forceinline__ float rnd(float v);
template <> __device__ __forceinline__ float rnd<float>(float v) { return v; }
template <> __device__ __forceinline__ float rnd<__nv_bfloat16>(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/** First thing in a kernel launched by launch_pdl: see lingc_runtime.h. */
__device__ __forceinline__ void pdl_enter() {
  asm volatile("griddepcontrol.launch_dependents;");
  asm volatile("griddepcontrol.wait;" ::: "memory");
}

__device__ __forceinline__ long linear_block() { return (long)blockIdx.x + (long)blockIdx.y * gridDim.x; }

/** Eight consecutive elements as floats (one 16-byte load for bf16, two for f32). */
__device__ __forceinline__ void load8(const __nv_bfloat16* p, long i, float* o) {
  const uint4 v = *reinterpret_cast<const uint4*>(p + i);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 f = __bfloat1622float2(h[j]);
    o[2 * j] = f.x;
    o[2 * j + 1] = f.y;
  }
}
__device__ __forceinline__ void load8(const float* p, long i, float* o) {
  const float4 a = *reinterpret_cast<const float4*>(p + i), b = *reinterpret_cast<const float4*>(p + i + 4);
  o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}

/** The expert that row r belongs to: the largest e with offsets[e] <= r. */
__device__ __forceinline__ int expert_of(const int* offsets, int E, int r) {
  int lo = 0, hi = E;
  while (lo + 1 < hi) {
    const int mid = (lo + hi) >> 1;
    if (offsets[mid] <= r) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Row r's source row in x: order[r] / k with the token gather, else r. */
__device__ __forceinline__ long source_row(const int* order, int k, long r) { return order ? order[r] / k : r; }

/** Elements [0, 8) of p as floats: VEC, the 16-byte loads of load8 above; else one element at a time. */
template <typename T, bool VEC>
__device__ __forceinline__ void load8(const T* __restrict__ p, float* f) {
  if constexpr (VEC) {
    load8(p, 0L, f);
  } else {
#pragma unroll
    for (int t = 0; t < 8; ++t) f[t] = ld(p, t);
  }
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&v);
}

/**
 * Four 8x8 bf16 blocks from shared memory; lane t gives the address of row t % 8 of block t / 8.
 * Lane t gets (row t / 4, cols 2 (t % 4) and + 1) of each block, or with TRANS (rows 2 (t % 4) and + 1,
 * col t / 4): the layouts of mma's B fragment for a block stored [n][k], or [k][n] with TRANS.
 */
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const __nv_bfloat16* p) {
  const unsigned sa = (unsigned)__cvta_generic_to_shared(p);
  if constexpr (TRANS) asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sa));
  else asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sa));
}

/** c += a . b for one m16n8k16 tile (a: 16x16 row-major fragment, b: 16x8 column fragment). */
__device__ __forceinline__ void mma_bf16(float* c, const unsigned* a, unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** 16 bytes global -> shared without a register stop; zeros when !valid (rows past the keys). */
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(gmem), "r"(valid ? 16 : 0));
}
