/**
 * The steps the CUDA backend runs in its runtime's routines or cuBLASLt instead of a generated
 * kernel. Which kinds of step these are, which kernels can run each, and when, is target data
 * (ir/target/cuda-kernels.ts) that the select pass writes into the plan as a dispatch; this file
 * only says how each kernel is called from the host code, and turns a dispatch into branches.
 */
import { product, type Dim } from "../../ir/dim";
import { formatCond, substituteDispatch, type Dispatch, type DispatchChoice } from "../../ir/dispatch";
import type { Op, Value } from "../../ir/module";
import { attrsOf, OPS } from "../../ir/ops";
import { libraryKind, selectCudaKernel, swigluPair } from "../../ir/target/cuda-kernels";
import type { CudaProfile } from "../../ir/target";
import type { Step } from "../schedule";
import { literal } from "./render";

export interface EmitCtx {
  /** The slot of a value of the step, as C++. */
  slot(v: Value): string;
  /** A dim of the step's ops, as C++ in the host function's symbols. */
  dim(d: Dim): string;
  /** A dim already in the host function's symbols, as C++. */
  hostDim(d: Dim): string;
  /** The slot of a scaled fp8 value's scale grid, as C++. */
  scales(v: Value): string;
  /** Whether that grid is stored K-block-major (Slot.kMajor). */
  scalesKMajor(v: Value): boolean;
  /** The step as its generated kernel's launch (a dispatch's `generated` choice), or by the named kernel template. */
  generated(template?: string): string;
}

type Call = (choice: DispatchChoice, step: Step, c: EmitCtx) => string;

const p = (choice: DispatchChoice, name: string) => {
  const v = choice.params[name];
  if (v === undefined) throw new Error(`kernel ${choice.kernel} needs the parameter ${name}`);
  return v;
};

function linearCall(choice: DispatchChoice, step: Step, c: EmitCtx): string {
  const [x, w] = step.op.operands as [Value, Value];
  const [N, K] = [w.type.shape[0]!.value, w.type.shape[1]!.value];
  const out = c.slot(step.op.results[0]!);
  if (choice.kernel === "linear_gemv") return c.generated(choice.kernel);
  if (choice.kernel === "gemv") return `c.gemv(${c.slot(x)}, ${c.slot(w)}, ${out}, ${N}L, ${K}L);`;
  return `c.gemm(${c.slot(x)}, ${c.slot(w)}, ${out}, ${c.dim(product(x.type.shape.slice(0, -1)))}, ${N}L, ${K}L);`;
}

/** silu(X . Wg^T) * (X . Wu^T) of two linears of one input: the runtime's SwiGLU GEMV (one row) or GEMMs. */
function denseSwigluCall(choice: DispatchChoice, step: Step, c: EmitCtx): string {
  if (choice.kernel === "linear_gemv") return c.generated(choice.kernel);
  const { gate, up, mul } = swigluPair(step.ops)!;
  const [x, wg] = gate.operands as [Value, Value];
  const [N, K] = [wg.type.shape[0]!.value, wg.type.shape[1]!.value];
  const out = c.slot(mul.results[0]!);
  if (choice.kernel === "gemv") return `c.gemv_swiglu(${c.slot(x)}, ${c.slot(wg)}, ${c.slot(up.operands[1]!)}, ${out}, ${N}L, ${K}L);`;
  return `c.gemm_swiglu(${c.slot(x)}, ${c.slot(wg)}, ${c.slot(up.operands[1]!)}, ${out}, ${c.dim(product(x.type.shape.slice(0, -1)))}, ${N}L, ${K}L);`;
}

/** Y = X . W^T of block-scaled e4m3 operands: cuBLASLt's block-scaled FP8 GEMM, or the generated kernel. */
function fp8LinearCall(choice: DispatchChoice, step: Step, c: EmitCtx): string {
  if (choice.kernel === "generated") return c.generated();
  const [x, w] = step.op.operands as [Value, Value];
  const [N, K] = [w.type.shape[0]!.value, w.type.shape[1]!.value];
  const rows = c.dim(product(x.type.shape.slice(0, -1)));
  return `c.gemm_fp8(${c.slot(x)}, ${c.scales(x)}, ${c.scalesKMajor(x)}, ${c.slot(w)}, ${c.scales(w)}, ${c.slot(step.op.results[0]!)}, ${rows}, ${N}L, ${K}L);`;
}

