/**
 * Choosing the generator for each step of the schedule by what the step contains (a fused kernel's
 * ops, or one op), never by the fusion pattern's name: a table of kernel templates, each with the
 * condition under which it can compute a group. Every op in the op table has a GPU kernel this way
 * (most through the pointwise generator), so a graph runs with any set of fusions switched off, and
 * any group a pass forms is compiled if some template covers it.
 */
import type { Dim } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import type { Op } from "../../../ir/module";
import { attrsOf, hasTrait, normAxis, OPS } from "../../../ir/ops";
import type { Slot, Step } from "../../schedule";
import { ATTENTION_SPLIT_MAX_ROWS, attentionBlockedKernel, attentionKernel, attentionRows, attentionSplitKernels } from "./attention";
import { cacheAppendKernel } from "./cache";
import { quantizeKernel, quantizeOps, quantizeWorkgroup, splitQuantEpilogue } from "./quant";
import { Gen, type GeneratedKernel, type GenLimits } from "./context";
import { dispatchKernel, dispatchWorkgroup } from "./dispatch";
import { coversGroupedGemm, gemmTile, gemmTileThreads, groupedGemmKernel, stepGemmTile } from "./grouped-gemm";
import { groupedGemmWgmmaKernel } from "./grouped-gemm-wgmma";
import { coversGroupedSimt, GROUPED_SIMT_THREADS, groupedSimtFew, groupedSimtKernel } from "./grouped-gemm-simt";
import { coversFp8Gemv, coversGroupedFp8Gemv, fp8GemvKernel, GEMV_FP8_THREADS, groupedFp8GemvKernel } from "./gemv-fp8";
import { normKernel, normWorkgroup } from "./norm";
import { coversNormRegisters, normRegistersKernel, normRegistersThreads } from "./norm-registers";
import { linearSimtKernel, linearSimtPlan } from "./linear-simt";
import { GEMV_MAX_ROWS, GEMV_THREADS, gemvRows, isPointwiseOp, pointwise, pointwiseGemv } from "./pointwise";
import { QKV_WARP_HEADS, qkvKernel } from "./qkv";
import { QKV_REGISTER_THREADS, qkvRegistersFits, qkvRegistersKernel } from "./qkv-registers";
import { coversFlash, FLASH_THREADS, flashAttentionKernel } from "./flash-attention";
import { flashWgmmaKernel, flashWgmmaThreads } from "./flash-attention-wgmma";
import { coversEmbedding16, EMBEDDING_THREADS, embeddingKernel } from "./embedding";
import { COMBINE_THREADS, combineKernel, coversCombine, coversPointwise16 } from "./combine";
import { coversDecodeAttention, DECODE_ATTENTION_THREADS, decodeAttentionKernels, splitQkPrologue } from "./decode-attention";
import { DECODE_ATTENTION_FORMS } from "../../../ir/target/kernel-forms";
import { coversDenseGemv, coversGroupedGemv, denseGemvKernel, GROUPED_GEMV_THREADS, groupedGemvKernel } from "./grouped-gemv";
import { routerKernel, routerWorkgroup } from "./router";
import { coversRouterWarp, ROUTER_WARP_THREADS, routerWarpKernel } from "./router-warp";

export type { GeneratedKernel, GenLimits } from "./context";
export { POINTWISE_RUN } from "./pointwise";

const only = (ops: readonly Op[], names: readonly string[]) => ops.every((o) => names.includes(o.opName));
const count = (ops: readonly Op[], name: string) => ops.filter((o) => o.opName === name).length;

interface Template {
  name: string;
  /** Whether the template computes exactly these ops as one kernel (on a target with these limits). */
  covers(ops: readonly Op[], limits?: GenLimits): boolean;
  generate(gen: (wg: number) => Gen, ops: Op[], limits: GenLimits): GeneratedKernel;
  /**
   * Below what size another template does better: `rows` (in the step's dims) at most `max`, where
   * a target that chooses at run time (WebGPU's host) launches `template`'s kernel instead.
   */
  few?(ops: readonly Op[], limits: GenLimits): { rows: Dim; max: number; template: string } | undefined;
}

