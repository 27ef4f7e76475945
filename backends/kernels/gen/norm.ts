/**
 * Row kernels around RMSNorm, one workgroup per row: rms_norm alone; residual_norm (the residual add
 * is written out and normalized in the same pass; a float cast of the normalized row, the MoE
 * router's fp32 input, written beside it); norm_matmul (one workgroup per row and tile of
 * the following linear layer's output columns, a column per thread: each normalizes its row into
 * workgroup memory, then computes its columns from it, so a single row, a decode step's, is spread
 * over as many workgroups as the layer has column tiles instead of one. Measured on llvmpipe, that
 * beat threads splitting each column's dot product and summing their parts through workgroup
 * memory, whose barriers cost more there than they saved); a
 * quantize of the normalized row in 1 x c groups (the row in workgroup memory, each group's amax
 * reduced by the threads that share it, then the codes and scales written beside or instead of it).
 * Statistics are accumulated in fp32; the result is cast to the activation dtype before the weight
 * multiply, as HF does.
 */
import { attrsOf, OPS } from "../../../ir/ops";
import { product } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import type { DType } from "../../../ir/dtype";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { codeOf, quantRecipe } from "./quant";

/**
 * RMSNorm's row formula, written once for every kernel that normalizes a row (the norm kernels, QK
 * norm, the GEMVs' norm prologues): 1 / rms from the row's sum of squares over D elements, and an
 * element normalized as HF does (weight x round(x x inv), each product rounded to the norm's dtype).
 */
export const inverseRms = (sumOfSquares: Expr, D: number, eps: number): Expr => K.rsqrt(K.add(K.div(sumOfSquares, K.f(D)), K.f(eps)));
export const normedElement = (g: Gen, weight: Expr, x: Expr, inv: Expr, dt: DType): Expr => g.fit(K.mul(weight, g.fit(K.mul(x, inv), dt)), dt);

function pow2AtMost(n: number, cap: number): number {
  let p = 32;
  while (p * 2 <= Math.min(n, cap)) p *= 2;
  return p;
}

export function normWorkgroup(rowLen: number, maxThreads: number): number {
  return pow2AtMost(Math.max(rowLen, 32), Math.min(256, maxThreads));
}

export function normKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const norm = ops.find((o) => o.opName === "rms_norm");
  if (!norm) throw new LingcError("norm kernel without rms_norm");
  const add = ops.find((o) => o.opName === "add");
  const linear = ops.find((o) => o.opName === "linear");
  const quantize = ops.find((o) => o.opName === "quantize");
  const cast = ops.find((o) => o.opName === "cast");
  const [x, w] = norm.operands as [Value, Value];
  const dt = x.type.dtype;
  const eps = attrsOf(OPS.rms_norm, norm).eps;
  const D = x.type.shape[x.type.rank - 1]!.value!;
  const rowsDim = product(x.type.shape.slice(0, -1));
  const kb = g.kb;
  const wg = kb.kernel.wg;
  // norm_matmul: workgroup w takes row w / tiles and output columns (w % tiles) * wg onward.
  const O = linear ? linear.operands[1]!.type.shape[0]!.value! : 0;
  const tiles = linear ? Math.ceil(O / wg) : 1;
  const row = kb.let("row", tiles > 1 ? K.div(kb.wg, K.i(tiles)) : kb.wg);
  const rows = g.size(rowsDim);
  const base = kb.let("base", K.mul(row, K.i(D)));
  // Element c of the row being normalized (the residual sum when the add is fused).
  const elem = (c: Expr): Expr => {
    if (!add) return kb.load(g.buf(x), K.add(base, c));
    const [a, b] = add.operands as [Value, Value];
    return g.fit(K.add(kb.load(g.buf(a), K.add(base, c)), kb.load(g.buf(b), K.add(base, c))), dt);
  };
  kb.if(K.lt(row, rows), () => {
    const ss = kb.var("ss", K.f(0));
    kb.for("c", kb.lid, K.i(D), (c) => {
      const v = kb.let("x", elem(c));
      if (add && g.isOutput(add.results[0]!)) kb.store(g.buf(add.results[0]!), K.add(base, c), v);
      ss.set(K.add(ss.ref, K.mul(v, v)));
    }, K.i(wg));
    const total = kb.workgroupSum(ss.ref);
    const inv = kb.let("inv", inverseRms(total, D, eps));
    const normed = (c: Expr) => normedElement(g, kb.load(g.buf(w), c), elem(c), inv, dt);
    if (quantize) {
      quantizeRow(g, quantize, norm, normed, base, D);
      return;
    }
    if (!linear) {
      kb.for("c", kb.lid, K.i(D), (c) => {
        const y = kb.let("y", normed(c));
        if (!cast || g.isOutput(norm.results[0]!)) kb.store(g.buf(norm.results[0]!), K.add(base, c), y);
        // The cast of the normalized row (the router's fp32 input), from the same rounded value.
        if (cast) kb.store(g.buf(cast.results[0]!), K.add(base, c), g.fit(y, cast.results[0]!.type.dtype));
      }, K.i(wg));
      return;
    }
    // norm_matmul: the normalized row in workgroup memory, then this workgroup's tile of columns.
    const sh = kb.shared("row_normed", "f32", D);
    kb.for("c", kb.lid, K.i(D), (c) => kb.store(sh, c, normed(c)), K.i(wg));
    kb.barrier();
    const lw = linear.operands[1]!;
    const o = kb.let("o", K.add(K.mul(tiles > 1 ? K.mod(kb.wg, K.i(tiles)) : K.i(0), K.i(wg)), kb.lid));
    kb.if(K.lt(o, K.i(O)), () => {
      const acc = kb.var("acc", K.f(0));
      // The weight's element as a real value (an fp8 weight's code times its block scale).
      kb.for("k", K.i(0), K.i(D), (k) => acc.set(K.add(acc.ref, K.mul(kb.load(sh, k), g.load(lw, K.add(K.mul(o, K.i(D)), k))))));
      kb.store(g.buf(linear.results[0]!), K.add(K.mul(row, K.i(O)), o), g.fit(acc.ref, linear.results[0]!.type.dtype));
    });
  });
  const rowGroups = g.entryDim(rowsDim);
  return g.finish({ dim: tiles > 1 ? rowGroups.mul(tiles) : rowGroups, per: 1 });
}

