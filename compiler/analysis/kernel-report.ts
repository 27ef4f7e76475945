/**
 * The kernel report (`lingc compile … --report`): kernels per layer kind after fusion, against the
 * ops that would each be a kernel without it, and the bytes each layer kind moves through memory
 * per token, estimated from the op table's cost rules, before and after fusion. Before fusion every
 * op reads its operands and writes its results; after, a kernel reads its inputs and weights and
 * writes its outputs once, and what stays inside it is never stored. Kernels that read only weights
 * and constants and make fixed shapes (a weight quantized when it is bound, a norm weight cast to
 * f32) run once at load, as the backends run them: they are counted apart, not per token.
 */
import { Dim } from "../../ir/dim";
import { Func, Module, Op, Value } from "../../ir/module";
import { getOp, hasTrait, type ShapedType } from "../../ir/ops";
import { bytesOf, defaultCost } from "../../ir/ops/registry";
import { formatDispatch } from "../../ir/dispatch";

export interface LayerKindReport {
  function: string;
  role: string;
  calls: number;
  unfusedKernels: number;
  kernels: number;
  kernelNames: string[];
  bytesBefore: number;
  bytesAfter: number;
  /** The same without weight reads: the activation traffic that fusion removes. */
  activationBefore: number;
  activationAfter: number;
  /** The kernel dispatches the plan carries (select pass): "what: dispatch" lines. */
  dispatches: string[];
  /** Kernels that run once at load (they read only weights and constants), not counted above. */
  loadKernels: number;
}

/**
 * The ops of a function that run once at load: every operand a weight or made by such an op (a
 * constant has none), fixed result shapes and no symbolic attribute (an iota over the sequence
 * runs each time).
 */
function loadTimeOps(f: Func): Set<Op> {
  const once = new Set<Op>();
  const fixed = (op: Op) => op.results.every((r) => r.type.shape.every((d) => d.isConst())) && !Object.values(op.attrs).some((a) => a instanceof Dim && !a.isConst());
  for (const op of f.body) {
    if (op.operands.every((v) => v.kind === "weight" || (v.def !== undefined && once.has(v.def))) && fixed(op)) once.add(op);
  }
  return once;
}

const shaped = (v: Value, b: ReadonlyMap<string, number>): ShapedType => ({ dtype: v.type.dtype, shape: v.type.shape.map((d) => d.eval(b)) });

/**
 * Bytes of operand i that op reads, consistent with the op table's cost rules: routed expert weights
 * count only the experts rows can reach, an embedding table only the rows it gathers.
 */
function operandBytes(op: Op, i: number, b: ReadonlyMap<string, number>): number {
  const t = shaped(op.operands[i]!, b);
  if (op.opName === "embedding" && i === 0) return bytesOf(shaped(op.results[0]!, b));
  if (op.opName === "grouped_linear" && i === 1) {
    const E = t.shape[0]!;
    const rows = shaped(op.operands[0]!, b).shape[0]!;
    return (bytesOf(t) / Math.max(E, 1)) * Math.min(E, rows);
  }
  return bytesOf(t);
}

/** Whether a value is a weight, or made from weights once at load (an fp8 weight's codes and scales): its reads are weight reads. */
type WeightLike = (v: Value) => boolean;

/** [all bytes, bytes without weight reads] an op moves as a kernel of its own. */
function opBytes(op: Op, b: ReadonlyMap<string, number>, weightLike: WeightLike): [number, number] {
  const def = getOp(op.opName);
  if (!def || hasTrait(op.opName, "free")) return [0, 0];
  const ins = op.operands.map((v) => shaped(v, b));
  const outs = op.results.map((v) => shaped(v, b));
  const c = def.cost ? def.cost(ins, outs, op.attrs) : defaultCost(ins, outs);
  const weights = op.operands.reduce((s, v, i) => s + (weightLike(v) ? operandBytes(op, i, b) : 0), 0);
  return [c.bytesRead + c.bytesWritten, c.bytesRead + c.bytesWritten - weights];
}

/**
 * A fused kernel reads each external input once and writes its outputs once: [all, without weights].
 * An in_place op inside it (a KV cache append) neither reads the storage it grows nor writes it
 * whole: its result counts the bytes its cost rule writes (the new rows).
 */