/** A contraction's few rows in the pointwise group's gemv form (where the gemv template covers the step). */
function gemvFew(ops: readonly Op[]): { rows: Dim; max: number; template: string } | undefined {
  const rows = gemvRows(ops);
  return rows ? { rows, max: GEMV_MAX_ROWS, template: "gemv" } : undefined;
}

const coversAttention = (ops: readonly Op[]) => count(ops, "attention") === 1 && only(ops, ["attention", "transpose", "reshape"]);
/** The same, or with the quantize of its result after it (a step backends/cuda/quant-epilogue.ts merged), for the programs that take it as their epilogue. */
const coversAttentionQuantized = (ops: readonly Op[]) => coversAttention(splitQuantEpilogue(ops).ops);
/** Threads of attention's blocked form: a power of two, 256 where the target allows. */
const blockedThreads = (limits: GenLimits) => 2 ** Math.floor(Math.log2(Math.min(256, limits.maxThreads)));

/** A reshape to heads, its head-axis slices, each transposed to [B, heads, S, d], then RMSNorm / RoPE. */
function coversQkNormRope(ops: readonly Op[]): boolean {
  return (
    count(ops, "reshape") === 1 &&
    count(ops, "slice") >= 1 &&
    only(ops, ["reshape", "slice", "transpose", "rms_norm", "rope", "cache_append"]) &&
    ops.filter((o) => o.opName === "slice").every((s) => attrsOf(OPS.slice, s).axis === 2 && s.operands[0]!.def?.opName === "reshape") &&
    // A cache append takes a chain's rows along the sequence axis of [B, heads, S, d].
    ops.filter((o) => o.opName === "cache_append").every((a) => ops.includes(a.operands[1]!.def!) && a.results[0]!.type.rank === 4 && normAxis(attrsOf(OPS.cache_append, a).axis, 4) === 2)
  );
}

