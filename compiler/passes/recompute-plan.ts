/**
 * The recompute planner on an abstract problem: a layer's forward ops (FLOPs each), the values they
 * make (bytes each), and the values its backward reads. A plan keeps some values from the forward
 * until the backward; every other value the backward needs is recomputed there, with the ops that
 * make it, from kept values, parameters and weights. Goal: fewest recomputed FLOPs with the kept
 * bytes under a budget.
 *
 * Method (planFor):
 *  1. Lagrangian relaxation, solved exactly by a minimum cut: for a price `lambda` per kept byte,
 *     min recomputed FLOPs + lambda * kept bytes is a closure problem (each op is "rerun" or not, each
 *     value "available in the backward" or not; an available value is kept unless its op reruns; a
 *     rerun op needs its operands available). Sweeping lambda over its breakpoints (Eisner-Severance)
 *     gives every plan on the lower convex hull of (bytes, FLOPs): each optimal for its own memory.
 *  2. For a budget between two hull plans, the best hull plan under it, improved by local search
 *     (add, drop or swap one kept value while it helps and fits).
 *  3. Up to EXACT_LIMIT candidate values: every subset is tried, so the plan is optimal.
 * Step 2's plans are checked against an ILP optimum in bench/recompute-ilp.ts (the results file).
 */
import { FlowGraph } from "./maxflow";

export interface PlanOp {
  flops: number;
  operands: readonly number[];
  results: readonly number[];
}

export interface PlanValue {
  bytes: number;
  /** Defining op (index in ops), or undefined for a value the backward always has (parameter, weight). */
  def?: number;
  /** Whether keeping it can help: false for results of free ops (views, constants: recomputed at no cost). */
  keepable: boolean;
}

export interface PlanProblem {
  ops: readonly PlanOp[];
  values: readonly PlanValue[];
  /** Values the backward reads. */
  needed: readonly number[];
}

export interface Plan {
  kept: number[];
  /** Ops rerun in the backward. */
  rerun: number[];
  bytes: number;
  flops: number;
}

/** Up to this many candidate values, the planner tries every subset (exact). */
export const EXACT_LIMIT = 16;

/**
 * What keeping `kept` costs: the ops the backward must rerun (closure of the needed values not kept,
 * through operands, stopping at kept values and at values it always has) and the bytes kept. Kept
 * values nothing reads are dropped from the plan.
 */
export function evaluate(p: PlanProblem, kept: Iterable<number>): Plan {
  const keep = new Set(kept);
  const rerun = new Set<number>();
  const used = new Set<number>();
  const stack = [...p.needed];
  const seen = new Set<number>();
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    const def = p.values[v]!.def;
    if (def === undefined) continue;
    if (keep.has(v) && p.values[v]!.keepable) {
      used.add(v);
      continue;
    }
    if (rerun.has(def)) continue;
    rerun.add(def);
    stack.push(...p.ops[def]!.operands);
  }
  // A kept value whose op reruns anyway (for another of its results) is not worth its bytes.
  const keptList = [...used].filter((v) => !rerun.has(p.values[v]!.def!)).sort((a, b) => a - b);
  return {
    kept: keptList,
    rerun: [...rerun].sort((a, b) => a - b),
    bytes: keptList.reduce((s, v) => s + p.values[v]!.bytes, 0),
    flops: [...rerun].reduce((s, o) => s + p.ops[o]!.flops, 0),
  };
}

/** The values a plan may keep: keepable values some needed value depends on. */
export function candidates(p: PlanProblem): number[] {
  return evaluate(p, []).rerun.flatMap((o) => p.ops[o]!.results.filter((v) => p.values[v]!.keepable));
}

/** The plan minimizing FLOPs + lambda * bytes (exact: a minimum cut). */
export function lagrangianPlan(p: PlanProblem, lambda: number): Plan {
  // Nodes: source 0, sink 1, then one per op ("rerun") and one per value ("available").
  const opNode = (o: number) => 2 + o;
  const valueNode = (v: number) => 2 + p.ops.length + v;
  const g = new FlowGraph(2 + p.ops.length + p.values.length);
  p.ops.forEach((op, o) => {
    g.edge(0, opNode(o), op.flops); // cut when o reruns
    for (const u of op.operands) if (p.values[u]!.def !== undefined) g.edge(valueNode(u), opNode(o), Infinity);
    for (const r of op.results) g.edge(opNode(o), valueNode(r), p.values[r]!.keepable ? lambda * p.values[r]!.bytes : Infinity);
  });
  for (const v of p.needed) if (p.values[v]!.def !== undefined) g.edge(valueNode(v), 1, Infinity);
  const { sourceSide } = g.minCut(0, 1);
  const kept: number[] = [];
  p.values.forEach((val, v) => {
    if (val.def !== undefined && !sourceSide[valueNode(v)] && sourceSide[opNode(val.def)]) kept.push(v);
  });
  return evaluate(p, kept);
}