function kernelBytes(k: Func, b: ReadonlyMap<string, number>, weightLike: WeightLike): [number, number] {
  const read = new Map<Value, number>();
  for (const op of k.body) {
    op.operands.forEach((v, i) => {
      if (v.kind === "result" || (i === 0 && hasTrait(op.opName, "in_place"))) return;
      read.set(v, Math.max(read.get(v) ?? 0, operandBytes(op, i, b)));
    });
  }
  let total = 0;
  let weights = 0;
  for (const [v, n] of read) {
    total += n;
    if (weightLike(v)) weights += n;
  }
  for (const r of k.results) {
    const def = r.value.def;
    const grown = def && hasTrait(def.opName, "in_place") ? getOp(def.opName)?.cost?.(def.operands.map((v) => shaped(v, b)), [shaped(r.value, b)], def.attrs) : undefined;
    total += grown ? grown.bytesWritten : bytesOf(shaped(r.value, b));
  }
  return [total, total - weights];
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
    let actBefore = 0;
    let actAfter = 0;
    const names: string[] = [];
    const dispatches: string[] = [];
    const once = loadTimeOps(f);
    const outer: WeightLike = (v) => v.kind === "weight" || (v.def !== undefined && once.has(v.def));
    let loadKernels = 0;
    for (const op of f.body) {
      const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
      if (callee && callee.role !== "kernel") continue; // a layer: reported on its own
      if (once.has(op)) {
        if (callee || !hasTrait(op.opName, "free")) loadKernels++;
        continue;
      }
      if (op.dispatch) dispatches.push(`${callee ? callee.name.slice(f.name.length + 1) : op.opName}${op.scope ? ` (${op.scope})` : ""}: ${formatDispatch(op.dispatch)}`);
      if (callee) {
        kernels++;
        names.push(callee.name.slice(f.name.length + 1));
        // (A kernel's parameter stands for the call's operand: weight-like where that is.)
        const args = new Map(callee.params.map((p, j) => [p, op.operands[j]!]));
        const [all, act] = kernelBytes(callee, bindings, (v) => outer(args.get(v) ?? v));
        after += all;
        actAfter += act;
        for (const inner of callee.body) {
          if (hasTrait(inner.opName, "free")) continue;
          unfused++;
          const [a, x] = opBytes(inner, bindings, (v) => outer(args.get(v) ?? v));
          before += a;
          actBefore += x;
        }
        continue;
      }
      if (hasTrait(op.opName, "free")) continue;
      kernels++;
      unfused++;
      names.push(op.opName);
      const [a, x] = opBytes(op, bindings, outer);
      before += a;
      after += a;
      actBefore += x;
      actAfter += x;
    }
    out.push({
      function: f.name,
      role: f.role ?? "graph",
      calls: calls.get(f.name) ?? 0,
      unfusedKernels: unfused,
      kernels,
      kernelNames: names,
      bytesBefore: before,
      bytesAfter: after,
      activationBefore: actBefore,
      activationAfter: actAfter,
      dispatches,
      loadKernels,
    });
  }
  return out;
}

function mb(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} KB`;
}

export function formatKernelReport(m: Module, rows: LayerKindReport[], bindings: ReadonlyMap<string, number>): string {
  const lines = [`kernel report for ${m.attrs["model"] ?? ""} ${m.name} (per token: ${[...bindings].map(([k, v]) => `${k}=${v}`).join(", ")})`];
  lines.push(`  ${"function".padEnd(14)} ${"calls".padStart(5)}  ${"kernels".padEnd(10)} ${"bytes per call".padEnd(26)} activation bytes per call (weights excluded)`);
  let before = 0;
  let after = 0;
  let actBefore = 0;
  let actAfter = 0;
  for (const r of rows) {
    before += r.bytesBefore * r.calls;
    after += r.bytesAfter * r.calls;
    actBefore += r.activationBefore * r.calls;
    actAfter += r.activationAfter * r.calls;
    lines.push(
      `  ${r.function.padEnd(14)} ${String(r.calls).padStart(5)}  ${`${r.unfusedKernels} -> ${r.kernels}`.padEnd(10)} ${`${mb(r.bytesBefore)} -> ${mb(r.bytesAfter)}`.padEnd(26)} ${mb(r.activationBefore)} -> ${mb(r.activationAfter)}`,
    );
    lines.push(`      ${r.kernelNames.join(", ")}${r.loadKernels ? `; once at load: ${r.loadKernels} more` : ""}`);
    for (const d of r.dispatches) lines.push(`      dispatch ${d}`);
  }
  const pct = (a: number, b: number) => (a > 0 ? ((1 - b / a) * 100).toFixed(1) : "0");
  lines.push(`  whole graph per token: ${mb(before)} -> ${mb(after)} (${pct(before, after)}% less); activations ${mb(actBefore)} -> ${mb(actAfter)} (${pct(actBefore, actAfter)}% less)`);
  return lines.join("\n") + "\n";
}
