/**
 * Binding symbols by matching a function's parameter types against argument types: at a call
 * (callee symbols bound to the caller's dims) and at a graph's entry (symbols bound to numbers).
 */
import { Dim } from "./dim";
import type { TensorType } from "./types";

/**
 * Binds the callee's plain-symbol dims to the argument dims, then checks every dim under that
 * binding. Returns the binding, or a message naming the first mismatch.
 */
export function unifyTypes(
  params: readonly TensorType[],
  args: readonly TensorType[],
  names: readonly string[],
): { bindings: Map<string, Dim> } | { problem: string } {
  const bindings = new Map<string, Dim>();
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    const a = args[i]!;
    if (p.dtype !== a.dtype || !p.sameQuant(a)) return { problem: `${names[i]}: expected ${p}, got ${a}` };
    if (p.rank !== a.rank) return { problem: `${names[i]}: expected ${p}, got ${a}` };
    p.shape.forEach((d, j) => {
      const s = d.symbol;
      if (s !== undefined && !bindings.has(s)) bindings.set(s, a.shape[j]!);
    });
  }
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    const a = args[i]!;
    for (let j = 0; j < p.rank; j++) {
      const want = p.shape[j]!.substitute(bindings);
      if (!want.equals(a.shape[j]!)) {
        return { problem: `${names[i]}: expected ${p} (axis ${j} = ${want}), got ${a}` };
      }
    }
  }
  return { bindings };
}

/** Binds symbols to numbers from concrete shapes; returns the bindings or a message. */
export function bindConcrete(
  params: readonly TensorType[],
  shapes: readonly (readonly number[])[],
  names: readonly string[],
): { bindings: Map<string, number> } | { problem: string } {
  const r = unifyTypes(
    params,
    params.map((p, i) => p.withShape(shapes[i]!.map((n) => Dim.of(n)))),
    names,
  );
  if ("problem" in r) return r;
  const out = new Map<string, number>();
  for (const [k, v] of r.bindings) out.set(k, v.value!);
  return { bindings: out };
}
