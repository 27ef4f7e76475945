/**
 * Parameter counts from the IR's weight declarations. A weight stacked over experts and consumed
 * by `grouped_linear` is active for K of its E experts per token, where K is the width of the
 * routing indices that dispatched the rows (read from the IR, not from the config). Weights reached
 * only through a function with role "mtp" are counted apart, as the published totals exclude the
 * MTP layer; the embedding and the head are included in "active", as in LING2.md §1.
 */
import { Func, Module, Value } from "../../ir/module";
import { collectWeights } from "../../ir/weights";

export interface ParamCounts {
  total: number;
  active: number;
  mtpTotal: number;
  mtpActive: number;
}

/** For each weight of `f`, the fraction of it one token uses (K/E for routed experts, else 1). */
function activeFractions(f: Func): Map<Value, number> {
  const out = new Map<Value, number>();
  for (const op of f.body) {
    if (op.opName !== "grouped_linear") continue;
    const [, w, offsets] = op.operands as [Value, Value, Value];
    const dispatch = offsets.def;
    if (!dispatch || dispatch.opName !== "moe_dispatch") continue;
    const k = dispatch.operands[0]!.type.shape[1]?.value;
    const e = w.type.shape[0]?.value;
    if (k !== undefined && e) out.set(w, Math.min(k / e, 1));
  }
  return out;
}

export function countParams(m: Module): ParamCounts {
  const fractions = new Map<Func, Map<Value, number>>();
  const counts: ParamCounts = { total: 0, active: 0, mtpTotal: 0, mtpActive: 0 };
  for (const use of collectWeights(m)) {
    let fr = fractions.get(use.func);
    if (!fr) fractions.set(use.func, (fr = activeFractions(use.func)));
    const decl = use.func.weights.find((w) => w.name === use.local)!;
    const n = use.type.numel().value ?? 0;
    const active = n * (fr.get(decl) ?? 1);
    if (use.path.some((f) => f.role === "mtp")) {
      counts.mtpTotal += n;
      counts.mtpActive += active;
    } else {
      counts.total += n;
      counts.active += active;
    }
  }
  return counts;
}

/** Ops per function as written, and ops executed by one run of the entry (calls expanded). */
export function countOps(m: Module): { functions: { name: string; ops: number }[]; written: number; executed: number } {
  const memo = new Map<string, number>();
  const executed = (f: Func): number => {
    const hit = memo.get(f.name);
    if (hit !== undefined) return hit;
    let n = 0;
    for (const op of f.body) {
      n += 1;
      if (op.opName === "call") {
        const callee = m.getFunc(op.callee!);
        if (callee) n += executed(callee);
      }
    }
    memo.set(f.name, n);
    return n;
  };
  const functions = m.functions.map((f) => ({ name: f.name, ops: f.body.length }));
  return { functions, written: functions.reduce((s, f) => s + f.ops, 0), executed: m.entry ? executed(m.entry) : 0 };
}
