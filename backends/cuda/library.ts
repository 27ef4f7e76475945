/**
 * The steps the CUDA backend runs in its runtime's routines (runtime/) or cuBLASLt instead of a
 * generated kernel: registered lowerings, each with the group of ops it covers and the call it
 * emits. Which kernel a routine then launches depends on sizes known only at run time (rows per
 * expert, the cache length); those choices live in the runtime for now (see docs/ARCHITECTURE.md).
 */
import { product, type Dim } from "../../ir/dim";
import type { DType } from "../../ir/dtype";
import type { Op, Value } from "../../ir/module";
import { attrsOf, OPS } from "../../ir/ops";
import type { Step } from "../schedule";
import { literal } from "./render";

export interface EmitCtx {
  /** The slot of a value of the step, as C++. */
  slot(v: Value): string;
  /** A dim of the step, as C++ in the host function's symbols. */
  dim(d: Dim): string;
}

export interface LibraryLowering {
  name: string;
  summary: string;
  covers(ops: readonly Op[]): boolean;
  emit(step: Step, c: EmitCtx): string[];
}

/** Float dtypes the runtime's cast takes. */
const RUNTIME_FLOATS = new Set<DType>(["f32", "bf16"]);
const names = (ops: readonly Op[]) => ops.map((o) => o.opName);
const lone = (ops: readonly Op[], name: string) => ops.length === 1 && ops[0]!.opName === name;