/**
 * The normalized row quantized in 1 x cb groups: the row in workgroup memory (and stored when the
 * norm's result is read elsewhere), the threads split over the groups to reduce each group's amax,
 * one thread per group makes the scale (the quantize op's recipe), then every element its code.
 */
function quantizeRow(g: Gen, quantize: Op, norm: Op, normed: (c: Expr) => Expr, base: Expr, D: number): void {
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const cb = (attrsOf(OPS.quantize, quantize).block as [number, number])[1];
  const q = quantize.results[0]!;
  const groups = Math.ceil(D / cb);
  // A thread per group makes its scale: the fusion keeps rows small enough (workgroup memory).
  if (groups > wg) throw new LingcError(`norm kernel: ${groups} quantization groups in a row of ${D} exceed its ${wg} threads`);
  const per = Math.floor(wg / groups);
  const row = kb.shared("row_normed", "f32", D);
  const storeNorm = g.isOutput(norm.results[0]!);
  kb.for("c", kb.lid, K.i(D), (c) => {
    const v = kb.let("y", normed(c));
    kb.store(row, c, v);
    if (storeNorm) kb.store(g.buf(norm.results[0]!), K.add(base, c), v);
  }, K.i(wg));
  kb.barrier();
  // Thread t reduces part t % per of group t / per (a strided share of its cb elements).
  const part = kb.shared(kb.fresh("amax_part"), "f32", wg);
  const m = kb.var("m", K.f(0));
  const gi = kb.let("gi", K.div(kb.lid, K.i(per)));
  kb.if(K.lt(gi, K.i(groups)), () => {
    const first = kb.let("first", K.add(K.mul(gi, K.i(cb)), K.mod(kb.lid, K.i(per))));
    kb.for("c", first, K.min(K.mul(K.add(gi, K.i(1)), K.i(cb)), K.i(D)), (c) => m.set(K.max(m.ref, K.abs(kb.load(row, c)))), K.i(per));
  });
  kb.store(part, kb.lid, m.ref);
  kb.barrier();
  const scales = kb.shared(kb.fresh("scale"), "f32", groups);
  kb.if(K.lt(kb.lid, K.i(groups)), () => {
    const amax = kb.var("amax", K.f(0));
    kb.for("p", K.i(0), K.i(per), (p) => amax.set(K.max(amax.ref, kb.load(part, K.add(K.mul(kb.lid, K.i(per)), p)))));
    const { s } = quantRecipe(g, quantize, amax.ref);
    kb.store(scales, kb.lid, s);
    kb.store(g.scalesBuf(q), g.scaleIndex(q, K.add(base, K.mul(kb.lid, K.i(cb)))), s);
  });
  kb.barrier();
  kb.for("c", kb.lid, K.i(D), (c) => {
    // Element c's code with its group's scale (the recipe divides by it; the fusion takes only such recipes).
    const code = codeOf(g, quantize, kb.load(scales, kb.let("grp", K.div(c, K.i(cb)))));
    kb.store(g.buf(q, true), K.add(base, c), code(kb.load(row, c)));
  }, K.i(wg));
}
