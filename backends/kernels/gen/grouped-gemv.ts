/**
 * The routed experts' bf16 matmuls for few rows (decode), the kernel language's form of the
 * runtime's hand-written `expert_gemv`: a warp owns CPW output columns and reads each column's
 * weight row once per group of up to four of its expert's rows, eight elements a lane per 16-byte
 * load (kir load16: a warp moves 512 contiguous bytes of a row at a time), the lanes' partial sums
 * added by warp shuffles. SwiGLU: gate and up rows are read together and the step's elementwise ops
 * (op-table formulas) make the output. Rows are read through the step's token gather when it has
 * one. Two grids, as the runtime's:
 *   - by row (`grouped_gemv_rows`): a workgroup per (row, column tile), the row's expert found by a
 *     search of the offsets; for rows fewer than a quarter of the experts (batch-1 decode), where a
 *     workgroup per expert would mostly start idle;
 *   - by expert (`grouped_gemv`): a workgroup per (expert, column tile), its rows in groups of four,
 *     so each weight row is read once however many rows the expert has; workgroups of idle experts
 *     exit.
 * Dense linears of few rows (`linear_gemv`: one linear, or a dense SwiGLU's two of one input with
 * its elementwise ops) run the by-row form with one "expert", bf16 or f32 (the router gate: f32
 * rows, four elements a lane per load). Where that form's column tiles are too few workgroups to
 * keep the GPU's memory busy (GenLimits.gemvWorkgroups; the router gate's 256 columns of 8 KB rows
 * made 32), a tile's warps split each row's K among them (up to all eight) and add their sums
 * through workgroup memory.
 * CPW: four columns a warp for rows up to 2 KB, two up to 4 KB, else one (the runtime's choice,
 * measured on the H200: with one column a warp the down projection's 1 KB rows ran at the rate
 * workgroups start).
 */
import type { Op, Value } from "../../../ir/module";
import type { DType } from "../../../ir/dtype";
import { attrsOf, getOp, OPS } from "../../../ir/ops";
import { Dim, product } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { expertOfRowByWarp, gatheredRow } from "./experts";
import { denseGemvElem } from "../../../ir/target/kernel-forms";
import { applyEpilogue, groupedMatmuls } from "./grouped-gemm";
import { prefetchWeightRows } from "./prefetch";
import { inverseRms, normedElement } from "./norm";

const WARPS = 8;
export const GROUPED_GEMV_THREADS = WARPS * 32;
/** Bytes a lane reads per load (kir load16). */
const LOAD_BYTES = 16;
/** Rows whose sums a warp keeps at once (the weight row read once for them). */
const ROWS = 4;
/** Steps of a row unrolled together (the runtime kernel's unroll). */
const UNROLL = 4;

/** What the GEMV computes: one or two matmuls of one input (grouped by expert, or dense), then elementwise ops. */
interface GemvPlan {
  mats: Op[];
  epilogue: Op[];
  /** The rows' source (the token gather's input when there is one). */
  src: Value;
  permute?: Op;
  /** Grouped: the experts' row offsets; dense: none (one "expert"). */
  offsets?: Value;
  E: number;
  O: number;
  I: number;
  rowsDim: Dim;
  /** The operands' element type (all alike). */
  elem: "bf16" | "f32";
  /** An RMSNorm of the rows run as the GEMV's prologue (dense, one row a workgroup): `src` is its input. */
  norm?: { weight: Value; eps: number; dtype: DType };
}

const bf16 = (v: Value) => v.type.dtype === "bf16" && !v.type.quant;
/** Elements a lane reads per 16-byte load. */
const laneElems = (elem: "bf16" | "f32") => (elem === "bf16" ? LOAD_BYTES / 2 : LOAD_BYTES / 4);