export const LIBRARY: readonly LibraryLowering[] = [
  {
    name: "gemm",
    summary: "cuBLASLt GEMM (the runtime's GEMV for one row)",
    covers: (ops) => lone(ops, "linear"),
    emit(step, c) {
      const [x, w] = step.op.operands as [Value, Value];
      return [`c.linear(${c.slot(x)}, ${c.slot(w)}, ${c.slot(step.op.results[0]!)}, ${c.dim(product(x.type.shape.slice(0, -1)))}, ${w.type.shape[0]!.value}L, ${w.type.shape[1]!.value}L);`];
    },
  },
  {
    name: "expert_linear",
    summary: "grouped expert matmul: GEMV for few rows, grouped mma.sync GEMM (bf16) or batched cuBLASLt for many",
    covers: (ops) => lone(ops, "grouped_linear"),
    emit(step, c) {
      const [x, w, off] = step.op.operands as [Value, Value, Value];
      const [E, O, I] = w.type.shape.map((d) => d.value!) as [number, number, number];
      return [`c.expert_linear(${c.slot(x)}, -1, 1, ${c.slot(w)}, -1, ${c.slot(off)}, ${c.slot(step.op.results[0]!)}, ${c.dim(x.type.shape[0]!)}, ${E}L, ${O}L, ${I}L);`];
    },
  },
  {
    name: "expert_swiglu",
    summary: "silu(x Wg^T) * (x Wu^T) over grouped rows, with the token gather when fused",
    covers: (ops) => {
      const n = names(ops);
      return n.filter((x) => x === "grouped_linear").length === 2 && n.includes("silu") && n.includes("mul") && n.every((x) => ["grouped_linear", "silu", "mul", "moe_permute"].includes(x));
    },
    emit(step, c) {
      const gl = step.ops.filter((o) => o.opName === "grouped_linear");
      const perm = step.ops.find((o) => o.opName === "moe_permute");
      const mul = step.ops.find((o) => o.opName === "mul")!;
      const silu = step.ops.find((o) => o.opName === "silu")!;
      const gate = gl.find((o) => o.results[0] === silu.operands[0])!;
      const up = gl.find((o) => o !== gate)!;
      const [E, O, I] = gate.operands[1]!.type.shape.map((d) => d.value!) as [number, number, number];
      const x = perm ? perm.operands[0]! : gate.operands[0]!;
      const order = perm ? c.slot(perm.operands[1]!) : "-1";
      const k = perm ? attrsOf(OPS.moe_permute, perm).k : 1;
      const rows = gate.operands[0]!.type.shape[0]!;
      return [`c.expert_linear(${c.slot(x)}, ${order}, ${k}, ${c.slot(gate.operands[1]!)}, ${c.slot(up.operands[1]!)}, ${c.slot(gate.operands[2]!)}, ${c.slot(mul.results[0]!)}, ${c.dim(rows)}, ${E}L, ${O}L, ${I}L);`];
    },
  },
  {
    name: "moe_dispatch",
    summary: "counting sort of (token, slot) pairs by expert",
    covers: (ops) => lone(ops, "moe_dispatch"),
    emit(step, c) {
      const op = step.op;
      const [order, offsets, rowOf] = op.results as [Value, Value, Value];
      const E = attrsOf(OPS.moe_dispatch, op).num_experts;
      return [`c.moe_dispatch(${c.slot(op.operands[0]!)}, ${c.slot(order)}, ${c.slot(offsets)}, ${c.slot(rowOf)}, ${c.dim(order.type.shape[0]!)}, ${E}L);`];
    },
  },
  {
    // A lone float cast is a copy: the runtime's is vectorized (16-byte accesses); the generated
    // kernel goes element by element through index arithmetic (logits to f32 at prefill).
    name: "cast",
    summary: "vectorized float copy (bf16 <-> f32)",
    covers: (ops) => lone(ops, "cast") && RUNTIME_FLOATS.has(ops[0]!.operands[0]?.type.dtype ?? "i32") && RUNTIME_FLOATS.has(ops[0]!.results[0]?.type.dtype ?? "i32"),
    emit: (step, c) => [`c.cast(${c.slot(step.op.operands[0]!)}, ${c.slot(step.op.results[0]!)}, ${c.dim(product(step.op.results[0]!.type.shape))});`],
  },
  {
    // The KV cache append at every decode step.
    name: "concat",
    summary: "vectorized row concatenation (up to 4 sources)",
    covers: (ops) => lone(ops, "concat") && ops[0]!.operands.length <= 4,
    emit(step, c) {
      const op = step.op;
      const r = op.results[0]!;
      const axis = (attrsOf(OPS.concat, op).axis + r.type.rank) % r.type.rank;
      const srcs = op.operands.map((v) => c.slot(v)).join(", ");
      const cols = op.operands.map((v) => c.dim(product(v.type.shape.slice(axis)))).join(", ");
      return [`{ const int s_[] = {${srcs}}; const long c_[] = {${cols}}; c.concat(${c.slot(r)}, ${c.dim(product(r.type.shape.slice(0, axis)))}, ${op.operands.length}, s_, c_); }`];
    },
  },
  {
    name: "attention",
    summary: "decode attention (split keys, GQA-shared) / flash attention (bf16 prefill) / cuBLASLt tiles",
    covers: (ops) => ops.filter((o) => o.opName === "attention").length === 1 && ops.every((o) => ["attention", "transpose", "reshape"].includes(o.opName)),
    emit(step, c) {
      const att = step.ops.find((o) => o.opName === "attention")!;
      const [q, k, v] = att.operands as [Value, Value, Value];
      const last = step.ops[step.ops.length - 1]!.results[0]!;
      const a = attrsOf(OPS.attention, att);
      const [B, nh, S, d] = q.type.shape;
      const transposed = step.ops.some((o) => o.opName === "transpose");
      return [
        `c.attention(${c.slot(q)}, ${c.slot(k)}, ${c.slot(v)}, ${c.slot(last)}, ${c.dim(B!)}, ${nh!.value}L, ${k.type.shape[1]!.value}L, ${c.dim(S!)}, ${c.dim(k.type.shape[2]!)}, ${d!.value}L, ${v.type.shape[3]!.value}L, ${literal(a.scale, "f32")}, ${a.causal ? "true" : "false"}, ${transposed ? "true" : "false"});`,
      ];
    },
  },
];

/** The library lowering that covers a step's ops, if any. */
export function libraryLowering(ops: readonly Op[]): LibraryLowering | undefined {
  return LIBRARY.find((l) => l.covers(ops));
}
