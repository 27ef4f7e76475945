/**
 * The CUDA runtime's library kernels as data: for each kind of step the runtime runs itself (a dense
 * linear, a SwiGLU of two dense linears, the expert matmuls, the MoE dispatch, attention, float copies, cache appends), the kernels it can run it
 * with and the condition under which each is chosen, as a dispatch (ir/dispatch.ts) in the step's
 * sizes. The kernel-selection pass writes it into the plan, the CUDA emitter turns it into the host
 * code's branches, and the runtime only runs what it is told. Static facts (dtypes, head dims,
 * whether a width is a multiple of the vector width) are decided here; the profile supplies the
 * hardware facts (SM count, shared memory).
 */
import { Dim, product } from "../dim";
import { condHolds, type Dispatch, type DispatchChoice } from "../dispatch";
import type { Op, Value } from "../module";
import { hasWarpgroupMma, type CudaProfile } from "./cuda";
import { LingcError } from "../errors";
import { gathersScaledCodes, isE4m3Blocks } from "../quant";
import { attrsOf, getOp, OPS } from "../ops";
import { ATTENTION_SPLIT_MAX_ROWS, DECODE_ATTENTION_FORMS, decodeAttentionTakes, denseGemvElem, routerWarpTakes } from "./kernel-forms";

/** What the runtime's kernels can take (they are the sizes the kernels were written for). */
export const CUDA_KERNEL_LIMITS = {
  /** The decode attention kernel: keys per block chunk times chunks per item, and combine counters. */
  decodeMaxKeys: 256 * 128,
  decodeMaxQueries: 16,
  decodeCounters: 1 << 16,
  decodeRowsPerBlock: 8,
  /** The one-block MoE dispatch: pairs it sorts. */
  dispatchBlockPairs: 1 << 15,
  /** The vector GEMV reads rows in chunks of this many elements. */
  gemvChunk: 256,
  /** The GEMV is for weights up to this many elements (larger: cuBLASLt reads them better). */
  gemvMaxWeight: 64 << 20,
  /** cuBLASLt's block-scaled FP8 GEMM runs row counts that are multiples of this. */
  fp8RowMultiple: 4,
  /** Up to this many rows an FP8 linear runs the generated GEMV (reads the weight once). */
  fp8GemvRows: 16,
  /** K codes per stage of the FP8 expert tile program (its K must be a multiple). */
  fp8TileK: 64,
};

/** Per-target settings of the selection (the select pass's options). */
export interface SelectionOptions {
  /** Force a kernel for a kind of step (testing the runtime's other paths): lowering -> kernel. */
  prefer?: ReadonlyMap<string, string>;
  /** The bytes of scores the tiled attention keeps at once (default: the profile's). */
  scoreBytes?: number;
}

export interface Selection {
  /** The kind of step (the library lowering that covers it). */
  lowering: string;
  dispatch: Dispatch;
}

const choice = (kernel: string, when: DispatchChoice["when"] = [], params: Record<string, number> = {}): DispatchChoice => ({ kernel, params, when });
const le = (lhs: Dim, rhs: number) => ({ lhs, op: "<=" as const, rhs: Dim.of(rhs) });
const names = (ops: readonly Op[]) => ops.map((o) => o.opName);
const lone = (ops: readonly Op[], name: string) => ops.length === 1 && ops[0]!.opName === name;


/**
 * A linear of e4m3 activations in 1x128 groups by e4m3 weights in 128x128 blocks (fp32 scales,
 * both): what cuBLASLt's block-scaled FP8 GEMM computes on sm_90 (cuBLAS 12.9+). Its leading
 * dimensions must be multiples of 16 bytes.
 */
function blockScaledLinear(op: Op): boolean {
  const [x, w] = op.operands;
  const y = op.results[0];
  if (op.opName !== "linear" || !x || !w || !y || !isE4m3Blocks(x.type, 1, 128) || !isE4m3Blocks(w.type, 128, 128) || w.type.rank !== 2) return false;
  const [N, K] = w.type.shape.map((d) => d.value);
  return N !== undefined && K !== undefined && K % 16 === 0 && N % 16 === 0 && ["f32", "bf16"].includes(y.type.dtype);
}