function groupedPlan(ops: readonly Op[]): GemvPlan | undefined {
  const m = groupedMatmuls(ops);
  if (!m) return undefined;
  const mats = [m.gate, ...(m.up ? [m.up] : [])];
  const src = m.permute ? m.permute.operands[0]! : m.gate.operands[0]!;
  const [E, O, I] = m.gate.operands[1]!.type.shape.map((d) => d.value!) as [number, number, number];
  if (!bf16(src) || !mats.every((gl) => bf16(gl.operands[0]!) && bf16(gl.operands[1]!)) || I % laneElems("bf16") !== 0) return undefined;
  return { mats, epilogue: m.epilogue, src, permute: m.permute, offsets: m.gate.operands[2]!, E, O, I, rowsDim: m.gate.operands[0]!.type.shape[0]!, elem: "bf16" };
}

/**
 * A step's dense matmuls as a GEMV takes them (whatever their element types): a lone linear, or two
 * of one input whose weights have one numeric 2-D shape, followed by elementwise ops reading only
 * their results and each other's (a dense SwiGLU's silu * mul); the value the step ends with.
 */
export function denseMatmuls(ops: readonly Op[]): { lins: Op[]; epilogue: Op[]; out: Value } | undefined {
  const lins = ops.filter((o) => o.opName === "linear");
  if (lins.length < 1 || lins.length > 2 || lins.some((o) => o.operands.length !== 2)) return undefined;
  const x = lins[0]!.operands[0]!;
  const shape = lins[0]!.operands[1]!.type.shape;
  if (shape.length !== 2 || shape.some((d) => d.value === undefined)) return undefined;
  if (!lins.every((o) => o.operands[0] === x && o.operands[1]!.type.shape.every((d, j) => d.value === shape[j]!.value))) return undefined;
  const epilogue = ops.filter((o) => o.opName !== "linear");
  const known = new Set<Value>(lins.map((o) => o.results[0]!));
  for (const o of epilogue) {
    if (!getOp(o.opName)?.scalar || o.results.length !== 1 || !o.operands.every((v) => known.has(v))) return undefined;
    known.add(o.results[0]!);
  }
  if (lins.length === 2 && !epilogue.length) return undefined;
  return { lins, epilogue, out: (epilogue.length ? epilogue[epilogue.length - 1]! : lins[0]!).results[0]! };
}

/**
 * A lone bf16 or f32 linear, or two of one input followed by elementwise ops on their results (a
 * dense SwiGLU); with a leading RMSNorm (a norm prologue: backends/cuda/norm-prologue.ts) whose result
 * is the linears' input and nothing else's, of the same element type as the weights.
 */
function densePlan(ops: readonly Op[]): GemvPlan | undefined {
  const norm = ops[0]?.opName === "rms_norm" ? ops[0] : undefined;
  const m = denseMatmuls(norm ? ops.slice(1) : ops);
  if (!m) return undefined;
  const { lins, epilogue } = m;
  const x = lins[0]!.operands[0]!;
  if (norm && (x !== norm.results[0] || m.epilogue.some((o) => o.operands.includes(x)))) return undefined;
  const shape = lins[0]!.operands[1]!.type.shape;
  const elem = denseGemvElem([x, ...lins.map((o) => o.operands[1]!), ...(norm ? norm.operands : [])]);
  if (!elem) return undefined;
  const [O, I] = shape.map((d) => d.value!) as [number, number];
  if (I % laneElems(elem) !== 0) return undefined;
  const src = norm ? norm.operands[0]! : x;
  return { mats: lins, epilogue, src, E: 1, O, I, rowsDim: product(src.type.shape.slice(0, -1)), elem, ...(norm ? { norm: { weight: norm.operands[1]!, eps: attrsOf(OPS.rms_norm, norm).eps, dtype: x.type.dtype } } : {}) };
}

/** The step's grouped bf16 matmuls (through the token gather, if any) on a warp-synchronous target, with rows of a multiple of 8 elements. */
export function coversGroupedGemv(ops: readonly Op[], limits: GenLimits | undefined): boolean {
  return limits?.warpSize === 32 && groupedPlan(ops) !== undefined;
}

/** The same for dense bf16 or f32 linears (one, or a SwiGLU's two). */
export function coversDenseGemv(ops: readonly Op[], limits: GenLimits | undefined): boolean {
  return limits?.warpSize === 32 && densePlan(ops) !== undefined;
}

