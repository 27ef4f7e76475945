/**
 * A linear of few rows against an e4m3 weight in 128x128 blocks (decode's projections, W8A8 or
 * weight-only; or a SwiGLU's two, gate and up, with silu(gate) * up after them): a warp per output
 * column (a few side by side for short rows: fp8ColumnsPerWarp), its lanes reading the weight row's
 * codes side by side (each lane 16 consecutive codes of
 * one 128-wide K slice by one 16-byte load, so a warp reads 512 bytes of the row at a time; where K
 * is not whole 16s, four codes of each slice), a lane's products summed in fp32 and then scaled once
 * by the weight block's scale (and, W8A8, the row's activation scale), the lanes' totals added by
 * warp shuffles. Rows loop inside the warp, up to 16 per workgroup (more rows take more
 * workgroups), so a weight row is read from memory once and from cache for the other rows. The sums
 * are exact fp32 sums of the dequantized products (no tensor-core rounding), in another order than
 * the interpreter's: this kernel is also the exact path of a W8A8 projection
 * (select{prefer=fp8_linear:generated}).
 */
import type { Op, Value } from "../../../ir/module";
import { isE4m3Blocks } from "../../../ir/quant";
import * as K from "../kir";
import type { Expr } from "../kir";
import { LingcError } from "../../../ir/errors";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { expertOfRowByWarp, gatheredRow } from "./experts";
import { applyEpilogue, groupedFp8Plan } from "./grouped-gemm";
import { denseMatmuls } from "./grouped-gemv";
import { quantRecipe } from "./quant";
import { attrsOf, OPS } from "../../../ir/ops";
import { product } from "../../../ir/dim";
import { prefetchWeightRows } from "./prefetch";
import { inverseRms, normedElement } from "./norm";

const SLICE = 128;
/** Slices of a long K loop unrolled together. */
const UNROLL = 8;
const WARPS = 8;
/** Rows one workgroup runs through its warps. */
const ROWS = 16;
export const GEMV_FP8_THREADS = WARPS * 32;

/** Whether a linear reads an e4m3 weight in 128x128 blocks and an input either 1x128-scaled e4m3 or a plain float. */
function fp8GemvLinear(op: Op): boolean {
  if (op.opName !== "linear" || op.operands.length !== 2) return false;
  const [x, w] = op.operands as [Value, Value];
  if (!isE4m3Blocks(w.type, 128, 128) || w.type.rank !== 2 || w.type.shape.some((d) => d.value === undefined)) return false;
  return x.type.quant ? isE4m3Blocks(x.type, 1, 128) : ["f32", "bf16", "f16"].includes(x.type.dtype);
}

/**
 * The linears of a step the FP8 GEMV runs and the ops after them: one linear alone, or the SwiGLU
 * of two (gate and up of one input and one weight shape) with its elementwise epilogue (a dense
 * MLP's or the shared expert's: one pass over the input where three launches ran); with a leading
 * quantize (a prologue), the linears reading its codes.
 */
export function fp8GemvPlan(all: readonly Op[]): { norm?: Op; quant?: Op; linears: Op[]; epilogue: Op[]; out: Value } | undefined {
  const { permute, norm, quant, ops } = splitPrologue(all);
  const plan = fp8GemvOps(ops);
  if (!plan || !quant) return plan;
  return !permute && plan.linears.every((l) => readsCodes(l, quant) && prologueFits(quant, l)) ? { ...(norm ? { norm } : {}), quant, ...plan } : undefined;
}

/** Whether a matmul of a merged step reads the prologue's codes (prologueStep rebinds the consumer's name for them to the codes). */
const readsCodes = (matmul: Op, quant: Op) => matmul.operands[0] === quant.results[0];

/**
 * A step's leading activation quantize, with the token gather before it (moe_permute), or the
 * RMSNorm whose row it quantizes (a norm prologue: backends/cuda/norm-prologue.ts), or alone, whose
 * result the rest reads (a quantize prologue: the GEMV quantizes its input rows as it reads them;
 * backends/cuda/quant-prologue.ts makes such steps), and the rest.
 */
