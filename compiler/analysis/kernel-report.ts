/**
 * The kernel report (`lingc compile … --report`): kernels per layer kind after fusion, against the
 * ops that would each be a kernel without it, and the bytes each layer kind moves through memory
 * per token, estimated from the op table's cost rules, before and after fusion. Before fusion every
 * op reads its operands and writes its results; after, a kernel reads its inputs and weights and
 * writes its outputs once, and what stays inside it is never stored.
 */
import { Func, Module, Op, Value } from "../../ir/module";
import { getOp, type ShapedType } from "../../ir/ops";
import { bytesOf, defaultCost } from "../../ir/ops/registry";
import { FREE_OPS } from "../passes/fusion";

export interface LayerKindReport {
  function: string;
  role: string;
  calls: number;
  unfusedKernels: number;
  kernels: number;
  kernelNames: string[];
  bytesBefore: number;
  bytesAfter: number;
}

const shaped = (v: Value, b: ReadonlyMap<string, number>): ShapedType => ({ dtype: v.type.dtype, shape: v.type.shape.map((d) => d.eval(b)) });

/** Bytes of operand i that op reads: routed expert weights count only the experts rows can reach. */
function operandBytes(op: Op, i: number, b: ReadonlyMap<string, number>): number {
  const t = shaped(op.operands[i]!, b);
  if (op.opName === "grouped_linear" && i === 1) {
    const E = t.shape[0]!;
    const rows = shaped(op.operands[0]!, b).shape[0]!;
    return (bytesOf(t) / Math.max(E, 1)) * Math.min(E, rows);
  }
  return bytesOf(t);
}

function opBytes(op: Op, b: ReadonlyMap<string, number>): number {
  const def = getOp(op.opName);
  if (!def || FREE_OPS.has(op.opName)) return 0;
  const ins = op.operands.map((v) => shaped(v, b));
  const outs = op.results.map((v) => shaped(v, b));
  const c = def.cost ? def.cost(ins, outs, op.attrs) : defaultCost(ins, outs);
  return c.bytesRead + c.bytesWritten;
}

/** A fused kernel reads each external input once and writes its outputs once. */
function kernelBytes(k: Func, b: ReadonlyMap<string, number>): number {
  const read = new Map<Value, number>();
  for (const op of k.body) {
    op.operands.forEach((v, i) => {
      if (v.kind === "result") return;
      read.set(v, Math.max(read.get(v) ?? 0, operandBytes(op, i, b)));
    });
  }
  let total = [...read.values()].reduce((s, x) => s + x, 0);
  for (const r of k.results) total += bytesOf(shaped(r.value, b));
  return total;
}

export function kernelReport(m: Module, bindings: ReadonlyMap<string, number>): LayerKindReport[] {
  const calls = new Map<string, number>();
  const count = (f: Func, times: number) => {
    for (const op of f.body) {
      if (op.opName !== "call") continue;
      const callee = m.getFunc(op.callee!)!;
      if (callee.role === "kernel") continue;
      calls.set(callee.name, (calls.get(callee.name) ?? 0) + times);
      count(callee, times);
    }
  };
  if (m.entry) {
    calls.set(m.entry.name, 1);
    count(m.entry, 1);
  }
  const out: LayerKindReport[] = [];
  for (const f of m.functions) {
    if (f.role === "kernel") continue;
    let unfused = 0;
    let kernels = 0;
    let before = 0;
    let after = 0;
    const names: string[] = [];
    for (const op of f.body) {
      const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
      if (callee && callee.role !== "kernel") continue; // a layer: reported on its own
      if (callee) {
        kernels++;
        names.push(callee.name.slice(f.name.length + 1));
        after += kernelBytes(callee, bindings);
        for (const inner of callee.body) {
          if (FREE_OPS.has(inner.opName)) continue;
          unfused++;
          before += opBytes(inner, bindings);
        }
        continue;
      }
      if (FREE_OPS.has(op.opName)) continue;
      kernels++;
      unfused++;
      names.push(op.opName);
      const b = opBytes(op, bindings);
      before += b;
      after += b;
    }
    out.push({ function: f.name, role: f.role ?? "graph", calls: calls.get(f.name) ?? 0, unfusedKernels: unfused, kernels, kernelNames: names, bytesBefore: before, bytesAfter: after });
  }
  return out;
}

function mb(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} KB`;
}

export function formatKernelReport(m: Module, rows: LayerKindReport[], bindings: ReadonlyMap<string, number>): string {
  const lines = [`kernel report for ${m.attrs["model"] ?? ""} ${m.name} (per token: ${[...bindings].map(([k, v]) => `${k}=${v}`).join(", ")})`];
  lines.push(`  ${"function".padEnd(14)} ${"calls".padStart(5)}  ${"kernels (unfused -> fused)".padEnd(27)} bytes per call (unfused -> fused)`);
  let before = 0;
  let after = 0;
  for (const r of rows) {
    before += r.bytesBefore * r.calls;
    after += r.bytesAfter * r.calls;
    lines.push(`  ${r.function.padEnd(14)} ${String(r.calls).padStart(5)}  ${`${r.unfusedKernels} -> ${r.kernels}`.padEnd(27)} ${mb(r.bytesBefore)} -> ${mb(r.bytesAfter)}`);
    lines.push(`      ${r.kernelNames.join(", ")}`);
  }
  lines.push(`  whole graph: ${mb(before)} -> ${mb(after)} moved per token (${before > 0 ? ((1 - after / before) * 100).toFixed(1) : "0"}% less)`);
  return lines.join("\n") + "\n";
}
