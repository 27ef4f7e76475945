/**
 * Target profiles (DESIGN principle 10): plain data that passes and backends read. A profile is
 * named, so a pipeline can refer to it (`fusion{profile=cuda-sm90a}`); the driver may register
 * profiles it derives at run time (a live WebGPU adapter's limits, `--limit` overrides).
 */
import { LingcError } from "../errors";
import type { Op } from "../module";
import { libraryKind } from "./cuda-kernels";
import { CUDA_SM90A, type CudaProfile } from "./cuda";
import { ONNX_23, type OnnxProfile } from "./onnx";
import { BASELINE, type WebGpuProfile } from "./webgpu";

export type TargetProfile = WebGpuProfile | CudaProfile | OnnxProfile;
export type { WebGpuProfile, CudaProfile, OnnxProfile };

/** What a kernel-forming pass needs to know about a target. */
export interface KernelLimits {
  /** Threads per workgroup / block. */
  maxThreads: number;
  /** Workgroup (shared) memory a generated kernel may use, in bytes. */
  sharedMemoryBytes: number;
  /** Dense matmuls run in a GEMM library, not in generated kernels. */
  libraryMatmuls: boolean;
  /**
   * Dense matmuls run as generated workgroup tiles, few rows with split dot products (WebGPU's GPU
   * kernel forms): an RMSNorm is not fused into their prologue, whose kernel computes a column a
   * thread (on the H200 through Dawn the fused qkv projection of a decode step took 1.6 ms, a plain
   * linear of that size 0.08 ms).
   */
  tiledMatmuls?: boolean;
  /**
   * Where matmuls run in a library: whether it also runs this group of ops as one step (the CUDA
   * runtime's SwiGLU of two dense linears), so that fusion may group them.
   */
  libraryRuns?: (ops: readonly Op[]) => boolean;
}

export function kernelLimits(p: TargetProfile): KernelLimits | undefined {
  switch (p.kind) {
    case "webgpu":
      return { maxThreads: Math.min(p.maxComputeInvocationsPerWorkgroup, p.maxComputeWorkgroupSizeX), sharedMemoryBytes: p.maxComputeWorkgroupStorageSize, libraryMatmuls: false, tiledMatmuls: p.gpuForms };
    case "cuda":
      return { maxThreads: p.maxThreadsPerBlock, sharedMemoryBytes: p.sharedMemoryPerBlock, libraryMatmuls: true, libraryRuns: (ops) => libraryKind(ops) !== undefined };
    case "onnx":
      return undefined;
  }
}

/** Profiles by name; the built-in ones plus any a driver registers. */
export class ProfileRegistry {
  private readonly byName = new Map<string, TargetProfile>();

  constructor(profiles: readonly TargetProfile[] = BUILTIN_PROFILES) {
    for (const p of profiles) this.register(p);
  }

  register(p: TargetProfile): void {
    this.byName.set(p.name, p);
  }

  get(name: string): TargetProfile {
    const p = this.byName.get(name);
    if (!p) throw new LingcError(`unknown target profile '${name}' (known: ${[...this.byName.keys()].join(", ")})`);
    return p;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }
}

export const BUILTIN_PROFILES: readonly TargetProfile[] = [BASELINE, CUDA_SM90A, ONNX_23];
export { BASELINE as WEBGPU_BASELINE, CUDA_SM90A, ONNX_23 };
