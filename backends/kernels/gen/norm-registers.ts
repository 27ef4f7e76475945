/**
 * RMSNorm of bf16 rows on CUDA with each row in registers, 8 elements a thread: one workgroup a row,
 * every operand read and every result written as 16-byte accesses (load16 / store16), the row read
 * once (the residual add, when fused, summed and written from the same registers). norm.ts's form
 * reads each element by itself and the row twice: on the H200 at 1x8192 (Ling-mini) its rms_norm ran
 * at about 60% of the copy rate and residual_norm at 70%.
 *
 * The arithmetic is norm.ts's, value by value (the residual sum rounded to the dtype, the normalized
 * value rounded before the weight multiply, as HF does), except the sum of squares, which adds in
 * another order. Covers rms_norm alone or after a residual add of two rows of its shape, bf16
 * throughout, rows a whole number of 8-element pieces; no linear, quantize or cast in the group
 * (norm.ts keeps those).
 */
import { attrsOf, OPS } from "../../../ir/ops";
import { product } from "../../../ir/dim";
import type { Op, Value } from "../../../ir/module";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { sameShape } from "./pointwise";

/** Elements a piece: 16 bytes of bf16. */
const V = 8;

export function coversNormRegisters(ops: readonly Op[], limits?: GenLimits): boolean {
  if (limits?.warpSize !== 32 || !ops.every((o) => o.opName === "rms_norm" || o.opName === "add")) return false;
  const norm = ops.find((o) => o.opName === "rms_norm");
  const add = ops.find((o) => o.opName === "add");
  if (!norm || ops.length > (add ? 2 : 1)) return false;
  const [x, w] = norm.operands as [Value, Value];
  const D = x.type.shape[x.type.rank - 1]?.value;
  const bf16 = (v: Value) => v.type.dtype === "bf16" && !v.type.quant;
  if (D === undefined || D % V !== 0 || !bf16(x) || !bf16(w) || !bf16(norm.results[0]!)) return false;
  return !add || (x === add.results[0] && add.operands.every((o) => bf16(o) && sameShape(o.type.shape, x.type.shape)));
}

/** Threads a row: a power of two of at most 256 and of at most a piece each where the row is shorter. */
export function normRegistersThreads(ops: readonly Op[]): number {
  const x = ops.find((o) => o.opName === "rms_norm")!.operands[0]!;
  const pieces = x.type.shape[x.type.rank - 1]!.value! / V;
  let t = 32;
  while (t * 2 <= Math.min(pieces, 256)) t *= 2;
  return t;
}

export function normRegistersKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const norm = ops.find((o) => o.opName === "rms_norm")!;
  const add = ops.find((o) => o.opName === "add");
  const [x, w] = norm.operands as [Value, Value];
  const dt = x.type.dtype;
  const eps = attrsOf(OPS.rms_norm, norm).eps;
  const D = x.type.shape[x.type.rank - 1]!.value!;
  const P = D / V;
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const C = Math.ceil(P / wg); // pieces a thread
  const { i, add: plus, mul, div, lt } = K;
  const rowsDim = product(x.type.shape.slice(0, -1));
  const row = kb.let("row", kb.wg);
  kb.if(lt(row, g.size(rowsDim)), () => {
    const base = kb.let("base", mul(row, i(D)));
    /** Piece k of this thread: whether it is in the row, and its first element (in range either way). */
    const pieces = Array.from({ length: C }, (_, k) => {
      const piece = plus(kb.lid, i(k * wg));
      const has = P % wg === 0 ? undefined : kb.let("has", lt(piece, i(P)));
      return { has, at: kb.let("at", has ? K.min(mul(piece, i(V)), i(D - V)) : mul(piece, i(V))) };
    });
    const store = (v: Value, at: Expr, vals: Expr[], has: Expr | undefined) => {
      const put = () => g.store8(v, plus(base, at), vals);
      if (has) kb.if(has, put);
      else put();
    };
    let ss: Expr = K.f(0);
    const xs = pieces.map(({ has, at }) => {
      const row = (v: Value) => g.load8(v, plus(base, at));
      let vals: Expr[];
      if (add) {
        const [a, b] = [row(add.operands[0]!), row(add.operands[1]!)];
        vals = a.map((e, n) => kb.let("h", g.fit(plus(e, b[n]!), dt)));
        if (g.isOutput(add.results[0]!)) store(add.results[0]!, at, vals, has);
      } else vals = row(x).map((e) => kb.let("h", e));
      if (has) vals = vals.map((e) => kb.let("h", K.sel(has, e, K.f(0))));
      for (const e of vals) ss = plus(ss, mul(e, e));
      ss = kb.let("ss", ss);
      return vals;
    });
    const inv = kb.let("inv", K.rsqrt(plus(div(kb.workgroupSum(ss), K.f(D)), K.f(eps))));
    pieces.forEach(({ has, at }, k) => {
      const ws = g.load8(w, at);
      const ys = xs[k]!.map((e, n) => kb.let("y", g.fit(mul(ws[n]!, g.fit(mul(e, inv), dt)), dt)));
      store(norm.results[0]!, at, ys, has);
    });
  });
  return g.finish({ dim: g.entryDim(rowsDim), per: 1 });
}
