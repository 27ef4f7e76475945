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
 * throughout, rows a whole number of 8-element pieces; no linear or cast in the group (norm.ts
 * keeps those).
 *
 * With the FP8 activation quantize of its result (per token, e4m3 in 1 x G groups, G a multiple of
 * 16 that divides the row): a group's G / 8 lanes reduce its amax by shuffles, and an even lane
 * stores its 8 codes and its odd neighbour's (the next piece) as one 16-byte store, its group's
 * scale from the group's first lane (quant.ts's recipe, bit for bit on the rounded normalized
 * values). norm.ts's form stages the row in workgroup memory and writes a code at a time:
 * Ling-mini's FP8 norm + quantize at 1x8192 on the H200 took 48 us a layer (the bf16 norm alone: 20
 * us for more bytes); a form of 16 elements a thread (its two pieces adjacent, for one code store)
 * 26 us (bench/results/fp8-norm-2026-12-02-h200.md), but its 16-byte accesses fall 32 bytes apart
 * across a warp, each touching half of a sector: the residual norm + quantize at 57.7 us against
 * bf16's 33.6 us, L2 at 81% and DRAM at 46% (Nsight Compute, bench/results/attn-epilogue-2026-12-03-h200.md).
 * Now every access of the row is a warp's contiguous 512 bytes, as bf16's: 40.8-41.9 us.
 */
import { attrsOf, OPS } from "../../../ir/ops";
import { product } from "../../../ir/dim";
import type { Op, Value } from "../../../ir/module";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { sameShape } from "./pointwise";
import { quantRecipe } from "./quant";
import { inverseRms, normedElement } from "./norm";

/** Elements a piece: 16 bytes of bf16. */
const V = 8;

export function coversNormRegisters(ops: readonly Op[], limits?: GenLimits): boolean {
  if (limits?.warpSize !== 32 || !ops.every((o) => o.opName === "rms_norm" || o.opName === "add" || o.opName === "quantize")) return false;
  const norm = ops.find((o) => o.opName === "rms_norm");
  const add = ops.find((o) => o.opName === "add");
  const quant = ops.find((o) => o.opName === "quantize");
  if (!norm || ops.length > 1 + (add ? 1 : 0) + (quant ? 1 : 0)) return false;
  const [x, w] = norm.operands as [Value, Value];
  const D = x.type.shape[x.type.rank - 1]?.value;
  const bf16 = (v: Value) => v.type.dtype === "bf16" && !v.type.quant;
  if (D === undefined || D % V !== 0 || !bf16(x) || !bf16(w) || !bf16(norm.results[0]!)) return false;
  if (quant && !(quant.operands[0] === norm.results[0] && quantGroupLanes(quant, D) !== undefined)) return false;
  return !add || (x === add.results[0] && add.operands.every((o) => bf16(o) && sameShape(o.type.shape, x.type.shape)));
}

/**
 * The lanes of a quantize group (1 x G, e4m3, G a multiple of 16 dividing the row of D, at most a
 * warp's 32 pieces), or undefined where this form does not quantize it.
 */
function quantGroupLanes(quant: Op, D: number): number | undefined {
  const { to, block } = attrsOf(OPS.quantize, quant);
  const [rb, cb] = block as [number, number];
  const L = cb / V;
  return to === "f8e4m3fn" && rb === 1 && cb % (2 * V) === 0 && D % cb === 0 && L <= 32 && (L & (L - 1)) === 0 ? L : undefined;
}

/** Threads a row: a power of two of at most 256 and of at most a piece each where the row is shorter. */
export function normRegistersThreads(ops: readonly Op[]): number {
  const x = ops.find((o) => o.opName === "rms_norm")!.operands[0]!;
  const units = x.type.shape[x.type.rank - 1]!.value! / V;
  let t = 32;
  while (t * 2 <= Math.min(units, 256)) t *= 2;
  return t;
}

