/**
 * The symbols of a function and what a call binds them to: the host code of every backend sizes a
 * callee's values in its own symbols, read from the call's operand types.
 */
import { Dim } from "./dim";
import { LingcError } from "./errors";
import type { Func, Op } from "./module";
import { unifyTypes } from "./unify";

/** The symbols a function's types and dim attributes use, sorted. */
export function functionSymbols(f: Func): string[] {
  const syms = new Set<string>();
  const types = [...f.params, ...f.weights, ...f.body.flatMap((o) => o.results)].map((v) => v.type);
  for (const t of types) for (const d of t.shape) for (const s of d.symbols()) syms.add(s);
  for (const op of f.body) {
    for (const a of Object.values(op.attrs)) {
      const dims = a instanceof Dim ? [a] : Array.isArray(a) ? a.filter((x): x is Dim => x instanceof Dim) : [];
      for (const d of dims) for (const s of d.symbols()) syms.add(s);
    }
  }
  return [...syms].sort();
}

/** Each symbol of `callee` as a dim of the caller at call `op` (one the parameters leave free is the caller's symbol of that name). */
export function callSymbols(callee: Func, op: Op): Map<string, Dim> {
  const u = unifyTypes(
    callee.params.map((p) => p.type),
    op.operands.map((v) => v.type),
    callee.params.map((p) => p.name!),
  );
  if ("problem" in u) throw new LingcError(`call to @${callee.name}: ${u.problem}`);
  const out = new Map<string, Dim>();
  for (const s of functionSymbols(callee)) out.set(s, u.bindings.get(s) ?? Dim.sym(s));
  return out;
}
