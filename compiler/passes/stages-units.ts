/**
 * The schedule units a pipeline cuts between (issue 12): the entry's layer calls, one unit each,
 * and the runs of other ops between them (the embedding before the first call, the head after the
 * last, what lies between two calls: for Ling 2.0 the main head and the MTP layer's embedding), in
 * program order. Each unit's predicted time comes from the op table's FLOPs and bytes (stages-cost.ts);
 * its memory from the weights it reads (and, for inference, the KV cache it returns); each cut
 * from the bytes of the values that cross it.
 */
import { byteSize } from "../../ir/dtype";
import type { Func, Module, Op, Value } from "../../ir/module";
import type { DeviceRates } from "../../ir/target/cuda";
import { opSeconds } from "./stages-cost";
import { loadTimeOps } from "../../ir/analysis";

export interface Unit {
  /** `embedding`, `head`, `between`, or the layer function's role and its call scope (`moe model.layers.5`). */
  name: string;
  kind: string;
  /** Predicted seconds of one forward of the unit at the plan's sizes. */
  seconds: number;
  flops: number;
  /** Bytes of the weights the unit reads (stacked experts included), at their stored dtypes. */
  weightBytes: number;
  /** Bytes of the KV cache the unit's layer keeps (inference: its present.* results at the plan's sizes). */
  cacheBytes: number;
  /** Bytes of the values that cross the cut after this unit (0 after the last). */
  cutBytes: number;
}

const bytesAt = (v: Value, sizes: ReadonlyMap<string, number>) => v.type.shape.reduce((n, d) => n * d.eval(sizes), 1) * byteSize(v.type.dtype);

/** Every weight a call reads: the callee's and its callees', once each (full names). */
function callWeights(m: Module, f: Func, prefix: string, out: Map<string, Value>): void {
  for (const w of f.weights) out.set(prefix ? `${prefix}.${w.name}` : w.name!, w);
  for (const op of f.body) {
    const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
    if (callee) callWeights(m, callee, [prefix, op.scope].filter(Boolean).join("."), out);
  }
}

/**
 * Seconds and FLOPs of a function's body, calls expanded (roofline per op at the rates). Ops that read
 * only weights (a cast to the compute dtype, an FP8 quantization at load) run once when the program
 * loads, as the backends run them, and cost nothing per run.
 */
function funcSeconds(m: Module, f: Func, sizes: ReadonlyMap<string, number>, rates: DeviceRates, memo: Map<Func, { s: number; flops: number }>): { s: number; flops: number } {
  const hit = memo.get(f);
  if (hit) return hit;
  let s = 0;
  let flops = 0;
  const atLoad = loadTimeOps(f);
  for (const op of f.body) {
    if (atLoad.has(op)) continue;
    const t = opTime(m, op, sizes, rates, memo);
    s += t.s;
    flops += t.flops;
  }
  const r = { s, flops };
  memo.set(f, r);
  return r;
}

function opTime(m: Module, op: Op, sizes: ReadonlyMap<string, number>, rates: DeviceRates, memo: Map<Func, { s: number; flops: number }>): { s: number; flops: number } {
  if (op.opName === "call") return funcSeconds(m, m.getFunc(op.callee!)!, sizes, rates, memo);
  return opSeconds(op, sizes, rates);
}

/**
 * The sizes with a value for every symbol of the entry's parameters: one not given takes S's value
 * (a decode graph's cache length P, a cache capacity T: as long as the sequence) or 1.
 */
export function withDefaultSizes(m: Module, given: ReadonlyMap<string, number>): Map<string, number> {
  const sizes = new Map(given);
  for (const p of m.entry!.params) for (const d of p.type.shape) for (const sym of d.symbols()) if (!sizes.has(sym)) sizes.set(sym, given.get("S") ?? 1);
  return sizes;
}

/** The ops of each unit of function f, in program order (module comment). */
export function unitGroups(m: Module, f: Func): { name: string; kind: string; ops: Op[] }[] {
  const units: { name: string; kind: string; ops: Op[] }[] = [];
  const isLayerCall = (op: Op) => {
    const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
    return callee !== undefined && callee.attrs["role"] !== "kernel";
  };
  for (const op of f.body) {
    if (isLayerCall(op)) {
      const callee = m.getFunc(op.callee!)!;
      const role = callee.attrs["role"] ?? callee.name;
      units.push({ name: `${role} ${op.scope}`, kind: role, ops: [] });
    } else if (units.length === 0) units.push({ name: "embedding", kind: "embedding", ops: [] });
    else if (units[units.length - 1]!.ops.some(isLayerCall)) units.push({ name: "between", kind: "between", ops: [] });
    units[units.length - 1]!.ops.push(op);
  }
  // The run after the last layer call is the head.
  const last = units[units.length - 1];
  if (last && last.kind === "between") {
    last.name = "head";
    last.kind = "head";
  }
  return units;
}

/**
 * The units of `m`'s entry at sizes `sizes` (the entry's symbols, e.g. B=1,S=4096). Layer functions
 * share their symbols with the entry (Ling 2.0's do), so their costs are evaluated at the same sizes.
 */
export function scheduleUnits(m: Module, given: ReadonlyMap<string, number>, rates: DeviceRates): Unit[] {
  const f = m.entry!;
  const sizes = withDefaultSizes(m, given);
  const memo = new Map<Func, { s: number; flops: number }>();
  const groups = unitGroups(m, f);
  const unitOf = new Map<Op, number>();
  groups.forEach((g, i) => g.ops.forEach((op) => unitOf.set(op, i)));
  const units: (Unit & { ops: Op[] })[] = groups.map((g) => ({ ...g, seconds: 0, flops: 0, weightBytes: 0, cacheBytes: 0, cutBytes: 0 }));
  const cacheNames = new Set(f.results.filter((r) => r.name?.startsWith("present.")).map((r) => r.value));
  units.forEach((u) => {
    const weights = new Map<string, Value>();
    for (const op of u.ops) {
      const t = opTime(m, op, sizes, rates, memo);
      u.seconds += t.s;
      u.flops += t.flops;
      const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
      if (callee) callWeights(m, callee, op.scope, weights);
      for (const v of op.operands) if (v.kind === "weight") weights.set(v.name!, v);
      for (const r of op.results) if (cacheNames.has(r)) u.cacheBytes += bytesAt(r, sizes);
    }
    for (const w of weights.values()) u.weightBytes += bytesAt(w, sizes);
  });
  // A cut after unit k carries every value made at or before k and read after it (results are
  // written where they are made and do not travel), except what ops reading only weights make: a
  // later stage makes those again from its own weights (stages.ts stageOps).
  const atLoad = loadTimeOps(f);
  const lastUse = new Map<Value, number>();
  f.body.forEach((op) => op.operands.forEach((v) => lastUse.set(v, Math.max(lastUse.get(v) ?? -1, unitOf.get(op)!))));
  const madeAt = new Map<Value, number>();
  for (const p of f.params) madeAt.set(p, -1);
  f.body.forEach((op) => (atLoad.has(op) ? [] : op.results).forEach((r) => madeAt.set(r, unitOf.get(op)!)));
  for (const [v, at] of madeAt) {
    const until = lastUse.get(v);
    if (until === undefined || until <= at) continue;
    for (let k = Math.max(at, 0); k < until; k++) units[k]!.cutBytes += bytesAt(v, sizes);
  }
  return units.map(({ ops: _ops, ...u }) => u);
}