function splitPrologue(ops: readonly Op[]): { permute?: Op; norm?: Op; quant?: Op; ops: readonly Op[] } {
  const before = ops[0]?.opName === "moe_permute" || ops[0]?.opName === "rms_norm" ? ops[0] : undefined;
  const led = before !== undefined && ops[1]?.opName === "quantize" && ops[1].operands[0] === before.results[0];
  const at = led ? 1 : 0;
  const q = ops[at];
  if (q?.opName !== "quantize" || ops.length <= at + 1) return { ops };
  return { ...(led ? (before!.opName === "rms_norm" ? { norm: before! } : { permute: before! }) : {}), quant: q, ops: ops.slice(at + 1) };
}

/**
 * Whether the 16-code form can quantize a matmul's input as it reads it: 1x128 groups (a slice is 8
 * lanes' 16 inputs), every lane in every round (K whole 512s: the group's amax is a warp
 * reduction), inputs of a bf16 or f32 row.
 */
function prologueFits(quant: Op, matmul: Op): boolean {
  const [rb, cb] = attrsOf(OPS.quantize, quant).block as [number, number];
  const src = quant.operands[0]!;
  const Kd = matmul.operands[1]!.type.shape.at(-1)!.value;
  return rb === 1 && cb === SLICE && Kd !== undefined && Kd % (32 * CHUNK) === 0 && !src.type.quant && ["bf16", "f32"].includes(src.type.dtype);
}

/** The step's dense matmuls (denseMatmuls: one linear, or a SwiGLU's two and its epilogue), all FP8 linears the GEMV takes. */
function fp8GemvOps(ops: readonly Op[]): { linears: Op[]; epilogue: Op[]; out: Value } | undefined {
  const m = denseMatmuls(ops);
  return m && m.lins.every(fp8GemvLinear) ? { linears: m.lins, epilogue: m.epilogue, out: m.out } : undefined;
}

/** A lone FP8 linear, or the SwiGLU of two (fp8GemvPlan), on a warp-synchronous target. */
export function coversFp8Gemv(ops: readonly Op[], limits: GenLimits): boolean {
  return limits.warpSize === 32 && fp8GemvPlan(ops) !== undefined;
}

/**
 * A GEMV's input row: its buffer, e4m3 with scales at scale(slice) or plain floats, or plain floats
 * that `quant` quantizes as they are read (a quantize prologue), or codes a staged prologue left in
 * workgroup memory (`staged`: buf is that u32 array and row the workgroup's own row index).
 */
interface InputRow {
  value: Value;
  buf: string;
  row: Expr;
  scale?: (s: Expr) => Expr;
  quant?: Op;
  staged?: boolean;
}

/** A weight row of a GEMV's dot product: e4m3 codes of row `row` of `buf`, its 128x128-block scales at scale(slice). */
interface WeightRow {
  buf: string;
  row: Expr;
  scale: (s: Expr) => Expr;
}

/**
 * One lane's shares of the dot products of weight rows `ws` with input row `x` (InputRow): each
 * share summed over the lanes by warpSum gives that row's full product. The 16-code form reads the
 * input once for all the rows (a warp's several columns); each row's sums are the same, in the
 * same order, as it alone would have.
 */
function laneDots(g: Gen, lane: Expr, Kd: number, ws: readonly WeightRow[], x: InputRow): Expr[] {
  if (Kd % CHUNK === 0 && (x.scale !== undefined || g.wide8(x.value))) return laneDotsWide(g, lane, Kd, ws, x);
  if (x.quant) throw new LingcError("FP8 GEMV: a quantize prologue needs the 16-code form (K whole 512s, a bf16 or f32 input)");
  return ws.map((w) => laneDot(g, lane, Kd, w, x));
}