/**
 * The routed experts' W8A8 matmuls (one grouped_linear, or gate and up with an elementwise
 * epilogue) of 1x128-group by 128x128-block e4m3 operands whose K is a multiple of the FP8 tile
 * program's 64-code stages: two generated kernels can run them (a tile program, a by-row GEMV).
 */
function fp8Experts(ops: readonly Op[]): boolean {
  const gls = ops.filter((o) => o.opName === "grouped_linear");
  // (A leading token gather of codes with their scale rows: the fp8 pass's gather=before.)
  const gather = (o: Op) => o === ops[0] && gathersScaledCodes(o);
  if (gls.length < 1 || gls.length > 2 || !ops.every((o) => o.opName === "grouped_linear" || gather(o) || getOp(o.opName)?.scalar)) return false;
  return gls.every((o) => {
    const [x, w] = o.operands as [Value | undefined, Value | undefined];
    if (!x || !w) return false;
    const I = w.type.shape[2]?.value;
    return isE4m3Blocks(x.type, 1, 128) && isE4m3Blocks(w.type, 128, 128) && w.type.rank === 3 && I !== undefined && I % CUDA_KERNEL_LIMITS.fp8TileK === 0;
  });
}

/** A linear of a plain bf16 or f32 input and an e4m3 weight in 128x128 blocks (weight-only FP8, W8A16). */
function weightOnlyFp8Linear(op: Op): boolean {
  const [x, w] = op.operands;
  return op.opName === "linear" && op.operands.length === 2 && !!x && !!w && !x.type.quant && ["f32", "bf16"].includes(x.type.dtype) && isE4m3Blocks(w.type, 128, 128) && w.type.rank === 2;
}

/**
 * silu(x . Wg^T) * (x . Wu^T) as a step's four ops: two bias-free linears of one input whose
 * weights have one type, silu of the gate's, and their product (the swiglu fusion's dense group);
 * the gate, the up projection and the product, else undefined.
 */
export function swigluPair(ops: readonly Op[]): { gate: Op; up: Op; mul: Op } | undefined {
  const ls = ops.filter((o) => o.opName === "linear");
  const silu = ops.find((o) => o.opName === "silu");
  const mul = ops.find((o) => o.opName === "mul");
  if (ops.length !== 4 || ls.length !== 2 || !silu || !mul || ls.some((o) => o.operands.length !== 2)) return undefined;
  const gate = ls.find((o) => o.results[0] === silu.operands[0]);
  const up = ls.find((o) => o !== gate);
  if (!gate || !up || up.operands[0] !== gate.operands[0] || up.operands[1]!.type.toString() !== gate.operands[1]!.type.toString()) return undefined;
  return mul.operands.includes(silu.results[0]!) && mul.operands.includes(up.results[0]!) ? { gate, up, mul } : undefined;
}

/**
 * A SwiGLU (swigluPair) of two FP8 linears (a dense MLP's or the shared expert's gate and up under
 * the fp8 pass): both block-scaled (W8A8), or both weight-only.
 */
function fp8Swiglu(ops: readonly Op[]): boolean {
  const p = swigluPair(ops);
  return p !== undefined && ([p.gate, p.up].every(blockScaledLinear) || [p.gate, p.up].every(weightOnlyFp8Linear));
}

/** A SwiGLU (swigluPair) of plain linears in bf16 or f32 with 2-D weights. */
function denseSwiglu(ops: readonly Op[]): boolean {
  const p = swigluPair(ops);
  if (!p) return false;
  const [x, wg] = p.gate.operands as [Value, Value];
  return wg.type.rank === 2 && ["f32", "bf16"].includes(x.type.dtype) && x.type.dtype === wg.type.dtype;
}

/** The kinds of step the runtime runs (libraryKind's answers, typed so): what select's prefer=KIND:KERNEL names. */
export const LIBRARY_KINDS = ["fp8_linear", "fp8_swiglu", "fp8_expert", "linear", "dense_swiglu", "expert", "moe_dispatch", "cast", "concat", "cache_append", "attention", "router"] as const;
export type LibraryKind = (typeof LIBRARY_KINDS)[number];

