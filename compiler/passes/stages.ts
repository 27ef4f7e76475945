/**
 * pipeline{stages=N}: cuts the entry into N pipeline stages (issue 12). The entry's schedule units
 * (stages-units.ts: layer calls and the runs of ops between them) are balanced by the exact
 * min-max partition of their predicted times at the H200's rates (`at` sizes, default B=1;S=4096),
 * or cut where `cuts` says (unit indexes where stages 1..N-1 start). Each stage's ops are outlined
 * into a function `@<entry>.stage<k>` (attributes {role = "stage", stage = "k"}) that calls the
 * same layer functions (folded layers stay folded), and every value a stage reads from an earlier
 * one goes through `transfer(v) {from, to}` in the entry, except what ops reading only weights make
 * (a weight's cast to the compute dtype: each stage makes its own at load, stageOps). The module
 * computes what it computed.
 */
import { LingcError } from "../../ir/errors";
import { Op, Value, type Func, type Module } from "../../ir/module";
import { loadTimeOps } from "../../ir/analysis";
import { outline } from "../../ir/rewrite";
import { CUDA_SM90A } from "../../ir/target/cuda";
import { minMaxPartition } from "./stages-partition";
import { scheduleUnits, unitGroups } from "./stages-units";
import type { Pass } from "./pass";
import { dceFunc } from "./dce";
import { optionReader } from "./pipeline";
import { parseSizes } from "./recompute";

export function cutIntoStages(m: Module, stages: number, at: ReadonlyMap<string, number>, cuts?: readonly number[]): number[] {
  const f = m.entry;
  if (!f) throw new LingcError(`pipeline: module @${m.name} has no entry function`);
  if (f.body.some((op) => op.opName === "call" && m.getFunc(op.callee!)?.attrs["role"] === "stage")) throw new LingcError(`pipeline: @${f.name} is already cut into stages`);
  const groups = unitGroups(m, f);
  if (stages < 1 || stages > groups.length) throw new LingcError(`pipeline: ${stages} stages for ${groups.length} schedule units (layer calls and the ops between them)`);
  let bounds: number[];
  if (cuts) {
    bounds = [0, ...cuts, groups.length];
    if (bounds.length !== stages + 1 || bounds.some((b, i) => i > 0 && b <= bounds[i - 1]!)) throw new LingcError(`pipeline: cuts=${cuts.join(",")} must be ${stages - 1} increasing unit indexes between 1 and ${groups.length - 1}`);
  } else {
    const units = scheduleUnits(m, at, CUDA_SM90A.rates);
    const plan = minMaxPartition({ seconds: units.map((u) => u.seconds), sendSeconds: units.map((u) => u.cutBytes / CUDA_SM90A.rates.linkBandwidth) }, stages)!;
    bounds = plan.bounds;
  }
  // Where it cut, on the module: a program's other graphs are cut at the same units (their layers,
  // and so their KV caches, on the same stages).
  m.attrs["pipeline_cuts"] = bounds.slice(1, -1).join(",");
  // Outline each stage (callees' calls move with their ops).
  const opsOf = stageOps(f, bounds.slice(0, -1).map((b, k) => groups.slice(b, bounds[k + 1]!).flatMap((g) => g.ops)));
  const stageOf = new Map<Value, number>();
  const calls: Op[] = [];
  for (let k = 0; k < stages; k++) {
    const fn = outline(m, f, opsOf[k]!, `${f.name}.stage${k}`, { role: "stage", stage: String(k) });
    // A load-time op whose results every later stage now makes itself may be left unread here.
    dceFunc(fn);
    const call = f.body.find((op) => op.opName === "call" && op.callee === fn.name)!;
    call.results.forEach((r) => stageOf.set(r, k));
    calls.push(call);
  }
  // A value read by a later stage crosses through a transfer (one per value and reading stage).
  const sent = new Map<string, Value>();
  calls.forEach((call, k) => {
    call.operands = call.operands.map((v) => {
      const from = stageOf.get(v);
      if (from === undefined || from === k) return v;
      const key = `${from}>${k}:${f.body.indexOf(v.def!)}:${v.def!.results.indexOf(v)}`;
      let t = sent.get(key);
      if (!t) {
        t = new Value(v.type, undefined, "result");
        const op = new Op("transfer", [v], { from, to: k }, [t], "", call.loc);
        f.body.splice(f.body.indexOf(call), 0, op);
        sent.set(key, t);
      }
      return t;
    });
  });
  // A stage's parameter is named after what it receives (the sending stage's result, or the graph input).
  calls.forEach((call) => {
    const g = m.getFunc(call.callee!)!;
    const taken = new Set<string>();
    call.operands.forEach((v, j) => {
      const src = v.def?.opName === "transfer" ? v.def.operands[0]! : v;
      const made = src.def && src.def.opName === "call" ? m.getFunc(src.def.callee!)?.results[src.def.results.indexOf(src)]?.name : src.name;
      let name = made ?? g.params[j]!.name!;
      if (taken.has(name)) name = `${name}_${j}`;
      taken.add(name);
      g.params[j]!.name = name;
    });
  });
  // The entry now reads only what the stages return: the weights it declared went with them.
  dceFunc(f);
  return bounds;
}