/** laneDots' 4-code form for one weight row (K not whole 16s, or an input the 16-byte loads cannot read). */
function laneDot(g: Gen, lane: Expr, Kd: number, w: WeightRow, x: InputRow): Expr {
  const kb = g.kb;
  const { i, add, mul, lt } = K;
  const acc = kb.var("acc", K.f(0));
  const slices = Math.ceil(Kd / SLICE);
  // Unrolled (a constant trip count): every slice's loads are in flight together. A long row (Ling-1T's
  // 64 slices) runs in groups of UNROLL slices, each group unrolled: the same sums in the same order,
  // without a body of 64 x 4 loads (on the H200: decode 2.1x faster at K = 8192, but 14% slower at
  // K = 2048 if grouped there too; bench/results/ling1t-fp8-2026-11-30-h200x2.md).
  const group = slices > 2 * UNROLL && slices % UNROLL === 0 ? UNROLL : slices;
  const slicesOf = (body: (s: Expr) => void) => {
    if (group === slices) kb.for("s", i(0), i(slices), body);
    else kb.loop("sg", i(0), i(slices / group), (sg) => kb.for("s", i(0), i(group), (s0) => body(kb.let("s", add(mul(sg, i(group)), s0)))));
  };
  slicesOf((s) => {
    const part = kb.var("part", K.f(0));
    for (let b = 0; b < 4; b++) {
      const k = kb.let("k", add(mul(s, i(SLICE)), add(mul(lane, i(4)), i(b))));
      const term = () => part.set(add(part.ref, mul(kb.load(w.buf, add(mul(w.row, i(Kd)), k)), kb.load(x.buf, add(mul(x.row, i(Kd)), k)))));
      if (Kd % SLICE === 0) term();
      else kb.if(lt(k, i(Kd)), term);
    }
    const scale = x.scale ? mul(w.scale(s), x.scale(s)) : w.scale(s);
    acc.set(add(acc.ref, mul(part.ref, scale)));
  });
  return acc.ref;
}

/** Codes a lane reads at once in the 16-byte form: one 16-byte load of the weight row (and of an e4m3 input). */
const CHUNK = 16;
/** Rounds of the 16-byte form unrolled together in a long row (Ling-1T's K = 8192: 16 rounds). */
const ROUND_GROUP = 4;

/**
 * laneDots in 16-byte loads (K a multiple of 16): in round q, lane l takes codes q x 512 + 16 l ..
 * + 15 of each weight row (one 16-byte load each) and of the input row (one 16-byte load of e4m3
 * codes, or two 8-element loads of bf16 / f32, once for all the rows), all within one 128-wide slice
 * (8 lanes a slice), sums their products in fp32 and scales each sum once by its slice's scales. The
 * same products as laneDot's 4-code form, in a different order of fp32 additions; a quarter of the
 * load instructions.
 */
