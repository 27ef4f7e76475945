/**
 * The recompute planner (compiler/passes/recompute-plan.ts) against brute force on small random
 * layer graphs. The brute force enumerates which ops the backward reruns (the planner decides which
 * values it keeps): every value the backward needs, and every operand of a rerun op, must come from
 * a rerun op, a parameter, or be kept. Checked: the min-cut Lagrangian step is exact for any price,
 * the plan under a budget is optimal (exhaustive up to 16 candidates), the hull is monotone; and on
 * larger graphs (more than 16 candidates: the search) the plan is within 1% of the total FLOPs of the
 * optimum that an ILP (HiGHS, bench/recompute-ilp.ts) finds.
 */
import { describe, expect, it } from "vitest";
import { candidates, evaluate, EXACT_LIMIT, hull, lagrangianPlan, planFor, type PlanProblem, type PlanValue } from "../../compiler/passes/recompute-plan";
import { ilpOptimum } from "../../bench/recompute-ilp";
import { rng } from "../support/fd";

function randomProblem(rand: () => number, nOps: number, nNeeded: number): PlanProblem {
  const values: PlanValue[] = [];
  const nParams = 1 + Math.floor(rand() * 2);
  for (let i = 0; i < nParams; i++) values.push({ bytes: 10 + Math.floor(rand() * 40), keepable: false });
  const ops = [];
  for (let o = 0; o < nOps; o++) {
    const free = rand() < 0.15;
    const operands = Array.from({ length: 1 + Math.floor(rand() * 2) }, () => Math.floor(rand() * values.length));
    const results = Array.from({ length: rand() < 0.15 ? 2 : 1 }, () => {
      values.push({ bytes: 1 + Math.floor(rand() * 60), def: o, keepable: !free });
      return values.length - 1;
    });
    ops.push({ flops: free ? 0 : 1 + Math.floor(rand() * 100), operands, results });
  }
  const needed = [...new Set(Array.from({ length: nNeeded + Math.floor(rand() * nNeeded) }, () => nParams + Math.floor(rand() * (values.length - nParams))))];
  return { ops, values, needed };
}

/** min over rerun sets R of flops(R) + price * kept bytes, with kept bytes <= budget (price 0: plain budget). */
function bruteForce(p: PlanProblem, budget: number, price = 0): { flops: number; bytes: number; cost: number } {
  let best = { flops: Infinity, bytes: Infinity, cost: Infinity };
  for (let mask = 0; mask < 1 << p.ops.length; mask++) {
    const rerun = (o: number) => (mask & (1 << o)) !== 0;
    const kept = new Set<number>();
    let ok = true;
    const require = (v: number) => {
      const val = p.values[v]!;
      if (val.def === undefined || rerun(val.def)) return;
      if (!val.keepable) ok = false;
      else kept.add(v);
    };
    p.needed.forEach(require);
    p.ops.forEach((op, o) => rerun(o) && op.operands.forEach(require));
    if (!ok) continue;
    let flops = 0;
    p.ops.forEach((op, o) => rerun(o) && (flops += op.flops));
    const bytes = [...kept].reduce((s, v) => s + p.values[v]!.bytes, 0);
    if (bytes > budget) continue;
    const cost = flops + price * bytes;
    if (cost < best.cost || (cost === best.cost && bytes < best.bytes)) best = { flops, bytes, cost };
  }
  return best;
}

const problems = (count: number, nOps: number, seed: number, nNeeded = 2) => {
  const rand = rng(seed);
  return Array.from({ length: count }, () => randomProblem(rand, nOps, nNeeded));
};

describe("the recompute planner", () => {
  it("the min-cut step minimizes FLOPs + price x bytes exactly", () => {
    for (const p of problems(40, 10, 11)) {
      for (const price of [0.01, 0.3, 1, 2.5, 40]) {
        const plan = lagrangianPlan(p, price);
        expect(plan.flops + price * plan.bytes).toBeCloseTo(bruteForce(p, Infinity, price).cost, 9);
      }
    }
  });

  it("under a budget, the plan is the optimum (fewest recomputed FLOPs)", () => {
    for (const p of problems(40, 11, 12)) {
      const most = evaluate(p, candidates(p)).bytes;
      for (const frac of [0, 0.2, 0.5, 0.8, 1]) {
        const plan = planFor(p, frac * most);
        expect(plan.bytes).toBeLessThanOrEqual(frac * most);
        expect(plan.flops, `budget ${frac * most}`).toBe(bruteForce(p, frac * most).flops);
      }
    }
  });

  it("the hull runs from no recompute to the fewest bytes, each plan optimal for its own bytes", () => {
    for (const p of problems(30, 10, 13)) {
      const h = hull(p);
      expect(h[0]!.flops).toBe(bruteForce(p, Infinity).flops);
      for (let i = 1; i < h.length; i++) {
        expect(h[i]!.bytes).toBeLessThan(h[i - 1]!.bytes);
        expect(h[i]!.flops).toBeGreaterThan(h[i - 1]!.flops);
      }
      for (const plan of h) expect(plan.flops).toBe(bruteForce(p, plan.bytes).flops);
    }
  });

  it("the search (used above 16 candidates) is within 1% of the total FLOPs of the ILP optimum", async () => {
    let compared = 0;
    for (const p of problems(20, 40, 14, 8)) {
      if (candidates(p).length <= EXACT_LIMIT) continue;
      const total = p.ops.reduce((s, o) => s + o.flops, 0);
      const most = evaluate(p, candidates(p)).bytes;
      for (const frac of [0.25, 0.5, 0.75]) {
        const plan = planFor(p, frac * most);
        const best = await ilpOptimum(p, frac * most);
        expect(best.status).toBe("Optimal");
        expect(plan.bytes).toBeLessThanOrEqual(frac * most);
        expect(plan.flops - best.plan.flops, `budget ${frac * most}`).toBeLessThanOrEqual(0.01 * total);
        compared++;
      }
    }
    expect(compared).toBeGreaterThanOrEqual(30);
  });
});
