/**
 * The grouped expert GEMM as a tile program (the routed experts of a prefill): rows sorted by
 * expert (offsets), each workgroup a tile of one expert's rows against that expert's weights, on
 * the tensor cores (mma.sync, fp32 accumulators). Two element types, one program:
 * - e4m3 (W8A8): activations in 1x128 groups times weights in 128x128 blocks, fp32 scales applied
 *   per 128-wide K slice as DeepSeek-V3 and DeepGEMM do: a slice's products sum in a fresh
 *   accumulator, which is then multiplied by (the row's activation scale x the block's weight scale)
 *   and added to the total in fp32 (m16n8k32 e4m3).
 * - bf16: the products accumulate directly (m16n8k16 bf16); the rows may be read through the token
 *   gather before them (moe_permute: row r is x[order[r] / k]), so nothing is copied first.
 * In 32-bit words both MMAs take the same fragments (A 16 rows x 8 words, B 8 rows x 8 words), so the
 * copies, shared layout and ldmatrix addressing are the same; only the elements per word differ.
 *
 * Tiles (the target's TileShape per element type; the H200's take Hopper's warpgroup MMAs instead,
 * grouped-gemm-wgmma.ts, unless LINGC_BF16_TILE / LINGC_FP8_TILE names a warp tile here, such as
 * e4m3's exact 64,128,64,32,3: 64 rows of one expert by 128 weight rows, 4 warps of 64 x 32, 3
 * stages): SwiGLU tiles
 * hold the gate rows and the same columns' up rows, so the epilogue has both halves of each output. K runs in stages of 64 bytes per row, async 16-byte
 * copies into padded shared rows, fragments by ldmatrix. A workgroup finds its (expert, first row)
 * by a warp's prefix sum of the experts' tile counts, so nothing is padded, no tile table is built
 * and the host never reads the offsets; workgroups past the last tile return. The epilogue evaluates the
 * step's elementwise ops (silu, mul) by their op-table formulas.
 */