function laneDotsWide(g: Gen, lane: Expr, Kd: number, ws: readonly WeightRow[], x: InputRow): Expr[] {
  const kb = g.kb;
  const { i, add, mul, div, lt } = K;
  const accs = ws.map(() => kb.var("acc", K.f(0)));
  const per = 32 * CHUNK;
  const rounds = Math.ceil(Kd / per);
  const group = rounds > 2 * ROUND_GROUP && rounds % ROUND_GROUP === 0 ? ROUND_GROUP : rounds;
  const round = (q: Expr) => {
    const k0 = kb.let("k0", add(mul(q, i(per)), mul(lane, i(CHUNK))));
    const body = () => {
      // Every weight row's load first: all in flight before the products need them.
      const wws = ws.map((w) => kb.load16("w16", w.buf, div(add(mul(w.row, i(Kd)), k0), i(4))));
      const xat = add(mul(x.row, i(Kd)), k0);
      const words = () => (x.staged ? [0, 1, 2, 3].map((t) => kb.let("x16", kb.load(x.buf, add(div(xat, i(4)), i(t))))) : kb.load16("x16", x.buf, div(xat, i(4))));
      let xs = x.scale ? words().flatMap((word) => [0, 1, 2, 3].map((b) => K.e4m3Byte(word, b))) : [...g.load8(x.value, xat), ...g.load8(x.value, add(xat, i(8)))];
      let xScale: Expr | undefined;
      if (x.quant) {
        // The slice's 128 inputs are this lane's 16 and its 7 neighbours': their amax over the 8
        // lanes, then the quantize's own recipe (quant.ts), so the codes and the scale are the ones
        // the quantize kernel would have stored.
        const v = xs.map((e) => kb.let("xv", e));
        const amax = kb.warpMax(kb.let("m", v.reduce((a: Expr, e) => K.max(a, K.abs(e)), K.f(0))), SLICE / CHUNK);
        const { s, q } = quantRecipe(g, x.quant, amax);
        xs = v.map(q);
        xScale = s;
      }
      const xv = xs.map((e) => kb.let("xv", e));
      const sl = kb.let("sl", div(k0, i(SLICE)));
      if (x.scale) xScale = kb.let("xscale", x.scale(sl));
      ws.forEach((w, wi) => {
        const ww = wws[wi]!;
        let part: Expr = K.mul(K.e4m3Byte(ww[0]!, 0), xv[0]!);
        for (let j = 1; j < CHUNK; j++) part = K.add(part, K.mul(K.e4m3Byte(ww[j >> 2]!, j & 3), xv[j]!));
        const p = kb.let("part", part);
        accs[wi]!.set(add(accs[wi]!.ref, mul(p, xScale ? mul(w.scale(sl), xScale) : w.scale(sl))));
      });
    };
    if (Kd % per === 0) body();
    else kb.if(lt(k0, i(Kd)), body);
  };
  if (group === rounds) kb.for("q", i(0), i(rounds), round);
  else kb.loop("qg", i(0), i(rounds / group), (qg) => kb.for("q", i(0), i(group), (q0) => round(kb.let("q", add(mul(qg, i(group)), q0)))));
  return accs.map((a) => a.ref);
}

/** Workgroup memory a staged prologue may take (its R rows' codes and scales; CUDA's static limit is 48 KB). */
const STAGED_BYTES = 36 * 1024;

/** Whether R rows of K inputs fit a staged prologue (K whole 512s, as the 16-code form needs). */
const stagedFits = (R: number, Kd: number) => Kd % (32 * CHUNK) === 0 && R * (Kd + (4 * Kd) / SLICE) <= STAGED_BYTES;

/**
 * A quantize prologue staged once a workgroup: rows rowOf(0 .. live - 1) of x (bf16 or f32; live at
 * most R, the rows workgroup memory holds; rowOf must give a row in range for every local index)
 * quantized by `quant` (its recipe, bit for bit the quantize kernel's codes and scales) into
 * workgroup memory, every thread taking part (16 inputs a thread a turn, a 128-group's amax over
 * its 8 lanes), then a barrier. The GEMV's warps then read
 * the codes from there (InputRow.staged), where the unstaged form had every warp quantize its row
 * again for its own column. Returns the u32 array of codes (row lr's K codes from word lr K / 4) and
 * the row's slice scales (lr K / 128 + slice).
 */