/** silu(X . Wg^T) * (X . Wu^T) of block-scaled e4m3 operands: the generated GEMV's SwiGLU form, or cuBLASLt's FP8 GEMM twice and silu_mul. */
function fp8SwigluCall(choice: DispatchChoice, step: Step, c: EmitCtx): string {
  if (choice.kernel === "generated") return c.generated();
  const { gate, up, mul } = swigluPair(step.ops)!;
  const [x, wg] = gate.operands as [Value, Value];
  const wu = up.operands[1]!;
  const [N, K] = [wg.type.shape[0]!.value, wg.type.shape[1]!.value];
  const rows = c.dim(product(x.type.shape.slice(0, -1)));
  return `c.gemm_fp8_swiglu(${c.slot(x)}, ${c.scales(x)}, ${c.scalesKMajor(x)}, ${c.slot(wg)}, ${c.scales(wg)}, ${c.slot(wu)}, ${c.scales(wu)}, ${c.slot(mul.results[0]!)}, ${rows}, ${N}L, ${K}L);`;
}

/** A grouped expert matmul (alone, or the SwiGLU experts with their token gather). */
function expertCall(choice: DispatchChoice, step: Step, c: EmitCtx): string {
  const gl = step.ops.filter((o) => o.opName === "grouped_linear");
  let x: Value, order = "-1", k = 1, wg: Value, wu = "-1", offsets: Value, out: Value, rows: Dim;
  if (gl.length === 1) {
    [x, wg, offsets] = gl[0]!.operands as [Value, Value, Value];
    out = gl[0]!.results[0]!;
    rows = x.type.shape[0]!;
  } else {
    const perm = step.ops.find((o) => o.opName === "moe_permute");
    const silu = step.ops.find((o) => o.opName === "silu")!;
    const gate = gl.find((o) => o.results[0] === silu.operands[0])!;
    const up = gl.find((o) => o !== gate)!;
    x = perm ? perm.operands[0]! : gate.operands[0]!;
    if (perm) {
      order = c.slot(perm.operands[1]!);
      k = attrsOf(OPS.moe_permute, perm).k;
    }
    wg = gate.operands[1]!;
    wu = c.slot(up.operands[1]!);
    offsets = gate.operands[2]!;
    out = step.ops.find((o) => o.opName === "mul")!.results[0]!;
    rows = gate.operands[0]!.type.shape[0]!;
  }
  // The grouped GEMM tile program: a generated kernel (the kernel template of that name).
  if (choice.kernel === "grouped_gemm" || choice.kernel === "grouped_gemv" || choice.kernel === "grouped_gemv_rows") return c.generated(choice.kernel);
  const [E, O, I] = wg.type.shape.map((d) => d.value!) as [number, number, number];
  const args = `${c.slot(x)}, ${order}, ${k}, ${c.slot(wg)}, ${wu}, ${c.slot(offsets)}, ${c.slot(out)}, ${c.dim(rows)}, ${E}L, ${O}L, ${I}L`;
  if (choice.kernel === "expert_gemv") return `c.expert_gemv(${args}, ${p(choice, "by_row") ? "true" : "false"}, ${p(choice, "vec") ? "true" : "false"});`;
  return `c.${choice.kernel}(${args});`;
}

function dispatchCall(choice: DispatchChoice, step: Step, c: EmitCtx): string {
  const op = step.op;
  const [order, offsets, rowOf] = op.results as [Value, Value, Value];
  return `c.${choice.kernel}(${c.slot(op.operands[0]!)}, ${c.slot(order)}, ${c.slot(offsets)}, ${c.slot(rowOf)}, ${c.dim(order.type.shape[0]!)}, ${attrsOf(OPS.moe_dispatch, op).num_experts}L);`;
}

function castCall(_choice: DispatchChoice, step: Step, c: EmitCtx): string {
  return `c.cast(${c.slot(step.op.operands[0]!)}, ${c.slot(step.op.results[0]!)}, ${c.dim(product(step.op.results[0]!.type.shape))});`;
}

function concatCall(_choice: DispatchChoice, step: Step, c: EmitCtx): string {
  const op = step.op;
  const r = op.results[0]!;
  const axis = (attrsOf(OPS.concat, op).axis + r.type.rank) % r.type.rank;
  const srcs = op.operands.map((v) => c.slot(v)).join(", ");
  const cols = op.operands.map((v) => c.dim(product(v.type.shape.slice(axis)))).join(", ");
  return `{ const int s_[] = {${srcs}}; const long c_[] = {${cols}}; c.concat(${c.slot(r)}, ${c.dim(product(r.type.shape.slice(0, axis)))}, ${op.operands.length}, s_, c_); }`;
}

