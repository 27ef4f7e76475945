/**
 * Kernel dispatch as part of the kernel plan (DESIGN "Kernel choices are visible"): an op or a
 * kernel call may carry the list of kernels a target runs it with, each with the run-time condition
 * under which it is chosen (the first whose condition holds; the last has none). Conditions compare
 * sizes, which are dims in the symbols of the op's function, so the dump shows exactly what decides:
 *
 *   %y = call @moe_layer.swiglu(...) : bf16[B*S*8, 1024] dispatch("expert_gemv_rows if B*S*8 <= 64; expert_gemv if B*S*8 <= 1024; grouped_gemm")
 *
 * A choice may carry integer parameters the target's planner fixed (`attn_decode(sms=132)`). Static
 * facts (dtypes, head dims, alignment of sizes) are settled when the plan is made and do not appear.
 */
import { Dim, isSymbolName } from "./dim";
import { LingcError, type SourcePos } from "./errors";

export interface DispatchCond {
  lhs: Dim;
  /** '%': lhs is a multiple of rhs (written `lhs % rhs == 0`). */
  op: "<=" | "==" | "%";
  rhs: Dim;
}

/** A condition as text (the dump's form, and the C++ the CUDA host code tests, given each dim's text). */
export function formatCond(w: DispatchCond, dim: (d: Dim) => string = (d) => d.toString()): string {
  return w.op === "%" ? `${dim(w.lhs)} % ${dim(w.rhs)} == 0` : `${dim(w.lhs)} ${w.op} ${dim(w.rhs)}`;
}

/** Whether a condition between known numbers holds. */
export function condHolds(op: DispatchCond["op"], lhs: number, rhs: number): boolean {
  return op === "<=" ? lhs <= rhs : op === "==" ? lhs === rhs : lhs % rhs === 0;
}

export interface DispatchChoice {
  kernel: string;
  params: Readonly<Record<string, number>>;
  /** All must hold (empty: always). */
  when: readonly DispatchCond[];
}

export type Dispatch = readonly DispatchChoice[];

export function formatDispatch(d: Dispatch): string {
  return d
    .map((c) => {
      const params = Object.keys(c.params);
      const head = params.length ? `${c.kernel}(${params.map((k) => `${k}=${c.params[k]}`).join(", ")})` : c.kernel;
      return c.when.length ? `${head} if ${c.when.map((w) => formatCond(w)).join(" && ")}` : head;
    })
    .join("; ");
}

/** Substitutes symbols in every condition (for a call's view of its callee's dispatch, or inlining). */
export function substituteDispatch(d: Dispatch, map: ReadonlyMap<string, Dim>): Dispatch {
  return d.map((c) => ({ ...c, when: c.when.map((w) => ({ lhs: w.lhs.substitute(map), op: w.op, rhs: w.rhs.substitute(map) })) }));
}

/** Reads the text form back; errors name the position of the dispatch clause. */
export function parseDispatch(text: string, pos?: SourcePos): Dispatch {
  const fail = (msg: string): never => {
    throw new LingcError(`dispatch "${text}": ${msg}`, pos);
  };
  const dimOf = (s: string): Dim => {
    const sum = s.split("+").map((t) =>
      t.split("*").reduce((acc, f) => {
        const x = f.trim();
        if (/^\d+$/.test(x)) return acc.mul(Number(x));
        if (isSymbolName(x)) return acc.mul(Dim.sym(x));
        return fail(`'${x}' is not a number or a symbol`);
      }, Dim.of(1)),
    );
    return sum.reduce((a, b) => a.add(b), Dim.of(0));
  };
  const choices = text.split(";").map((part, i, all) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s*(?:if\s+(.+?))?\s*$/.exec(part);
    if (!m) return fail(`choice ${i + 1} is not 'KERNEL[(k=v, ...)] [if COND && ...]'`);
    const params: Record<string, number> = {};
    for (const kv of (m[2] ?? "").split(",").filter((x) => x.trim())) {
      const p = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(-?\d+)\s*$/.exec(kv);
      if (!p) return fail(`parameter '${kv.trim()}' is not name=integer`);
      params[p[1]!] = Number(p[2]);
    }
    const when = (m[3] ?? "").split("&&").filter((x) => x.trim()).map((c) => {
      const mod = /^\s*(.+?)\s*%\s*(\d+)\s*==\s*0\s*$/.exec(c);
      if (mod) return { lhs: dimOf(mod[1]!), op: "%" as const, rhs: Dim.of(Number(mod[2])) };
      const w = /^\s*(.+?)\s*(<=|==)\s*(.+?)\s*$/.exec(c);
      if (!w) return fail(`condition '${c.trim()}' is not 'SIZE <= SIZE', 'SIZE == SIZE' or 'SIZE % N == 0'`);
      return { lhs: dimOf(w[1]!), op: w[2] as "<=" | "==", rhs: dimOf(w[3]!) };
    });
    if (!when.length && i < all.length - 1) fail(`choice ${i + 1} (${m[1]}) has no condition, so the choices after it never run`);
    return { kernel: m[1]!, params, when };
  });
  if (choices[choices.length - 1]!.when.length) fail("the last choice must have no condition (it runs when no other does)");
  return choices;
}