function stageQuantized(g: Gen, quant: Op, x: Value, R: number, live: Expr, Kd: number, rowOf: (lr: Expr) => Expr, norm?: Op): { codes: string; scales: string } {
  const kb = g.kb;
  const { i, add, mul, div, mod, lt, eq } = K;
  const perRow = Kd / CHUNK;
  const codes = kb.shared(kb.fresh("xq"), "u32", R * perRow * 4);
  const scales = kb.shared(kb.fresh("xs"), "f32", (R * Kd) / SLICE);
  // A norm prologue: each live row's 1 / rms first (the norm kernel's formula), its elements then
  // normalized as they are read (x is the norm's input).
  const normalize = norm ? rowNorms(g, norm, x, R, live, Kd, rowOf) : undefined;
  // Only the `live` rows (at most R; the rest are past the input's rows), in turns of the workgroup's
  // threads: every thread runs every turn, its lanes' shuffles whole; a chunk past them reads a row in
  // range and stores nothing.
  const total = kb.let("chunks", mul(K.max(K.min(live, i(R)), i(0)), i(perRow)));
  kb.loop("turn", i(0), div(add(total, i(kb.kernel.wg - 1)), i(kb.kernel.wg)), (turn) => {
    const c = kb.let("c", add(mul(turn, i(kb.kernel.wg)), kb.lid));
    const lr = kb.let("lr", K.min(div(c, i(perRow)), i(R - 1)));
    const ch = kb.let("ch", mod(c, i(perRow)));
    const at = kb.let("xat", add(mul(rowOf(lr), i(Kd)), mul(ch, i(CHUNK))));
    const raw = [...g.load8(x, at), ...g.load8(x, add(at, i(8)))];
    const v = (normalize ? normalize(lr, mul(ch, i(CHUNK)), raw) : raw).map((e) => kb.let("xv", e));
    const amax = kb.warpMax(kb.let("m", v.reduce((a: Expr, e) => K.max(a, K.abs(e)), K.f(0))), SLICE / CHUNK);
    const { s, q } = quantRecipe(g, quant, amax);
    kb.if(lt(c, total), () => {
      for (let w = 0; w < 4; w++) kb.store(codes, add(mul(c, i(4)), i(w)), K.packE4m3(v.slice(4 * w, 4 * w + 4).map(q)));
      kb.if(eq(mod(ch, i(SLICE / CHUNK)), i(0)), () => kb.store(scales, add(mul(lr, i(Kd / SLICE)), div(ch, i(SLICE / CHUNK))), s));
    });
  });
  kb.barrier();
  return { codes, scales };
}

/**
 * RMSNorm `norm` of rows rowOf(0 .. live - 1) (at most R) of its input x, for a staged prologue:
 * each row's 1 / rms by the workgroup (a strided sum of squares, workgroupSum, the norm kernel's
 * rsqrt(sum / K + eps)) into workgroup memory, then a barrier; returns how 16 of a row's elements
 * from column c0 are normalized (the norm kernel's rounding: weight x round(x x inv)).
 */
function rowNorms(g: Gen, norm: Op, x: Value, R: number, live: Expr, Kd: number, rowOf: (lr: Expr) => Expr): (lr: Expr, c0: Expr, vs: Expr[]) => Expr[] {
  const kb = g.kb;
  const { i, add, mul } = K;
  const dt = norm.results[0]!.type.dtype;
  const eps = attrsOf(OPS.rms_norm, norm).eps;
  const weight = norm.operands[1]!;
  const invs = kb.shared(kb.fresh("inv"), "f32", R);
  kb.loop("nr", i(0), K.max(K.min(live, i(R)), i(0)), (lr) => {
    const base = kb.let("nbase", mul(rowOf(lr), i(Kd)));
    const ss = kb.var("ss", K.f(0));
    kb.for("c", kb.lid, i(Kd), (c) => {
      const v = kb.let("xn", kb.load(g.buf(x), add(base, c)));
      ss.set(add(ss.ref, mul(v, v)));
    }, i(kb.kernel.wg));
    const total = kb.workgroupSum(ss.ref);
    kb.if(K.eq(kb.lid, i(0)), () => kb.store(invs, lr, inverseRms(total, Kd, eps)));
  });
  kb.barrier();
  return (lr, c0, vs) => {
    const inv = kb.let("inv", kb.load(invs, lr));
    const ws = [...g.load8(weight, c0), ...g.load8(weight, add(c0, i(8)))];
    return vs.map((v, n) => normedElement(g, ws[n]!, v, inv, dt));
  };
}