/** Which library lowering covers a step's ops (undefined: a generated kernel). */
export function libraryKind(ops: readonly Op[]): LibraryKind | undefined {
  if (ops.length === 1 && blockScaledLinear(ops[0]!)) return "fp8_linear";
  if (fp8Swiglu(ops)) return "fp8_swiglu";
  if (fp8Experts(ops)) return "fp8_expert";
  // Other FP8 operands with scales run in generated kernels (code x block scale), not in the library's GEMMs.
  if (ops.some((o) => [...o.operands, ...o.results].some((v) => v.type.quant))) return undefined;
  const n = names(ops);
  if (lone(ops, "linear")) return "linear";
  if (denseSwiglu(ops)) return "dense_swiglu";
  if (lone(ops, "grouped_linear")) return "expert";
  if (n.filter((x) => x === "grouped_linear").length === 2 && n.includes("silu") && n.includes("mul") && n.every((x) => ["grouped_linear", "silu", "mul", "moe_permute"].includes(x))) return "expert";
  if (lone(ops, "moe_dispatch")) return "moe_dispatch";
  if (lone(ops, "cast") && ["f32", "bf16"].includes(ops[0]!.operands[0]?.type.dtype ?? "") && ["f32", "bf16"].includes(ops[0]!.results[0]?.type.dtype ?? "")) return "cast";
  if (lone(ops, "concat") && ops[0]!.operands.length <= 4) return "concat";
  if (lone(ops, "cache_append")) return "cache_append";
  if (n.filter((x) => x === "attention").length === 1 && n.every((x) => ["attention", "transpose", "reshape"].includes(x))) return "attention";
  if (n.filter((x) => x === "group_topk").length === 1) return "router";
  return undefined;
}

/**
 * Settles what the sizes already decide: a condition between numbers is dropped when it holds, and
 * a choice with one that fails is dropped; choices after one that always applies never run.
 */
function settle(all: DispatchChoice[]): DispatchChoice[] {
  const out: DispatchChoice[] = [];
  for (const c of all) {
    const when = c.when.filter((w) => !(w.lhs.isConst() && w.rhs.isConst()));
    const fails = c.when.some((w) => w.lhs.isConst() && w.rhs.isConst() && !condHolds(w.op, w.lhs.value!, w.rhs.value!));
    if (fails) continue;
    out.push({ ...c, when });
    if (!when.length) break;
  }
  return out;
}

/**
 * A runtime kernel that generated kernels replaced by default (measured faster on the H200), which a
 * preference (prefer=KIND:<its name>) puts back in their places with their size conditions kept
 * (`restore`), so that the two can be measured against each other on the GPU (bench/cuda/device.sh
 * gemvtile, decattn). Steps the generated kernels do not take (fp32 operands) keep the runtime kernel anyway.
 */
interface Replaced {
  kernel: string;
  restore: (c: DispatchChoice) => DispatchChoice[];
}

function preferred(kind: string, all: DispatchChoice[], opts: SelectionOptions, replaced?: Replaced): Dispatch {
  const want = opts.prefer?.get(kind);
  if (!want) return settle(all);
  if (replaced && want === replaced.kernel) return settle(all.flatMap(replaced.restore));
  const c = all.find((x) => x.kernel === want);
  if (!c) throw new LingcError(`kernel '${want}' cannot run this ${kind} step (its kernels: ${[...new Set([...all.map((x) => x.kernel), ...(replaced ? [replaced.kernel] : [])])].join(", ")})`);
  return [{ ...c, when: [] }];
}

/** Whether a step's linears are all bf16 or all f32 (no quantized layout): the generated GEMV's operands. */
const plainLinears = (ops: readonly Op[]) => denseGemvElem(ops.filter((o) => o.opName === "linear").flatMap((o) => o.operands)) !== undefined;

/**
 * One row of a dense linear (or a dense SwiGLU's two): the GEMV, generated from the kernel language
 * (backends/kernels/gen/grouped-gemv.ts: `linear_gemv`; bf16 measured against the runtime's `gemv` on
 * the H200: Ling-mini decode batch 1 2.085 -> 2.005 ms a step with the experts' below; f32, the router
 * gate, where its K split among a tile's warps gives 256 workgroups to the runtime gemv's 32); more
 * rows, cuBLASLt.
 */