/** Every plan on the lower convex hull of (bytes, FLOPs), by bytes descending (no recompute first). */
export function hull(p: PlanProblem): Plan[] {
  const totalFlops = p.ops.reduce((s, o) => s + o.flops, 0);
  const totalBytes = p.values.reduce((s, v) => s + v.bytes, 0);
  // lambda below 1/totalBytes: no byte is worth a FLOP, so min FLOPs, then min bytes among those; lambda
  // above totalFlops: min bytes.
  const cheap = lagrangianPlan(p, 0.5 / Math.max(totalBytes, 1));
  const tight = lagrangianPlan(p, 2 * Math.max(totalFlops, 1));
  const out: Plan[] = [cheap];
  const between = (a: Plan, b: Plan, depth: number) => {
    if (depth > 60 || a.bytes <= b.bytes) return;
    const lambda = (b.flops - a.flops) / (a.bytes - b.bytes);
    const c = lagrangianPlan(p, lambda);
    const onLine = c.flops + lambda * c.bytes >= a.flops + lambda * a.bytes - 1e-9 * (a.flops + lambda * a.bytes + 1);
    if (onLine) return;
    between(a, c, depth + 1);
    out.push(c);
    between(c, b, depth + 1);
  };
  between(cheap, tight, 0);
  if (tight.bytes < cheap.bytes) out.push(tight);
  return out;
}

const better = (a: Plan, b: Plan) => a.flops < b.flops || (a.flops === b.flops && a.bytes < b.bytes);

/** Tries every subset of the candidates: the optimum under the budget (small problems only). */
export function exhaustivePlan(p: PlanProblem, budget: number): Plan {
  const cand = candidates(p);
  if (cand.length > 24) throw new Error(`exhaustivePlan: ${cand.length} candidates is too many to enumerate`);
  let best = evaluate(p, []);
  for (let mask = 1; mask < 1 << cand.length; mask++) {
    const kept = cand.filter((_, i) => mask & (1 << i));
    let bytes = 0;
    for (const v of kept) bytes += p.values[v]!.bytes;
    if (bytes > budget) continue;
    const plan = evaluate(p, kept);
    if (better(plan, best)) best = plan;
  }
  return best;
}

/** Local search from a plan: add, drop or swap one kept value while FLOPs fall and the budget holds. */
function improve(p: PlanProblem, start: Plan, budget: number): Plan {
  const cand = candidates(p);
  let best = start;
  for (let round = 0; round < 4 * cand.length + 8; round++) {
    const keep = new Set(best.kept);
    const outside = cand.filter((v) => !keep.has(v));
    let next = best;
    const consider = (kept: number[]) => {
      const plan = evaluate(p, kept);
      if (plan.bytes <= budget && better(plan, next)) next = plan;
    };
    for (const v of outside) consider([...best.kept, v]);
    for (const u of best.kept) {
      const rest = best.kept.filter((x) => x !== u);
      consider(rest);
      for (const v of outside) consider([...rest, v]);
    }
    if (next === best) break;
    best = next;
  }
  return best;
}

/** The plan under `budget` kept bytes (module comment: exact up to EXACT_LIMIT candidates, else hull + local search). */
export function planFor(p: PlanProblem, budget: number): Plan {
  if (candidates(p).length <= EXACT_LIMIT) return exhaustivePlan(p, budget);
  const plans = hull(p).filter((x) => x.bytes <= budget);
  const start = plans.reduce((a, b) => (better(b, a) ? b : a), evaluate(p, []));
  return improve(p, start, budget);
}

/** The least bytes that need no recompute (the top of the hull): what budgets are fractions of. */
export function noRecompute(p: PlanProblem): Plan {
  const totalBytes = p.values.reduce((s, v) => s + v.bytes, 0);
  return lagrangianPlan(p, 0.5 / Math.max(totalBytes, 1));
}