/** The input row of local row `lr` of a staged prologue. */
function stagedRow(g: Gen, x: Value, staged: { codes: string; scales: string }, lr: Expr, Kd: number): InputRow {
  return { value: x, buf: staged.codes, row: lr, staged: true, scale: (sl) => g.kb.load(staged.scales, K.add(K.mul(lr, K.i(Kd / SLICE)), sl)) };
}

/** A weight of a GEMV step: its codes' and scales' buffers and the linear's result. */
interface WeightRows {
  value: Value;
  buf: string;
  scales: string;
  result: Value;
}

/**
 * The warp's output columns: rows wRows of each weight against input row x (warpSum of the lanes'
 * laneDots shares, rounded to the result's dtype), then the step's epilogue: the value of `out` for
 * each column.
 */
function columnValues(g: Gen, lane: Expr, Kd: number, weights: readonly WeightRows[], wRows: readonly Expr[], x: InputRow, epilogue: readonly Op[], out: Value): Expr[] {
  const kb = g.kb;
  const rows = wRows.flatMap((wRow) => weights.map((wt) => ({ buf: wt.buf, row: wRow, scale: (s: Expr) => kb.load(wt.scales, g.scaleIndex(wt.value, K.add(K.mul(wRow, K.i(Kd)), K.mul(s, K.i(SLICE))))) })));
  const parts = laneDots(g, lane, Kd, rows, x);
  return wRows.map((_, c) => {
    const vals = new Map<Value, Expr>();
    weights.forEach((wt, wi) => vals.set(wt.result, g.fit(kb.warpSum(parts[c * weights.length + wi]!), wt.result.type.dtype)));
    return applyEpilogue(g, epilogue, vals, out);
  });
}

/**
 * Output columns a warp of an FP8 GEMV takes, by the bytes of a column's weight rows (all of the
 * step's weights): four up to 1 KB, two up to 2 KB, else one, where GenLimits.fp8GemvColumns allows
 * it for this form (`dense`: "all" only; the routed experts': "grouped" too).
 * At decode a short row is one 16-byte load a lane: one column a warp made the down projection's
 * routed GEMV 2,048 workgroups of one load chain each, several waves of them (9.8 us a MoE layer on
 * the H200 for 9.4 MB, bench/results/stamps-2026-12-03-h200.md); a warp's several columns share its
 * expert search and input loads and keep their weight loads in flight together.
 */
function fp8ColumnsPerWarp(g: Gen, rowBytes: number, dense: boolean): number {
  const mode = g.limits.fp8GemvColumns;
  if (!mode || (dense && mode !== "all")) return 1;
  return rowBytes <= 1024 ? 4 : rowBytes <= 2048 ? 2 : 1;
}

/** A warp's CPW columns from n, those past the last (N - 1) clamped to it: their results are not stored. */
const warpColumns = (g: Gen, n: Expr, CPW: number, N: number): Expr[] => Array.from({ length: CPW }, (_, c) => (c === 0 ? n : g.kb.let("col", K.min(K.add(n, K.i(c)), K.i(N - 1)))));

