/**
 * dce: dead-code elimination.
 * Guarantees: every op left in a function has a result that is returned or used by a later op;
 * weight declarations no op uses are dropped; functions that the entry (the function named like
 * the module) does not reach are dropped. Parameters and results are never changed, so call sites
 * stay valid. All IR ops are pure, so removing unused ones never changes what a graph computes.
 */
import { Func, Module, reachableFunctions, Value } from "../../ir/module";
import type { Pass } from "./pass";

export function dceFunc(f: Func): void {
  const live = new Set<Value>(f.results.map((r) => r.value));
  const kept = [];
  for (let i = f.body.length - 1; i >= 0; i--) {
    const op = f.body[i]!;
    if (!op.results.some((r) => live.has(r))) continue;
    kept.push(op);
    for (const v of op.operands) live.add(v);
  }
  f.body = kept.reverse();
  f.weights = f.weights.filter((w) => live.has(w));
}

export const dce: Pass = {
  name: "dce",
  options: {},
  summary: "removes ops whose results are never used, unused weights and unreachable functions",
  run(m: Module) {
    for (const f of m.functions) dceFunc(f);
    const entry = m.entry;
    if (!entry) return;
    m.functions = reachableFunctions(m, entry);
  },
};