/** cache_append: the new rows written into the cache's buffer (a graph input with room), in place. */
function appendCall(_choice: DispatchChoice, step: Step, c: EmitCtx): string {
  const op = step.op;
  const [cache, x] = op.operands as [Value, Value];
  const rank = x.type.rank;
  const axis = (attrsOf(OPS.cache_append, op).axis + rank) % rank;
  const outer = product(x.type.shape.slice(0, axis));
  const inner = product(x.type.shape.slice(axis + 1));
  return `c.append(${c.slot(op.results[0]!)}, ${c.slot(x)}, ${c.dim(outer)}, ${c.dim(cache.type.shape[axis]!)}, ${c.dim(x.type.shape[axis]!)}, ${c.dim(inner)});`;
}

function attentionCall(choice: DispatchChoice, step: Step, c: EmitCtx): string {
  if (choice.kernel === "flash_tile" || choice.kernel === "flash_wgmma" || choice.kernel === "attention_split" || choice.kernel.startsWith("decode_attention")) return c.generated(choice.kernel);
  const att = step.ops.find((o) => o.opName === "attention")!;
  const [q, k, v] = att.operands as [Value, Value, Value];
  const last = step.ops[step.ops.length - 1]!.results[0]!;
  const a = attrsOf(OPS.attention, att);
  const [B, nh, S, d] = q.type.shape;
  const transposed = step.ops.some((o) => o.opName === "transpose");
  const args = [
    c.slot(q),
    c.slot(k),
    c.slot(v),
    c.slot(last),
    c.dim(B!),
    `${nh!.value}L`,
    `${k.type.shape[1]!.value}L`,
    c.dim(S!),
    c.dim(k.type.shape[2]!),
    // Head widths: numbers in a model's forward; the value width is the key length in attention's
    // derivative (its probabilities come from identity values).
    c.dim(d!),
    c.dim(v.type.shape[3]!),
    literal(a.scale, "f32"),
    a.causal ? "true" : "false",
    transposed ? "true" : "false",
  ];
  if (choice.kernel === "attn_decode") args.push(`${p(choice, "sms")}`);
  if (choice.kernel === "attn_tiles") args.push(`${p(choice, "score_bytes")}L`);
  return `c.${choice.kernel}(${args.join(", ")});`;
}

/** The FP8 experts: both kernels are generated (kernel templates of the same names). */
const fp8ExpertCall: Call = (choice, _step, c) => c.generated(choice.kernel);

const CALLS: Record<string, Call> = {
  linear: linearCall,
  dense_swiglu: denseSwigluCall,
  fp8_linear: fp8LinearCall,
  fp8_swiglu: fp8SwigluCall,
  fp8_expert: fp8ExpertCall,
  expert: expertCall,
  moe_dispatch: dispatchCall,
  cast: castCall,
  concat: concatCall,
  cache_append: appendCall,
  attention: attentionCall,
  // Both of the router's kernels are generated (templates of the same names).
  router: (choice, _step, c) => c.generated(choice.kernel),
};

/** The dispatch a step runs with: the plan's (the select pass's), or the default selection for the profile. */
export function stepDispatch(step: Step, profile: CudaProfile): { kind: string; dispatch: Dispatch } | undefined {
  const kind = libraryKind(step.ops);
  if (!kind) return undefined;
  if (step.op.dispatch) return { kind, dispatch: step.op.dispatch };
  // Without the select pass (a --passes pipeline that leaves it out): the same choices, from the
  // sizes of the step's ops, in the host function's symbols.
  const sel = selectCudaKernel(step.ops, profile)!;
  return { kind, dispatch: step.kernel ? substituteDispatch(sel.dispatch, step.subst) : sel.dispatch };
}

/** A dispatch choice's condition as C++ (its terms joined by &&; empty when it always holds), dims by `dimText`. */
export function choiceCondition(choice: DispatchChoice, dimText: (d: Dim) => string): string {
  return choice.when.map((w) => formatCond(w, (d) => `(${dimText(d)})`)).join(" && ");
}

/** The host code of a runtime-run step: its dispatch as branches, each calling one kernel. */
export function libraryCall(kind: string, dispatch: Dispatch, step: Step, c: EmitCtx): string[] {
  const call = CALLS[kind]!;
  if (dispatch.length === 1) return [call(dispatch[0]!, step, c)];
  const lines: string[] = [];
  dispatch.forEach((choice, i) => {
    const cond = choiceCondition(choice, c.hostDim);
    const head = i === 0 ? `if (${cond}) ` : choice.when.length ? `else if (${cond}) ` : "else ";
    lines.push(`${head}${call(choice, step, c)}`);
  });
  return lines;
}

/** The kinds of step the runtime can run, for the op coverage report. */
export function runtimeKindOf(ops: readonly Op[]): string | undefined {
  return libraryKind(ops);
}