/** Output columns a warp (see the file's comment; the runtime's expert_gemv chooses alike). */
function gemvColumnsPerWarp(rowBytes: number): number {
  return rowBytes <= 2048 ? 4 : rowBytes <= 4096 ? 2 : 1;
}

/** Dense linears of few rows: a workgroup per (row, column tile), as the grouped form by row. */
export function denseGemvKernel(g: Gen, ops: readonly Op[]): GeneratedKernel {
  const plan = densePlan(ops);
  if (!plan) throw new LingcError("dense GEMV: the step is not one or two bf16 or f32 linears of one input");
  return gemvKernel(g, plan, true);
}

export function groupedGemvKernel(g: Gen, ops: readonly Op[], byRow: boolean): GeneratedKernel {
  const plan = groupedPlan(ops);
  if (!plan) throw new LingcError("grouped GEMV: the step is not a grouped bf16 matmul");
  return gemvKernel(g, plan, byRow);
}

/**
 * How many of a column tile's warps share a row's K (a power of two up to WARPS): dense forms only
 * (one row: a grouped form's workgroups are many by its rows), until the tiles are `want`
 * workgroups, each warp keeping whole steps of the row.
 */
function kSplit(plan: GemvPlan, cpw: number, steps: number, want: number): number {
  let ks = 1;
  while (!plan.offsets && ks < WARPS && Math.ceil(plan.O / ((WARPS / ks) * cpw)) < want && steps % (2 * ks) === 0) ks *= 2;
  return ks;
}

/**
 * 1 / rms of row `row0` (its I elements from element row0 of buffer xb) by one warp: each lane's
 * share of the squares in the GEMV's step order, a warp sum, then the norm kernel's formula
 * (rsqrt(sum / I + eps)). Every lane gets the value.
 */
function rowInverseRms(g: Gen, xb: string, row0: Expr, I: number, STEP: number, LANE: number, lane: Expr, perWord: Expr, value: (words: Expr[], t: number) => Expr, eps: number): Expr {
  const kb = g.kb;
  const { i, add, mul, div, lt } = K;
  const ss = kb.var("ss", K.f(0));
  kb.for("sq", i(0), i(Math.ceil(I / STEP)), (s) => {
    const k = kb.let("k", add(mul(s, i(STEP)), mul(lane, i(LANE))));
    const square = () => {
      const xs = kb.load16("xn", xb, div(add(row0, k), perWord));
      for (let t = 0; t < LANE; t++) {
        const v = kb.let("xn", value(xs, t));
        ss.set(add(ss.ref, mul(v, v)));
      }
    };
    if (I % STEP === 0) square();
    else kb.if(lt(k, i(I)), square);
  });
  return kb.let("inv", inverseRms(kb.warpSum(ss.ref), I, eps));
}

