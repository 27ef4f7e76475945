/**
 * castlinear: a linear of two exactly widened operands reads the narrow ones.
 * Guarantees: `linear(cast(x), cast(w))` (through a reshape of the input, if any) where both casts
 * widen bf16 to f32 (every bf16 value is an f32 value; f16 would be too, but the CUDA runtime's
 * GEMMs take bf16 and f32 only, so it is left alone) becomes `linear(x, w) {out = f32}`: the same
 * products (exact in f32 either way) summed into the
 * same f32 result, by the op table's meaning of `out` (ir/ops/scaled.ts productDtype). The casts stay
 * for their other readers; dce drops those that have none. Ling's router gate is this linear (HF:
 * `F.linear(hidden.float(), weight.float())`): rewritten, CUDA multiplies bf16 on its tensor cores
 * into f32 (cuBLASLt bf16 x bf16 -> f32) instead of running an f32 GEMM, and reads the bf16 weight
 * instead of an f32 copy of it.
 */
import { Func, Module, Op, Value } from "../../ir/module";
import { Builder, Uses, eraseOp, replaceAllUses } from "../../ir/rewrite";
import type { Pass } from "./pass";

/** Narrow float types f32 holds exactly that the CUDA runtime's GEMMs multiply. */
const EXACT_IN_F32 = new Set(["bf16"]);

/** v's narrow source when v is cast(narrow) to f32 (through a reshape when `reshape`): the source and the reshape, if any. */
function widened(v: Value, uses: Uses, reshape: boolean): { src: Value; reshape?: Op } | undefined {
  const def = uses.def(v);
  if (reshape && def?.opName === "reshape") {
    const inner = widened(def.operands[0]!, uses, false);
    return inner ? { src: inner.src, reshape: def } : undefined;
  }
  if (def?.opName !== "cast" || def.attrs["to"] !== "f32") return undefined;
  const src = def.operands[0]!;
  return EXACT_IN_F32.has(src.type.dtype) && !src.type.quant ? { src } : undefined;
}

function castLinearFunc(m: Module, f: Func): void {
  // (Found once: a rewrite adds and removes only linears and reshapes no later match looks up.)
  const uses = new Uses(f);
  for (const op of [...f.body]) {
    if (op.opName !== "linear" || op.attrs["out"] !== undefined || op.results[0]!.type.dtype !== "f32") continue;
    const x = widened(op.operands[0]!, uses, true);
    const w = widened(op.operands[1]!, uses, false);
    if (!x || !w || x.src.type.dtype !== w.src.type.dtype) continue;
    const b = new Builder(m, f).setInsertionPointBefore(op);
    const xs = x.reshape ? b.op1("reshape", [x.src], x.reshape.attrs, { scope: x.reshape.scope, loc: x.reshape.loc }) : x.src;
    const r = b.op1("linear", [xs, w.src], { out: "f32" }, { scope: op.scope, loc: op.loc, names: [op.results[0]!.name] });
    replaceAllUses(f, op.results[0]!, r);
    eraseOp(f, op);
  }
}

export const castlinear: Pass = {
  name: "castlinear",
  options: {},
  summary: "a linear of two bf16 operands cast to f32 reads them as they are and writes f32 (linear {out = f32}): the same products and sums",
  // (No remark: it is in every CUDA compile's default pipeline; --print-after=castlinear shows what it did.)
  run(m: Module) {
    for (const f of m.functions) castLinearFunc(m, f);
  },
};
