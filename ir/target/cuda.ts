/**
 * CUDA target profiles (DESIGN principle 10: targets are data): the architecture nvcc builds for and
 * the facts about the GPU that kernel choices depend on. Passes (fusion) and the CUDA backend read
 * them from here; no hardware constant lives in the emitter or the runtime's kernel choices.
 */
import { LingcError } from "../errors";

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
  /** The grouped expert GEMM tile program's tile by operand dtype (f8e4m3fn, bf16): the fastest of a sweep on this GPU. */
  expertTiles: Readonly<Record<string, TileShape>>;
  /** Rates the cost model (the pipeline plan) predicts times with. */
  rates: DeviceRates;
}

/** What a device sustains, for predicted times: roofline per op (compute or memory, whichever is longer). */
export interface DeviceRates {
  /** Dense GEMM rate by operand dtype (FLOP/s): contractions (linear, matmul, grouped experts, attention). */
  gemmFlops: Readonly<Record<string, number>>;
  /** Everything else that computes (FLOP/s, the SIMT cores). */
  simtFlops: number;
  /** Device memory bandwidth (bytes/s). */
  memoryBandwidth: number;
  /** Bandwidth between two devices of a pipeline (bytes/s, one direction). */
  linkBandwidth: number;
  /**
   * The fractions of the GEMM (or SIMT) rate and of the memory bandwidth each kind of op reaches in
   * lingc's kernels, by op name (`default`: the rest), measured (bench/plan-calibrate.ts): an op's
   * predicted time is the longer of its FLOPs at rate x compute and its bytes at bandwidth x memory.
   * Absent: the roofline itself.
   */
  achieved?: Readonly<Record<string, { compute: number; memory: number }>>;
  /** Where the numbers come from. */
  source: string;
}

/**
 * A GEMM tile program's tile: bm rows by bn weight rows per workgroup, each warp wm x wn of them
 * (multiples of 16), `stages` K stages in flight. `wgmma`: Hopper warpgroup MMAs instead of warp
 * mma.sync, a warpgroup of 4 warps per 64 rows over all bn columns (wm = 64, wn = bn).
 */
export interface TileShape {
  bm: number;
  bn: number;
  wm: number;
  wn: number;
  stages: number;
  wgmma?: boolean;
  /** K elements per stage of the mma.sync program (bf16: 32 by default, or 64). */
  bk?: number;
  /**
   * wgmma only: warp-specialized, one more warpgroup that only copies the stages in, the MMA
   * warpgroups waiting on each stage's barrier instead of a workgroup barrier a stage.
   */
  producer?: boolean;
  /**
   * Warp-specialized: consecutive tiles a workgroup computes (its producer copies the next tile's
   * stages while the last one's results are written).
   */
  tilesPer?: number;
}

/**
 * A tile written "bm,bn,wm,wn,stages[,bk]", "wgmma,bm,bn,stages" or "wgmma-ws,bm,bn,stages[,tiles]"
 * (warp-specialized, tiles a workgroup; the benchmark's sweeps set one
 * through LINGC_FP8_TILE or LINGC_BF16_TILE), checked.
 */
export function parseTile(text: string, what: string): TileShape {
  const kind = /^\s*(wgmma|wgmma-ws),/.exec(text)?.[1];
  if (kind) {
    const w = text.trim().slice(kind.length + 1).split(",").map((x) => Number(x.trim()));
    const [bm, bn, stages, tilesPer] = w as [number, number, number, number | undefined];
    const ws = kind === "wgmma-ws";
    const fine = (w.length === 3 || (ws && w.length === 4)) && w.every((x) => Number.isInteger(x) && x > 0) && bm % 64 === 0 && bn % 16 === 0 && bn <= 256 && stages >= 2;
    if (!fine) throw new LingcError(`${what} '${text}': expected ${ws ? "wgmma-ws,bm,bn,stages[,tiles]" : "wgmma,bm,bn,stages"} (bm a multiple of 64, bn a multiple of 16 up to 256, at least 2 stages${ws ? ", tiles a workgroup" : ""})`);
    return { bm, bn, wm: 64, wn: bn, stages, wgmma: true, ...(ws ? { producer: true, tilesPer: tilesPer ?? 1 } : {}) };
  }
  const v = text.split(",").map((x) => Number(x.trim()));
  const [bm, bn, wm, wn, stages, bk] = v as [number, number, number, number, number, number | undefined];
  const ok = (v.length === 5 || v.length === 6) && v.every((x) => Number.isInteger(x) && x > 0) && wm % 16 === 0 && wn % 16 === 0 && bm % wm === 0 && bn % wn === 0 && stages >= 2 && (bk === undefined || bk % 16 === 0);
  if (!ok) throw new LingcError(`${what} '${text}': expected bm,bn,wm,wn,stages[,bk] (warp tile wm x wn in multiples of 16 dividing bm x bn, at least 2 stages, bk a multiple of 16) or wgmma,bm,bn,stages or wgmma-ws,bm,bn,stages[,tiles]`);
  return bk === undefined ? { bm, bn, wm, wn, stages } : { bm, bn, wm, wn, stages, bk };
}

/** Whether the profile's architecture has Hopper's warpgroup MMAs (wgmma: sm_90a, the arch-specific target). */
export function hasWarpgroupMma(profile: CudaProfile): boolean {
  return profile.arch === "sm_90a";
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
  // f8e4m3fn: Hopper's warpgroup MMA, one warpgroup of m64n128k32, 3 stages of 128 (a scale block
  // each; bench/results/fp8-wgmma-2026-12-01-h200.md: Ling-mini's FP8 experts at 1x8192 46.7 -> 27.0 ms
  // against the best mma.sync tile, 64,128,64,32,3, which sums exactly where Hopper's FP8 MMA keeps
  // about 14 bits a slice; 3 stages rather than 4 keep three workgroups an SM at 168 registers:
  // 17.96 -> 14.03 ms, bench/results/fp8-occupancy-2026-12-02-h200.md); bf16: Hopper's warpgroup MMA, 2 warpgroups of m64n256k16, 4 stages of 64
  // (bench/results/tiles-2026-12-01-wgmma-h200.md: SwiGLU experts 35% and down projection 18% faster
  // than the best mma.sync tile at 1x8192).
  expertTiles: { f8e4m3fn: { bm: 64, bn: 128, wm: 64, wn: 128, stages: 3, wgmma: true }, bf16: { bm: 128, bn: 256, wm: 64, wn: 256, stages: 4, wgmma: true } },
  rates: {
    gemmFlops: { bf16: 802e12, f16: 802e12, f8e4m3fn: 1195e12, f8e5m2: 1195e12, f32: 60e12 },
    simtFlops: 60e12,
    memoryBandwidth: 4292e9,
    linkBandwidth: 396e9,
    source:
      "measured on one H200: bf16 GEMM 802 TFLOP/s (cuBLASLt 8192^3, `lingc_model bench`, bench/results/cuda-2026-11-30*.json), " +
      "FP8 block-scaled GEMM 1195 TFLOP/s (cuBLASLt 8192x5120x2048, bench/cuda/fp8_gemm.cu, bench/results/cuda-2026-11-30-fp8tiles-cublaslt.jsonl), " +
      "copy bandwidth 4292 GB/s (`lingc_model bench`), GPU-to-GPU peer copies 396 GB/s one way (bench/cuda/p2p.cu on the two-H200 machine, bench/results/p2p-2026-11-30-h200x2.md); " +
      "not measured: f32/SIMT 60 TFLOP/s (the H200's data sheet)",
  },
};