/** The templates, most specific first. */
const TEMPLATES: readonly Template[] = [
  {
    // group_topk with the ops around it that work on a token's row of expert scores.
    name: "router",
    covers: (ops) => count(ops, "group_topk") === 1 && ops.every((o) => hasTrait(o.opName, "elementwise") || ["group_topk", "linear", "constant", "reduce_sum", "take_along"].includes(o.opName)),
    generate(gen, ops, limits) {
      const gt = ops.find((o) => o.opName === "group_topk")!;
      return routerKernel(gen(routerWorkgroup(gt.operands[0]!.type.shape[1]!.value!, limits.maxThreads)), ops);
    },
  },
  {
    // The same ops, a warp per token on CUDA (only when the router dispatch names it: listed after router).
    name: "router_warp",
    covers: (ops, limits) => coversRouterWarp(ops, limits),
    generate: (gen, ops) => routerWarpKernel(gen(ROUTER_WARP_THREADS), ops),
  },
  {
    // The same group on CUDA with each head in registers, 8 elements a lane (16-byte accesses,
    // shuffles for the norm's sum and RoPE's partners; most specific: listed first).
    name: "qk_norm_rope_registers",
    covers: (ops, limits) => coversQkNormRope(ops) && limits !== undefined && qkvRegistersFits(ops, limits),
    generate: (gen, ops) => qkvRegistersKernel(gen(QKV_REGISTER_THREADS), ops),
  },
  {
    // A reshape to heads, its head-axis slices, each transposed to [B, heads, S, d], then RMSNorm / RoPE.
    name: "qk_norm_rope",
    covers: (ops) => coversQkNormRope(ops),
    generate(gen, ops, limits) {
      const heads = ops.find((o) => o.opName === "reshape")!.results[0]!;
      // Where the target has warps: a warp per head (a thread's fixed work, its head's indices, the
      // chain's branch and the reduction, is shared by several elements; the reduction is the
      // warp's shuffles), QKV_WARP_HEADS heads a workgroup. A workgroup per head ran at 0.32 ms a
      // layer at 1x8192 on the H200 whether of 128 threads or of one warp: too few heads in flight.
      if (limits.warpSize) return qkvKernel(gen(limits.warpSize * QKV_WARP_HEADS), ops, QKV_WARP_HEADS);
      return qkvKernel(gen(normWorkgroup(heads.type.shape[3]!.value!, limits.maxThreads)), ops);
    },
  },
  {
    name: "attention",
    covers: coversAttention,
    // A workgroup per query row: on a GPU the blocked form with 256 threads; few rows (a decode
    // step's) in the split form, which spreads each row's keys over more workgroups.
    generate: (gen, ops, limits) => (limits.gpuForms ? attentionBlockedKernel(gen(blockedThreads(limits)), ops) : attentionKernel(gen(64), ops)),
    few: (ops, limits) => (limits.gpuForms ? { rows: attentionRows(ops), max: ATTENTION_SPLIT_MAX_ROWS, template: "attention_split" } : undefined),
  },
  {
    // Attention's few-rows form on a GPU (only as that, or, on CUDA, when a dispatch names it: listed
    // after attention, which covers all it covers).
    name: "attention_split",
    covers: (ops, limits) => (limits?.gpuForms === true || limits?.warpSize === 32) && coversAttention(ops),
    generate: (gen, ops, limits) => attentionSplitKernels(gen(blockedThreads(limits)), gen(Math.min(128, limits.maxThreads)), ops),
  },
  // Decode attention on CUDA (bf16): a KV head's query heads together over key splits, then the
  // split form's merge (only when the attention dispatch names one; a form per split count); also
  // with the quantize of its result as the merge kernel's epilogue (a step quant-epilogue.ts merged).
  ...DECODE_ATTENTION_FORMS.map(
    (form): Template => ({
      name: form.name,
      covers: (ops, limits) => {
        // (With qk_norm_rope before it: a step backends/cuda/attention-prologue.ts merged.)
        const { qk, rest } = splitQkPrologue(ops);
        return coversAttentionQuantized(rest) && (!qk.length || coversQkNormRope(qk)) && coversDecodeAttention(rest, limits);
      },
      generate: (gen, ops, limits) => decodeAttentionKernels(gen(DECODE_ATTENTION_THREADS), gen(Math.min(128, limits.maxThreads)), ops, form),
    }),
  ),
  {
    // Flash attention on the bf16 tensor cores (CUDA): the attention dispatch names it for prefill
    // (listed after attention, which covers all it covers, it runs only when named); also with the
    // quantize of its result as its epilogue (a step backends/cuda/quant-epilogue.ts merged).
    name: "flash_tile",
    covers: (ops, limits) => coversAttentionQuantized(ops) && coversFlash(ops, limits?.tensorCores),
    generate: (gen, ops) => flashAttentionKernel(gen(FLASH_THREADS), ops),
  },
  {
    // The same on Hopper's warpgroup MMAs (only when the dispatch names it: the attention dispatch's
    // first prefill choice where the profile has them); also with the quantize of its result as its
    // epilogue (a step backends/cuda/quant-epilogue.ts merged).
    name: "flash_wgmma",
    covers: (ops, limits) => coversAttentionQuantized(ops) && coversFlash(ops, limits?.tensorCores) && limits?.warpgroupMma === true,
    generate(gen, ops, limits) {
      // Pipelined with one warpgroup a workgroup (LINGC_FLASH_WGMMA_PIPE, default on); two (LINGC_FLASH_WGMMA_WARPGROUPS=2) are not.
      const wgs = limits.flashWarpgroups ?? 1;
      return flashWgmmaKernel(gen(flashWgmmaThreads(wgs)), ops, wgs, wgs === 1 && (limits.flashPipelined ?? false));
    },
  },
  {
    // RMSNorm alone or after a residual add, bf16 on CUDA: each row in registers, 16-byte accesses
    // (most specific: listed first).
    name: "norm_registers",
    covers: (ops, limits) => coversNormRegisters(ops, limits),
    generate: (gen, ops) => normRegistersKernel(gen(normRegistersThreads(ops)), ops),
  },
  {
    // RMSNorm alone, after a residual add, into a linear layer's prologue, or quantized per token;
    // or written also as another float dtype (a cast of its result: the router's fp32 input).
    name: "norm",
    covers: (ops) =>
      count(ops, "rms_norm") === 1 &&
      count(ops, "add") <= 1 &&
      count(ops, "linear") + count(ops, "quantize") + count(ops, "cast") <= 1 &&
      only(ops, ["rms_norm", "add", "linear", "quantize", "cast"]) &&
      ops.every((o) => (o.opName !== "quantize" && o.opName !== "cast") || o.operands[0]!.def?.opName === "rms_norm"),
    generate(gen, ops, limits) {
      const norm = ops.find((o) => o.opName === "rms_norm")!;
      const x = norm.operands[0]!;
      return normKernel(gen(normWorkgroup(x.type.shape[x.type.rank - 1]!.value!, limits.maxThreads)), ops);
    },
  },
  {
    name: "dispatch",
    covers: (ops) => ops.length === 1 && ops[0]!.opName === "moe_dispatch",
    generate: (gen, ops, limits) => dispatchKernel(gen(dispatchWorkgroup(attrsOf(OPS.moe_dispatch, ops[0]!).num_experts, limits.maxThreads)), ops),
  },
  {
    // Quantize, alone or reading its rows through the token gather before it.
    name: "quantize",
    covers: (ops) => quantizeOps(ops) !== undefined,
    generate(gen, ops, limits) {
      const { op, prologue } = quantizeOps(ops)!;
      return quantizeKernel(gen(quantizeWorkgroup(op, limits)), op, prologue);
    },
  },
  {
    // The routed experts' FP8 matmuls (W8A8) on the tensor cores: a tile program (CUDA).
    name: "grouped_gemm_fp8",
    covers: (ops, limits) => limits !== undefined && coversGroupedGemm(ops, limits, "e4m3"),
    generate(gen, ops, limits) {
      const tile = stepGemmTile(ops, limits, "e4m3");
      return tile.wgmma ? groupedGemmWgmmaKernel(gen(gemmTileThreads(tile)), ops, "e4m3") : groupedGemmKernel(gen(gemmTileThreads(tile)), ops, "e4m3", tile);
    },
  },
  {
    // The same tile program on bf16 tensor cores (a bf16 prefill's experts, through the token gather).
    name: "grouped_gemm",
    covers: (ops, limits) => limits !== undefined && coversGroupedGemm(ops, limits, "bf16"),
    generate(gen, ops, limits) {
      const tile = gemmTile(limits, "bf16");
      return tile.wgmma ? groupedGemmWgmmaKernel(gen(gemmTileThreads(tile)), ops) : groupedGemmKernel(gen(gemmTileThreads(tile)), ops, "bf16");
    },
  },
  {
    // The bf16 experts for few rows (decode; only when a dispatch names them: listed after
    // grouped_gemm): a warp per few output columns, by row or by expert (CUDA).
    name: "grouped_gemv_rows",
    covers: coversGroupedGemv,
    generate: (gen, ops) => groupedGemvKernel(gen(GROUPED_GEMV_THREADS), ops, true),
  },
  {
    name: "grouped_gemv",
    covers: coversGroupedGemv,
    generate: (gen, ops) => groupedGemvKernel(gen(GROUPED_GEMV_THREADS), ops, false),
  },
  {
    // The same for few rows (decode; chosen by the step's dispatch): a warp per output column (CUDA).
    name: "grouped_gemv_fp8",
    covers: (ops, limits) => limits !== undefined && coversGroupedFp8Gemv(ops, limits),
    generate: (gen, ops) => groupedFp8GemvKernel(gen(GEMV_FP8_THREADS), ops),
  },
  {
    // A linear of few rows against a block-scaled e4m3 weight (decode), or a SwiGLU of two: warp-level (CUDA).
    name: "gemv_fp8",
    covers: (ops, limits) => limits !== undefined && coversFp8Gemv(ops, limits),
    generate: (gen, ops) => fp8GemvKernel(gen(GEMV_FP8_THREADS), ops),
  },
  {
    // Grouped expert matmuls on a target without tensor cores (WebGPU): workgroup tiles staged in
    // workgroup memory, a 4 x 4 block of outputs per thread.
    name: "grouped_gemm_simt",
    covers: (ops, limits) => limits !== undefined && coversGroupedSimt(ops, limits.tensorCores),
    generate: (gen, ops) => groupedSimtKernel(gen(GROUPED_SIMT_THREADS), ops),
    few: groupedSimtFew,
  },
  {
    name: "cache_append",
    covers: (ops) => ops.length === 1 && ops[0]!.opName === "cache_append",
    generate: (gen, ops) => cacheAppendKernel(gen(64), ops[0]!),
  },
  {
    // Dense linear layers on a target without tensor cores (WebGPU), with an elementwise epilogue:
    // workgroup tiles; few rows in the pointwise group's gemv form.
    name: "linear_simt",
    covers: (ops, limits) => limits?.gpuForms === true && linearSimtPlan(ops) !== undefined,
    generate: (gen, ops) => linearSimtKernel(gen(GROUPED_SIMT_THREADS), ops),
    few: gemvFew,
  },
  {
    // The MoE combine and its elementwise epilogue on CUDA, 8 elements of a row a thread in 16-byte
    // accesses (the pointwise template's sums, bitwise; it covers all this one covers).
    name: "moe_combine",
    covers: coversCombine,
    generate: (gen, ops) => combineKernel(gen(COMBINE_THREADS), ops),
  },
  {
    // The embedding lookup of a bf16 table on CUDA, 16 bytes of a row a thread's access (before pointwise, which covers it).
    name: "embedding16",
    covers: coversEmbedding16,
    generate: (gen, ops) => embeddingKernel(gen(EMBEDDING_THREADS), ops),
  },
  {
    // Scalar ops on bf16 values of one shape on CUDA, 8 elements a thread in 16-byte accesses (the
    // MoE combine's kernel without the combine; listed before pointwise, which covers all it covers).
    name: "pointwise16",
    covers: coversPointwise16,
    generate: (gen, ops) => combineKernel(gen(COMBINE_THREADS), ops),
  },
  {
    // One thread per element of a shared output shape: elementwise ops, views, contractions; a
    // contraction's few rows on a target without tensor cores (WebGPU) in the gemv form.
    name: "pointwise",
    covers: (ops) => ops.every((o) => isPointwiseOp(o.opName)),
    generate: (gen, ops) => pointwise(gen(64), ops),
    few: gemvFew,
  },
  {
    // The pointwise group with GEMV_LANES threads per element splitting its dot products (only as
    // another template's few-rows form: listed after pointwise, which covers all it covers).
    name: "gemv",
    covers: (ops, limits) => limits?.gpuForms === true && gemvRows(ops) !== undefined,
    generate: (gen, ops) => pointwiseGemv(gen(GEMV_THREADS), ops),
  },
  {
    // Dense bf16 linears of few rows with 16-byte loads, a warp per few columns (CUDA; only when a
    // dispatch names it: listed after pointwise, which covers all it covers).
    name: "linear_gemv",
    covers: coversDenseGemv,
    generate: (gen, ops) => denseGemvKernel(gen(GROUPED_GEMV_THREADS), ops),
  },
];