function gemvKernel(g: Gen, plan: GemvPlan, byRow: boolean): GeneratedKernel {
  const { mats: matOps, epilogue, src, permute, offsets, E, O, I, rowsDim, elem, norm } = plan;
  const kb = g.kb;
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : matOps[0]!).results[0]!;
  if (g.step.writes.size !== 1 || !g.step.writes.has(out)) throw new LingcError(`GEMV: the step must write only its last result (${g.step.kernel?.name ?? matOps[0]!.opName})`);
  const xb = g.buf(src);
  const mats = matOps.map((mo) => ({ buf: g.buf(mo.operands[1]!), result: mo.results[0]! }));
  const offb = offsets ? g.buf(offsets) : undefined;
  const ob = g.buf(out);
  const size = elem === "bf16" ? 2 : 4;
  const LANE = laneElems(elem);
  const STEP = 32 * LANE;
  // Element t of a load's four words.
  const value = (words: Expr[], t: number) => (elem === "bf16" ? K.half(words[t >> 1]!, (t & 1) === 1) : K.bitsF32(words[t]!));
  const CPW = gemvColumnsPerWarp(I * size * mats.length);
  const steps = Math.ceil(I / STEP);
  const KS = kSplit(plan, CPW, steps, g.limits.gemvWorkgroups ?? 0);
  const tileWarps = WARPS / KS;
  const { i, add, sub, mul, div, mod, lt, min } = K;
  const blocks = Math.ceil(O / (tileWarps * CPW));
  const warp = kb.let("warp", div(kb.lid, i(32)));
  const lane = kb.let("lane", mod(kb.lid, i(32)));
  // Warp w: columns of tile warp w % tileWarps, K part w / tileWarps.
  const part = KS > 1 ? kb.let("kpart", div(warp, i(tileWarps))) : i(0);
  const o0 = kb.let("o0", mul(add(mul(mod(kb.wg, i(blocks)), i(tileWarps)), KS > 1 ? mod(warp, i(tileWarps)) : warp), i(CPW)));
  const sel0 = (c: Expr, v: Expr) => K.sel(c, v, i(0));
  const inputRow = (r: Expr) => gatheredRow(g, permute, r);
  // The warps' partial sums of a split K (lane 0's, by warp, column and matmul).
  const partials = KS > 1 ? kb.shared("kparts", "f32", WARPS * CPW * mats.length) : undefined;
  // Columns o0..o0+CPW-1 of the nRows rows from r0 (the first n of them real; the others repeat r0,
  // their results not stored), expert e's weights.
  const columns = (e: Expr, r0: Expr, n: Expr, nRows: number) => {
    const xr = Array.from({ length: nRows }, (_, j) => kb.let("xrow", mul(inputRow(j === 0 ? r0 : add(r0, sel0(lt(i(j), n), i(j)))), i(I))));
    // Columns past the last are clamped to it (their results are not stored).
    const wr = Array.from({ length: CPW }, (_, cc) => kb.let("wrow", mul(add(mul(e, i(O)), min(add(o0, i(cc)), i(O - 1))), i(I))));
    const acc = mats.map(() => Array.from({ length: CPW }, () => Array.from({ length: nRows }, () => kb.var("acc", K.f(0)))));
    // Element index -> 32-bit word index.
    const perWord = i(4 / size);
    // A norm prologue: the row's 1 / rms by this warp from all of its elements (the norm kernel's
    // formula; its sum in another order), then each element normalized as it is read.
    const inv = norm ? rowInverseRms(g, xb, xr[0]!, I, STEP, LANE, lane, perWord, value, norm.eps) : undefined;
    const nb = norm ? g.buf(norm.weight) : undefined;
    const step = (k: Expr) => {
      const ws = mats.map((mt) => wr.map((row) => kb.load16("w", mt.buf, div(add(row, k), perWord))));
      const gs = nb ? kb.load16("g", nb, div(k, perWord)) : undefined;
      for (let j = 0; j < nRows; j++) {
        const xs = kb.load16("x", xb, div(add(xr[j]!, k), perWord));
        for (let t = 0; t < LANE; t++) {
          const xv = kb.let("xv", inv && gs && norm ? normedElement(g, value(gs, t), value(xs, t), inv, norm.dtype) : value(xs, t));
          mats.forEach((_, mi) => {
            for (let cc = 0; cc < CPW; cc++) {
              const a = acc[mi]![cc]![j]!;
              a.set(add(a.ref, mul(value(ws[mi]![cc]!, t), xv)));
            }
          });
        }
      }
    };
    // The warp's steps (a K part's: steps / KS of them) in groups of UNROLL, each group unrolled (its
    // loads in flight together; the whole row unrolled took 240 registers for a SwiGLU of four rows);
    // a last partial step only in the lanes it covers.
    const own = steps / KS;
    const group = own % UNROLL === 0 ? UNROLL : own < UNROLL ? own : 1;
    const body = (s: Expr) => {
      const k = kb.let("k", add(mul(KS > 1 ? add(mul(part, i(own)), s) : s, i(STEP)), mul(lane, i(LANE))));
      if (I % STEP === 0) step(k);
      else kb.if(lt(k, i(I)), () => step(k));
    };
    if (group === own) kb.for("s", i(0), i(own), body);
    else kb.loop("sg", i(0), i(own / group), (sg) => kb.for("s", i(0), i(group), (s0) => body(kb.let("s", add(mul(sg, i(group)), s0)))));
    const store = (j: number, cc: number, vals: Map<Value, Expr>) => {
      const y = applyEpilogue(g, epilogue, vals, out);
      const o = add(o0, i(cc));
      kb.if(K.and(K.eq(lane, i(0)), K.and(lt(i(j), n), lt(o, i(O)))), () => kb.store(ob, add(mul(add(r0, i(j)), i(O)), o), y));
    };
    if (!partials) {
      for (let j = 0; j < nRows; j++)
        for (let cc = 0; cc < CPW; cc++) {
          const vals = new Map<Value, Expr>();
          mats.forEach((mt, mi) => vals.set(mt.result, g.fit(kb.warpSum(acc[mi]![cc]![j]!.ref), mt.result.type.dtype)));
          store(j, cc, vals);
        }
      return;
    }
    // Split K (one row): each warp's sums to workgroup memory, then the first part's warps add the others'.
    const slot = (w: Expr, cc: number, mi: number) => add(mul(w, i(CPW * mats.length)), i(cc * mats.length + mi));
    for (let cc = 0; cc < CPW; cc++)
      mats.forEach((_, mi) => {
        const sum = kb.let("sum", kb.warpSum(acc[mi]![cc]![0]!.ref));
        kb.if(K.eq(lane, i(0)), () => kb.store(partials, slot(warp, cc, mi), sum));
      });
    kb.barrier();
    kb.if(K.eq(part, i(0)), () => {
      for (let cc = 0; cc < CPW; cc++) {
        const vals = new Map<Value, Expr>();
        mats.forEach((mt, mi) => {
          let total: Expr = kb.load(partials, slot(warp, cc, mi));
          for (let p = 1; p < KS; p++) total = add(total, kb.load(partials, slot(add(warp, i(p * tileWarps)), cc, mi)));
          vals.set(mt.result, g.fit(kb.let("total", total), mt.result.type.dtype));
        });
        store(0, cc, vals);
      }
    });
  };
  if (norm && (!byRow || offb || permute)) throw new LingcError("GEMV: a norm prologue needs the dense by-row form");
  if (byRow) {
    // Dense: the tile's weight rows, by the first row's workgroups.
    // (With a norm prologue always: the rows come in while the warps sum the row's squares.)
    if (!offb) for (const mt of mats) prefetchWeightRows(g, "bf16", mt.buf, mul(mod(kb.wg, i(blocks)), i(tileWarps * CPW)), tileWarps * CPW, O, I * size, lt(kb.wg, i(blocks)), norm !== undefined);
    const r = kb.let("r", div(kb.wg, i(blocks)));
    // (Split K: a tile's warps meet at a barrier, so only the row, the same for all of them, decides
    // here; the columns past the last are clamped and not stored.)
    kb.if(KS > 1 ? lt(r, g.size(rowsDim)) : K.and(lt(r, g.size(rowsDim)), lt(o0, i(O))), () => columns(offb ? kb.let("expert", expertOfRowByWarp(kb, (j) => kb.load(offb, j), r, E, lane)) : i(0), r, i(1), 1));
    return g.finish({ dim: g.entryDim(rowsDim.mul(blocks)), per: 1 });
  }
  if (!offb) throw new LingcError("GEMV: the by-expert grid needs the experts' offsets");
  const e = kb.let("expert", div(kb.wg, i(blocks)));
  kb.if(K.and(lt(e, i(E)), lt(o0, i(O))), () => {
    const lo = kb.let("lo", kb.load(offb, e));
    const hi = kb.let("hi", kb.load(offb, add(e, i(1))));
    kb.loop("grp", i(0), div(add(sub(hi, lo), i(ROWS - 1)), i(ROWS)), (grp) => {
      const r0 = kb.let("r0", add(lo, mul(grp, i(ROWS))));
      columns(e, r0, kb.let("n", min(i(ROWS), sub(hi, r0))), ROWS);
    });
  });
  return g.finish({ dim: g.entryDim(Dim.of(E * blocks)), per: 1 });
}
