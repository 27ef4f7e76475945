/**
 * What the kernel generators may use on a CUDA profile, and how values are stored on the GPU: the
 * emitter's (backends/cuda/emit.ts), which the kir simulator's tests take too.
 */
import type { DType } from "../../ir/dtype";
import { LingcError } from "../../ir/errors";
import { hasWarpgroupMma, parseTile, type CudaProfile, type TileShape } from "../../ir/target/cuda";
import { POINTWISE_RUN, type GenLimits } from "../kernels/gen";
import type { BufferElem } from "../kernels/kir";

/** Storage on the GPU: bf16 stays bf16 (half the bytes), e4m3 one byte, f16 is widened to f32, ints are i32. */
export function cudaStorage(dt: DType): BufferElem {
  if (dt === "bf16") return "bf16";
  if (dt === "f8e4m3fn") return "f8e4m3";
  if (dt === "i32" || dt === "i64" || dt === "bool" || dt === "u8") return "i32";
  return "f32";
}

/** What the kernel generators may use on a CUDA profile (the emitter's; the kir simulator's tests take the same). */
export function cudaGenLimits(profile: CudaProfile): GenLimits {
  return {
    maxThreads: profile.maxThreadsPerBlock,
    maxWorkgroupBytes: profile.sharedMemoryPerBlock,
    maxDynamicWorkgroupBytes: profile.sharedMemoryPerBlockOptin,
    storage: cudaStorage,
    tensorCores: profile.tensorCoreTypes,
    warpgroupMma: hasWarpgroupMma(profile),
    warpSize: profile.warpSize,
    pointwiseRun: POINTWISE_RUN,
    gemmTiles: expertTiles(profile),
    wideIndex: wideIndex(),
    gemvWorkgroups: gemvWorkgroups(profile),
    mergeInLastSplit: decodeMerge() === "last",
    decodeSoftmaxChunk: decodeSoftmax() === "chunk",
    wgmmaLateWait: wgmmaWait() === "late",
    fp8WgmmaOverlap: envChoice("LINGC_FP8_WGMMA", ["wait", "overlap"]) === "overlap",
    ...fp8GemvColumns(),
    ...(env("LINGC_FP8_PAIR_BLOCKS") ? { fp8PairBlocks: Number(envChoice("LINGC_FP8_PAIR_BLOCKS", ["3", "2", "4", "1"])) } : {}),
    flashWarpgroups: Number(envChoice("LINGC_FLASH_WGMMA_WARPGROUPS", ["1", "2"])),
    flashPipelined: envChoice("LINGC_FLASH_WGMMA_PIPE", ["on", "off"]) === "on",
    ...pairLaunches(),
    ...quantPrologue(),
    ...(envChoice("LINGC_QUANT_EPILOGUE", ["off", "on"]) === "on" ? { quantEpilogue: true } : {}),
    ...attentionQuantEpilogue(),
    ...(envChoice("LINGC_FP8_SCALES", ["ahead", "after"]) === "ahead" ? { fp8ScalesAhead: true } : {}),
    ...prefetchWeights(),
    ...(envChoice("LINGC_ATTN_PREFETCH", ["on", "off"]) === "on" ? { prefetchKv: true } : {}),
    ...(envChoice("LINGC_ATTN_PROLOGUE", ["off", "on"]) === "on" ? { attentionPrologue: true } : {}),
    ...(envChoice("LINGC_NORM_PROLOGUE", ["off", "on"]) === "on" ? { normPrologue: true } : {}),
    ...launchMerges(),
  };
}

/**
 * LINGC_TAIL_LAUNCH=on|router (tails: launch-tails.ts; router: the MoE dispatch after the router only)
 * and LINGC_PHASE_LAUNCH=on|N (phases: launch-phases.ts, launched at most N workgroups a
 * multiprocessor, 4 for on: measured fastest of 1, 2, 4, 8, bench/results/phases-2026-12-03-h200.md);
 * at most one of them.
 */
function launchMerges(): { tailLaunches?: true | "router"; phaseLaunches?: number } {
  const tailMode = envChoice("LINGC_TAIL_LAUNCH", ["off", "on", "router"]);
  const tails = tailMode === "off" ? undefined : tailMode === "on" ? (true as const) : ("router" as const);
  const text = env("LINGC_PHASE_LAUNCH") ?? "off";
  const perSm = text === "off" ? 0 : text === "on" ? 4 : Number(text);
  if (!Number.isInteger(perSm) || perSm < 0 || perSm > 32) throw new LingcError(`LINGC_PHASE_LAUNCH must be 'off', 'on' or a number of workgroups a multiprocessor (1 to 32), got '${text}'`);
  if (tails && perSm) throw new LingcError(`LINGC_TAIL_LAUNCH=${tailMode} and LINGC_PHASE_LAUNCH cannot both be on (a step is a tail or a phase)`);
  return { ...(tails ? { tailLaunches: tails } : {}), ...(perSm ? { phaseLaunches: perSm } : {}) };
}

/**
 * LINGC_FP8_GEMV_COLUMNS: all (the default: the FP8 GEMVs, dense and the routed experts' by row, take
 * several columns a warp for short rows), grouped (the routed experts' only), off. Measured on the
 * H200, FP8 Ling-mini decode batch 1, three rounds alternately: off 1.173 / 1.180 / 1.172 ms a step,
 * grouped 1.144 / 1.139 / 1.155, all 1.135 / 1.124 / 1.133 (bench/results/fp8-columns-2026-12-04-h200.md).
 */
function fp8GemvColumns(): { fp8GemvColumns?: "grouped" | "all" } {
  const v = envChoice("LINGC_FP8_GEMV_COLUMNS", ["all", "grouped", "off"]);
  return v === "off" ? {} : { fp8GemvColumns: v };
}