/**
 * Each stage's ops (`ops`: stage k's, contiguous in f's body), after the ops that read only weights
 * (ir/analysis loadTimeOps: a cast to the compute dtype, an FP8 quantization at load) are made again
 * in every other stage that reads their results, placed before that stage's first op, instead of
 * being sent: they run once, at load, and a transfer would send on every run what the stage can make
 * from its own weights (Ling-1T's embedding or head cast to f32: about 5 GB).
 */
function stageOps(f: Func, ops: readonly Op[][]): Op[][] {
  const stageOfOp = new Map<Op, number>();
  ops.forEach((list, k) => list.forEach((op) => stageOfOp.set(op, k)));
  const atLoad = loadTimeOps(f);
  const copies = new Map<Op, Map<number, Op>>();
  const made: Op[][] = ops.map(() => []);
  // Value v as stage k reads it: a load-time result made in another stage is k's own copy's.
  const inStage = (v: Value, k: number): Value => {
    const d = v.def;
    if (!d || !atLoad.has(d) || stageOfOp.get(d) === k) return v;
    let per = copies.get(d);
    if (!per) copies.set(d, (per = new Map()));
    let c = per.get(k);
    if (!c) {
      // Its operands first (weights, or earlier load-time results copied the same way).
      c = new Op(d.opName, d.operands.map((o) => inStage(o, k)), { ...d.attrs }, d.results.map((r) => new Value(r.type, undefined, "result")), d.scope, d.loc, d.callee);
      // The kernel choice made before the cut (select runs in the target's pipeline) goes with it.
      c.dispatch = d.dispatch;
      c.textPos = d.textPos;
      per.set(k, c);
      made[k]!.push(c);
    }
    return c.results[d.results.indexOf(v)]!;
  };
  ops.forEach((list, k) => list.forEach((op) => (op.operands = op.operands.map((v) => inStage(v, k)))));
  made.forEach((list, k) => {
    if (list.length) f.body.splice(f.body.indexOf(ops[k]![0]!), 0, ...list);
  });
  return ops.map((list, k) => [...made[k]!, ...list]);
}

export const pipeline: Pass = {
  name: "pipeline",
  summary: "cuts the entry into pipeline stages balanced by predicted time (exact min-max partition of its layer calls), each outlined into a stage function, with transfer ops at the cuts",
  options: {
    stages: { kind: "int", doc: "number of stages" },
    at: { kind: "string", doc: "sizes the times are predicted at, NAME=N separated by ';' (default B=1;S=4096)" },
    cuts: { kind: "list", doc: "where stages 1..N-1 start (schedule unit indexes), instead of the balanced plan" },
  },
  run(m: Module, options) {
    const o = optionReader(options);
    const stages = o.int("stages", 0);
    if (stages < 1) throw new LingcError("pipeline: give stages=N (N >= 1)");
    const cutsText = o.list("cuts");
    const cuts = cutsText.length ? cutsText.map((c) => Number(c)) : undefined;
    if (cuts?.some((c) => !Number.isInteger(c))) throw new LingcError(`pipeline: cuts=${cutsText.join(",")} must be integers`);
    cutIntoStages(m, stages, parseSizes(o.string("at") ?? "B=1;S=4096"), cuts);
  },
};