export function fp8GemvKernel(g: Gen, ops: readonly Op[]): GeneratedKernel {
  const kb = g.kb;
  const { norm, quant, linears, epilogue, out: y } = fp8GemvPlan(ops)!;
  // With a quantize prologue the rows are read from the quantize's input (the norm's, with a norm prologue).
  const x = norm ? norm.operands[0]! : quant ? quant.operands[0]! : linears[0]!.operands[0]!;
  const [N, Kd] = linears[0]!.operands[1]!.type.shape.map((d) => d.value!) as [number, number];
  const rowsDim = product(x.type.shape.slice(0, -1));
  const rows = g.size(rowsDim);
  const scaled = x.type.quant !== undefined;
  const xb = g.buf(x, scaled);
  const xs = scaled ? g.scalesBuf(x) : undefined;
  const weights = linears.map((l) => ({ value: l.operands[1]!, buf: g.buf(l.operands[1]!, true), scales: g.scalesBuf(l.operands[1]!), result: l.results[0]! }));
  if ((epilogue.length || quant) && (g.step.writes.size !== 1 || !g.step.writes.has(y))) throw new LingcError(`FP8 GEMV: a SwiGLU or quantize-prologue step must write only its result (${g.step.kernel?.name ?? y.name ?? "gemv"})`);
  const yb = g.buf(y);
  const { i, add, mul, div, mod, lt } = K;
  const warp = kb.let("warp", div(kb.lid, i(32)));
  const lane = kb.let("lane", mod(kb.lid, i(32)));
  // Workgroup = row chunk x column block; a warp's CPW columns side by side.
  const CPW = fp8ColumnsPerWarp(g, Kd * weights.length, true);
  const blocks = Math.ceil(N / (WARPS * CPW));
  // The block's weight rows (codes; the scales are 1/128 of them), by the first row chunk's workgroup.
  for (const wt of weights) prefetchWeightRows(g, "fp8", wt.buf, mul(mod(kb.wg, i(blocks)), i(WARPS * CPW)), WARPS * CPW, N, Kd, lt(kb.wg, i(blocks)));
  const n = kb.let("n", mul(add(mul(mod(kb.wg, i(blocks)), i(WARPS)), warp), i(CPW)));
  const r0 = kb.let("r0", mul(div(kb.wg, i(blocks)), i(ROWS)));
  // A quantize prologue: the workgroup's rows quantized once into workgroup memory where they fit.
  const staged = quant && stagedFits(ROWS, Kd) ? stageQuantized(g, quant, x, ROWS, K.sub(rows, r0), Kd, (lr) => K.min(add(r0, lr), K.sub(rows, i(1))), norm) : undefined;
  if (norm && !staged) throw new LingcError("FP8 GEMV: a norm prologue needs the staged form (the rows' codes in workgroup memory)");
  kb.if(lt(n, i(N)), () => {
    const cols = warpColumns(g, n, CPW, N);
    kb.loop("r", r0, K.min(rows, add(r0, i(ROWS))), (r) => {
      const input: InputRow = staged ? stagedRow(g, x, staged, K.sub(r, r0), Kd) : { value: x, buf: xb, row: r, scale: xs ? (s) => kb.load(xs, g.scaleAt(x, r, s)) : undefined, quant };
      const totals = columnValues(g, lane, Kd, weights, cols, input, epilogue, y);
      totals.forEach((total, c) => kb.if(K.and(K.eq(lane, i(0)), lt(add(n, i(c)), i(N))), () => kb.store(yb, add(mul(r, i(N)), add(n, i(c))), g.fit(total, y.type.dtype))));
    });
  });
  // ceil((rows + 15) x blocks / 16) >= blocks x ceil(rows / 16); workgroups past the rows run no row.
  return g.finish({ dim: g.entryDim(rowsDim.add(ROWS - 1).mul(blocks)), per: ROWS });
}

/** The grouped FP8 matmuls a by-row GEMV covers: what the tile program covers, on a warp-synchronous target. */
export function coversGroupedFp8Gemv(all: readonly Op[], limits: GenLimits): boolean {
  const { norm, quant, ops } = splitPrologue(all);
  if (norm) return false;
  const plan = limits.warpSize === 32 ? groupedFp8Plan(ops, limits) : undefined;
  if (!plan || !quant) return plan !== undefined;
  return [plan.gate, ...(plan.up ? [plan.up] : [])].every((gl) => readsCodes(gl, quant) && prologueFits(quant, gl));
}

/**
 * The routed experts' FP8 matmuls for few rows (decode): a workgroup per (row, 8 x CPW output
 * columns), a warp per CPW columns (fp8ColumnsPerWarp); the row's expert found by a warp's search
 * of the offsets (expertOfRowByWarp); SwiGLU: the warp computes the column's gate and up products and applies the step's elementwise ops (op-table
 * formulas). Each row reads only its expert's weight rows, once.
 */
