/**
 * Per-function schedules, for hosts that keep repetition folded (DESIGN principle 5): each function
 * that is not a kernel (the entry and every layer function) gets its own slots and steps, in its own
 * symbols, and its calls of layer functions stay calls (call sites), so the host code has one
 * function per layer function whatever the number of layers. A kernel function's call is one step,
 * as in the flat schedule (schedule.ts), so the same kernel generators serve both.
 *
 * Slot sources here: "param" (the function's parameter), "weight" (named relative to the function's
 * call scope), "constant", "computed", "alias" (a reshape of another slot of the function) and
 * "call" (a result of a layer call: the callee's storage).
 */
import { Dim } from "../ir/dim";
import { LingcError } from "../ir/errors";
import { Func, Module, Op, Value } from "../ir/module";
import { callSymbols, functionSymbols } from "../ir/call-symbols";
import { addSlot, kernelResultSlot, resultSlot, type Slot, type Step } from "./schedule";

export interface CallSite {
  callee: Func;
  /** The call's scope: the prefix of the callee's names. */
  scope: string;
  /** Slots of the arguments, in the callee's parameter order. */
  args: number[];
  /** Slots (source "call") of the call's results. */
  results: number[];
  /** The callee's symbols in this function's symbols. */
  symbols: Map<string, Dim>;
  op: Op;
}

export interface FrameStep {
  /** A kernel (a step as in the flat schedule), or a call of a layer function. */
  step?: Step;
  call?: number;
}

export interface FrameSchedule {
  func: Func;
  slots: Slot[];
  /** Steps and layer calls, in program order. */
  steps: FrameStep[];
  calls: CallSite[];
  /** The slot of each parameter and of each result. */
  params: number[];
  results: number[];
  /** This function's symbols, in a fixed order (the host binds them by position). */
  symbols: string[];
}

export function buildFrame(m: Module, f: Func): FrameSchedule {
  const slots: Slot[] = [];
  const steps: FrameStep[] = [];
  const calls: CallSite[] = [];
  const env = new Map<Value, number>();
  const newSlot = (s: Omit<Slot, "id">): number => addSlot(slots, s);
  const identity = new Map<string, Dim>();
  const params = f.params.map((p, i) => {
    // Parameters are not named slots: their values are observable where they are made.
    const id = newSlot({ type: p.type, source: "param", param: i });
    env.set(p, id);
    return id;
  });
  const get = (v: Value): number => {
    const hit = env.get(v);
    if (hit !== undefined) return hit;
    if (v.kind !== "weight") throw new LingcError(`frame @${f.name}: value ${v.name ?? "?"} is used before it is defined`);
    const id = newSlot({ type: v.type, source: "weight", weight: v.name });
    env.set(v, id);
    return id;
  };
  for (const op of f.body) {
    if (op.opName === "reshape") {
      env.set(op.results[0]!, newSlot({ type: op.results[0]!.type, source: "alias", aliasOf: get(op.operands[0]!), name: op.results[0]!.name }));
      continue;
    }
    if (op.opName === "constant") {
      env.set(op.results[0]!, newSlot({ type: op.results[0]!.type, source: "constant", constant: op, name: op.results[0]!.name }));
      continue;
    }
    const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
    if (op.opName === "call" && !callee) throw new LingcError(`call to unknown function @${op.callee}`);
    if (callee && callee.role !== "kernel") {
      const site = calls.length;
      const args = op.operands.map(get);
      const results = op.results.map((r, i) => {
        const id = newSlot({ type: r.type, source: "call", call: { site, result: i }, name: r.name });
        env.set(r, id);
        return id;
      });
      calls.push({ callee, scope: op.scope, args, results, symbols: callSymbols(callee, op), op });
      steps.push({ call: site });
      continue;
    }
    const reads = new Map<Value, number>();
    const writes = new Map<Value, number>();
    let subst: ReadonlyMap<string, Dim> = identity;
    if (callee) {
      subst = callSymbols(callee, op);
      callee.params.forEach((p, i) => reads.set(p, get(op.operands[i]!)));
      for (const w of callee.weights) {
        let id = slots.findIndex((s) => s.source === "weight" && s.weight === w.name);
        if (id < 0) id = newSlot({ type: w.type, source: "weight", weight: w.name });
        reads.set(w, id);
      }
      callee.results.forEach((r, i) => {
        const id = newSlot(kernelResultSlot(slots, callee, i, op.results[i]!.type, callee.params.map((p) => reads.get(p)!), r.value.name));
        writes.set(r.value, id);
        env.set(op.results[i]!, id);
      });
    } else {
      for (const v of op.operands) reads.set(v, get(v));
      op.results.forEach((r, i) => {
        const id = newSlot(resultSlot(slots, op, i, r.type, op.operands.length ? get(op.operands[0]!) : undefined, r.name));
        writes.set(r, id);
        env.set(r, id);
      });
    }
    steps.push({ step: { op, kernel: callee, ops: callee ? callee.body : [op], scope: op.scope, reads, writes, subst } });
  }
  const results = f.results.map((r) => get(r.value));
  return { func: f, slots, steps, calls, params, results, symbols: functionSymbols(f) };
}

/** The frames of a module: every function that is not a kernel and that the entry reaches, callees first. */
export function buildFrames(m: Module): FrameSchedule[] {
  const entry = m.entry;
  if (!entry) throw new LingcError(`module @${m.name} has no entry function @${m.name}`);
  const order: Func[] = [];
  const seen = new Set<string>();
  const visit = (f: Func) => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const op of f.body) {
      const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
      if (callee && callee.role !== "kernel") visit(callee);
    }
    order.push(f);
  };
  visit(entry);
  return order.map((f) => buildFrame(m, f));
}
