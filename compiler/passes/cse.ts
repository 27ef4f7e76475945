/**
 * cse: common-subexpression elimination.
 * Guarantees: within a function, no two ops have the same name, operands, attributes and result
 * types (for calls: the same callee and scope, since the scope selects the weights). The later op is
 * removed and its uses read the earlier op's results; the earlier op keeps its provenance, and takes
 * the later op's value names where it had none (so observers still find them). Sound because every
 * IR op is pure.
 */
import { Dim } from "../../ir/dim";
import { Func, Module, Op, Value, type AttrValue } from "../../ir/module";
import type { Pass } from "./pass";

function attrKey(v: AttrValue): string {
  if (v instanceof Dim) return `d:${v}`;
  if (Array.isArray(v)) return `[${v.map((x) => attrKey(x as AttrValue)).join(",")}]`;
  if (typeof v === "number") return Object.is(v, -0) ? "n:-0" : `n:${v}`;
  return `${typeof v}:${String(v)}`;
}

function cseFunc(f: Func): void {
  const ids = new Map<Value, number>();
  let next = 0;
  const id = (v: Value) => {
    let i = ids.get(v);
    if (i === undefined) ids.set(v, (i = next++));
    return i;
  };
  const replace = new Map<Value, Value>();
  const seen = new Map<string, Op>();
  const kept: Op[] = [];
  for (const op of f.body) {
    op.operands = op.operands.map((v) => replace.get(v) ?? v);
    const key = [
      op.opName,
      op.callee ?? "",
      op.opName === "call" ? op.scope : "",
      op.operands.map(id).join(","),
      Object.keys(op.attrs)
        .sort()
        .map((k) => `${k}=${attrKey(op.attrs[k]!)}`)
        .join(";"),
      op.results.map((r) => r.type.toString()).join(","),
    ].join("|");
    const prev = seen.get(key);
    if (!prev) {
      seen.set(key, op);
      kept.push(op);
      continue;
    }
    op.results.forEach((r, i) => {
      const keep = prev.results[i]!;
      if (keep.name === undefined && r.name !== undefined) keep.name = r.name;
      replace.set(r, keep);
    });
  }
  f.body = kept;
  f.results = f.results.map((r) => ({ name: r.name, value: replace.get(r.value) ?? r.value }));
}

export const cse: Pass = {
  name: "cse",
  options: {},
  summary: "merges identical ops (same op, operands, attributes and types) within each function",
  run(m: Module) {
    for (const f of m.functions) cseFunc(f);
  },
};