export function normRegistersKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const norm = ops.find((o) => o.opName === "rms_norm")!;
  const add = ops.find((o) => o.opName === "add");
  const quant = ops.find((o) => o.opName === "quantize");
  const [x, w] = norm.operands as [Value, Value];
  const dt = x.type.dtype;
  const eps = attrsOf(OPS.rms_norm, norm).eps;
  const D = x.type.shape[x.type.rank - 1]!.value!;
  const U = D / V;
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const C = Math.ceil(U / wg); // units a thread
  const { i, add: plus, mul, lt } = K;
  const rowsDim = product(x.type.shape.slice(0, -1));
  const row = kb.let("row", kb.wg);
  kb.if(lt(row, g.size(rowsDim)), () => {
    const base = kb.let("base", mul(row, i(D)));
    /** Unit k of this thread (piece lid + k wg: a warp's pieces adjacent): whether it is in the row, and its first element (in range either way). */
    const units = Array.from({ length: C }, (_, k) => {
      const unit = plus(kb.lid, i(k * wg));
      const has = U % wg === 0 ? undefined : kb.let("has", lt(unit, i(U)));
      return { has, at: kb.let("at", has ? K.min(mul(unit, i(V)), i(D - V)) : mul(unit, i(V))) };
    });
    const guarded = (has: Expr | undefined, f: () => void) => (has ? kb.if(has, f) : f());
    const store = (v: Value, at: Expr, vals: Expr[], has: Expr | undefined) => guarded(has, () => g.store8(v, plus(base, at), vals));
    let ss: Expr = K.f(0);
    const xs = units.map(({ has, at }) => {
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
    // The norm's weights are loaded before the row's sum of squares is reduced: no result of this
    // kernel's, so their round trip overlaps the reduction's shuffles and barriers instead of following them.
    const weights = units.map(({ at }) => g.load8(w, at));
    const inv = kb.let("inv", inverseRms(kb.workgroupSum(ss), D, eps));
    const y = norm.results[0]!;
    units.forEach(({ has, at }, k) => {
      const ws = weights[k]!;
      const ys = xs[k]!.map((e, n) => kb.let("y", normedElement(g, ws[n]!, e, inv, dt)));
      if (!quant || g.isOutput(y)) store(y, at, ys, has);
      if (quant) quantizeUnit(g, quant, ys, plus(base, at), (f) => guarded(has, f), quantGroupLanes(quant, D)!);
    });
  });
  return g.finish({ dim: g.entryDim(rowsDim), per: 1 });
}

/**
 * A thread's 8 normalized values quantized (quant.ts's recipe): the group's amax over its L lanes
 * (every lane shuffles; a unit past the row holds zeros), the codes packed four a word, an even
 * lane's two words and its odd neighbour's (the next 8 elements: a group is an even count of lanes,
 * and a row's pieces an even count, so both or neither are in the row) as one 16-byte store from
 * element `flat`, the scale from the group's first lane; the stores under `guarded` (the unit in the row).
 */
function quantizeUnit(g: Gen, quant: Op, ys: Expr[], flat: Expr, guarded: (f: () => void) => void, L: number): void {
  const kb = g.kb;
  const out = quant.results[0]!;
  const m = kb.let("m", ys.reduce((a: Expr, v) => K.max(a, K.abs(v)), K.f(0)));
  const { s, q } = quantRecipe(g, quant, kb.warpMax(m, L));
  const words = [0, 1].map((w) => kb.let("qw", K.packE4m3(ys.slice(4 * w, 4 * w + 4).map(q))));
  const next = words.map((w) => kb.let("qn", { k: "shfl", t: "u32", a: w, mask: 1 }));
  guarded(() => {
    kb.if(K.eq(K.modI(kb.lid, K.i(2)), K.i(0)), () => kb.store16(g.buf(out, true), K.divI(flat, K.i(4)), [...words, ...next]));
    kb.if(K.eq(K.modI(kb.lid, K.i(L)), K.i(0)), () => kb.store(g.scalesBuf(out), g.scaleIndex(out, flat), s));
  });
}
