/**
 * Elementwise ops in ONNX from their op-table formula (ir/ops/algebra.ts): each algebra step is one
 * standard node, so an elementwise op with no entry in the lowering table (any new activation, such
 * as gelu) still lowers, exactly as the interpreter and the GPU kernels compute it. ONNX broadcasts
 * like the IR does; each node computes in the tensors' dtype.
 */
import type { DType } from "../../ir/dtype";
import type { ScalarAlgebra, ScalarRule } from "../../ir/ops/algebra";
import { castNode } from "./cast";
import type { LowerCtx, Lowering } from "./lower";

export function fromScalarFormula(rule: ScalarRule): Lowering {
  return (c: LowerCtx) => {
    const dt: DType = c.outTypes[0]!.dtype;
    const node = (op: string) => (...xs: string[]) => c.g.one(op, xs, {}, c.meta);
    const S: ScalarAlgebra<string> = {
      lit: (v) => c.g.scalar(v, dt),
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
      rsqrt: (a) => c.g.one("Reciprocal", [c.g.one("Sqrt", [a], {}, c.meta)], {}, c.meta),
      sin: node("Sin"),
      cos: node("Cos"),
      cast: (a, from, to) => (from === to ? a : c.g.one("Cast", [a], castNode(to), c.meta)),
    };
    const result = rule(S, c.ins, { inTypes: c.inTypes.map((t) => t.dtype), outType: dt, attrs: c.op.attrs });
    // The formula's last node writes the op's output directly (an Identity only if it made none).
    if (!c.g.renameOutput(result, c.out[0]!)) c.g.node("Identity", [result], [c.out[0]!], {}, c.meta);
  };
}
