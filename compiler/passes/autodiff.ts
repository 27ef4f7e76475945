/**
 * autodiff: reverse-mode differentiation of a graph's entry (issue 11; this is its first, flat
 * form). The entry's first result is the objective (its elements summed when it is not a scalar);
 * the pass appends the backward ops to the entry and a result `grad.<weight name>` (f32, the
 * weight's shape) for every float weight the objective depends on.
 *
 * Guarantees: the forward ops and results are unchanged (the gradients are extra results after
 * them); cotangents are accumulated in program order of the uses, in reverse; an op that needs a
 * derivative and has no VJP rule stops the pass naming it and its location. Not built yet: calls
 * (a layer function's backward function, which keeps the graph folded), so a folded model is
 * refused; weight-only inputs (quantize at load) are not differentiated through.
 */
import { LingcError, formatPos } from "../../ir/errors";
import { isFloat } from "../../ir/dtype";
import type { Func, Module, Op, Value } from "../../ir/module";
import { vjpRule } from "../../ir/ops";
import { Builder } from "../../ir/rewrite";
import type { Pass } from "./pass";

/** The op, its function and where it was written (the IR text's position, else the model source's). */
function where(op: Op, f: Func): string {
  const pos = op.textPos ?? op.loc;
  return `'${op.opName}' in @${f.name}${pos ? ` at ${formatPos(pos)}` : ""}`;
}

/** Appends the backward of f's first result to f; returns the weights given gradients. */
export function differentiate(m: Module, f: Func): Value[] {
  const objective = f.results[0]?.value;
  if (!objective) throw new LingcError(`autodiff: @${f.name} has no result to differentiate`);
  if (!isFloat(objective.type.dtype)) throw new LingcError(`autodiff: the objective ${f.results[0]!.name ?? "result 0"} is ${objective.type}, not a float tensor`);
  const shape = objective.type.shape.map((d) => d.value);
  if (shape.some((d) => d === undefined)) throw new LingcError(`autodiff: the objective's shape ${objective.type} must be numbers`);

  // Values the objective's derivative flows into: float weights and what is computed from them.
  const varies = new Set<Value>(f.weights.filter((w) => isFloat(w.type.dtype) && !w.type.quant));
  const forward = [...f.body];
  for (const op of forward) {
    if (op.opName === "call" && op.operands.some((v) => varies.has(v))) throw new LingcError(`autodiff: ${where(op, f)} calls @${op.callee}; differentiating through layer functions is not built yet (inline them first)`);
    if (op.operands.some((v) => varies.has(v))) for (const r of op.results) if (isFloat(r.type.dtype)) varies.add(r);
  }

  const b = new Builder(m, f);
  const ct = new Map<Value, Value>();
  const accumulate = (v: Value, g: Value) => {
    const prev = ct.get(v);
    ct.set(v, prev ? b.op1("add", [prev, g]) : g);
  };
  // d(sum of the objective) / d(objective) = 1 everywhere.
  accumulate(objective, b.op1("constant", [], { values: [1], dtype: objective.type.dtype, shape: shape as number[] }));
  for (let i = forward.length - 1; i >= 0; i--) {
    const op = forward[i]!;
    if (!op.operands.some((v) => varies.has(v))) continue;
    const cts = op.results.map((r) => ct.get(r));
    if (cts.every((c) => c === undefined)) continue;
    const rule = vjpRule(op.opName);
    if (!rule) throw new LingcError(`autodiff: no derivative (VJP) rule for ${where(op, f)} yet`);
    // A result nobody read back has a zero cotangent (a constant where its shape is numbers).
    const zeros = (r: Value) => {
      const dims = r.type.shape.map((d) => d.value);
      const zero = b.op1("constant", [], { values: [0], dtype: r.type.dtype, ...(dims.every((d) => d !== undefined) ? { shape: dims as number[] } : {}) });
      return zero.type.rank === r.type.rank ? zero : b.op1("mul", [r, zero]);
    };
    const full = op.results.map((r, k) => cts[k] ?? zeros(r));
    const grads = rule(b, op.operands, op.results, full, op.attrs);
    op.operands.forEach((v, j) => {
      const g = grads[j];
      if (g && varies.has(v)) accumulate(v, g);
    });
  }
  const out: Value[] = [];
  for (const w of f.weights) {
    const g = ct.get(w);
    if (!g) continue;
    f.results.push({ name: `grad.${w.name}`, value: g.type.dtype === "f32" ? g : b.op1("cast", [g], { to: "f32" }) });
    out.push(w);
  }
  return out;
}

export const autodiff: Pass = {
  name: "autodiff",
  summary: "appends the gradient of the entry's first result (summed) with respect to every float weight it depends on, as results grad.<weight>",
  options: {},
  run(m: Module) {
    const f = m.entry;
    if (!f) throw new LingcError(`autodiff: module @${m.name} has no entry function`);
    differentiate(m, f);
  },
};
