/**
 * CUDA target profiles (DESIGN principle 10: targets are data): the architecture nvcc builds for and
 * the facts about the GPU that kernel choices depend on. Passes (fusion) and the CUDA backend read
 * them from here; no hardware constant lives in the emitter or the runtime's kernel choices.
 */
export interface CudaProfile {
  kind: "cuda";
  name: string;
  /** nvcc's -arch. */
  arch: string;
  /** Compute capability (90 for Hopper). */
  computeCapability: number;
  /** Streaming multiprocessors: how many blocks fill the GPU. */
  smCount: number;
  /** Threads per block. */
  maxThreadsPerBlock: number;
  /** Shared memory per block without opting in (a generated kernel stays within it). */
  sharedMemoryPerBlock: number;
  /** Shared memory per block a kernel may opt in to. */
  sharedMemoryPerBlockOptin: number;
  /** Threads of a warp (lockstep, register shuffles). */
  warpSize: number;
  /** 32-bit registers per thread. */
  registersPerThread: number;
  /** Element types the tensor cores multiply. */
  tensorCoreTypes: readonly string[];
  /** FP8 (e4m3/e5m2) tensor-core GEMMs. */
  fp8: boolean;
  /** Dense GEMMs run in this library, so no fusion absorbs one into a generated kernel. */
  gemmLibrary: "cublaslt";
  /** Scores the tiled attention keeps on the device at once (bytes): bounds its query tiles. */
  attentionScoreBytes: number;
}

/** NVIDIA H100/H200 (Hopper, SXM): 132 SMs, 227 KB of opt-in shared memory per block. */
export const CUDA_SM90A: CudaProfile = {
  kind: "cuda",
  name: "cuda-sm90a",
  arch: "sm_90a",
  computeCapability: 90,
  smCount: 132,
  maxThreadsPerBlock: 1024,
  sharedMemoryPerBlock: 48 * 1024,
  sharedMemoryPerBlockOptin: 227 * 1024,
  warpSize: 32,
  registersPerThread: 255,
  tensorCoreTypes: ["bf16", "f16", "f8e4m3fn", "f8e5m2", "tf32"],
  fp8: true,
  gemmLibrary: "cublaslt",
  attentionScoreBytes: 256 << 20,
};
