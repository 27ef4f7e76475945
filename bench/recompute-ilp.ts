/**
 * The recompute problem (compiler/passes/recompute-plan.ts) as an integer linear program, solved
 * exactly by HiGHS (the `highs` npm package, a development dependency): the reference the planner is
 * measured against in bench/recompute.ts and tests/passes/recompute-plan.test.ts.
 * Variables: k_v (keep value v), r_o (rerun op o), binary. Minimize sum flops_o r_o subject to: each
 * needed value available (k_v + r_def(v) >= 1), each operand of a rerun op available
 * (k_u + r_def(u) - r_o >= 0), kept bytes <= budget.
 */
import loadHighs from "highs";
import { candidates, evaluate, type Plan, type PlanProblem } from "../compiler/passes/recompute-plan";

/** The exact optimum under `budget` bytes: min sum(flops * rerun) s.t. needed values available, operands of rerun ops available, kept bytes <= budget. */
export async function ilpOptimum(p: PlanProblem, budget: number): Promise<{ plan: Plan; status: string; ms: number }> {
  const highs = await loadHighs();
  const cand = new Set(candidates(p));
  const k = (v: number) => `k${v}`;
  const r = (o: number) => `r${o}`;
  // FLOPs and bytes in millionths of the layer's totals: coefficients of order 1 to 1e6 whatever the
  // layer's size (HiGHS drops coefficients below 1e-9 and stops within an absolute gap of 1e-6).
  const totalFlops = p.ops.reduce((s, o) => s + o.flops, 0) || 1;
  const totalBytes = p.values.reduce((s, v) => s + v.bytes, 0) || 1;
  const gf = (x: number) => ((1e6 * x) / totalFlops).toPrecision(15);
  const mib = (x: number) => ((1e6 * x) / totalBytes).toPrecision(15);
  const avail = (v: number) => {
    const val = p.values[v]!;
    if (val.def === undefined) return undefined; // always there
    return cand.has(v) ? `${k(v)} + ${r(val.def)}` : r(val.def);
  };
  const rows: string[] = [];
  for (const v of p.needed) {
    const a = avail(v);
    if (a) rows.push(`${a} >= 1`);
  }
  p.ops.forEach((op, o) => {
    for (const u of op.operands) {
      const a = avail(u);
      if (a) rows.push(`${a} - ${r(o)} >= 0`);
    }
  });
  const bytes = [...cand].filter((v) => p.values[v]!.bytes > 0).map((v) => `${mib(p.values[v]!.bytes)} ${k(v)}`);
  if (bytes.length) rows.push(`${bytes.join(" + ")} <= ${mib(budget)}`);
  const vars = [...[...cand].map(k), ...p.ops.map((_, o) => r(o))];
  const objective = p.ops.map((op, o) => `${gf(op.flops)} ${r(o)}`).join(" + ");
  const lp = `Minimize\n obj: ${objective}\nSubject To\n${rows.map((x, i) => ` c${i}: ${x}`).join("\n")}\nBinary\n ${vars.join(" ")}\nEnd\n`;
  const t0 = performance.now();
  const sol = highs.solve(lp, { output_flag: false, mip_rel_gap: 0, mip_abs_gap: 0 });
  const ms = performance.now() - t0;
  const kept = [...cand].filter((v) => ((sol.Columns[k(v)] as { Primal?: number } | undefined)?.Primal ?? 0) > 0.5);
  return { plan: evaluate(p, kept), status: sol.Status, ms };
}