/** LINGC_PREFETCH: fp8 (the FP8 GEMVs prefetch their weight rows before the wait: the default), all (every dense GEMV), off. */
function prefetchWeights(): { prefetchWeights?: "fp8" | "all" } {
  const v = envChoice("LINGC_PREFETCH", ["fp8", "all", "off"]);
  return v === "off" ? {} : { prefetchWeights: v };
}

/** LINGC_ATTN_QUANT_EPILOGUE: all (default: flash_wgmma's and decode attention's merge kernels), prefill (flash_wgmma's only), off. */
function attentionQuantEpilogue(): { attentionQuantEpilogue?: "prefill" | "all" } {
  const v = envChoice("LINGC_ATTN_QUANT_EPILOGUE", ["all", "prefill", "off"]);
  return v === "off" ? {} : { attentionQuantEpilogue: v };
}

/** LINGC_QUANT_PROLOGUE: off (default), on (every quantize a GEMV alone reads), narrow (rows of at most 512). */
function quantPrologue(): { quantPrologue?: true; quantPrologueMaxK?: number } {
  const v = envChoice("LINGC_QUANT_PROLOGUE", ["off", "on", "narrow"]);
  return v === "off" ? {} : { quantPrologue: true, ...(v === "narrow" ? { quantPrologueMaxK: 512 } : {}) };
}

/**
 * LINGC_STAMPS=on: a diagnostic build whose generated kernels stamp their launches' timelines
 * (lingc_runtime.h; `lingc_model bench` writes them with LINGC_STAMPS_OUT, bench/cuda/stamps.py reads them).
 */
export const timelineStamps = (): boolean => envChoice("LINGC_STAMPS", ["off", "on"]) === "on";

/** The value of environment variable `name` (undefined where unset, empty, or there is no process: a browser). */
function env(name: string): string | undefined {
  const text = typeof process !== "undefined" ? process.env[name] : undefined;
  return text === "" ? undefined : text;
}

/** A knob that takes one of `choices`, the first the default (unset); another value is refused by name. */
function envChoice<T extends string>(name: string, choices: readonly T[]): T {
  const text = env(name) ?? choices[0]!;
  if (!(choices as readonly string[]).includes(text)) throw new LingcError(`${name} must be ${choices.map((c) => `'${c}'`).join(" or ")}, got '${text}'`);
  return text as T;
}

/** LINGC_CUDA_WIDE_INDEX: unset (64-bit indices where a buffer is past 2^31 - 1 elements) or "all" (in every kernel). */
function wideIndex(): true | "all" {
  const text = env("LINGC_CUDA_WIDE_INDEX");
  if (text !== undefined && text !== "all") throw new LingcError(`LINGC_CUDA_WIDE_INDEX must be 'all' or unset, got '${text}'`);
  return text === "all" ? "all" : true;
}
/** LINGC_DECODE_MERGE: "kernel" (a merge kernel after decode attention's key splits) or "last" (each item's last split merges). */
const decodeMerge = () => envChoice("LINGC_DECODE_MERGE", ["kernel", "last"]);
/**
 * LINGC_DECODE_SOFTMAX: "chunk" (decode attention's online softmax over a warp's unrolled group of keys at
 * once: the default, measured faster on the H200) or "key" (a key at a time).
 */
const decodeSoftmax = () => envChoice("LINGC_DECODE_SOFTMAX", ["chunk", "key"]);

/** LINGC_WGMMA_WAIT: "late" (the bf16 wgmma expert GEMM waits for a stage's MMAs after the next stage's copies and loads; the default, measured faster) or "early" (at once). */
const wgmmaWait = () => envChoice("LINGC_WGMMA_WAIT", ["late", "early"]);

/**
 * LINGC_PAIR_LAUNCH: "on" (two independent steps near each other whose sizes choose generated
 * kernels for both, as one launch: the default, measured faster at decode batch 1 on Ling-mini,
 * bench/results/pair-launch-2026-12-02-h200.md, and on FP8 Ling-mini, whose functions pair their FP8
 * GEMVs and quantizes too, fp8-norm-2026-12-02-h200.md), "fp8" (FP8's rules in every function) or
 * "off" (every step its own launch).
 */
function pairLaunches(): { pairLaunches?: "bf16" | "fp8" } {
  const v = envChoice("LINGC_PAIR_LAUNCH", ["on", "fp8", "off"]);
  return v === "off" ? {} : { pairLaunches: v === "on" ? "bf16" : "fp8" };
}

/** Two workgroups an SM, or LINGC_GEMV_WORKGROUPS (0: no K split; how device.sh gemvsplit measures the two). */
function gemvWorkgroups(profile: CudaProfile): number {
  const text = env("LINGC_GEMV_WORKGROUPS");
  if (text === undefined) return 2 * profile.smCount;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new LingcError(`LINGC_GEMV_WORKGROUPS must be a non-negative integer, got '${text}'`);
  return n;
}

/**
 * The grouped expert GEMM's tiles: the profile's, or LINGC_FP8_TILE / LINGC_BF16_TILE =
 * "bm,bn,wm,wn,stages" (how `bench/cuda/device.sh fp8tiles` and `bf16tiles` sweep tiles without a
 * rebuild of lingc).
 */
function expertTiles(profile: CudaProfile): Record<string, TileShape> {
  const tiles = { ...profile.expertTiles };
  for (const [dt, name] of [["f8e4m3fn", "LINGC_FP8_TILE"], ["bf16", "LINGC_BF16_TILE"]] as const) {
    const text = env(name);
    if (text) tiles[dt] = parseTile(text, name);
  }
  return tiles;
}