import type { DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { gathersScaledCodes, isE4m3Blocks } from "../../../ir/quant";
import { attrsOf, getOp, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr, MmaShape } from "../kir";
import { opFormula } from "./algebra";
import type { TileShape } from "../../../ir/target/cuda";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { gatheredRow } from "./experts";
import { splitQuantEpilogue } from "./quant";

/** The element types the tile program multiplies. */
export type GemmElem = "e4m3" | "bf16";

interface ElemInfo {
  /** The dtype the target's tensor cores must list (GenLimits.tensorCores) and the tile key (GenLimits.gemmTiles). */
  dtype: string;
  /** Elements per 32-bit word. */
  perWord: number;
  mma: MmaShape;
  /** Whether the operands carry block scales applied per K slice. */
  scaled: boolean;
}

const ELEMS: Record<GemmElem, ElemInfo> = {
  e4m3: { dtype: "f8e4m3fn", perWord: 4, mma: "m16n8k32.e4m3", scaled: true },
  bf16: { dtype: "bf16", perWord: 2, mma: "m16n8k16.bf16", scaled: false },
};

/** 32-bit words of a row per pipeline stage by default (64 bytes: 64 e4m3 codes, 32 bf16). */
const BKW = 16;
/** The K width of a scale block. */
const SLICE = 128;

/** K elements per pipeline stage of an element type (an e4m3 step's K must be a multiple). */
export function stageK(elem: GemmElem): number {
  return BKW * ELEMS[elem].perWord;
}

/** Threads of the tile's workgroup: a warp per wm x wn (wgmma: a warpgroup of 4 warps per 64 rows). */
export function gemmTileThreads(t: TileShape): number {
  return t.wgmma ? 128 * (t.bm / 64 + (t.producer ? 1 : 0)) : 32 * (t.bm / t.wm) * (t.bn / t.wn);
}

export interface Plan extends GroupedMatmuls {
  elem: GemmElem;
  /**
   * An activation quantize of the matmuls' result run in the warpgroup program's epilogue (a step
   * backends/cuda/quant-epilogue.ts merged): the step writes its codes and scales, not the result.
   */
  quant?: Op;
}

/** The operand types of a grouped_linear the tile program takes for an element type. */
function operandsFit(gl: Op, elem: GemmElem): boolean {
  const [x, w] = gl.operands as [Value, Value];
  const I = w.type.shape[2]!.value!;
  if (elem === "e4m3") return isE4m3Blocks(x.type, 1, 128) && isE4m3Blocks(w.type, 128, 128) && I % stageK(elem) === 0;
  // bf16: 16-byte copies need rows of a multiple of 8 elements; a last partial stage is zero-filled.
  return x.type.dtype === "bf16" && w.type.dtype === "bf16" && !x.type.quant && !w.type.quant && I % 8 === 0;
}

/** A step's grouped matmuls: one grouped_linear, or gate and up with an elementwise epilogue. */
export interface GroupedMatmuls {
  gate: Op;
  up?: Op;
  /** The token gather the matmuls read their rows through (first in the step), if any. */
  permute?: Op;
  /** Elementwise ops after the matmuls (in order), the last one's result is the output. */
  epilogue: Op[];
}

/**
 * The step's ops in the form every grouped-matmul kernel takes: one or two grouped_linears of one
 * input, offsets and static [E, O, I] weights (up's the same shape as gate's), optionally read
 * through a leading moe_permute, followed by elementwise ops on their results only.
 */
export function groupedMatmuls(ops: readonly Op[]): GroupedMatmuls | undefined {
  const gls = ops.filter((o) => o.opName === "grouped_linear");
  if (gls.length < 1 || gls.length > 2) return undefined;
  const [gate, up] = gls as [Op, Op | undefined];
  const permutes = ops.filter((o) => o.opName === "moe_permute");
  const permute = permutes[0];
  if (permutes.length > 1 || (permute && (ops[0] !== permute || !gls.every((o) => o.operands[0] === permute.results[0])))) return undefined;
  const epilogue = ops.filter((o) => o.opName !== "grouped_linear" && o !== permute);
  // The epilogue reads only the matmuls' results and its own.
  const known = new Set<Value>(gls.map((o) => o.results[0]!));
  for (const o of epilogue) {
    if (!getOp(o.opName)?.scalar || o.results.length !== 1 || !o.operands.every((v) => known.has(v))) return undefined;
    known.add(o.results[0]!);
  }
  if (up && (up.operands[0] !== gate.operands[0] || up.operands[2] !== gate.operands[2] || !epilogue.length)) return undefined;
  const shape = (gl: Op) => gl.operands[1]!.type.shape;
  for (const gl of gls) {
    if (gl.operands[0]!.type.rank !== 2 || shape(gl).length !== 3 || shape(gl).some((d) => d.value === undefined)) return undefined;
    if (gl !== gate && (shape(gl)[0]!.value !== shape(gate)[0]!.value || shape(gl)[1]!.value !== shape(gate)[1]!.value)) return undefined;
  }
  return { gate, up, permute, epilogue };
}

/**
 * Whether the warpgroup program can quantize its result in its epilogue: e4m3 codes in 1 x G groups
 * along the output columns, G whole column tiles of the tile (one, or two run in turn by a workgroup,
 * the first's bf16 results kept in the group's own code bytes meanwhile: two bytes a column), whole
 * groups of output columns, and the codes' and results' rows whole 16-byte pieces a thread.
 */
function quantEpilogueFits(m: GroupedMatmuls, quant: Op, tile: TileShape): boolean {
  const { to, block } = attrsOf(OPS.quantize, quant);
  const [rb, G] = block as [number, number];
  const colsPer = m.up ? tile.bn / 2 : tile.bn;
  const O = m.gate.operands[1]!.type.shape[1]!.value!;
  const out = (m.epilogue.length ? m.epilogue[m.epilogue.length - 1]! : m.gate).results[0]!;
  const P = G / colsPer;
  if (!tile.wgmma || tile.producer || to !== "f8e4m3fn" || rb !== 1 || (P !== 1 && P !== 2) || O % G !== 0 || G % 32 !== 0 || colsPer % 16 !== 0) return false;
  return P === 1 || (out.type.dtype === "bf16" && !out.type.quant);
}

/**
 * The step as a grouped GEMM of an element type (one grouped_linear, or gate and up with an
 * elementwise epilogue; bf16 also through the token gather; on the warpgroup program, also with the
 * activation quantize of its result), if the tile program covers it.
 */
export function groupedGemmPlan(ops: readonly Op[], limits: GenLimits, elem: GemmElem): Plan | undefined {
  const info = ELEMS[elem];
  if (!limits.tensorCores?.includes(info.dtype) || !limits.gemmTiles?.[info.dtype]) return undefined;
  const { quant, ops: body } = splitQuantEpilogue(ops);
  const m = groupedMatmuls(body);
  // e4m3 rows through the gather: the tokens' codes with their scale rows (the fp8 pass's gather=before).
  if (!m || (m.permute && elem !== "bf16" && !gathersScaledCodes(m.permute)) || ![m.gate, ...(m.up ? [m.up] : [])].every((gl) => operandsFit(gl, elem))) return undefined;
  if (quant && !quantEpilogueFits(m, quant, stepGemmTile(body, limits, elem))) return undefined;
  return { elem, ...m, ...(quant ? { quant } : {}) };
}

/** The FP8 (W8A8) plan: what the by-row FP8 GEMV covers too (not a quantize after it). */
export function groupedFp8Plan(ops: readonly Op[], limits: GenLimits): Plan | undefined {
  const plan = groupedGemmPlan(ops, limits, "e4m3");
  return plan?.quant ? undefined : plan;
}

/**
 * The step's elementwise ops after its matmuls, by their op-table scalar formulas, on the matmuls'
 * results (`vals`, rounded to their dtypes): the value of `out`.
 */
export function applyEpilogue(g: Gen, epilogue: readonly Op[], vals: Map<Value, Expr>, out: Value): Expr {
  for (const op of epilogue) {
    const dt = op.results[0]!.type.dtype;
    vals.set(op.results[0]!, g.fit(opFormula(op, op.operands.map((v) => vals.get(v)!)), dt));
  }
  return vals.get(out)!;
}

export function coversGroupedGemm(ops: readonly Op[], limits: GenLimits, elem: GemmElem): boolean {
  return groupedGemmPlan(ops, limits, elem) !== undefined;
}

/** The tile of an element type (the target's). */
export function gemmTile(limits: GenLimits, elem: GemmElem): TileShape {
  const t = limits.gemmTiles?.[ELEMS[elem].dtype];
  if (!t) throw new LingcError(`grouped GEMM: the target has no ${elem} tile`);
  return t;
}

/** The e4m3 warp tile that sums exactly (fp32 per 128-wide slice): the fastest mma.sync tile of the H200's sweep. */
export const FP8_WARP_TILE: TileShape = { bm: 64, bn: 128, wm: 64, wn: 32, stages: 3 };

/**
 * The tile a step's grouped GEMM runs with: the target's, except that an e4m3 warpgroup tile (a
 * stage is one 128-wide scale block) cannot take a K that is not whole blocks: such a step takes
 * the warp tile, whose 64-code stages can.
 */
export function stepGemmTile(ops: readonly Op[], limits: GenLimits, elem: GemmElem): TileShape {
  const tile = gemmTile(limits, elem);
  if (elem !== "e4m3" || !tile.wgmma) return tile;
  const m = groupedMatmuls(splitQuantEpilogue(ops).ops);
  const whole = m !== undefined && [m.gate, ...(m.up ? [m.up] : [])].every((gl) => gl.operands[1]!.type.shape[2]!.value! % SLICE === 0);
  return whole ? tile : FP8_WARP_TILE;
}

/**
 * Which tile a workgroup computes (or, with `index`, the tile of that number): workgroup = tile x colTiles + column tile, a tile being (expert,
 * BM of its rows). On a warp-synchronous target the first warp finds it: lane l counts the row tiles
 * of experts l x per .. l x per + per - 1, a warp scan of those counts gives each lane its first
 * tile, and the lane whose tiles hold t walks its experts to t's (one barrier, however many
 * experts). Elsewhere the workgroup scans the counts a workgroup's width of experts at a time.
 * expert is -1 past the last tile.
 */
export function workgroupTile(g: Gen, offb: string, E: number, BM: number, colTiles: number, index: Expr = g.kb.wg): { t: Expr; ct: Expr; e: Expr; row0: Expr } {
  const kb = g.kb;
  const { i, add, sub, mul, div, mod, lt, ge, and } = K;
  const t = kb.let("t", div(index, i(colTiles)));
  const ct = kb.let("ct", mod(index, i(colTiles)));
  const infoSh = kb.shared(kb.fresh("tile"), "i32", 2);
  const tilesOf = (e: Expr) => K.sel(lt(e, i(E)), div(add(sub(kb.load(offb, add(K.min(e, i(E - 1)), i(1))), kb.load(offb, K.min(e, i(E - 1)))), i(BM - 1)), i(BM)), i(0));
  if (g.limits.warpSize !== 32) {
    kb.if(K.eq(kb.lid, i(0)), () => kb.store(infoSh, i(0), i(-1)));
    kb.barrier();
    const carry = kb.var("carry", i(0));
    kb.for("c0", i(0), i(E), (c0) => {
      const e = kb.let("e", add(c0, kb.lid));
      const nt = kb.let("nt", tilesOf(e));
      const scan = kb.workgroupScan(nt);
      const first = kb.let("first", sub(add(carry.ref, scan.inclusive), nt));
      kb.if(and(lt(e, i(E)), and(ge(t, first), lt(t, add(carry.ref, scan.inclusive)))), () => {
        kb.store(infoSh, i(0), e);
        kb.store(infoSh, i(1), add(kb.load(offb, e), mul(sub(t, first), i(BM))));
      });
      carry.set(add(carry.ref, scan.total));
    }, i(kb.kernel.wg));
    kb.barrier();
    return { t, ct, e: kb.let("expert", kb.uniformLoad(infoSh, i(0))), row0: kb.let("row0", kb.uniformLoad(infoSh, i(1))) };
  }
  const per = Math.ceil(E / 32);
  kb.if(lt(kb.lid, i(32)), () => {
    const mine = kb.var("mine", i(0));
    kb.for("j", i(0), i(per), (j) => mine.set(add(mine.ref, tilesOf(add(mul(kb.lid, i(per)), j)))));
    const scan = kb.warpScan(mine.ref, kb.lid);
    // Past the last tile (t >= the total), lane 0 marks the workgroup idle; else exactly one lane writes.
    kb.if(and(K.eq(kb.lid, i(0)), ge(t, scan.total)), () => kb.store(infoSh, i(0), i(-1)));
    kb.if(and(ge(t, scan.exclusive), lt(t, add(scan.exclusive, mine.ref))), () => {
      const run = kb.var("run", scan.exclusive);
      kb.for("j", i(0), i(per), (j) => {
        const e = kb.let("e", add(mul(kb.lid, i(per)), j));
        const n = kb.let("n", tilesOf(e));
        kb.if(and(ge(t, run.ref), lt(t, add(run.ref, n))), () => {
          kb.store(infoSh, i(0), e);
          kb.store(infoSh, i(1), add(kb.load(offb, e), mul(sub(t, run.ref), i(BM))));
        });
        run.set(add(run.ref, n));
      });
    });
  });
  kb.barrier();
  return { t, ct, e: kb.let("expert", kb.uniformLoad(infoSh, i(0))), row0: kb.let("row0", kb.uniformLoad(infoSh, i(1))) };
}

/** A tile row a thread copies: its source's first element, whether it exists, its row in the tile. */
export interface CopyRow {
  base: Expr;
  ok: Expr;
  at: number;
}

/**
 * The rows a thread copies each stage, tile row lr + pass x per: of A, the expert's rows (a gathered
 * token's order[r] / k, or row r; rows past the expert's are skipped), and of B, the expert's weight
 * rows for this column tile (SwiGLU, wb = [gate, up]: the first BN / 2 tile rows are gate rows, the
 * rest the same columns' up rows; rows past O are skipped).
 */
export function copyRows(
  kb: K.KernelBuilder,
  o: { lr: Expr; per: number; row0: Expr; rowEnd: Expr; orderB?: string; k: number; e: Expr; ct: Expr; colsPer: number; O: number; I: number; BM: number; BN: number; wb: string[] },
): { aRows: CopyRow[]; bRows: (CopyRow & { buf: string })[] } {
  const { i, add, mul, div, lt } = K;
  const swiglu = o.wb.length === 2;
  const aRows: CopyRow[] = [];
  for (let h = 0; h * o.per < o.BM; h++) {
    const r = kb.let("ar", add(o.row0, add(o.lr, i(o.per * h))));
    const ok = kb.let("aok", lt(r, o.rowEnd));
    const rc = K.sel(ok, r, o.row0);
    const src = o.orderB ? div(kb.load(o.orderB, rc), i(o.k)) : rc;
    aRows.push({ ok, base: kb.let("abase", mul(src, i(o.I))), at: o.per * h });
  }
  const bRows: (CopyRow & { buf: string })[] = [];
  // Where the column tiles split O evenly every weight row a tile copies exists: one base, the
  // passes' rows at constant distances from it (which the copies' addresses take as immediates).
  const whole = o.O % o.colsPer === 0;
  const first = whole ? kb.let("bbase", mul(add(mul(o.e, i(o.O)), add(mul(o.ct, i(o.colsPer)), o.lr)), i(o.I))) : undefined;
  for (let h = 0; h * o.per < o.BN; h++) {
    const br = h * o.per; // this pass's first tile row (plus lr)
    const isUp = swiglu && br >= o.BN / 2;
    const buf = isUp ? o.wb[1]! : o.wb[0]!;
    const rows = isUp ? br - o.BN / 2 : br;
    if (first) {
      bRows.push({ ok: { k: "lit", t: "bool", v: 1 }, base: add(first, i(rows * o.I)), at: br, buf });
      continue;
    }
    const col = kb.let("bo", add(mul(o.ct, i(o.colsPer)), add(o.lr, i(rows))));
    const ok = kb.let("bok", lt(col, i(o.O)));
    bRows.push({ ok, base: kb.let("bbase", mul(add(mul(o.e, i(o.O)), K.sel(ok, col, i(0))), i(o.I))), at: br, buf });
  }
  return { aRows, bRows };
}

export function groupedGemmKernel(g: Gen, ops: readonly Op[], elem: GemmElem, tile = gemmTile(g.limits, elem)): GeneratedKernel {
  const plan = groupedGemmPlan(ops, g.limits, elem)!;
  const info = ELEMS[elem];
  const kb = g.kb;
  const { gate, up, permute, epilogue } = plan;
  const [x, w, offsets] = gate.operands as [Value, Value, Value];
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : gate).results[0]!;
  const what = `grouped ${elem} GEMM`;
  if (plan.quant) throw new LingcError(`${what}: the warp tiles' program has no quantize epilogue (grouped-gemm-wgmma.ts does)`);
  if (g.step.writes.size !== 1 || !g.step.writes.has(out)) throw new LingcError(`${what}: the step must write only its last result (${g.step.kernel?.name ?? gate.opName})`);
  if (tile.wgmma) throw new LingcError(`${what}: a wgmma tile is grouped-gemm-wgmma.ts's; this program takes warp tiles (bm,bn,wm,wn,stages)`);
  const { bm: BM, bn: BN, wm: WM, wn: WN, stages: STAGES } = tile;
  const T = gemmTileThreads(tile);
  if (kb.kernel.wg !== T) throw new LingcError(`${what}: a ${BM}x${BN} tile of ${WM}x${WN} warps needs ${T} threads, not ${kb.kernel.wg}`);
  // Words of a row per stage (the tile's bk, bf16 only: the e4m3 program's K checks assume 64 codes),
  // and per shared row: 4 of padding, so a warp's fragment reads (8 rows of 4 words) hit distinct banks.
  const bkw = tile.bk === undefined ? BKW : tile.bk / info.perWord;
  if (bkw % 8 !== 0 || (elem === "e4m3" && bkw !== BKW)) throw new LingcError(`${what}: a stage of ${tile.bk} elements is not one the ${elem} program takes${elem === "e4m3" ? ` (${stageK(elem)})` : " (a multiple of 16)"}`);
  const LDW = bkw + 4;
  const smem = 4 * STAGES * (BM + BN) * LDW;
  const room = Math.max(g.limits.maxWorkgroupBytes, g.limits.maxDynamicWorkgroupBytes ?? 0);
  if (smem > room) throw new LingcError(`${what}: a ${BM}x${BN} tile of ${STAGES} stages needs ${smem} bytes of shared memory, the target gives ${room}`);
  const warpsN = BN / WN;
  const MT = WM / 16;
  const NT = WN / 8;
  const [E, O, I] = w.type.shape.map((d) => d.value!) as [number, number, number];
  const BK = bkw * info.perWord;
  /** Elements of a 16-byte copy. */
  const CE = 4 * info.perWord;
  const swiglu = up !== undefined;
  const half = NT / 2;
  const colsPer = swiglu ? BN / 2 : BN;
  const colTiles = Math.ceil(O / colsPer);
  // The rows' source: the gathered tokens (bf16 through moe_permute) or x itself.
  const xb = g.buf(permute ? permute.operands[0]! : x, true);
  const orderB = permute ? g.buf(permute.operands[1]!) : undefined;
  const k = permute ? attrsOf(OPS.moe_permute, permute).k : 1;
  // Activation scales: the gathered tokens' (a row's are token order[r] / k's), or x's.
  const xsrc = permute ? permute.operands[0]! : x;
  const xs = info.scaled ? g.scalesBuf(xsrc) : undefined;
  const wb = [g.buf(w, true), ...(up ? [g.buf(up.operands[1]!, true)] : [])];
  const wv = [w, ...(up ? [up.operands[1]!] : [])];
  const wsb = info.scaled ? wv.map((v) => g.scalesBuf(v)) : [];
  const offb = g.buf(offsets);
  const ob = g.buf(out);
  const rowsDim = x.type.shape[0]!;
  const { i, add, sub, mul, div, mod, lt, ge, and } = K;

  const { ct, e, row0 } = workgroupTile(g, offb, E, BM, colTiles);
  kb.if(ge(e, i(0)), () => {
    const rowEnd = kb.let("row_end", K.min(kb.load(offb, add(e, i(1))), add(row0, i(BM))));
    const warp = kb.let("warp", div(kb.lid, i(32)));
    const lane = kb.let("lane", mod(kb.lid, i(32)));
    const gr = kb.let("gr", div(lane, i(4)));
    const tq = kb.let("tq", mod(lane, i(4)));
    const wm = kb.let("wm", div(warp, i(warpsN)));
    const wn = kb.let("wn", mod(warp, i(warpsN)));
    const As = kb.shared(kb.fresh("a_tile"), "u32", STAGES * BM * LDW);
    const Bs = kb.shared(kb.fresh("b_tile"), "u32", STAGES * BN * LDW);

    // Copies: a row of a stage is bkw / 4 chunks of 16 bytes; T / chunks rows per pass of the threads
    // (row lid / chunks + pass x T / chunks, chunk lid % chunks). B row r of the tile: SwiGLU rows
    // below BN / 2 are gate rows, the rest the same columns' up rows.
    const chunks = bkw / 4;
    const per = T / chunks;
    if (BM % per !== 0 || (swiglu ? (BN / 2) % per : BN % per) !== 0) throw new LingcError(`${what}: a ${BM}x${BN} tile cannot be copied ${per} rows at a time`);
    const lr = kb.let("lr", div(kb.lid, i(chunks)));
    const lc = kb.let("lc", mod(kb.lid, i(chunks)));
    const { aRows, bRows } = copyRows(kb, { lr, per, row0, rowEnd, orderB, k, e, ct, colsPer, O, I, BM, BN, wb });
    const partial = I % BK !== 0;
    const loadStage = (kt: Expr, st: Expr) => {
      const kk = kb.let("kk", add(mul(kt, i(BK)), mul(lc, i(CE))));
      // A last partial stage (bf16, K not a multiple of BK): its chunks past K are zero-filled.
      const kin = partial ? kb.let("kin", lt(kk, i(I))) : undefined;
      const valid = (ok: Expr) => (kin ? and(ok, kin) : ok);
      const at = (base: Expr) => (kin ? add(base, K.sel(kin, kk, i(0))) : add(base, kk));
      const dst = (rows: number, r: number) => add(mul(add(mul(st, i(rows)), add(lr, i(r))), i(LDW)), mul(lc, i(4)));
      for (const a of aRows) kb.copy16(As, dst(BM, a.at), xb, at(a.base), valid(a.ok));
      for (const b of bRows) kb.copy16(Bs, dst(BN, b.at), b.buf, at(b.base), valid(b.ok));
      kb.copyCommit();
    };

    const n = MT * NT * 4;
    const acc = kb.array("acc", "f32", n);
    // Scaled: each K slice's products sum here first, then enter acc scaled.
    const part = info.scaled ? kb.array("part", "f32", n) : acc;
    kb.for("j", i(0), i(n), (j) => {
      kb.store(acc, j, K.f(0));
      if (part !== acc) kb.store(part, j, K.f(0));
    });
    // The tile row (of BN) of n-tile nt's first weight row for this warp; SwiGLU: the first half of
    // a warp's n-tiles are gate rows, the second half the up rows of the same columns.
    const bRow = (nt: number): Expr =>
      swiglu ? add(mul(wn, i(WN / 2)), i(nt < half ? nt * 8 : BN / 2 + (nt - half) * 8)) : add(mul(wn, i(WN)), i(nt * 8));
    // The output column of n-tile nt, pair c.
    const colOf = (nt: number, c: number): Expr =>
      add(add(mul(ct, i(colsPer)), swiglu ? add(mul(wn, i(WN / 2)), i((nt % half) * 8)) : add(mul(wn, i(WN)), i(nt * 8))), add(mul(tq, i(2)), i(c)));

    const nk = Math.ceil(I / BK);
    // Prologue: stages 0 .. STAGES-2 in flight (a group each, empty past the end).
    for (let p = 0; p < STAGES - 1; p++) kb.if(lt(i(p), i(nk)), () => loadStage(i(p), i(p)), () => kb.copyCommit());
    kb.loop("kt", i(0), i(nk), (kt) => {
      // Stage kt's group is complete when at most STAGES - 2 newer ones are pending.
      kb.copyWait(STAGES - 2);
      kb.barrier();
      // The buffer computed on last iteration is free (every thread passed the barrier): fill it
      // with stage kt + STAGES - 1.
      const next = add(kt, i(STAGES - 1));
      kb.if(lt(next, i(nk)), () => loadStage(next, mod(next, i(STAGES))), () => kb.copyCommit());
      const st = kb.let("st", mod(kt, i(STAGES)));
      for (let ks = 0; ks < bkw / 8; ks++) {
        // ldmatrix: lane l addresses row l % 8 of matrix l / 8. A: matrices (rows 0-7, words 0-3),
        // (rows 8-15, words 0-3), (rows 0-7, words 4-7), (rows 8-15, words 4-7) = a0..a3. B, two
        // n-tiles: (nt, words 0-3), (nt, words 4-7), (nt + 1, words 0-3), (nt + 1, words 4-7) = b0,
        // b1 of each. (Words 0-3 are k 0-15 of e4m3, k 0-7 of bf16.)
        const a: Expr[][] = [];
        for (let mt = 0; mt < MT; mt++) {
          const row = add(mul(st, i(BM)), add(mul(wm, i(WM)), add(i(mt * 16), add(mod(lane, i(8)), mul(mod(div(lane, i(8)), i(2)), i(8))))));
          a.push(kb.ldsm("af", As, add(mul(row, i(LDW)), add(i(ks * 8), mul(div(lane, i(16)), i(4))))));
        }
        const b: Expr[][] = [];
        for (let nt = 0; nt < NT; nt += 2) {
          const row = add(mul(st, i(BN)), add(K.sel(lt(lane, i(16)), bRow(nt), bRow(nt + 1)), mod(lane, i(8))));
          const r = kb.ldsm("bf", Bs, add(mul(row, i(LDW)), add(i(ks * 8), mul(mod(div(lane, i(8)), i(2)), i(4)))));
          b.push([r[0]!, r[1]!], [r[2]!, r[3]!]);
        }
        for (let mt = 0; mt < MT; mt++) for (let nt = 0; nt < NT; nt++) kb.mma(info.mma, part, i((mt * NT + nt) * 4), a[mt]!, b[nt]!);
      }
      if (!info.scaled) return;
      // A 128-wide K slice is summed: scale it into the total and start the next.
      const slice = kb.let("slice", div(kt, i(SLICE / BK)));
      kb.if(K.or(K.eq(mod(add(kt, i(1)), i(SLICE / BK)), i(0)), K.eq(kt, i(nk - 1))), () => {
        const sb: Expr[] = [];
        for (let nt = 0; nt < NT; nt++) {
          // The block of the n-tile's first column (clamped past the last one) at this K slice.
          const col = K.min(colOf(nt, 0), i(O - 1));
          const which = swiglu && nt >= half ? 1 : 0;
          sb.push(kb.let("sb", kb.load(wsb[which]!, g.scaleBlockIndex(wv[which]!, add(mul(e, i(O)), col), slice))));
        }
        for (let mt = 0; mt < MT; mt++)
          for (let hh = 0; hh < 2; hh++) {
            const row = kb.let("srow", add(row0, add(mul(wm, i(WM)), add(i(mt * 16 + hh * 8), gr))));
            const sa = kb.let("sa", K.sel(lt(row, rowEnd), kb.load(xs!, g.scaleAt(xsrc, gatheredRow(g, permute, K.min(row, sub(rowEnd, i(1)))), slice)), K.f(0)));
            for (let nt = 0; nt < NT; nt++)
              for (let c = 0; c < 2; c++) {
                const j = i((mt * NT + nt) * 4 + hh * 2 + c);
                kb.store(acc, j, add(kb.load(acc, j, "f32"), mul(kb.load(part, j, "f32"), mul(sa, sb[nt]!))));
                kb.store(part, j, K.f(0));
              }
          }
      });
    });
    kb.copyWait(0);

    // Epilogue: acc holds rows wm*WM + mt*16 + gr (+8) by columns 2 tq (+1) of each n-tile.
    const gateDt = gate.results[0]!.type.dtype;
    const upDt = up?.results[0]!.type.dtype;
    for (let mt = 0; mt < MT; mt++)
      for (let hh = 0; hh < 2; hh++) {
        const row = kb.let("orow", add(row0, add(mul(wm, i(WM)), add(i(mt * 16 + hh * 8), gr))));
        kb.if(lt(row, rowEnd), () => {
          for (let nt = 0; nt < (swiglu ? half : NT); nt++)
            for (let c = 0; c < 2; c++) {
              const col = kb.let("ocol", colOf(nt, c));
              kb.if(lt(col, i(O)), () => {
                const j = (mt * NT + nt) * 4 + hh * 2 + c;
                const vals = new Map<Value, Expr>([[gate.results[0]!, g.fit(kb.load(acc, i(j), "f32"), gateDt)]]);
                if (up) vals.set(up.results[0]!, g.fit(kb.load(acc, i(j + half * 4), "f32"), upDt as DType));
                kb.store(ob, add(mul(row, i(O)), col), applyEpilogue(g, epilogue, vals, out));
              });
            }
        });
      }
  });
  // Workgroups: (row tiles + one partial tile per expert) x column tiles; those past the last tile return.
  return g.finish({ dim: g.entryDim(rowsDim.add(BM * (E + 1)).mul(colTiles)), per: BM });
}