export function groupedFp8GemvKernel(g: Gen, all: readonly Op[]): GeneratedKernel {
  const prologue = splitPrologue(all);
  const { quant, ops } = prologue;
  const plan = groupedFp8Plan(ops, g.limits)!;
  const { gate, up, epilogue } = plan;
  // The token gather: before a quantize prologue, or of the tokens' codes (their scale rows with them).
  const permute = prologue.permute ?? plan.permute;
  const kb = g.kb;
  const [q, w, offsets] = gate.operands as [Value, Value, Value];
  // With a quantize prologue the rows are read from the quantize's input: through the token gather
  // (row r is token order[r] / k's), or as they are.
  const x = permute ? permute.operands[0]! : quant ? quant.operands[0]! : q;
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : gate).results[0]!;
  if (g.step.writes.size !== 1 || !g.step.writes.has(out)) throw new LingcError(`grouped FP8 GEMV: the step must write only its last result (${g.step.kernel?.name ?? gate.opName})`);
  const [E, O, Kd] = w.type.shape.map((d) => d.value!) as [number, number, number];
  const rowsDim = q.type.shape[0]!;
  const rows = g.size(rowsDim);
  const xb = g.buf(x, !quant);
  const xs = quant ? undefined : g.scalesBuf(x);
  const weights = [gate, ...(up ? [up] : [])].map((gl) => ({ value: gl.operands[1]!, buf: g.buf(gl.operands[1]!, true), scales: g.scalesBuf(gl.operands[1]!), result: gl.results[0]! }));
  const offb = g.buf(offsets);
  const ob = g.buf(out);
  const { i, add, mul, div, mod, lt } = K;
  // A warp's CPW columns side by side (one expert search and input row for them).
  const CPW = fp8ColumnsPerWarp(g, Kd * weights.length, false);
  const blocks = Math.ceil(O / (WARPS * CPW));
  const warp = kb.let("warp", div(kb.lid, i(32)));
  const lane = kb.let("lane", mod(kb.lid, i(32)));
  const r = kb.let("r", div(kb.wg, i(blocks)));
  const n = kb.let("n", mul(add(mul(mod(kb.wg, i(blocks)), i(WARPS)), warp), i(CPW)));
  // A quantize prologue: the workgroup's row (through the gather) quantized once into workgroup memory where it fits.
  const staged = quant && stagedFits(1, Kd) ? stageQuantized(g, quant, x, 1, i(1), Kd, () => (permute ? gatheredRow(g, permute, K.min(r, K.sub(rows, i(1)))) : K.min(r, K.sub(rows, i(1))))) : undefined;
  kb.if(K.and(lt(r, rows), lt(n, i(O))), () => {
    const e = kb.let("expert", expertOfRowByWarp(kb, (j) => kb.load(offb, j), r, E, lane));
    const xRow = permute ? kb.let("tok", gatheredRow(g, permute, r)) : r;
    const wRows = warpColumns(g, n, CPW, O).map((c) => kb.let("wrow", add(mul(e, i(O)), c)));
    const input: InputRow = staged ? stagedRow(g, x, staged, i(0), Kd) : { value: x, buf: xb, row: xRow, scale: xs ? (s) => kb.load(xs, g.scaleAt(x, xRow, s)) : undefined, quant };
    const ys = columnValues(g, lane, Kd, weights, wRows, input, epilogue, out);
    ys.forEach((y, c) => kb.if(K.and(K.eq(lane, i(0)), lt(add(n, i(c)), i(O))), () => kb.store(ob, add(mul(r, i(O)), add(n, i(c))), y)));
  });
  return g.finish({ dim: g.entryDim(rowsDim.mul(blocks)), per: 1 });
}
