/**
 * What every kernel generator works with: the step being compiled, a kir builder, buffer names for
 * the step's slots (bound by their storage, so an alias and its source are one binding), and run-time
 * sizes: a dimension that is not a number becomes a uniform whose value the host computes from the
 * entry symbols before each launch.
 */
import { Dim, product } from "../../../ir/dim";
import { isFloat, type DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { Value } from "../../../ir/module";
import { capacitySymbol, scaleSlotOfValue, storageSlot, type Slot, type Step } from "../../schedule";
import type { TileShape } from "../../../ir/target/cuda";
import * as K from "../kir";
import { KernelBuilder, addI, divI, half, i, modI, mul, mulI, round, type BufferElem, type Expr, type Kernel } from "../kir";

export interface GeneratedKernel {
  kernel: Kernel;
  /** The storage slot bound to each of kernel.buffers, in order. */
  slots: number[];
  /** Uniform name -> its value as a dim in the entry symbols (ceil(dim / per) where per is given: a launch pair's split). */
  uniforms: { name: string; dim: Dim; per?: number }[];
  /**
   * Workgroups to launch: ceil(dim / per); or, for a launch pair of two grids that are not whole
   * workgroups as dims, the sum of ceil(dim / per) over `parts` (CUDA's emitter launches that; `dim`
   * is then only the parts' units summed).
   */
  grid: {
    dim: Dim;
    per: number;
    parts?: { dim: Dim; per: number }[];
    /**
     * A grid-synced kernel (kir gridSync, phases): launched with as many workgroups as the largest
     * of `units` asks (ceil(dim / per) each), but no more than fit on the device at once, at most
     * `perSm` a multiprocessor; `dim`/`per` are then its first phase's.
     */
    resident?: { perSm: number; units: { dim: Dim; per: number }[] };
  };
  /**
   * A kernel to launch right after this one, for the same step (a split computation's merge). The
   * step's scratch buffer (`scratch` f32 elements, bound as slot SCRATCH_SLOT in both) carries what
   * the first leaves for the second; a target that launches `then` allocates it.
   */
  then?: GeneratedKernel;
  scratch?: number;
  /**
   * How far the kernel's results may be from exact fp32 sums of the same operands, relative to the
   * largest result, by the hardware it runs on (not by its result dtype's rounding): Hopper's FP8
   * warpgroup MMAs sum with fewer bits than fp32. Unset: fp32 sums. What selftest's checks allow.
   */
  accuracy?: number;
  /** The kernel template that generated it (generateStep sets it). */
  template?: string;
}

/** The slot number that stands for a step's scratch buffer in GeneratedKernel.slots (the target gives it a slot of its own). */
export const SCRATCH_SLOT = -1;
/**
 * The slot number of the target's counters (GeneratedKernel.slots): i32 values, zero before every
 * launch, which a kernel that counts its finished workgroups with atomics sets back to zero itself
 * (CUDA: the runtime's, COUNTER_SLOTS of them).
 */
export const COUNTERS_SLOT = -2;
export const COUNTER_SLOTS = 1 << 16;
/** The slot number of the target's grid-barrier words (GeneratedKernel.slots; kir gridSync): two i32, a count whose top bit each barrier flips and a generation. */
export const GRID_SYNC_SLOT = -3;

export interface GenLimits {
  /** Threads per workgroup the target allows. */
  maxThreads: number;
  /** Workgroup (shared) memory in bytes. */
  maxWorkgroupBytes: number;
  /** Workgroup memory a kernel may opt in to at launch (CUDA: the profile's opt-in limit; tile programs), if more. */
  maxDynamicWorkgroupBytes?: number;
  /** Element types the target's tensor cores multiply (kir mma; none on WebGPU). */
  tensorCores?: readonly string[];
  /** Hopper's warpgroup MMAs (kir wgmma; CUDA sm_90a). */
  warpgroupMma?: boolean;
  /** Lanes of a warp that run in lockstep and shuffle registers (kir shfl; CUDA: 32, none on WebGPU). */
  warpSize?: number;
  /** The tiles of the grouped GEMM tile program by operand dtype (the target profile's). */
  gemmTiles?: Readonly<Record<string, TileShape>>;
  /** How the target stores a dtype (WebGPU: every float as f32; CUDA: bf16 as bf16). Default: f32/i32. */
  storage?: (dt: DType) => BufferElem;
  /**
   * Whether the target renders a kernel's integers 64-bit when a buffer is past 2^31 - 1 elements
   * (kir Kernel.wide; CUDA); "all": every kernel (to check the 64-bit path on small models).
   */
  wideIndex?: boolean | "all";
  /** WebGPU: the kernel forms that pay on a GPU (WebGpuProfile.gpuForms): dense linear tiles, the gemv form. */
  gpuForms?: boolean;
  /** The gemv form's pairs of elements loaded per lane and step (WebGpuProfile.gemvUnroll; default GEMV_UNROLL). */
  gemvUnroll?: number;
  /**
   * Workgroups a dense GEMV's grid should have at least (CUDA: two per SM): where its column tiles
   * are fewer, a tile's warps split each row's K among them. Default: no split.
   */
  gemvWorkgroups?: number;
  /**
   * CUDA's emitter: two independent steps near each other whose dispatches both take generated
   * kernels launched as one (launch-pairs.ts, kir-merge.ts), where the sizes choose both: "bf16"
   * the bf16 GEMVs' templates in a function without fp8 steps and FP8's rules in one with them (the
   * FP8 GEMVs and quantizes too, reach 3; both measured on the H200), "fp8" FP8's rules in every
   * function. Unset: each its own launch (the CUDA target sets "bf16" unless LINGC_PAIR_LAUNCH says
   * otherwise).
   */
  pairLaunches?: "bf16" | "fp8";
  /**
   * CUDA: an activation quantize whose codes only one FP8 GEMV reads runs inside that GEMV where the
   * sizes choose it (backends/cuda/quant-prologue.ts; LINGC_QUANT_PROLOGUE=on, or =narrow: only
   * quantizes of rows of at most 512). Default: off (on measured slower on the H200 when every warp
   * of the GEMV quantized its row again; the GEMVs now quantize their rows once a workgroup into
   * workgroup memory where the codes fit: no faster either, bench/results/attn-epilogue-2026-12-03-h200.md).
   */
  quantPrologue?: boolean;
  /** With quantPrologue: the widest row a prologue quantizes (default: any). */
  quantPrologueMaxK?: number;
  /**
   * CUDA: an activation quantize of a grouped expert matmul step's result, which it alone reads, runs
   * in that step's warpgroup tile program where the sizes choose the program
   * (backends/cuda/quant-epilogue.ts; LINGC_QUANT_EPILOGUE=on). Default: off (on measured slower on
   * the H200: FP8 Ling-mini's SwiGLU experts at 1x8192 11.42 ms against 9.45 + 0.59 for the quantize;
   * the quantize adds 23% to the program's instructions and 32% to its time).
   */
  quantEpilogue?: boolean;
  /**
   * CUDA: an activation quantize of an attention step's result (FP8's output projection input),
   * which it alone reads, runs in the attention's program where the sizes choose it: the program
   * writes the codes and scales instead of the bf16 rows (backends/cuda/quant-epilogue.ts).
   * "prefill": flash_wgmma's (LINGC_ATTN_QUANT_EPILOGUE=prefill; measured: bench/results/attn-epilogue-2026-12-03-h200.md);
   * "all": decode attention's merge kernels too (the CUDA default since decode batch 1 measured
   * 1.247-1.265 -> 1.206-1.217 ms a step with it, bench/results/prefill-graph-2026-12-03-h200.md);
   * LINGC_ATTN_QUANT_EPILOGUE=off: neither.
   */
  attentionQuantEpilogue?: "prefill" | "all";
  /**
   * CUDA: the FP8 warpgroup expert program loads a stage's scales one stage ahead (the CUDA target's
   * default; LINGC_FP8_SCALES=after: after the stage's MMA wait). Measured on the H200: FP8 Ling-mini
   * 1x8192 49.1-49.4 -> 48.6-48.7 ms, 1x2048 12.5 -> 12.0 (bench/results/fp8-epilogue-2026-12-02-h200.md call 8).
   */
  fp8ScalesAhead?: boolean;
  /**
   * CUDA: a dense GEMV's workgroup prefetches its weight rows into L2 before it waits for the kernel
   * before it (Kernel.preWait), so that at decode the weights stream in during that kernel's tail:
   * the FP8 GEMVs' ("fp8", the CUDA default), every dense GEMV's ("all"), or none (LINGC_PREFETCH=
   * fp8|all|off). Measured on the H200, Ling-mini decode batch 1 (bench/results/decode-tails-2026-12-02-h200.md):
   * FP8 1.27 -> 1.24 ms a step, bf16 1.16 -> 1.21 (slower: off for bf16).
   */
  prefetchWeights?: "fp8" | "all";
  /**
   * CUDA: a decode attention workgroup prefetches its key split's cached key and value rows into L2
   * before it waits for the kernel before it (the rows the step appends are written by that kernel;
   * a prefetch changes no value), LINGC_ATTN_PREFETCH=on (the CUDA default)|off. Measured on the H200,
   * Ling-mini decode batch 1 (bench/results/stamps-2026-12-03-h200.md): the attention 6.0 -> 4.9 us
   * a layer inside the graph, bf16 1.140-1.150 -> 1.124-1.130 ms a step, FP8 1.188-1.192 -> 1.166-1.182.
   */
  prefetchKv?: boolean;
  /**
   * CUDA: qk_norm_rope run by the GQA decode attention after it where the sizes choose that form
   * (backends/cuda/attention-prologue.ts), LINGC_ATTN_PROLOGUE=on|off (off: measured no faster on the
   * H200, bf16 1.128-1.142 against 1.127-1.130 ms a Ling-mini decode step, FP8 slower as its attention
   * then loses the merge kernel's quantize epilogue; bench/results/stamps-2026-12-03-h200.md call 4).
   */
  attentionPrologue?: boolean;
  /**
   * CUDA: an RMSNorm whose result only a dense GEMV reads (FP8: with the activation quantize of its
   * rows, whose codes only an FP8 GEMV reads) runs inside that GEMV where the sizes choose it
   * (backends/cuda/norm-prologue.ts), LINGC_NORM_PROLOGUE=on|off (off by default: slower on the H200, bf16 1.12 -> 1.15 ms and FP8
   * 1.11 -> 1.19 ms a Ling-mini decode step; bench/results/norm-prologue-2026-12-04-h200.md).
   */
  normPrologue?: boolean;
  /**
   * CUDA: dependent steps of a few workgroups' work run in the last workgroup of the launch before
   * them, one launch where several were (backends/cuda/launch-tails.ts; LINGC_TAIL_LAUNCH=on).
   * Default off: measured on the H200 slower (Ling-mini decode batch 1, 13 -> 9 launches a MoE
   * layer: bf16 1.16 -> 1.29 ms a step, FP8 1.25 -> 1.52; bench/results/decode-tails-2026-12-02-h200.md):
   * a kernel boundary under programmatic dependent launch costs less than running the tails' work
   * on one multiprocessor in turn. "router" (LINGC_TAIL_LAUNCH=router): only the MoE dispatch after
   * the router (the router a workgroup or a few at decode, so its last workgroup is no later than
   * the launch's end: one boundary fewer, nothing moved onto one multiprocessor that was not there);
   * measured slower too (bf16 decode b1 1.135 -> 1.16 ms, FP8 1.13 -> 1.25: the generated dispatch on
   * one workgroup costs more than the runtime's kernel and a boundary; router-tail-2026-12-04-h200.md).
   */
  tailLaunches?: true | "router";
  /**
   * CUDA: runs of consecutive steps whose sizes choose generated kernels that are plain launches run
   * as the phases of one launch, a grid barrier between each (backends/cuda/launch-phases.ts), the
   * launch at most this many workgroups a multiprocessor. Unset: off (Ling-mini decode batch 1: 5
   * launches a bf16 MoE layer instead of 13, but 1.27-1.29 ms a step against 1.14-1.15 as separate
   * PDL launches; bench/results/phases-2026-12-03-h200.md).
   */
  phaseLaunches?: number;
  /**
   * CUDA's GQA decode attention: the key splits merged by each item's last split to finish (atomics
   * on the target's counters, one launch) instead of a merge kernel after (two). Default: the latter.
   */
  mergeInLastSplit?: boolean;
  /**
   * CUDA's GQA decode attention: the online softmax over a warp's unrolled group of keys at once (one
   * maximum and one correction a group) instead of a key at a time. Default: a key at a time.
   */
  decodeSoftmaxChunk?: boolean;
  /**
   * CUDA's bf16 wgmma expert GEMM: a stage's MMAs waited for in the next iteration, after its copies,
   * barrier and loads (they overlap), instead of right after they are issued. Default: at once.
   */
  wgmmaLateWait?: boolean;
  /**
   * CUDA's e4m3 wgmma expert GEMM: two stage-sum accumulators in turn, so a stage's MMAs are issued
   * before the previous stage's sums are scaled into the total (that scaling, and its scale loads,
   * run while the tensor cores compute). Default: each stage's MMAs waited for at once, then scaled.
   */
  fp8WgmmaOverlap?: boolean;
  /**
   * CUDA's FP8 GEMVs take up to four output columns a warp for short weight rows (gemv-fp8.ts
   * fp8ColumnsPerWarp): the routed experts' by-row GEMV ("grouped"), the dense one too ("all", the
   * CUDA default); unset: a column a warp. LINGC_FP8_GEMV_COLUMNS=all|grouped|off.
   */
  fp8GemvColumns?: "grouped" | "all";
  /** CUDA: workgroups a multiprocessor an FP8 launch pair's merged kernel asks ptxas to fit (launch-pairs.ts FP8_PAIR_MIN_BLOCKS where unset). LINGC_FP8_PAIR_BLOCKS=1|2|3|4. */
  fp8PairBlocks?: number;
  /** CUDA's flash_wgmma: warpgroups a workgroup (1 or 2, each 64 queries sharing the K and V tiles). Default 1. */
  flashWarpgroups?: number;
  /**
   * CUDA's flash_wgmma with one warpgroup: the next block's Q K^T issued before this block's softmax,
   * which runs while the tensor cores compute it and the last block's P V (waited for only before the
   * rescale); K two blocks ahead (two buffers), V three buffers. The default (LINGC_FLASH_WGMMA_PIPE=on;
   * measured on the H200: Ling-mini's attention at 1x8192 17.8 -> 16.6 ms a forward); off: each product
   * waited for at once.
   */
  flashPipelined?: boolean;
  /** Consecutive elements of a row a thread of a pointwise kernel computes (CUDA: POINTWISE_RUN; default 1). */
  pointwiseRun?: number;
}

export function defaultStorage(dt: DType): BufferElem {
  return isFloat(dt) ? "f32" : "i32";
}

export class Gen {
  readonly kb: KernelBuilder;
  readonly uniforms = new Map<string, Dim>();
  readonly slotOf = new Map<string, number>();
  private readonly names = new Map<Value, string>();

  constructor(
    readonly step: Step,
    readonly schedule: { slots: readonly Slot[] },
    name: string,
    wg: number,
    readonly limits: GenLimits,
  ) {
    this.kb = new KernelBuilder(name, Math.min(wg, limits.maxThreads), limits.warpSize);
    if (limits.wideIndex === "all") this.kb.kernel.wide = true;
  }

  /**
   * The buffer that holds value v (read by the step or written by it). A scaled fp8 value's buffer
   * holds codes that mean nothing without their scales: templates read it through load() (`raw`:
   * the callers that handle the scales themselves).
   */
  buf(v: Value, raw = false): string {
    if (v.type.quant && !raw) throw new LingcError(`kernel generator: ${this.step.kernel?.name ?? this.step.op.opName} reads the scaled fp8 value ${v.name ?? ""} (${v.type}) without its scales; this kernel template does not take FP8 operands`);
    const hit = this.names.get(v);
    if (hit) return hit;
    // Kernel indices are 32-bit: a larger tensor is indexed 64-bit where the target can (the whole
    // kernel's integers), else it would be read at wrapped offsets.
    const n = v.type.numel().value;
    if (n !== undefined && n > 2 ** 31 - 1) {
      if (this.limits.wideIndex) this.kb.kernel.wide = true;
      else {
        const name = this.schedule.slots[this.step.reads.get(v) ?? this.step.writes.get(v) ?? -1]?.weight ?? v.name ?? String(v.type);
        throw new LingcError(`kernel generator: ${name} has ${n} elements, more than this target's 32-bit kernel indices reach (${this.step.kernel?.name ?? this.step.op.opName}); the CUDA target indexes such tensors 64-bit`);
      }
    }
    const slot = this.step.reads.get(v) ?? this.step.writes.get(v);
    if (slot === undefined) throw new LingcError(`kernel generator: value ${v.name ?? "?"} is not an input or output of ${this.step.kernel?.name ?? this.step.op.opName}`);
    const storage = storageSlot(this.schedule, slot);
    // Buffers are named by position, not by slot, so the same kernel for another layer renders to
    // the same text (and a backend can emit it once).
    let name = [...this.slotOf].find(([, st]) => st === storage)?.[0];
    name ??= `b${this.slotOf.size}`;
    const write = this.step.writes.has(v);
    const existing = this.kb.kernel.buffers.find((b) => b.name === name);
    if (existing) existing.write ||= write;
    else this.kb.buffer(name, this.elemOf(v, storage), write);
    this.slotOf.set(name, storage);
    this.names.set(v, name);
    return name;
  }

  /** How a value's data is stored: an fp8 weight with scales one byte per value (packed), a bf16 weight as bf16, the rest as the target stores its dtype. */
  private elemOf(v: Value, storage: number): BufferElem {
    const slot = this.schedule.slots[storage]!;
    if (v.type.quant && v.type.dtype === "f8e4m3fn" && slot.source === "weight") return "f8e4m3";
    // A bf16 weight as bf16 on every target (WebGPU packs two to a word; CUDA stores bf16 as bf16 anyway).
    if (slot.source === "weight" && !slot.type.quant && slot.type.dtype === "bf16") return "bf16";
    return (this.limits.storage ?? defaultStorage)(v.type.dtype);
  }

  /** The buffer of a scaled value's scale grid (f32): its scale slot (schedule.ts). */
  scalesBuf(v: Value): string {
    const scales = scaleSlotOfValue(this.schedule, this.step, v);
    if (!v.type.quant || scales === undefined) throw new LingcError(`kernel generator: ${v.name ?? "a value"} of type ${v.type} has no scales`);
    const write = this.step.writes.has(v);
    let name = [...this.slotOf].find(([, st]) => st === scales)?.[0];
    if (!name) {
      name = `b${this.slotOf.size}`;
      this.kb.buffer(name, "f32", write);
      this.slotOf.set(name, scales);
    } else if (write) this.kb.kernel.buffers.find((b) => b.name === name)!.write = true;
    return name;
  }

  /** The step's scratch buffer of `elems` f32 values (read and written; see GeneratedKernel.then). */
  scratch(elems: number): string {
    const name = "scratch";
    if (!this.kb.kernel.buffers.some((b) => b.name === name)) this.kb.buffer(name, "f32", true);
    this.slotOf.set(name, SCRATCH_SLOT);
    this.scratchElems = Math.max(this.scratchElems, elems);
    return name;
  }

  private scratchElems = 0;

  /** The target's counters (COUNTERS_SLOT): zero at launch; the kernel leaves each it counts with back at zero. */
  counters(): string {
    const name = "counters";
    if (!this.kb.kernel.buffers.some((b) => b.name === name)) this.kb.buffer(name, "i32", true);
    this.slotOf.set(name, COUNTERS_SLOT);
    return name;
  }

  /** Whether a scaled value's grid is stored K-block-major (Slot.kMajor: 1 x c groups, [C / c][rows]). */
  private kMajor(v: Value): boolean {
    const scales = scaleSlotOfValue(this.schedule, this.step, v);
    return scales !== undefined && this.schedule.slots[scales]!.kMajor === true;
  }

  /** The index in the scale grid of element `flat` of a scaled value (blocks over its last two axes). */
  scaleIndex(v: Value, flat: Expr): Expr {
    const g = v.type.quant!.granularity;
    if (g.kind !== "block") throw new LingcError(`kernel generator: only block scales are supported, ${v.type} has ${g.kind} scales`);
    const C = this.dims(v).at(-1)!;
    return this.scaleBlockIndex(v, divI(flat, C), divI(modI(flat, C), i(g.cols)));
  }

  /**
   * The index in the scale grid of the block that holds row `row` (its leading axes flattened into
   * rows) and column block `block` of a scaled value: a tile program finds a row's part once and adds
   * its K block (a flat element's index divides a sum that holds it, every K step).
   */
  scaleBlockIndex(v: Value, row: Expr, block: Expr): Expr {
    const g = v.type.quant!.granularity;
    if (g.kind !== "block") throw new LingcError(`kernel generator: only block scales are supported, ${v.type} has ${g.kind} scales`);
    if (this.kMajor(v)) return this.scaleAt(v, row, block);
    const dims = this.dims(v);
    const C = dims[dims.length - 1]!;
    const R = dims[dims.length - 2]!;
    const gc = divI(addI(C, i(g.cols - 1)), i(g.cols));
    const gr = divI(addI(R, i(g.rows - 1)), i(g.rows));
    return addI(mulI(addI(mulI(divI(row, R), gr), divI(modI(row, R), i(g.rows))), gc), block);
  }

  /** The grid index of row `row` (of all rows, leading axes flattened) and column block `block` of a value in 1 x c groups. */
  scaleAt(v: Value, row: Expr, block: Expr): Expr {
    const g = v.type.quant!.granularity;
    if (g.kind !== "block" || g.rows !== 1) throw new LingcError(`kernel generator: ${v.type} is not in 1 x c groups`);
    const dims = this.dims(v);
    if (this.kMajor(v)) return addI(mulI(block, this.size(product(v.type.shape.slice(0, -1)))), row);
    return addI(mulI(row, divI(addI(dims[dims.length - 1]!, i(g.cols - 1)), i(g.cols))), block);
  }

  /** Element `flat` of value v as a real number: a scaled fp8 value's element times its block's scale. */
  load(v: Value, flat: Expr): Expr {
    const data = this.kb.load(this.buf(v, true), flat);
    if (!v.type.quant) return data;
    return mul(data, this.kb.load(this.scalesBuf(v), this.scaleIndex(v, flat)));
  }

  /** Whether value v is read two elements to a load (loadPair): a bf16 weight, held two values to a word. */
  readsPairs(v: Value): boolean {
    if (v.type.quant || !this.isExternal(v)) return false;
    const buf = this.buf(v);
    return this.kb.kernel.buffers.find((b) => b.name === buf)?.elem === "bf16";
  }

  /** Elements `even` and `even` + 1 of value v (readsPairs) with one load; `even` must be even. */
  loadPair(v: Value, even: Expr): [Expr, Expr] {
    if (!this.readsPairs(v)) throw new LingcError(`kernel generator: ${v.name ?? "a value"} of type ${v.type} is not read in pairs`);
    const word = this.kb.let("w2", this.kb.loadWord(this.buf(v), divI(even, i(2))));
    return [half(word, false), half(word, true)];
  }

  isExternal(v: Value): boolean {
    return this.step.reads.has(v);
  }

  isOutput(v: Value): boolean {
    return this.step.writes.has(v);
  }

  /** A size: a literal for numbers, a uniform for symbolic dims (given in the step's own symbols). */
  size(d: Dim): Expr {
    const e = d.substitute(this.step.subst);
    if (e.isConst()) return i(e.value!);
    const name = `n_${e.toString().replace(/[^A-Za-z0-9]/g, "_")}`;
    this.uniforms.set(name, e);
    return this.kb.uniform(name);
  }

  dims(v: Value): Expr[] {
    return this.shapeDims(v.type.shape);
  }

  shapeDims(shape: readonly Dim[]): Expr[] {
    return shape.map((d) => this.size(d));
  }

  /**
   * The rows along `axis` of the buffer that holds v: v's own extent, or, for a cache that grows in
   * place, its buffer's capacity, a uniform the host sets from the buffer (capacitySymbol).
   */
  storageRows(v: Value, axis: number): Expr {
    const slot = this.step.reads.get(v) ?? this.step.writes.get(v);
    const storage = slot === undefined ? undefined : this.schedule.slots[storageSlot(this.schedule, slot)]!;
    if (storage?.roomAxis === axis) return this.size(Dim.sym(capacitySymbol(storage.id)));
    return this.size(v.type.shape[axis]!);
  }

  /** A dim in entry symbols (for the grid). */
  entryDim(d: Dim): Dim {
    return d.substitute(this.step.subst);
  }

  /**
   * Elements at .. at + 7 of v (`at` a multiple of 8, the buffer's start 16-byte aligned) as f32
   * values, in 16-byte loads: one of a bf16 buffer, two of an f32 one. Whether v's storage allows it:
   * wide8(v).
   */
  load8(v: Value, at: Expr): Expr[] {
    const buf = this.buf(v);
    const elem = this.kb.kernel.buffers.find((b) => b.name === buf)!.elem;
    if (elem === "bf16") {
      const words = this.kb.load16("v8", buf, K.div(at, K.i(2)));
      return Array.from({ length: 8 }, (_, e) => K.half(words[e >> 1]!, (e & 1) === 1));
    }
    if (elem !== "f32") throw new LingcError(`kernel generator: 16-byte loads of ${v.type} (stored as ${elem}) are not implemented`);
    return [0, 4].flatMap((o) => this.kb.load16("v8", buf, K.add(at, K.i(o))).map((w) => K.bitsF32(w)));
  }

  /** Eight values (f32 expressions) as elements at .. at + 7 of bf16 v (`at` a multiple of 8): one 16-byte store (CUDA). */
  store8(v: Value, at: Expr, vals: readonly Expr[]): void {
    this.kb.store16(this.buf(v), K.div(at, K.i(2)), [0, 1, 2, 3].map((p) => K.pack(vals[2 * p]!, vals[2 * p + 1]!)));
  }

  /** Whether load8 reads v: a bf16 or f32 value (as the target stores it), not scaled fp8. */
  wide8(v: Value): boolean {
    const elem = (this.limits.storage ?? defaultStorage)(v.type.dtype);
    return !v.type.quant && (elem === "bf16" || elem === "f32");
  }

  /** Rounds a value to a narrow float dtype the way the interpreter does (f32 and ints pass through). */
  fit(e: Expr, dt: DType): Expr {
    if (dt === "bf16" || dt === "f16" || dt === "f8e4m3fn" || dt === "f8e5m2") return round(dt, e);
    return e;
  }

  finish(grid: { dim: Dim; per: number }): GeneratedKernel {
    const slots = this.kb.kernel.buffers.map((b) => this.slotOf.get(b.name)!);
    return { kernel: this.kb.kernel, slots, uniforms: [...this.uniforms].map(([name, dim]) => ({ name, dim })), grid, ...(this.scratchElems ? { scratch: this.scratchElems } : {}) };
  }
}

export const ONE = Dim.of(1);
