/**
 * Dense linear layers on targets without tensor cores (WebGPU): one linear, or two sharing their
 * input (SwiGLU's gate and up), with an elementwise epilogue (a cast, SwiGLU's silu x up, a residual
 * add), workgroup-tiled as the routed experts are (grouped-gemm-simt.ts's tile: 32 x 32 outputs, a
 * 4 x 4 block a thread, K staged in workgroup memory): a weight element is read once per 32 rows
 * instead of once per row. The LM head of a 2048-token prefill took 2.6 s on the H200 through Dawn as
 * the pointwise kernel's one thread per output (bench/results/wgsl-2026-12-01-h200.md). For few rows
 * the host runs the pointwise group's gemv form instead (a tile's rows would stand mostly empty).
 */
import { product, type Dim } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { getOp } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { applyEpilogue } from "./grouped-gemm";
import { GROUPED_SIMT_THREADS, SIMT_TILE, simtTile } from "./grouped-gemm-simt";

interface LinearPlan {
  mats: Op[];
  epilogue: Op[];
  /** Values the epilogue reads from outside the group, of the result's shape (read at the same element). */
  outside: Value[];
  out: Value;
  rows: Dim;
}

function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d.equals(b[i]!));
}

/** The step as tiled linear layers, if this kernel covers it. */
export function linearSimtPlan(ops: readonly Op[]): LinearPlan | undefined {
  const mats = ops.filter((o) => o.opName === "linear");
  if (mats.length < 1 || mats.length > 2) return undefined;
  const [x, w] = mats[0]!.operands as [Value, Value];
  if (x.type.quant || x.type.rank < 2 || w.type.rank !== 2 || w.type.shape.some((d) => d.value === undefined)) return undefined;
  const shape = mats[0]!.results[0]!.type.shape;
  for (const m of mats) {
    const mw = m.operands[1]!;
    if (m.operands[0] !== x || mw.type.rank !== 2 || !sameShape(mw.type.shape, w.type.shape)) return undefined;
  }
  const epilogue = ops.filter((o) => o.opName !== "linear");
  if (mats.length === 2 && !epilogue.length) return undefined;
  const known = new Set<Value>(mats.map((m) => m.results[0]!));
  const outside: Value[] = [];
  for (const o of epilogue) {
    if (!getOp(o.opName)?.scalar || o.results.length !== 1 || !sameShape(o.results[0]!.type.shape, shape)) return undefined;
    for (const v of o.operands) {
      if (known.has(v) || outside.includes(v)) continue;
      if (v.def && ops.includes(v.def)) return undefined;
      if (!sameShape(v.type.shape, shape) || v.type.quant) return undefined;
      outside.push(v);
    }
    known.add(o.results[0]!);
  }
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : mats[0]!).results[0]!;
  return { mats, epilogue, outside, out, rows: product(x.type.shape.slice(0, -1)) };
}

export function linearSimtKernel(g: Gen, ops: readonly Op[]): GeneratedKernel {
  const plan = linearSimtPlan(ops)!;
  const { mats, epilogue, outside, out, rows } = plan;
  const kb = g.kb;
  if (kb.kernel.wg !== GROUPED_SIMT_THREADS) throw new LingcError(`linear tile: needs ${GROUPED_SIMT_THREADS} threads, not ${kb.kernel.wg}`);
  if (g.step.writes.size !== 1 || !g.step.writes.has(out)) throw new LingcError(`linear tile: the step must write only its last result (${g.step.kernel?.name ?? mats[0]!.opName})`);
  const x = mats[0]!.operands[0]!;
  const [O, I] = mats[0]!.operands[1]!.type.shape.map((d) => d.value!) as [number, number];
  const { BM, BN } = SIMT_TILE;
  const colTiles = Math.ceil(O / BN);
  const { i, add, mul, div, mod, lt } = K;
  const n = g.size(rows);
  const row0 = kb.let("row0", mul(div(kb.wg, i(colTiles)), i(BM)));
  // Workgroup-uniform: the grid's spare row tiles return before any barrier.
  kb.if(lt(row0, n), () => {
    simtTile(g, {
      row0,
      rowEnd: kb.let("row_end", K.min(n, add(row0, i(BM)))),
      col0: kb.let("col0", mul(mod(kb.wg, i(colTiles)), i(BN))),
      src: x,
      srcRow: (r) => r,
      weights: mats.map((m) => m.operands[1]!),
      weightRow: (o) => o,
      I,
      O,
      value: (sums, row, col) => {
        const vals = new Map<Value, Expr>(mats.map((m, j) => [m.results[0]!, g.fit(sums[j]!, m.results[0]!.type.dtype)]));
        for (const v of outside) vals.set(v, g.load(v, add(mul(row, i(O)), col)));
        return applyEpilogue(g, epilogue, vals, out);
      },
      out,
    });
  });
  // Workgroups: ceil(rows / BM) row tiles (and at most one spare) x column tiles.
  return g.finish({ dim: g.entryDim(rows.add(BM - 1).mul(colTiles)), per: BM });
}
