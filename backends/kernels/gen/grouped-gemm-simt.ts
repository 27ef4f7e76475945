/**
 * The grouped expert matmuls (one grouped_linear, or SwiGLU's gate and up with their elementwise
 * epilogue, read through the token gather) as a workgroup-tiled kernel for targets without tensor
 * cores (WebGPU): a workgroup takes one expert's BM rows by BN output columns (the tile finder of
 * grouped-gemm.ts), stages BK-wide slices of the rows and of the weight rows in workgroup memory,
 * and each of its 8 x 8 threads accumulates a 4 x 4 block of outputs (SwiGLU: of gate and of up) in
 * registers. A weight element is read from memory once per BM rows instead of once per row, an input
 * element once per BN columns, where the pointwise kernel reads both once per output.
 * Accumulators sum in fp32 in K order; results are rounded to their dtypes as the ops' own kernels
 * round them, then the epilogue's ops apply their op-table formulas.
 */
import type { Dim } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { gatheredRow } from "./experts";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { applyEpilogue, groupedMatmuls, workgroupTile, type GroupedMatmuls } from "./grouped-gemm";

/** Threads per tile side: 8 x 8. */
const TS = 8;
/** Outputs per thread along rows and columns. */
const RM = 4;
const RN = 4;
const BM = TS * RM;
const BN = TS * RN;
/** K elements per staged slice. */
const BK = 16;
export const GROUPED_SIMT_THREADS = TS * TS;
/** The tile's rows and output columns (linear-simt.ts sizes its grid by them). */
export const SIMT_TILE = { BM, BN } as const;

/** The step as grouped matmuls this kernel covers: float operands without scales (the weights may have them: Gen.load applies them). */
function simtPlan(ops: readonly Op[]): GroupedMatmuls | undefined {
  const m = groupedMatmuls(ops);
  if (!m) return undefined;
  const rows = m.permute ? m.permute.operands[0]! : m.gate.operands[0]!;
  return rows.type.quant || m.gate.operands[0]!.type.quant ? undefined : m;
}

/**
 * Tiles pay when the experts average half a tile of rows or more; with fewer (a decode step: B x k
 * rows over E experts) most of each tile would be empty, and the pointwise group does better: in
 * its gemv form on a GPU (each output's expert found by a binary search, its dot product split over
 * lanes), a thread per output on a CPU adapter (GenLimits.gpuForms).
 */
export function groupedSimtFew(ops: readonly Op[], limits: GenLimits): { rows: Dim; max: number; template: string } | undefined {
  const plan = simtPlan(ops);
  if (!plan) return undefined;
  const E = plan.gate.operands[1]!.type.shape[0]!.value!;
  return { rows: plan.gate.operands[0]!.type.shape[0]!, max: Math.floor((E * BM) / 2) - 1, template: limits.gpuForms ? "gemv" : "pointwise" };
}

/** On a target without tensor cores: the grouped matmuls of a step, workgroup-tiled. */
export function coversGroupedSimt(ops: readonly Op[], tensorCores: readonly string[] | undefined): boolean {
  return !tensorCores?.length && simtPlan(ops) !== undefined;
}

export function groupedSimtKernel(g: Gen, ops: readonly Op[]): GeneratedKernel {
  const { gate, up, permute, epilogue } = simtPlan(ops)!;
  const kb = g.kb;
  if (kb.kernel.wg !== GROUPED_SIMT_THREADS) throw new LingcError(`grouped matmul tile: needs ${GROUPED_SIMT_THREADS} threads, not ${kb.kernel.wg}`);
  const [x, w, offsets] = gate.operands as [Value, Value, Value];
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : gate).results[0]!;
  if (g.step.writes.size !== 1 || !g.step.writes.has(out)) throw new LingcError(`grouped matmul tile: the step must write only its last result (${g.step.kernel?.name ?? gate.opName})`);
  const [E, O, I] = w.type.shape.map((d) => d.value!) as [number, number, number];
  const colTiles = Math.ceil(O / BN);
  const offb = g.buf(offsets);
  const { i, add, mul } = K;

  const { ct, e, row0 } = workgroupTile(g, offb, E, BM, colTiles);
  // Workgroup-uniform: idle workgroups (past the last tile) return before any barrier below.
  kb.if(K.ge(e, i(0)), () => {
    simtTile(g, {
      row0,
      rowEnd: kb.let("row_end", K.min(kb.load(offb, add(e, i(1))), add(row0, i(BM)))),
      col0: kb.let("col0", mul(ct, i(BN))),
      src: permute ? permute.operands[0]! : x,
      srcRow: (r) => gatheredRow(g, permute, r),
      weights: [w, ...(up ? [up.operands[1]!] : [])],
      weightRow: (o) => add(mul(e, i(O)), o),
      I,
      O,
      value: (m) => {
        const vals = new Map<Value, Expr>([[gate.results[0]!, g.fit(m[0]!, gate.results[0]!.type.dtype)]]);
        if (up) vals.set(up.results[0]!, g.fit(m[1]!, up.results[0]!.type.dtype));
        return applyEpilogue(g, epilogue, vals, out);
      },
      out,
    });
  });
  // Workgroups: (row tiles + one partial tile per expert) x column tiles; those past the last tile return.
  return g.finish({ dim: g.entryDim(x.type.shape[0]!.add(BM * (E + 1)).mul(colTiles)), per: BM });
}