function denseChoices(ops: readonly Op[], N: number, K: number, rows: Dim): { all: DispatchChoice[]; replaced: Replaced } {
  const L = CUDA_KERNEL_LIMITS;
  // prefer=KIND:gemv: the runtime's GEMV wherever a GEMV would run, keeping the one-row condition
  // (it reads one row); the steps that take none (the LM head) keep cuBLASLt.
  const replaced: Replaced = { kernel: "gemv", restore: (c) => [c.kernel === "linear_gemv" ? { ...c, kernel: "gemv" } : c] };
  if (K % L.gemvChunk !== 0 || N * K > L.gemvMaxWeight) return { all: [choice("gemm")], replaced };
  const one = [{ lhs: rows, op: "==" as const, rhs: Dim.of(1) }];
  return { all: [choice(plainLinears(ops) ? "linear_gemv" : "gemv", one), choice("gemm")], replaced };
}

/** The dispatch of a step the runtime runs, in the sizes of the step's ops (undefined: generated). */
export function selectCudaKernel(ops: readonly Op[], profile: CudaProfile, opts: SelectionOptions = {}): Selection | undefined {
  const kind = libraryKind(ops);
  if (!kind) return undefined;
  const L = CUDA_KERNEL_LIMITS;
  let all: DispatchChoice[];
  let replaced: Replaced | undefined;
  switch (kind) {
    case "linear": {
      const [x, w] = ops[0]!.operands as [Value, Value];
      const [N, K] = w.type.shape.map((d) => d.value!) as [number, number];
      // One row (batch-1 decode): a GEMV moves less than cuBLASLt's M = 1 GEMM, except for the
      // largest matrices (the LM head), which cuBLASLt reads better.
      ({ all, replaced } = denseChoices(ops, N, K, product(x.type.shape.slice(0, -1))));
      break;
    }
    case "dense_swiglu": {
      const [x, w] = ops.find((o) => o.opName === "linear")!.operands as [Value, Value];
      const [N, K] = w.type.shape.map((d) => d.value!) as [number, number];
      // One row: a GEMV's SwiGLU form (one launch for gate, up and the product, where the unfused
      // ops took three); more: two cuBLASLt GEMMs and silu_mul.
      ({ all, replaced } = denseChoices(ops, N, K, product(x.type.shape.slice(0, -1))));
      break;
    }
    case "fp8_linear": {
      const rows = product(ops[0]!.operands[0]!.type.shape.slice(0, -1));
      // Few rows (decode) read the weight once in the generated warp-per-column kernel (gemv_fp8),
      // which cuBLASLt's FP8 GEMM does not beat there (measured on the H200: at 32 rows it is slower
      // than its own bf16 GEMM). cuBLASLt's block-scaled FP8 GEMM takes row counts that are
      // multiples of 4 (cuBLASLt 13.1: 1, 2, 7, 33 and 130 rows have no algorithm); other counts
      // run the generated kernel too (exact fp32 sums).
      all = [
        choice("generated", [le(rows, L.fp8GemvRows)]),
        choice("gemm_fp8", [{ lhs: rows, op: "%", rhs: Dim.of(L.fp8RowMultiple) }]),
        choice("generated"),
      ];
      break;
    }
    case "fp8_swiglu": {
      const x = ops.find((o) => o.opName === "linear")!.operands[0]!;
      const rows = product(x.type.shape.slice(0, -1));
      // The FP8 linear's choices for the pair: few rows, the generated GEMV's SwiGLU form (one pass
      // over the input, one launch where three ran); rows cuBLASLt takes, its block-scaled GEMM for
      // each and the runtime's silu_mul; else (and weight-only, whose lone linears run it too) the
      // generated form (exact fp32 sums).
      all = x.type.quant
        ? [choice("generated", [le(rows, L.fp8GemvRows)]), choice("gemm_fp8_swiglu", [{ lhs: rows, op: "%", rhs: Dim.of(L.fp8RowMultiple) }]), choice("generated")]
        : [choice("generated")];
      break;
    }
    case "fp8_expert": {
      const gl = ops.find((o) => o.opName === "grouped_linear")!;
      const rows = gl.operands[0]!.type.shape[0]!;
      const E = gl.operands[1]!.type.shape[0]!.value!;
      // Few rows (decode: under a quarter of the experts) read each row's expert weights once in
      // the by-row GEMV; more, the tile program on the FP8 tensor cores.
      all = [...(E >= 4 ? [choice("grouped_gemv_fp8", [le(rows, Math.floor(E / 4))])] : []), choice("grouped_gemm_fp8")];
      break;
    }
    case "expert": {
      const gl = ops.find((o) => o.opName === "grouped_linear")!;
      const rows = gl.operands[0]!.type.shape[0]!;
      const [E, , I] = gl.operands[1]!.type.shape.map((d) => d.value!) as [number, number, number];
      const vec = I % L.gemvChunk === 0 ? 1 : 0;
      // Few rows: the GEMV (a block per row when rows are under a quarter of the experts, else per
      // expert, reading each weight row once for its rows); many: the grouped GEMM tile program on
      // the bf16 tensor cores (generated: backends/kernels/gen/grouped-gemm.ts; bf16 rows of a
      // multiple of 8 elements), else one cuBLASLt GEMM per expert. bf16: the GEMVs are generated
      // too (backends/kernels/gen/grouped-gemv.ts, the runtime expert_gemv's two grids in the kernel
      // language; measured on the H200 against it: Ling-mini decode batch 32 9.37 -> 8.78 ms a step,
      // batch 1 2.085 -> 2.005 with the dense GEMV); fp32, the runtime's expert_gemv.
      const bf16 = ops.every((o) => o.opName !== "grouped_linear" || (o.operands[0]!.type.dtype === "bf16" && o.operands[1]!.type.dtype === "bf16"));
      const tiles = bf16 && I % 8 === 0 && profile.tensorCoreTypes.includes("bf16") && profile.expertTiles["bf16"] !== undefined;
      const byRow = E >= 4 ? [le(rows, Math.floor(E / 4))] : undefined;
      const byExpert = [le(rows, 4 * E)];
      all = tiles
        ? [...(byRow ? [choice("grouped_gemv_rows", byRow)] : []), choice("grouped_gemv", byExpert), choice("grouped_gemm"), choice("expert_loop")]
        : [...(byRow ? [choice("expert_gemv", byRow, { by_row: 1, vec })] : []), choice("expert_gemv", byExpert, { by_row: 0, vec }), choice("expert_loop")];
      // The tile program covers every size it is chosen for: the loop after it is only reachable by preference.
      if (tiles && !opts.prefer?.has("expert")) all = all.filter((c) => c.kernel !== "expert_loop");
      // prefer=expert:expert_gemv: the runtime's GEMVs with their size conditions, bf16 or not.
      const runtime = (c: DispatchChoice) => choice("expert_gemv", c.when, { by_row: c.kernel === "grouped_gemv_rows" ? 1 : 0, vec });
      replaced = { kernel: "expert_gemv", restore: (c) => [c.kernel.startsWith("grouped_gemv") ? runtime(c) : c] };
      break;
    }
    case "moe_dispatch": {
      const op = ops[0]!;
      const E = attrsOf(OPS.moe_dispatch, op).num_experts;
      const pairs = op.operands[0]!.type.numel();
      // Both keep counts and cursors of every expert in a block's shared memory.
      if (2 * E * 4 > profile.sharedMemoryPerBlock) throw new LingcError(`moe_dispatch: ${E} experts' counts and cursors (${2 * E * 4} bytes) do not fit a block's shared memory on ${profile.name} (${profile.sharedMemoryPerBlock} bytes)`);
      all = [choice("dispatch_block", [le(pairs, L.dispatchBlockPairs)]), choice("dispatch_scan")];
      break;
    }
    case "cast":
      all = [choice("cast_copy")];
      break;
    case "concat":
      all = [choice("concat_copy")];
      break;
    case "cache_append":
      // The new rows into the cache's buffer, in place: one strided copy.
      all = [choice("append_rows")];
      break;
    case "attention": {
      const att = ops.find((o) => o.opName === "attention")!;
      const [q, k, v] = att.operands as [Value, Value, Value];
      const [B, nhD, S, dD] = q.type.shape as [Dim, Dim, Dim, Dim];
      const nkv = k.type.shape[1]!.value!;
      const T = k.type.shape[2]!;
      const d = dD.value!;
      const dv = v.type.shape[3]!.value!;
      const rep = nhD.value! / nkv;
      // Decode items: (batch, KV head, query position, group of up to 8 query heads).
      const items = B.mul(S).mul(nkv * Math.ceil(rep / L.decodeRowsPerBlock));
      const decode = choice("attn_decode", [le(S, L.decodeMaxQueries), le(T, L.decodeMaxKeys), le(items, L.decodeCounters)], { sms: profile.smCount });
      const tiles = choice("attn_tiles", [], { score_bytes: opts.scoreBytes ?? profile.attentionScoreBytes });
      // Many queries, bf16, head dims 64/128: flash attention on the bf16 tensor cores, generated from
      // the kernel language (backends/kernels/gen/flash-attention.ts); it replaced the runtime's
      // hand-written flash_attn after measuring faster on the H200 (prefill 1x8192's attention
      // 26.4 -> 24.4 ms). Otherwise the tiled kernels, which take any dtype and head width.
      const flash = [q, k, v].every((x) => x.type.dtype === "bf16") && d === dv && (d === 64 || d === 128) && profile.tensorCoreTypes.includes("bf16");
      // Decode's few query rows: the generated split form (backends/kernels/gen/attention.ts: the
      // keys in ATTENTION_SPLITS workgroups a query row, then a merge kernel; its scratch holds
      // ATTENTION_SPLIT_MAX_ROWS rows: kernel-forms.ts), measured against attn_decode on the H200:
      // Ling-mini decode batch 1 2.085 -> 2.04 ms a step, batch 32 the same; more rows, attn_decode.
      // (An attention whose values are [.., T, T], as its derivative builds, is not one of these: the
      // split form keeps an output row in registers.)
      const split = v.type.shape[3]!.value !== undefined ? [choice("attention_split", [le(S, L.decodeMaxQueries), le(B.mul(S).mul(nhD.value!), ATTENTION_SPLIT_MAX_ROWS)])] : [];
      // bf16 heads of 64-256: the GQA forms (a KV head's query heads together, each key row read
      // once for them: backends/kernels/gen/decode-attention.ts), more key splits for fewer rows.
      const gqa = decodeAttentionTakes(q, k, v);
      // (They take every row count the split form would.)
      const grouped = DECODE_ATTENTION_FORMS.map((f) => choice(f.name, [le(S, L.decodeMaxQueries), le(B.mul(S).mul(nhD.value!), f.maxRows)]));
      // Where the profile has warpgroup MMAs, flash_wgmma first (backends/kernels/gen/flash-attention-wgmma.ts:
      // both products as wgmma, K and V copied a block ahead), measured on the H200 against flash_tile
      // at Ling-mini's shape: prefill 1x8192's attention 19.73 -> 17.58 ms, the prefill 74.4 -> 71.8 ms,
      // 1x2048 18.9 -> 17.6 ms (bench/results/flash-wgmma-2026-12-02-h200.md); flash_tile elsewhere.
      const wgmma = flash && hasWarpgroupMma(profile) ? [choice("flash_wgmma")] : [];
      all = [...(gqa ? grouped : split), decode, ...wgmma, ...(flash ? [choice("flash_tile")] : []), tiles];
      replaced = { kernel: "attn_decode", restore: (c) => (c.kernel === "attention_split" || c.kernel.startsWith("decode_attention") ? [] : [c]) };
      break;
    }
    case "router":
      // Both generated. Where it takes the step, a warp per token (backends/kernels/gen/router-warp.ts:
      // scores in registers, no barriers), measured on the H200 against the workgroup router
      // (router.ts) at Ling-mini's shape: its router 3.06 -> 0.44 ms at prefill 1x8192, 11.2 -> 8.6 us
      // a layer at decode batch 1 (prefill 79.4 -> 76.5 ms, decode 1.756 -> 1.668 ms a step; that build
      // shuffled under a select, fixed since: prefill 76.47 ms with the fix, strong-2026-12-01f call 6);
      // else, and by preference (router:router), a workgroup per token.
      all = routerWarpTakes(ops) ? [choice("router_warp"), choice("router")] : [choice("router")];
      break;
    default:
      return undefined;
  }
  return { lowering: kind, dispatch: preferred(kind, all, opts, replaced) };
}
