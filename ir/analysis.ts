/**
 * Cached analyses (MLIR's analysis manager): a pass asks for what it needs (use lists, liveness, the
 * call graph, the cost of each function) and gets it computed once; after a pass, the pass manager
 * drops every analysis the pass does not declare it preserves. Analyses are plain functions of the
 * module, so a stale one can only come from a pass that claims to preserve what it changed.
 */
import type { Func, Module, Op, Value } from "./module";
import { getOp, type Cost, type ShapedType } from "./ops";
import { defaultCost } from "./ops/registry";
import { Uses } from "./rewrite";
import { unifyTypes } from "./unify";
import type { Dim } from "./dim";

/**
 * The ops of a function that read only its weights, directly or through other such ops (not calls,
 * not ops without operands): a cast of a weight to the compute dtype, an FP8 quantization of a
 * weight. They run once, when the program loads, and their results are kept: the interpreter runs
 * them so, and the cost model counts them as free per run.
 */
export function loadTimeOps(f: Func): Set<Op> {
  const fromWeights = new Set<Value>(f.weights);
  const ops = new Set<Op>();
  for (const op of f.body) {
    if (op.opName === "call" || op.operands.length === 0 || !op.operands.every((v) => fromWeights.has(v))) continue;
    ops.add(op);
    for (const r of op.results) fromWeights.add(r);
  }
  return ops;
}

export interface Analysis<T> {
  name: string;
  compute(m: Module, am: AnalysisManager): T;
}

export class AnalysisManager {
  private readonly cache = new Map<Analysis<unknown>, unknown>();

  constructor(readonly module: Module) {}

  get<T>(a: Analysis<T>): T {
    if (this.cache.has(a)) return this.cache.get(a) as T;
    const v = a.compute(this.module, this);
    this.cache.set(a, v);
    return v;
  }

  /** Drops every cached analysis except the preserved ones ("all": keeps everything). */
  invalidate(preserved: readonly Analysis<unknown>[] | "all" = []): void {
    if (preserved === "all") return;
    for (const k of [...this.cache.keys()]) if (!preserved.includes(k)) this.cache.delete(k);
  }

  isCached(a: Analysis<unknown>): boolean {
    return this.cache.has(a);
  }
}

/** Use lists of every function. */
export const UsesAnalysis: Analysis<Map<Func, Uses>> = {
  name: "uses",
  compute: (m) => new Map(m.functions.map((f) => [f, new Uses(f)])),
};

/** For each function: the position of each value's last use (Infinity when returned). */
export const LivenessAnalysis: Analysis<Map<Func, Map<Value, number>>> = {
  name: "liveness",
  compute(m) {
    const out = new Map<Func, Map<Value, number>>();
    for (const f of m.functions) {
      const last = new Map<Value, number>();
      f.body.forEach((op, i) => op.operands.forEach((v) => last.set(v, i)));
      for (const r of f.results) last.set(r.value, Infinity);
      out.set(f, last);
    }
    return out;
  },
};

/** Who calls each function (the call sites, in their functions). */
export const CallGraphAnalysis: Analysis<Map<Func, { caller: Func; op: Op }[]>> = {
  name: "call graph",
  compute(m) {
    const out = new Map<Func, { caller: Func; op: Op }[]>(m.functions.map((f) => [f, []]));
    for (const f of m.functions) {
      for (const op of f.body) {
        const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
        if (callee) out.get(callee)!.push({ caller: f, op });
      }
    }
    return out;
  },
};

export interface FunctionCost extends Cost {
  /** Ops executed by one call (calls expanded). */
  ops: number;
}

/** Costs per function (one call, calls expanded) and per op (calls: their callee's whole cost). */
export interface CostWalk {
  functions: Map<Func, FunctionCost>;
  ops: Map<Op, FunctionCost>;
}

/**
 * The cost of one call of each function (FLOPs and bytes from the op table's cost rules, calls
 * expanded through their callees) and of each op, for concrete values of the entry's symbols. A
 * function called from several sites is costed at its first call's sizes.
 */
export function costWalk(m: Module, bindings: ReadonlyMap<string, number>): CostWalk {
  const functions = new Map<Func, FunctionCost>();
  const ops = new Map<Op, FunctionCost>();
  const shaped = (t: { dtype: ShapedType["dtype"]; shape: readonly Dim[] }, b: ReadonlyMap<string, number>): ShapedType => ({ dtype: t.dtype, shape: t.shape.map((d) => d.eval(b)) });
  const visit = (f: Func, b: ReadonlyMap<string, number>): FunctionCost => {
    const total: FunctionCost = { flops: 0, bytesRead: 0, bytesWritten: 0, ops: 0 };
    const first = !functions.has(f);
    for (const op of f.body) {
      let c: FunctionCost;
      if (op.opName === "call") {
        const callee = m.getFunc(op.callee!)!;
        const u = unifyTypes(
          callee.params.map((p) => p.type),
          op.operands.map((v) => v.type),
          callee.params.map((p) => p.name ?? ""),
        );
        const inner = new Map(b);
        if (!("problem" in u)) for (const [k, d] of u.bindings) inner.set(k, d.eval(b));
        c = visit(callee, inner);
      } else {
        const def = getOp(op.opName)!;
        const ins = op.operands.map((v) => shaped(v.type, b));
        const outs = op.results.map((v) => shaped(v.type, b));
        c = { ...(def.cost ? def.cost(ins, outs, op.attrs) : defaultCost(ins, outs)), ops: 1 };
      }
      if (first) ops.set(op, c);
      total.flops += c.flops;
      total.bytesRead += c.bytesRead;
      total.bytesWritten += c.bytesWritten;
      total.ops += c.ops;
    }
    if (first) functions.set(f, total);
    return total;
  };
  if (m.entry) visit(m.entry, bindings);
  return { functions, ops };
}

/**
 * The cost of one call of each function for concrete values of the entry's symbols (see costWalk).
 * The analysis is made per set of values: `costAnalysis(new Map([["B", 1], ["S", 1], ["P", 2048]]))`.
 */
export function costAnalysis(bindings: ReadonlyMap<string, number>): Analysis<Map<Func, FunctionCost>> {
  return {
    name: `cost(${[...bindings].map(([k, v]) => `${k}=${v}`).join(",")})`,
    compute: (m) => costWalk(m, bindings).functions,
  };
}