/** One BM x BN tile of matmuls sharing their rows (SwiGLU: gate and up), and its stores. */
export interface SimtTile {
  /** The tile's first row, the end of its rows (exclusive), its first output column. */
  row0: Expr;
  rowEnd: Expr;
  col0: Expr;
  /** The rows' source and the source row of tile row r (a gather, or r itself). */
  src: Value;
  srcRow: (r: Expr) => Expr;
  /** The weights ([.., O, I]) and the weight row of output column o. */
  weights: readonly Value[];
  weightRow: (o: Expr) => Expr;
  I: number;
  O: number;
  /** The value stored at (row, col) from the matmuls' fp32 sums there (one per weight), and where. */
  value: (sums: readonly Expr[], row: Expr, col: Expr) => Expr;
  out: Value;
}

/**
 * The tile's staged K loop and stores: BK-wide slices of the rows and of the weight rows in
 * workgroup memory, a RM x RN block of sums per thread. Every thread must reach it (barriers).
 */
export function simtTile(g: Gen, t: SimtTile): void {
  const kb = g.kb;
  const { i, add, mul, div, mod, lt, and } = K;
  const { row0, rowEnd, col0, src, weights, I, O } = t;
  const xs = kb.shared(kb.fresh("x_tile"), "f32", BM * BK);
  const ws = weights.map(() => kb.shared(kb.fresh("w_tile"), "f32", BN * BK));
  const ty = kb.let("ty", div(kb.lid, i(TS)));
  const tx = kb.let("tx", mod(kb.lid, i(TS)));
  // Staging: thread lid loads elements lid + pass x 64 of each BM x BK (BN x BK) slice; element
  // (row, kk) at row * BK + kk. Each row's source offset is computed once, outside the K loop.
  const passes = (BM * BK) / GROUPED_SIMT_THREADS;
  const xRow: { ok: Expr; base: Expr; kk: Expr; at: Expr }[] = [];
  const wRow: { ok: Expr; base: Expr; kk: Expr; at: Expr }[] = [];
  for (let p = 0; p < passes; p++) {
    const el = kb.let("el", add(kb.lid, i(p * GROUPED_SIMT_THREADS)));
    const rr = kb.let("rr", div(el, i(BK)));
    const kk = kb.let("kk", mod(el, i(BK)));
    const r = kb.let("xr", add(row0, rr));
    const ok = kb.let("xok", lt(r, rowEnd));
    xRow.push({ ok, base: kb.let("xbase", mul(t.srcRow(K.sel(ok, r, row0)), i(I))), kk, at: el });
    const o = kb.let("wo", add(col0, rr));
    const wok = kb.let("wok", lt(o, i(O)));
    wRow.push({ ok: wok, base: kb.let("wbase", mul(t.weightRow(K.sel(wok, o, i(0))), i(I))), kk, at: el });
  }
  const accs = weights.map(() => Array.from({ length: RM * RN }, () => kb.var("acc", K.f(0))));
  kb.loop("k0", i(0), i(Math.ceil(I / BK)), (k0) => {
    const kbase = kb.let("kb", mul(k0, i(BK)));
    for (let p = 0; p < passes; p++) {
      const kx = kb.let("kx", add(kbase, xRow[p]!.kk));
      const kin = kb.let("kin", lt(kx, i(I)));
      kb.store(xs, xRow[p]!.at, K.sel(and(xRow[p]!.ok, kin), g.load(src, add(xRow[p]!.base, K.sel(kin, kx, i(0)))), K.f(0)));
      weights.forEach((wv, j) => kb.store(ws[j]!, wRow[p]!.at, K.sel(and(wRow[p]!.ok, kin), g.load(wv, add(wRow[p]!.base, K.sel(kin, kx, i(0)))), K.f(0))));
    }
    kb.barrier();
    for (let kk = 0; kk < BK; kk++) {
      const a = Array.from({ length: RM }, (_, m) => kb.let("a", kb.load(xs, add(mul(add(mul(ty, i(RM)), i(m)), i(BK)), i(kk)))));
      weights.forEach((_, j) => {
        const b = Array.from({ length: RN }, (_, n) => kb.let("b", kb.load(ws[j]!, add(mul(add(mul(tx, i(RN)), i(n)), i(BK)), i(kk)))));
        for (let m = 0; m < RM; m++) for (let n = 0; n < RN; n++) accs[j]![m * RN + n]!.set(add(accs[j]![m * RN + n]!.ref, mul(a[m]!, b[n]!)));
      });
    }
    kb.barrier();
  });
  // Thread (ty, tx) holds rows ty x RM + m and columns tx x RN + n of the tile.
  const ob = g.buf(t.out);
  for (let m = 0; m < RM; m++) {
    const row = kb.let("orow", add(row0, add(mul(ty, i(RM)), i(m))));
    kb.if(lt(row, rowEnd), () => {
      for (let n = 0; n < RN; n++) {
        const col = kb.let("ocol", add(col0, add(mul(tx, i(RN)), i(n))));
        kb.if(lt(col, i(O)), () => kb.store(ob, add(mul(row, i(O)), col), t.value(accs.map((a) => a[m * RN + n]!.ref), row, col)));
      }
    });
  }
}
