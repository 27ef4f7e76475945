/**
 * Recompute report (issue 11): for each layer function of a model's train graph (default Ling-1T,
 * sequence 4096, micro-batch 1, bf16 as the config says), the activation bytes kept for the backward
 * and the extra (recomputed) FLOPs of: no recompute, full-layer recompute, Megatron-style selective
 * recompute (core attention), the recompute pass's plans at 25%, 50% and 75% of the no-recompute
 * bytes, and the exact optimum at those budgets from an ILP (HiGHS, the `highs` npm package) solved
 * once per budget. Also the smallest budget at which the plan costs at most 5% extra FLOPs.
 * Run with `npm run bench:recompute` (options: --model NAME, --seq N, --batch N, --layer NAME, --sweep).
 */
import "../ir/ops";
import { buildLing2 } from "../models/ling2";
import { resolveModel } from "../models/resolve";
import { parsePipeline } from "../compiler/passes/pipeline";
import { runPasses } from "../compiler/passes/manager";
import { costAnalysis, AnalysisManager } from "../ir/analysis";
import { fmtBytes, fmtFlops, layerProblem, selectiveKept, type LayerProblem } from "../compiler/passes/recompute";
import { candidates, evaluate, noRecompute, planFor, type Plan } from "../compiler/passes/recompute-plan";
import { ilpOptimum } from "./recompute-ilp";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const model = arg("model", "ling-1t");
const at = new Map([
  ["B", Number(arg("batch", "1"))],
  ["S", Number(arg("seq", "4096"))],
]);
const only = arg("layer", "");

const m = buildLing2(resolveModel(model).config, "train");
runPasses(m, parsePipeline("autodiff,cse,dce"));
const costs = new AnalysisManager(m).get(costAnalysis(at));
const callFlops = (f: import("../ir/module").Func) => costs.get(f)!.flops;

const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(1)}%`;
console.log(`# Recompute plans: ${model}, micro-batch ${at.get("B")}, sequence ${at.get("S")}\n`);
console.log(`Command: \`npm run bench:recompute -- --model ${model} --seq ${at.get("S")} --batch ${at.get("B")}\``);
console.log(`Bytes: activations kept from the forward until the backward, beyond the layer's input (kept in every row). Extra FLOPs: forward ops the backward reruns, as a share of the layer's forward FLOPs.\n`);

for (const bf of m.functions.filter((f) => f.attrs["role"] === "backward")) {
  if (only && bf.attrs["of"] !== only) continue;
  const lp: LayerProblem = layerProblem(m, bf, at, callFlops);
  const p = lp.problem;
  const t0 = performance.now();
  const full = noRecompute(p);
  const selective = evaluate(p, selectiveKept(lp, full));
  const none = evaluate(p, []);
  const seeds = [[], selectiveKept(lp, full)];
  const row = (name: string, plan: Plan, extra = "") =>
    `| ${name} | ${fmtBytes(plan.bytes)} | ${pct(plan.bytes, full.bytes)} | ${fmtFlops(plan.flops)} | ${pct(plan.flops, lp.forwardFlops)} |${extra}`;
  console.log(`## @${lp.forward.name} (forward ${fmtFlops(lp.forwardFlops)}; ${p.ops.length} ops, ${candidates(p).length} values it could keep)\n`);
  console.log(`| policy | kept bytes | of no recompute | extra FLOPs | of forward | ILP optimum (extra FLOPs) | plan - optimum, of forward |`);
  console.log(`|---|---|---|---|---|---|---|`);
  console.log(row("no recompute", full, " | | |"));
  console.log(row("full-layer recompute", none, " | | |"));
  console.log(row("selective (core attention)", selective, " | | |"));
  const plans: string[] = [];
  let planMs = 0;
  // --sweep: every 5% from 95% down to 5% (the README's gap figure), instead of the three budgets.
  const fracs = process.argv.includes("--sweep") ? Array.from({ length: 19 }, (_, i) => (95 - 5 * i) / 100) : [0.75, 0.5, 0.25];
  for (const frac of fracs) {
    const t = performance.now();
    const plan = planFor(p, frac * full.bytes, seeds);
    planMs += performance.now() - t;
    const ilp = await ilpOptimum(p, frac * full.bytes);
    const gap = (plan.flops - ilp.plan.flops) / lp.forwardFlops;
    plans.push(row(`plan at ${Math.round(frac * 100)}%`, plan, ` ${fmtFlops(ilp.plan.flops)} (${ilp.status}, ${ilp.ms.toFixed(0)} ms) | ${(100 * gap).toFixed(3)}% |`));
    for (const base of [selective, none]) {
      if (base.bytes <= frac * full.bytes && plan.flops > base.flops) plans.push(`| ^ WORSE than a standard policy at less memory | | | | | | |`);
    }
  }
  console.log(plans.join("\n"));
  // The smallest budget (1% steps) at which the plan reruns at most 5% of the forward's FLOPs.
  let goal: Plan | undefined;
  let goalFrac = 0;
  for (let f = 1; f <= 100 && !goal; f++) {
    const plan = planFor(p, (f / 100) * full.bytes, seeds);
    if (plan.flops <= 0.05 * lp.forwardFlops) {
      goal = plan;
      goalFrac = f;
    }
  }
  if (goal) console.log(row(`smallest budget with <= 5% extra: ${goalFrac}%`, goal, " | | |"));
  console.log(`\nPlanning time (no-recompute plan, the three budgets): ${(performance.now() - t0 - 0).toFixed(0)} ms in all including the ILPs; the planner alone ${planMs.toFixed(0)} ms for three budgets.`);
  console.log(`Kept at 50%: ${planFor(p, 0.5 * full.bytes, seeds).kept.map((i) => lp.labels[i]).join(", ")}\n`);
}