/** The template that compiles a lone op of this name (undefined when none does). */
export function templateForOp(op: Op): string | undefined {
  return TEMPLATES.find((t) => t.covers([op]))?.name;
}

/**
 * The tile programs a CUDA build checks against the op table's direct forms when its `selftest`
 * runs the model (referenceTemplate): the attentions, the grouped expert GEMMs and GEMVs, and the
 * dense GEMVs.
 */
export const TILE_TEMPLATES: ReadonlySet<string> = new Set([
  "flash_tile",
  "flash_wgmma",
  "attention_split",
  ...DECODE_ATTENTION_FORMS.map((f) => f.name),
  "grouped_gemm",
  "grouped_gemm_fp8",
  "grouped_gemv",
  "grouped_gemv_rows",
  "grouped_gemv_fp8",
  "gemv_fp8",
  "linear_gemv",
  "moe_combine",
  "pointwise16",
  "embedding16",
]);

/**
 * The op table's direct form of a step, where one covers it: attention's plain kernel (a workgroup
 * per query row, the scores in workgroup memory) or a thread per output element (each dot product
 * whole, in the op's own order). What a tile program is checked against.
 */
export function referenceTemplate(step: Step, limits: GenLimits): string | undefined {
  if (limits.gpuForms) throw new LingcError("referenceTemplate: a target with gpuForms compiles attention in its blocked form, not the plain one");
  return ["attention", "pointwise"].find((name) => TEMPLATES.find((x) => x.name === name)!.covers(step.ops, limits));
}

