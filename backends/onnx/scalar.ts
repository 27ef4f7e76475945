/**
 * Elementwise ops in ONNX from their op-table formula (ir/ops/algebra.ts): each algebra step is one
 * standard node, so an elementwise op with no entry in the lowering table (any new activation, such
 * as gelu) still lowers, exactly as the interpreter and the GPU kernels compute it. ONNX broadcasts
 * like the IR does. A bf16 or f16 result is computed in f32 and rounded once at the end, as the
 * interpreter computes every formula (the rounding to the result dtype is the caller's, algebra.ts):
 * nodes in bf16 would round after every step (silu's exp, add and div).
 */
import type { DType } from "../../ir/dtype";
import type { ScalarAlgebra, ScalarRule } from "../../ir/ops/algebra";
import { castNode } from "./cast";
import type { LowerCtx, Lowering } from "./lower";

const isNarrowFloat = (t: DType) => t === "bf16" || t === "f16";

export function fromScalarFormula(rule: ScalarRule): Lowering {
  return (c: LowerCtx) => {
    const dt: DType = c.outTypes[0]!.dtype;
    const wide = isNarrowFloat(dt);
    const cast = (a: string, to: DType) => c.g.one("Cast", [a], castNode(to), c.meta);
    // Values a cast step of the formula rounded to a narrow float (name -> that dtype), held so until
    // a step reads them (then widened once).
    const narrowed = new Map<string, DType>();
    const widened = new Map<string, string>();
    const w = (x: string): string => {
      if (!narrowed.has(x)) return x;
      let y = widened.get(x);
      if (!y) widened.set(x, (y = cast(x, "f32")));
      return y;
    };
    const node = (op: string) => (...xs: string[]) => c.g.one(op, xs.map(w), {}, c.meta);
    const S: ScalarAlgebra<string> = {
      lit: (v) => c.g.scalar(v, wide ? "f32" : dt),
      add: node("Add"),
      sub: node("Sub"),
      mul: node("Mul"),
      div: node("Div"),
      max: node("Max"),
      min: node("Min"),
      neg: node("Neg"),
      abs: node("Abs"),
      exp: node("Exp"),
      log: node("Log"),
      sqrt: node("Sqrt"),
      rsqrt: (a) => c.g.one("Reciprocal", [c.g.one("Sqrt", [w(a)], {}, c.meta)], {}, c.meta),
      sin: node("Sin"),
      cos: node("Cos"),
      cast: (a, from, to) => {
        if (!wide) return from === to ? a : cast(a, to);
        // Computing wide: a narrow float operand is held in f32.
        const held = isNarrowFloat(from) ? "f32" : from;
        if (isNarrowFloat(to)) {
          const r = cast(w(a), to);
          narrowed.set(r, to);
          return r;
        }
        return held === to ? a : cast(w(a), to);
      },
    };
    const ins = wide ? c.ins.map((x, i) => (isNarrowFloat(c.inTypes[i]!.dtype) ? cast(x, "f32") : x)) : c.ins;
    let result = rule(S, ins, { inTypes: c.inTypes.map((t) => t.dtype), outType: dt, attrs: c.op.attrs });
    // Rounded once to the result's dtype (unless the formula ended in that very cast).
    if (wide && narrowed.get(result) !== dt) result = cast(w(result), dt);
    // The formula's last node writes the op's output directly (an Identity only if it made none).
    if (!c.g.renameOutput(result, c.out[0]!)) c.g.node("Identity", [result], [c.out[0]!], {}, c.meta);
  };
}

