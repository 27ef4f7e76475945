/**
 * The grouped FP8 GEMM as a tile program (the routed experts of a W8A8 prefill): rows sorted by
 * expert (offsets), e4m3 activations in 1x128 groups times an expert's e4m3 weights in 128x128
 * blocks, fp32 scales, on the tensor cores (mma m16n8k32 e4m3, fp32 accumulators). The scales are
 * applied per 128-wide K slice as DeepSeek-V3 and DeepGEMM do: a slice's products sum in a fresh
 * accumulator, which is then multiplied by (the row's activation scale x the block's weight scale)
 * and added to the total in fp32.
 *
 * Tiles: 128 rows of one expert by 128 weight rows (the SwiGLU form: 64 gate and the same 64 up
 * rows, so the epilogue has both halves of each output); 8 warps of 64 x 32; K in stages of 64
 * codes, two stages in flight (async 16-byte copies into padded shared rows, conflict-free fragment
 * reads). A workgroup finds its (expert, first row) by a prefix sum of the experts' tile counts, so
 * nothing is padded and no tile table is built on the host; workgroups past the last tile return.
 * The epilogue evaluates the step's elementwise ops (silu, mul) by their op-table formulas.
 */
import type { DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { getOp } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import { kirScalars } from "./algebra";
import type { Gen, GeneratedKernel, GenLimits } from "./context";

const BM = 128;
const BN = 128;
/** K codes (bytes) per pipeline stage. */
const BK = 64;
const STAGES = 2;
/** Words per shared row: BK / 4 and 4 of padding, so a warp's fragment reads hit 32 distinct banks. */
const LDW = BK / 4 + 4;
/** The K width of a scale block. */
const SLICE = 128;
export const GEMM_FP8_THREADS = 256;

const blockScaled = (v: Value, rows: number, cols: number) => {
  const q = v.type.quant;
  return v.type.dtype === "f8e4m3fn" && q?.scaleDtype === "f32" && q.granularity.kind === "block" && q.granularity.rows === rows && q.granularity.cols === cols;
};

interface Plan {
  gate: Op;
  up?: Op;
  /** Elementwise ops after the GEMMs (in order), the last one's result is the output. */
  epilogue: Op[];
}

/** The step as a grouped FP8 GEMM (one grouped_linear, or gate and up with an elementwise epilogue), if the tile program covers it. */
function planOf(ops: readonly Op[], limits: GenLimits): Plan | undefined {
  if (!limits.tensorCores?.includes("f8e4m3fn")) return undefined;
  const gls = ops.filter((o) => o.opName === "grouped_linear");
  if (gls.length < 1 || gls.length > 2) return undefined;
  const [gate, up] = gls as [Op, Op | undefined];
  const epilogue = ops.filter((o) => o.opName !== "grouped_linear");
  // The epilogue reads only the GEMMs' results and its own.
  const known = new Set<Value>(gls.map((o) => o.results[0]!));
  for (const o of epilogue) {
    if (!getOp(o.opName)?.scalar || o.results.length !== 1 || !o.operands.every((v) => known.has(v))) return undefined;
    known.add(o.results[0]!);
  }
  if (up && (up.operands[0] !== gate.operands[0] || up.operands[2] !== gate.operands[2] || !epilogue.length)) return undefined;
  for (const gl of gls) {
    const [x, w] = gl.operands as [Value, Value];
    if (!blockScaled(x, 1, 128) || !blockScaled(w, 128, 128) || x.type.rank !== 2 || w.type.rank !== 3) return undefined;
    const [E, O, I] = w.type.shape.map((d) => d.value);
    if (E === undefined || O === undefined || I === undefined || I % BK !== 0) return undefined;
    if (up && (gl.operands[1]!.type.shape[1]!.value !== gate.operands[1]!.type.shape[1]!.value || gl.operands[1]!.type.shape[0]!.value !== E)) return undefined;
  }
  return { gate, up, epilogue };
}

export function coversGroupedFp8(ops: readonly Op[], limits: GenLimits): boolean {
  return planOf(ops, limits) !== undefined;
}

export function groupedFp8Kernel(g: Gen, ops: readonly Op[]): GeneratedKernel {
  const plan = planOf(ops, g.limits)!;
  const kb = g.kb;
  const { gate, up, epilogue } = plan;
  const [x, w, offsets] = gate.operands as [Value, Value, Value];
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : gate).results[0]!;
  if (g.step.writes.size !== 1 || !g.step.writes.has(out)) throw new LingcError(`grouped FP8 GEMM: the step must write only its last result (${g.step.kernel?.name ?? gate.opName})`);
  const [E, O, I] = w.type.shape.map((d) => d.value!) as [number, number, number];
  const swiglu = up !== undefined;
  const colsPer = swiglu ? BN / 2 : BN;
  const colTiles = Math.ceil(O / colsPer);
  const kBlocks = Math.ceil(I / SLICE);
  const oBlocks = Math.ceil(O / 128);
  const xb = g.buf(x, true);
  const xs = g.scalesBuf(x);
  const wb = [g.buf(w, true), ...(up ? [g.buf(up.operands[1]!, true)] : [])];
  const wsb = [g.scalesBuf(w), ...(up ? [g.scalesBuf(up.operands[1]!)] : [])];
  const offb = g.buf(offsets);
  const ob = g.buf(out);
  const rowsDim = x.type.shape[0]!;
  const T = GEMM_FP8_THREADS;
  const { i, add, sub, mul, div, mod, lt, ge, and } = K;

  // Which tile: workgroup = tile x colTiles + column tile; a tile is (expert, 128 of its rows).
  const t = kb.let("t", div(kb.wg, i(colTiles)));
  const ct = kb.let("ct", mod(kb.wg, i(colTiles)));
  const info = kb.shared(kb.fresh("tile"), "i32", 2);
  kb.if(K.eq(kb.lid, i(0)), () => kb.store(info, i(0), i(-1)));
  const carry = kb.var("carry", i(0));
  kb.for("c0", i(0), i(E), (c0) => {
    const e = kb.let("e", add(c0, kb.lid));
    const ec = kb.let("ec", K.min(e, i(E - 1)));
    const count = kb.let("count", K.sel(lt(e, i(E)), sub(kb.load(offb, add(ec, i(1))), kb.load(offb, ec)), i(0)));
    const nt = kb.let("nt", div(add(count, i(BM - 1)), i(BM)));
    const scan = kb.workgroupScan(nt);
    const first = kb.let("first", sub(add(carry.ref, scan.inclusive), nt));
    kb.if(and(lt(e, i(E)), and(ge(t, first), lt(t, add(carry.ref, scan.inclusive)))), () => {
      kb.store(info, i(0), e);
      kb.store(info, i(1), add(kb.load(offb, ec), mul(sub(t, first), i(BM))));
    });
    carry.set(add(carry.ref, scan.total));
  }, i(T));
  kb.barrier();
  const e = kb.let("expert", kb.load(info, i(0)));
  const row0 = kb.let("row0", kb.load(info, i(1)));
  kb.if(ge(e, i(0)), () => {
    const rowEnd = kb.let("row_end", K.min(kb.load(offb, add(e, i(1))), add(row0, i(BM))));
    const warp = kb.let("warp", div(kb.lid, i(32)));
    const lane = kb.let("lane", mod(kb.lid, i(32)));
    const gr = kb.let("gr", div(lane, i(4)));
    const tq = kb.let("tq", mod(lane, i(4)));
    const wm = kb.let("wm", div(warp, i(4)));
    const wn = kb.let("wn", mod(warp, i(4)));
    const As = kb.shared(kb.fresh("a_tile"), "u32", STAGES * BM * LDW);
    const Bs = kb.shared(kb.fresh("b_tile"), "u32", STAGES * BN * LDW);

    // Copies: each thread moves two 16-byte chunks of A and two of B per stage (rows lid / 4 and
    // + 64, chunk lid % 4). B row r of the tile: SwiGLU rows 0..63 gate and 64..127 up.
    const lr = kb.let("lr", div(kb.lid, i(4)));
    const lc = kb.let("lc", mod(kb.lid, i(4)));
    const aBase: Expr[] = [];
    const aOk: Expr[] = [];
    const bBase: Expr[] = [];
    const bOk: Expr[] = [];
    const bBuf: string[] = [];
    for (let h = 0; h < 2; h++) {
      const r = kb.let("ar", add(row0, add(lr, i(64 * h))));
      aOk.push(kb.let("aok", lt(r, rowEnd)));
      aBase.push(kb.let("abase", mul(K.sel(aOk[h]!, r, row0), i(I))));
      const o = kb.let("bo", swiglu ? add(mul(ct, i(colsPer)), lr) : add(mul(ct, i(BN)), add(lr, i(64 * h))));
      bOk.push(kb.let("bok", lt(o, i(O))));
      bBase.push(kb.let("bbase", mul(add(mul(e, i(O)), K.sel(bOk[h]!, o, i(0))), i(I))));
      bBuf.push(swiglu ? wb[h]! : wb[0]!);
    }
    const loadStage = (kt: Expr, st: Expr) => {
      const kk = kb.let("kk", add(mul(kt, i(BK)), mul(lc, i(16))));
      for (let h = 0; h < 2; h++) {
        const srow = add(mul(st, i(BM)), add(lr, i(64 * h)));
        kb.copy16(As, add(mul(srow, i(LDW)), mul(lc, i(4))), xb, add(aBase[h]!, kk), aOk[h]!);
        kb.copy16(Bs, add(mul(srow, i(LDW)), mul(lc, i(4))), bBuf[h]!, add(bBase[h]!, kk), bOk[h]!);
      }
      kb.copyCommit();
    };

    const acc = kb.array("acc", "f32", 64);
    const part = kb.array("part", "f32", 64);
    kb.for("j", i(0), i(64), (j) => {
      kb.store(acc, j, K.f(0));
      kb.store(part, j, K.f(0));
    });
    // The tile row (0..127) of n-tile nt's first weight row for this warp.
    const bRow = (nt: number): Expr => (swiglu ? add(mul(wn, i(16)), i(nt < 2 ? nt * 8 : 64 + (nt - 2) * 8)) : add(mul(wn, i(32)), i(nt * 8)));
    // The output column of n-tile nt, pair c (SwiGLU: n-tiles nt and nt + 2 are the gate and up halves of one column).
    const colOf = (nt: number, c: number): Expr =>
      add(add(mul(ct, i(colsPer)), swiglu ? add(mul(wn, i(16)), i((nt % 2) * 8)) : add(mul(wn, i(32)), i(nt * 8))), add(mul(tq, i(2)), i(c)));

    const nk = I / BK;
    loadStage(i(0), i(0));
    kb.loop("kt", i(0), i(nk), (kt) => {
      // The stage computed on last iteration is free (the barrier that ended it): fill it with kt + 1.
      kb.if(lt(add(kt, i(1)), i(nk)), () => loadStage(add(kt, i(1)), mod(add(kt, i(1)), i(STAGES))), () => kb.copyCommit());
      kb.copyWait(1);
      kb.barrier();
      const st = kb.let("st", mod(kt, i(STAGES)));
      for (let ks = 0; ks < BK / 32; ks++) {
        const a: Expr[][] = [];
        for (let mt = 0; mt < 4; mt++) {
          const base = kb.let("fa", add(mul(add(mul(st, i(BM)), add(mul(wm, i(64)), add(i(mt * 16), gr))), i(LDW)), add(i(ks * 8), tq)));
          a.push([base, add(base, i(8 * LDW)), add(base, i(4)), add(base, i(8 * LDW + 4))].map((ix) => kb.let("af", kb.load(As, ix))));
        }
        const b: Expr[][] = [];
        for (let nt = 0; nt < 4; nt++) {
          const base = kb.let("fb", add(mul(add(mul(st, i(BN)), add(bRow(nt), gr)), i(LDW)), add(i(ks * 8), tq)));
          b.push([base, add(base, i(4))].map((ix) => kb.let("bf", kb.load(Bs, ix))));
        }
        for (let mt = 0; mt < 4; mt++) for (let nt = 0; nt < 4; nt++) kb.mma("m16n8k32.e4m3", part, i((mt * 4 + nt) * 4), a[mt]!, b[nt]!);
      }
      // A 128-wide K slice is summed: scale it into the total and start the next.
      const slice = kb.let("slice", div(kt, i(SLICE / BK)));
      kb.if(K.or(K.eq(mod(add(kt, i(1)), i(SLICE / BK)), i(0)), K.eq(kt, i(nk - 1))), () => {
        const sb: Expr[] = [];
        for (let nt = 0; nt < 4; nt++) {
          const col = colOf(nt, 0);
          const blk = K.min(div(col, i(128)), i(oBlocks - 1));
          const which = swiglu && nt >= 2 ? 1 : 0;
          sb.push(kb.let("sb", kb.load(wsb[which]!, add(mul(add(mul(e, i(oBlocks)), blk), i(kBlocks)), slice))));
        }
        for (let mt = 0; mt < 4; mt++)
          for (let hh = 0; hh < 2; hh++) {
            const row = kb.let("srow", add(row0, add(mul(wm, i(64)), add(i(mt * 16 + hh * 8), gr))));
            const sa = kb.let("sa", K.sel(lt(row, rowEnd), kb.load(xs, add(mul(K.min(row, sub(rowEnd, i(1))), i(kBlocks)), slice)), K.f(0)));
            for (let nt = 0; nt < 4; nt++)
              for (let c = 0; c < 2; c++) {
                const j = i((mt * 4 + nt) * 4 + hh * 2 + c);
                kb.store(acc, j, add(kb.load(acc, j, "f32"), mul(kb.load(part, j, "f32"), mul(sa, sb[nt]!))));
                kb.store(part, j, K.f(0));
              }
          }
      });
      kb.barrier();
    });
    kb.copyWait(0);

    // Epilogue: acc holds rows wm*64 + mt*16 + gr (+8) by columns 2 tq (+1) of each n-tile.
    const gateDt = gate.results[0]!.type.dtype;
    const upDt = up?.results[0]!.type.dtype;
    for (let mt = 0; mt < 4; mt++)
      for (let hh = 0; hh < 2; hh++) {
        const row = kb.let("orow", add(row0, add(mul(wm, i(64)), add(i(mt * 16 + hh * 8), gr))));
        kb.if(lt(row, rowEnd), () => {
          for (let nt = 0; nt < (swiglu ? 2 : 4); nt++)
            for (let c = 0; c < 2; c++) {
              const col = kb.let("ocol", colOf(nt, c));
              kb.if(lt(col, i(O)), () => {
                const j = (mt * 4 + nt) * 4 + hh * 2 + c;
                const vals = new Map<Value, Expr>([[gate.results[0]!, g.fit(kb.load(acc, i(j), "f32"), gateDt)]]);
                if (up) vals.set(up.results[0]!, g.fit(kb.load(acc, i(j + 8), "f32"), upDt as DType));
                for (const op of epilogue) {
                  const dt = op.results[0]!.type.dtype;
                  const ins = op.operands.map((v) => vals.get(v)!);
                  const y = getOp(op.opName)!.scalar!(kirScalars(dt), ins, { inTypes: op.operands.map((o) => o.type.dtype), outType: dt, attrs: op.attrs });
                  vals.set(op.results[0]!, g.fit(y, dt));
                }
                kb.store(ob, add(mul(row, i(O)), col), vals.get(out)!);
              });
            }
        });
      }
  });
  // Workgroups: (row tiles + one partial tile per expert) x column tiles; those past the last tile return.
  return g.finish({ dim: g.entryDim(rowsDim.add(BM * (E + 1)).mul(colTiles)), per: BM });
}