/** Names of the templates (a dispatch may name one to run a step with: generateStep's `template`). */
export const TEMPLATE_NAMES: readonly string[] = TEMPLATES.map((t) => t.name);

/**
 * When the template that compiles the step does worse on few rows: the rows dim (in entry symbols),
 * the bound, and the template for that case (which covers the step too).
 */
export function fewRowsTemplate(step: Step, limits: GenLimits): { rows: Dim; max: number; template: string } | undefined {
  const t = TEMPLATES.find((x) => x.covers(step.ops, limits));
  const few = t?.few?.(step.ops, limits);
  if (!few || !TEMPLATES.some((x) => x.name === few.template && x.covers(step.ops, limits))) return undefined;
  return { ...few, rows: few.rows.substitute(step.subst) };
}

/** The step's kernel: by the first template that covers it, or by the named one (which must). */
export function generateStep(step: Step, schedule: { slots: readonly Slot[] }, limits: GenLimits, name: string, template?: string): GeneratedKernel {
  // Only a quantize makes a scale grid: a step that would write scaled codes any other way (a
  // gather of codes left on its own) would leave its grid unwritten.
  for (const v of step.writes.keys()) {
    // (A merged step may hold the quantize rebound to read another name of its input: Op.rebound.)
    if (v.type.quant && !step.ops.some((o) => o.opName === "quantize" && o.results.includes(v))) throw new LingcError(`no GPU kernel writes the scaled fp8 value ${v.name ?? `made by '${v.def?.opName}'`} (${v.type}) except a quantize; '${v.def?.opName}' of scaled data runs only fused into the matmul that reads it (in ${step.scope || "the graph"})`, v.def?.textPos ?? v.def?.loc);
  }
  const t = TEMPLATES.find((x) => (template === undefined || x.name === template) && x.covers(step.ops, limits));
  if (!t && template !== undefined) throw new LingcError(`kernel template '${template}' does not cover ${step.kernel?.name ?? step.op.opName} (${step.ops.map((o) => o.opName).join(", ")})`);
  if (!t) {
    const what = step.kernel ? `the kernel ${step.kernel.name} (${step.ops.map((o) => o.opName).join(", ")})` : `op '${step.op.opName}'`;
    throw new LingcError(`no GPU kernel template covers ${what} (in ${step.scope || "the graph"})`);
  }
  return { ...t.generate((wg) => new Gen(step, schedule, name, wg, limits), step.ops, limits), template: t.name };
}
