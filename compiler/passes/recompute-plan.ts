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
 *  2. For a budget between two hull plans: local search (add one kept value and drop up to two
 *     others to fit, drop one, or add two, while it helps) from the best six of: the hull plans and
 *     given seed plans under the budget, and the three hull plans just above it shrunk greedily (drop
 *     the value freeing bytes for the fewest FLOPs) until they fit; and from the best three of: the
 *     nearest of those without one of its values, shrunk, then refilled greedily (ruin and recreate).
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
  const nv = p.values.length;
  const keep = new Uint8Array(nv);
  for (const v of kept) if (p.values[v]!.keepable) keep[v] = 1;
  const seen = new Uint8Array(nv);
  const rerun = new Uint8Array(p.ops.length);
  const used: number[] = [];
  const stack = [...p.needed];
  while (stack.length) {
    const v = stack.pop()!;
    if (seen[v]) continue;
    seen[v] = 1;
    const def = p.values[v]!.def;
    if (def === undefined) continue;
    if (keep[v]) {
      used.push(v);
      continue;
    }
    if (rerun[def]) continue;
    rerun[def] = 1;
    for (const u of p.ops[def]!.operands) if (!seen[u]) stack.push(u);
  }
  // A kept value whose op reruns anyway (for another of its results) is not worth its bytes.
  const keptList = used.filter((v) => !rerun[p.values[v]!.def!]).sort((a, b) => a - b);
  const rerunList: number[] = [];
  let flops = 0;
  rerun.forEach((r, o) => {
    if (!r) return;
    rerunList.push(o);
    flops += p.ops[o]!.flops;
  });
  let bytes = 0;
  for (const v of keptList) bytes += p.values[v]!.bytes;
  return { kept: keptList, rerun: rerunList, bytes, flops };
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

/** Local search from a plan: add a kept value (dropping up to two others to fit), drop one, or add two, while FLOPs fall and the budget holds. */
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
    for (const v of outside) {
      // Add v, dropping nothing, one or two kept values so that it fits (swaps of one for up to two).
      const added = evaluate(p, [...best.kept, v]);
      if (added.bytes <= budget) {
        consider(added.kept);
        continue;
      }
      if (added.flops >= next.flops) continue;
      const kept = added.kept.filter((x) => x !== v);
      kept.forEach((u, i) => {
        const one = added.kept.filter((x) => x !== u);
        if (added.bytes - p.values[u]!.bytes <= budget) consider(one);
        else for (const w of kept.slice(i + 1)) if (added.bytes - p.values[u]!.bytes - p.values[w]!.bytes <= budget) consider(one.filter((x) => x !== w));
      });
    }
    for (const u of best.kept) consider(best.kept.filter((x) => x !== u));
    // Two values that only help together (say, both operands of an op that then needs no rerun).
    if (next === best) outside.forEach((v, i) => outside.slice(i + 1).forEach((w) => consider([...best.kept, v, w])));
    if (next === best) break;
    best = next;
  }
  return best;
}

/**
 * The plan under `budget` kept bytes (module comment: exact up to EXACT_LIMIT candidates, else hull +
 * local search). `seeds` are other plans (kept sets) it starts from too, such as the standard policies
 * (full-layer or selective recompute): the result is never worse than a seed that fits.
 */
export function planFor(p: PlanProblem, budget: number, seeds: readonly (readonly number[])[] = []): Plan {
  return candidates(p).length <= EXACT_LIMIT ? exhaustivePlan(p, budget) : searchPlan(p, budget, seeds);
}

/** Step 2 of the module comment: hull plans and seeds, shrunk to fit where above the budget, then local search. */
export function searchPlan(p: PlanProblem, budget: number, seeds: readonly (readonly number[])[] = []): Plan {
  const plans = [...hull(p), ...seeds.map((k) => evaluate(p, k))];
  // Hull plans just above the budget, shrunk to fit: the optimum often lies between two hull points.
  const above = plans.filter((x) => x.bytes > budget).sort((a, b) => a.bytes - b.bytes).slice(0, 3);
  const starts = [...plans.filter((x) => x.bytes <= budget), ...above.map((x) => shrink(p, x, budget))];
  // Ruin and recreate: the nearest plan above the budget without one of its values, shrunk to fit,
  // then refilled greedily.
  const recreated = above[0] ? above[0].kept.map((u) => fill(p, shrink(p, evaluate(p, above[0]!.kept.filter((x) => x !== u)), budget), budget)) : [];
  // The best few of each kind (one kind's good starts do not crowd out the other's).
  const best = (xs: Plan[], n: number) => [...xs].sort((a, b) => (better(a, b) ? -1 : 1)).slice(0, n);
  const results = [...best(starts, 6), ...best(recreated, 3)].map((x) => improve(p, x, budget));
  return results.reduce((a, b) => (better(b, a) ? b : a), evaluate(p, []));
}

/** Adds kept values, each time the one that saves the most FLOPs per byte and fits, while any saves. */
function fill(p: PlanProblem, plan: Plan, budget: number): Plan {
  const cand = candidates(p);
  let cur = plan;
  for (;;) {
    let best: Plan | undefined;
    let bestRate = 0;
    const keep = new Set(cur.kept);
    for (const v of cand) {
      if (keep.has(v)) continue;
      const next = evaluate(p, [...cur.kept, v]);
      if (next.bytes > budget || next.flops >= cur.flops) continue;
      const rate = (cur.flops - next.flops) / Math.max(next.bytes - cur.bytes, 1e-9);
      if (rate > bestRate) {
        best = next;
        bestRate = rate;
      }
    }
    if (!best) return cur;
    cur = best;
  }
}

/** Drops kept values, each time the one that frees its bytes for the fewest extra FLOPs, until the plan fits. */
function shrink(p: PlanProblem, plan: Plan, budget: number): Plan {
  let cur = plan;
  while (cur.bytes > budget && cur.kept.length) {
    let best: Plan | undefined;
    let bestRate = Infinity;
    for (const u of cur.kept) {
      const next = evaluate(p, cur.kept.filter((x) => x !== u));
      const freed = cur.bytes - next.bytes;
      const rate = freed > 0 ? (next.flops - cur.flops) / freed : Infinity;
      if (rate < bestRate || !best) {
        best = next;
        bestRate = rate;
      }
    }
    cur = best!;
  }
  return cur;
}

/** The least bytes that need no recompute (the top of the hull): what budgets are fractions of. */
export function noRecompute(p: PlanProblem): Plan {
  const totalBytes = p.values.reduce((s, v) => s + v.bytes, 0);
  return lagrangianPlan(p, 0.5 / Math.max(totalBytes, 1));
}
