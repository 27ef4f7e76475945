/**
 * The bf16 grouped expert GEMM on Hopper's warpgroup MMAs (wgmma): the same steps, plan, tile
 * finder and epilogue as the mma.sync program (grouped-gemm.ts), with the operands read by the
 * tensor cores from shared memory instead of from registers. A workgroup is bm / 64 warpgroups, each
 * 64 rows by all bn weight rows (SwiGLU: bn / 2 gate rows and the same columns' up rows), its
 * accumulators bn / 2 floats a thread. K runs in stages of 64 elements (one 128-byte row per tile
 * row), copied by 16-byte async copies into the 128-byte swizzle the MMAs' descriptors name (chunk c
 * of row r at chunk c ^ (r % 8)), `stages` deep; each stage is four k16 MMAs per warpgroup.
 *
 * e4m3 (W8A8) runs the same program with a stage of 128 codes per row (one 128-byte swizzle row is
 * one 128-wide scale block of K) and four k32 MMAs a stage into a second accumulator, which is then
 * scaled by (the row's activation scale x the block's weight scale) into the total, as the mma.sync
 * program (grouped-gemm.ts) and DeepGEMM do; accumulators bn floats a thread in all. By default a
 * stage's scales are loaded a stage ahead (GenLimits.fp8ScalesAhead), their round trip hidden under
 * the next stage's copies and MMAs instead of following each stage's MMA wait.
 *
 * Selected by a tile "wgmma,bm,bn,stages" (LINGC_BF16_TILE / LINGC_FP8_TILE, or the profile's tile).
 * "wgmma-ws,bm,bn,stages[,tiles]" runs it warp-specialized (a producer warpgroup copies, mbarriers
 * hand the stages to the MMA warpgroups, `tiles` consecutive tiles a workgroup; see `specialized`):
 * correct on the H200 but slower than the plain form there (bench/results/ws-gemm-2026-12-02-h200.md,
 * bf16; the e4m3 form compiles, not yet run).
 *
 * The H200 profile's bf16 tile (wgmma,128,256,4): checked against the interpreter, memcheck and
 * racecheck, and timed against the mma.sync tiles by `bash bench/cuda/device.sh tiles`
 * (bench/results/tiles-2026-12-01-wgmma-h200.md).
 */
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { attrsOf, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { gatheredRow } from "./experts";
import { applyEpilogue, copyRows, gemmTile, gemmTileThreads, groupedGemmPlan, workgroupTile, type GemmElem } from "./grouped-gemm";
import { partnerCodes, quantRecipe } from "./quant";

/** 32-bit words of a tile row in shared memory: one 128-byte swizzle row a stage. */
const ROW_WORDS = 32;
/**
 * The warp-specialized program's copying warpgroup and the registers it keeps (setmaxnreg; with two MMA
 * warpgroups, 384 x 168 registers at entry = 128 x 56 + 256 x 224; 40 spilled its copies' row bases).
 */
const PRODUCER_THREADS = 128;
const PRODUCER_REGS = 56;
const MAX_CONSUMER_REGS = 240;
/** 32-bit registers of a multiprocessor (sm_90), all the workgroup's: the tile takes one an SM. */
const SM_REGISTERS = 65536;
/** Shared memory the hardware keeps per resident workgroup beside its own (sm_80 and later: 1 KB). */
const SMEM_RESERVED = 1024;
/** A plain program's registers a thread beyond its accumulators (addresses, scales, loop state; ptxas: 168 at 128 accumulator floats). */
const REGS_BESIDES = 40;
/** Stages of copies the producer has in flight when it lands the oldest (before issuing the next). */
const PRODUCER_LAG = 2;
/** Bytes of an element, and K of one MMA (32 bytes of a row either way). */
const ELEM: Record<GemmElem, { bytes: number; mmaK: 16 | 32 }> = { bf16: { bytes: 2, mmaK: 16 }, e4m3: { bytes: 1, mmaK: 32 } };

export function groupedGemmWgmmaKernel(g: Gen, ops: readonly Op[], elem: GemmElem = "bf16"): GeneratedKernel {
  const plan = groupedGemmPlan(ops, g.limits, elem)!;
  const tile = gemmTile(g.limits, elem);
  const kb = g.kb;
  const { gate, up, permute, epilogue, quant } = plan;
  const [x, w, offsets] = gate.operands as [Value, Value, Value];
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : gate).results[0]!;
  // With a quantize epilogue the step writes the codes (and their scales) instead of the result.
  const written = quant ? quant.results[0]! : out;
  const what = `grouped ${elem} GEMM (wgmma)`;
  const scaled = elem === "e4m3";
  const { bytes, mmaK } = ELEM[elem];
  /** K elements per stage (one swizzle row), and of a 16-byte copy. */
  const BK = 128 / bytes;
  const CE = 16 / bytes;
  if (g.step.writes.size !== 1 || !g.step.writes.has(written)) throw new LingcError(`${what}: the step must write only its last result (${g.step.kernel?.name ?? gate.opName})`);
  const { bm: BM, bn: BN, stages: STAGES } = tile;
  const producer = tile.producer === true;
  const T = gemmTileThreads(tile);
  if (kb.kernel.wg !== T) throw new LingcError(`${what}: a ${BM}x${BN} tile needs ${T} threads, not ${kb.kernel.wg}`);
  // Warp-specialized: one workgroup an SM. ptxas gives a kernel that moves registers its launch
  // bound's share, 64 K / T a thread rounded down to a multiple of 8, and the workgroup holds T times
  // that; the producer gives up all but PRODUCER_REGS and the MMA threads take what that frees (at
  // most MAX_CONSUMER_REGS): asking for more than the workgroup holds would wait forever.
  // setmaxnreg.inc may only raise a count: the share at entry must be below it, so at least two MMA
  // warpgroups.
  const entryRegs = Math.floor(SM_REGISTERS / T / 8) * 8;
  const consumerRegs = Math.min(MAX_CONSUMER_REGS, Math.floor((T * entryRegs - PRODUCER_THREADS * PRODUCER_REGS) / (T - PRODUCER_THREADS) / 8) * 8);
  if (producer && !(entryRegs < consumerRegs && entryRegs > PRODUCER_REGS)) throw new LingcError(`${what}: a warp-specialized ${BM}x${BN} tile (${T} threads) cannot move registers to its MMA warpgroups (${entryRegs} a thread at entry, ${consumerRegs} after): it needs bm of 128 or more`);
  if (producer) kb.kernel.minBlocks = 1;
  const smem = 4 * STAGES * (BM + BN) * ROW_WORDS;
  const room = Math.max(g.limits.maxWorkgroupBytes, g.limits.maxDynamicWorkgroupBytes ?? 0);
  if (smem > room) throw new LingcError(`${what}: a ${BM}x${BN} tile of ${STAGES} stages needs ${smem} bytes of shared memory, the target gives ${room}`);
  const overlap = scaled && !producer && g.limits.fp8WgmmaOverlap === true && STAGES >= 3;
  // The plain program: as many workgroups an SM as its shared memory (each also reserving
  // SMEM_RESERVED) and, at the registers its accumulators want, its register file hold, asked of
  // ptxas (registers capped to fit) and of the runtime (the shared-memory carve-out): e4m3
  // wgmma,64,128,3 keeps three resident at 168 registers, which ptxas would otherwise exceed.
  if (!producer) {
    const resident = Math.floor((room + SMEM_RESERVED) / (smem + SMEM_RESERVED));
    const wants = Math.ceil(((BN / 2) * (1 + (scaled ? (overlap ? 2 : 1) : 0)) + REGS_BESIDES) / 8) * 8;
    const blocks = Math.min(resident, Math.floor(SM_REGISTERS / (T * wants)));
    if (blocks >= 2) kb.kernel.minBlocks = blocks;
  }
  const [E, O, I] = w.type.shape.map((d) => d.value!) as [number, number, number];
  // A scale block is one stage: its K must be whole blocks.
  if (scaled && I % BK !== 0) throw new LingcError(`${what}: K = ${I} is not a multiple of the ${BK}-wide scale blocks`);
  const swiglu = up !== undefined;
  if (swiglu && BN % 16 !== 0) throw new LingcError(`${what}: a SwiGLU tile's ${BN} weight rows must split into two halves of 8-column blocks`);
  const colsPer = swiglu ? BN / 2 : BN;
  const colTiles = Math.ceil(O / colsPer);
  // A quantize epilogue's 1 x G groups: a workgroup runs the P = G / colsPer column tiles of one
  // group in turn (groupedGemmPlan: one or two, the grid whole groups), so that a row's group is
  // one workgroup's (the amax of its columns a quad's shuffles). The first tile's bf16 results wait
  // for the second in the group's own code bytes (G bytes a row: the first tile's colsPer results
  // at two bytes each), then become codes with the second's.
  const G = quant ? (attrsOf(OPS.quantize, quant).block as [number, number])[1] : colsPer;
  const P = quant ? G / colsPer : 1;
  const tileRuns = colTiles / P;
  // (Its codes go out through the stage buffers: a row's G codes and 16 bytes of padding.)
  if (quant && BM * (G / 4 + 4 + colsPer / 2 + 4) > STAGES * (BM + BN) * ROW_WORDS) throw new LingcError(`${what}: a ${BM}x${BN} tile of ${STAGES} stages cannot stage ${G}-code groups`);
  const xb = g.buf(permute ? permute.operands[0]! : x, true);
  const orderB = permute ? g.buf(permute.operands[1]!) : undefined;
  const k = permute ? attrsOf(OPS.moe_permute, permute).k : 1;
  const wb = [g.buf(w, true), ...(up ? [g.buf(up.operands[1]!, true)] : [])];
  const wv = [w, ...(up ? [up.operands[1]!] : [])];
  // Activation scales: the gathered tokens' (a row's are token order[r] / k's), or x's.
  const xsrc = permute ? permute.operands[0]! : x;
  const xs = scaled ? g.scalesBuf(xsrc) : undefined;
  const wsb = scaled ? wv.map((v) => g.scalesBuf(v)) : [];
  const offb = g.buf(offsets);
  const ob = quant ? g.buf(written, true) : g.buf(out);
  const rowsDim = x.type.shape[0]!;
  const { i, add, sub, mul, div, mod, lt, ge, and } = K;

  /** A tile's expert (-1: none), first row, column tile and end of its rows. */
  /** A thread's row of a tile as its activation scales see it (scaleRowsOf). */
  interface ScaleRow {
    ok: Expr;
    src: Expr;
  }
  interface TileAt {
    e: Expr;
    row0: Expr;
    ct: Expr;
    rowEnd: Expr;
  }
  const tileAt = (index?: Expr): TileAt => {
    const { ct, e, row0 } = workgroupTile(g, offb, E, BM, tileRuns, index);
    // (An idle tile, e = -1, reads offsets[0].)
    return { e, row0, ct, rowEnd: kb.let("row_end", K.min(kb.load(offb, add(e, i(1))), add(row0, i(BM)))) };
  };
  // Stage s: A rows at word s x (BM + BN) x 32, B rows after them; 1024-byte aligned (BM and BN
  // are multiples of 8 rows of 128 bytes).
  const S = kb.shared(kb.fresh("tiles"), "u32", STAGES * (BM + BN) * ROW_WORDS, 1024);
  const aBase = (st: Expr) => mul(st, i((BM + BN) * ROW_WORDS));
  const bBase = (st: Expr) => add(mul(st, i((BM + BN) * ROW_WORDS)), i(BM * ROW_WORDS));

  // Copies: chunk c = cid % 8 of rows cid / 8 + pass x copiers / 8 (cid: the thread's index among
  // the copying threads, every thread or the producer warpgroup's); copiers / 8 is a multiple of 8,
  // so a thread's rows share r % 8 and with it the swizzled chunk c ^ (r % 8).
  const copiers = producer ? PRODUCER_THREADS : T;
  const per = copiers / 8;
  // Whole passes only: a pass past the tile's rows would write into the next stage's.
  if (BN % per !== 0 || (swiglu && (BN / 2) % per !== 0)) throw new LingcError(`${what}: a ${BM}x${BN} tile cannot be copied ${per} rows at a time${swiglu ? " (gate and up halves apart)" : ""}`);
  const partial = I % BK !== 0;
  /** The copy of a tile's stage kt into buffer st by copying thread cid (the rows' bases found once, when the copier is made). */
  const copier = (tl: TileAt, cid: Expr) => {
    const lr = kb.let("lr", div(cid, i(8)));
    const lc = kb.let("lc", mod(cid, i(8)));
    const sw = kb.let("sw", mul(K.xor(lc, mod(lr, i(8))), i(4)));
    const { aRows, bRows } = copyRows(kb, { lr, per, row0: tl.row0, rowEnd: tl.rowEnd, orderB, k, e: tl.e, ct: tl.ct, colsPer, O, I, BM, BN, wb });
    return (kt: Expr, st: Expr) => {
      const kk = kb.let("kk", add(mul(kt, i(BK)), mul(lc, i(CE))));
      const kin = partial ? kb.let("kin", lt(kk, i(I))) : undefined;
      const valid = (ok: Expr) => (kin ? and(ok, kin) : ok);
      const at = (base: Expr) => (kin ? add(base, K.sel(kin, kk, i(0))) : add(base, kk));
      const dst = (base: Expr, r: number) => add(add(base, mul(add(lr, i(r)), i(ROW_WORDS))), sw);
      for (const a of aRows) kb.copy16(S, dst(aBase(st), a.at), xb, at(a.base), valid(a.ok));
      for (const b of bRows) kb.copy16(S, dst(bBase(st), b.at), b.buf, at(b.base), valid(b.ok));
      kb.copyCommit();
    };
  };

  const acc = kb.array("acc", "f32", BN / 2);
  // Scaled: a stage's (a scale block's) products sum here first, each stage's first MMA writing it
  // (D = A B) instead of adding (no zeroing of the sums after each stage's scaling: 64 moves a
  // thread a stage at BN = 128), then enter acc scaled. Overlapped (GenLimits.fp8WgmmaOverlap, the
  // plain program with 3 stages or more): two such sums in turn, stage kt's in parts[kt % 2].
  const parts = overlap ? [kb.array("part", "f32", BN / 2), kb.array("part", "f32", BN / 2)] : [scaled ? kb.array("part", "f32", BN / 2) : acc];
  const part = parts[0]!;
  // (Zeroed by the threads that multiply, once they hold their registers, for each tile.)
  const zeroAcc = () =>
    kb.for("j", i(0), i(BN / 2), (j) => {
      kb.store(acc, j, K.f(0));
    });
  const wgi = kb.let("wgi", div(kb.lid, i(128)));
  const lane = kb.let("lane", mod(kb.lid, i(32)));
  const wq = kb.let("wq", mod(div(kb.lid, i(32)), i(4)));
  const gr = kb.let("gr", div(lane, i(4)));
  const tq = kb.let("tq", mod(lane, i(4)));
  // Thread (warp wq of its warpgroup, g = lane / 4, t = lane % 4) holds rows 16 wq + g (+8) of its
  // warpgroup's 64, columns 8j + 2t (+1) of each 8-column block j (SwiGLU: block j of the gate
  // half pairs with block j + BN / 16 of the up half).
  const tileRow = (hh: number) => add(mul(wgi, i(64)), add(mul(wq, i(16)), add(gr, i(hh * 8))));
  const rowOf = (tl: TileAt, hh: number) => add(tl.row0, tileRow(hh));
  const blocks = swiglu ? BN / 16 : BN / 8;
  /** The output column of block j (of either half), pair c. */
  const colOf = (tl: TileAt, j: number, c: number) => add(mul(tl.ct, i(colsPer)), add(i((j % blocks) * 8 + c), mul(tq, i(2))));
  const nk = Math.ceil(I / BK);
  // The stage's scale block kt is summed in part: acc += part x (row's activation scale x column
  // block's weight scale), and part starts the next block at zero. (Loading a stage's scales before
  // its MMAs are issued, to hide their round trip under them, made ptxas inject a warpgroup.arrive
  // (C7519) into ling-small-fp8's SwiGLU tile: they are loaded after the wait, as few as the tile needs.)
  /**
   * The activation-scale rows of a thread's two rows of tile tl, found once a tile: whether each is
   * one of the tile's, and its row of the scales (gathered: token order[r] / k's, a load the K loop
   * would otherwise repeat in front of every stage's scale loads).
   */
  const scaleRowsOf = (tl: TileAt): ScaleRow[] | undefined =>
    scaled
      ? [0, 1].map((hh) => {
          const row = kb.let("srow", rowOf(tl, hh));
          return { ok: kb.let("sok", lt(row, tl.rowEnd)), src: kb.let("ssrc", gatheredRow(g, permute, K.min(row, sub(tl.rowEnd, i(1))))) };
        })
      : undefined;
  const stageScales = (tl: TileAt, rows: ScaleRow[] | undefined, kt: Expr): { sb: Expr[]; sa: Expr[] } => {
    const sb: Expr[] = [];
    // Where a half's colsPer columns divide the weights' 128-row scale blocks, a tile's half lies in
    // one block (its clamped columns too): one load a half.
    const oneBlock = 128 % colsPer === 0;
    for (let j = 0; j < BN / 8; j++) {
      const which = swiglu && j >= blocks ? 1 : 0;
      if (oneBlock && j % blocks !== 0) {
        sb.push(sb[j - (j % blocks)]!);
        continue;
      }
      const col = K.min(colOf(tl, j, 0), i(O - 1));
      sb.push(kb.let("sb", kb.load(wsb[which]!, g.scaleBlockIndex(wv[which]!, add(mul(tl.e, i(O)), col), kt))));
    }
    const sa = rows!.map(({ ok, src }) => kb.let("sa", K.sel(ok, kb.load(xs!, g.scaleAt(xsrc, src, kt)), K.f(0))));
    return { sb, sa };
  };
  /** acc += sums x scales (stageScales' loads, made before); the next stage's first MMA overwrites the sums. */
  const scaleInto = (scales: { sb: Expr[]; sa: Expr[] }, sums: string) => {
    for (let hh = 0; hh < 2; hh++) {
      const sa = scales.sa[hh]!;
      for (let j = 0; j < BN / 8; j++)
        for (let c = 0; c < 2; c++) {
          const at = i(4 * j + 2 * hh + c);
          kb.store(acc, at, add(kb.load(acc, at, "f32"), mul(kb.load(sums, at, "f32"), mul(sa, scales.sb[j]!))));
        }
    }
  };
  const promote = (tl: TileAt, rows: ScaleRow[] | undefined, kt: Expr) => scaleInto(stageScales(tl, rows, kt), part);
  /** Scales held in vars (one a distinct load; stageScales repeats one sb where a half lies in one block): their values, and how to load the next ones into them. */
  const heldScales = (first: { sb: Expr[]; sa: Expr[] }) => {
    const distinct = [...new Set(first.sb)];
    const sbVars = distinct.map((e) => kb.var("sbn", e));
    const saVars = first.sa.map((e) => kb.var("san", e));
    const at = first.sb.map((e) => distinct.indexOf(e));
    return {
      scales: { sb: at.map((n) => sbVars[n]!.ref), sa: saVars.map((v) => v.ref) },
      load: (next: { sb: Expr[]; sa: Expr[] }) => {
        const nd = [...new Set(next.sb)];
        nd.forEach((e, n) => sbVars[n]!.set(e));
        next.sa.forEach((e, n) => saVars[n]!.set(e));
      },
    };
  };
  const shape = elem === "bf16" ? ({ m: 64, n: BN, k: 16, ab: "bf16" } as const) : ({ m: 64, n: BN, k: 32, ab: "e4m3" } as const);
  const mmas = (st: Expr, into = part) => {
    kb.wgmmaFence();
    // MMA slice ks starts 32 bytes (8 words) into each swizzled row (k16 of bf16, k32 of e4m3).
    for (let ks = 0; ks < BK / mmaK; ks++) kb.wgmma(shape, into, S, add(add(aBase(st), mul(wgi, i(64 * ROW_WORDS))), i(ks * 8)), add(bBase(st), i(ks * 8)), { zero: scaled && ks === 0 });
    kb.wgmmaCommit();
  };
  /** The step's result from accumulator `at` (SwiGLU: with its up half's): the epilogue on the rounded products. */
  const resultAt = (at: number) => {
    const vals = new Map<Value, Expr>([[gate.results[0]!, g.fit(kb.load(acc, i(at), "f32"), gate.results[0]!.type.dtype)]]);
    if (up) vals.set(up.results[0]!, g.fit(kb.load(acc, i(at + 4 * blocks), "f32"), up.results[0]!.type.dtype));
    return applyEpilogue(g, epilogue, vals, out);
  };
  // Epilogue: acc by the layout above.
  const epilogueOut = (tl: TileAt) => {
    for (let hh = 0; hh < 2; hh++) {
      const row = kb.let("orow", rowOf(tl, hh));
      kb.if(lt(row, tl.rowEnd), () => {
        for (let j = 0; j < blocks; j++)
          for (let c = 0; c < 2; c++) {
            const col = kb.let("ocol", colOf(tl, j, c));
            kb.if(lt(col, i(O)), () => kb.store(ob, add(mul(row, i(O)), col), resultAt(4 * j + 2 * hh + c)));
          }
      });
    }
  };

  // Staged epilogue (bf16 results of the plain program, whole 8-column pieces): the stages' shared
  // memory is free once every warpgroup's MMAs completed, so the results go there as bf16 pairs
  // (row stride colsPer / 2 + 4 words: a quad's 8 rows on distinct banks), then out as 16-byte
  // stores of row pieces (a thread writes BM x colsPer / 8 / T of them instead of 2 x blocks x 2
  // single elements, each behind its own branch).
  const RS = colsPer / 2 + 4;
  const pieces = (BM * colsPer) / 8;
  const outElem = kb.kernel.buffers.find((b) => b.name === ob)?.elem;
  const staged = !producer && outElem === "bf16" && O % 8 === 0 && colsPer % 8 === 0 && BM * RS <= STAGES * (BM + BN) * ROW_WORDS && pieces % T === 0;
  const epilogueStaged = (tl: TileAt) => {
    kb.barrier();
    for (let hh = 0; hh < 2; hh++) {
      const r = kb.let("srow", tileRow(hh));
      for (let j = 0; j < blocks; j++) kb.store(S, add(mul(r, i(RS)), add(i(4 * j), tq)), K.pack(resultAt(4 * j + 2 * hh), resultAt(4 * j + 2 * hh + 1)));
    }
    kb.barrier();
    const cpr = colsPer / 8;
    for (let p = 0; p < pieces / T; p++) {
      const q = kb.let("q", add(kb.lid, i(p * T)));
      const r = kb.let("qr", div(q, i(cpr)));
      const cc = kb.let("qc", mod(q, i(cpr)));
      const row = kb.let("qrow", add(tl.row0, r));
      const col = kb.let("qcol", add(mul(tl.ct, i(colsPer)), mul(cc, i(8))));
      kb.if(and(lt(row, tl.rowEnd), lt(col, i(O))), () => {
        const base = kb.let("qs", add(mul(r, i(RS)), mul(cc, i(4))));
        kb.store16(ob, div(add(mul(row, i(O)), col), i(2)), [0, 1, 2, 3].map((w) => kb.load(S, add(base, i(w)), "u32")));
      });
    }
  };

  // Late wait (GenLimits.wgmmaLateWait, bf16): a stage's MMAs run on while the next iteration waits
  // for its copies, meets the barrier and issues its loads; they are waited for only then. A load
  // then goes S - 2 stages ahead, into the buffer of stage kt - 2, whose MMAs every warpgroup waited
  // for before this iteration's barrier. Else (and always for e4m3, whose scaling of a stage's sums
  // must come before the next stage's MMAs: measured slower late) each stage's MMAs are waited for
  // at once and a load goes S - 1 stages ahead, into the buffer of the stage just computed. On the
  // H200, Ling-mini prefill 1x8192: bf16 75.9-76.8 -> 73.7-73.9 ms late; FP8 83.6-83.7 early,
  // 85.6-85.8 late (bench/results/wgmma-wait-2026-12-01-h200.md).
  // (A tile of 2 stages has no buffer free for a load while a stage's MMAs run: it waits at once.)
  const late = !scaled && g.limits.wgmmaLateWait === true && STAGES >= 3;
  // Overlapped e4m3 likewise keeps a stage's MMAs in flight into the next iteration.
  const ahead = late || overlap ? STAGES - 2 : STAGES - 1;
  /** A tile's K loop: acc holds its sums after it (every stage's copies landed, every MMA waited for). */
  const mainloop = (tl: TileAt, rows: ScaleRow[] | undefined) => {
    zeroAcc();
    const loadStage = copier(tl, kb.lid);
    for (let p = 0; p < ahead; p++) kb.if(lt(i(p), i(nk)), () => loadStage(i(p), i(p)), () => kb.copyCommit());
    /** Stage kt's copies landed for every thread, and the load S - 2 or S - 1 stages ahead issued: kt's buffer. */
    const stageReady = (kt: Expr) => {
      kb.copyWait(ahead - 1);
      // The copies that landed are this thread's; the MMAs read them through the async proxy.
      kb.fenceAsyncShared();
      kb.barrier();
      const next = add(kt, i(ahead));
      kb.if(lt(next, i(nk)), () => loadStage(next, mod(next, i(STAGES))), () => kb.copyCommit());
      return kb.let("st", mod(kt, i(STAGES)));
    };
    if (overlap) {
      // Stage kt - 1's MMAs (in flight through kt's copy wait, barrier and loads) waited for, stage
      // kt's issued into parts[kt % 2], then kt - 1's sums scaled into acc from the other while the
      // tensor cores run. (Waiting for kt - 1 after kt's issue, with wait_group 1, ptxas cannot prove
      // across the loop's back edge and serializes the MMAs: C7514.) The K loop runs two stages an
      // iteration so that each names its sums statically (registers), an odd last stage after it.
      const stage = (kt: Expr, p: number) => {
        const st = stageReady(kt);
        kb.wgmmaWait(0);
        mmas(st, parts[p]);
        kb.if(K.gt(kt, i(0)), () => scaleInto(stageScales(tl, rows, sub(kt, i(1))), parts[1 - p]!));
      };
      kb.loop("kp", i(0), i(Math.floor(nk / 2)), (kp) => {
        stage(kb.let("kt", mul(kp, i(2))), 0);
        stage(kb.let("kt", add(mul(kp, i(2)), i(1))), 1);
      });
      if (nk % 2) stage(i(nk - 1), 0);
      const scales = stageScales(tl, rows, i(nk - 1));
      kb.wgmmaWait(0);
      scaleInto(scales, parts[(nk - 1) % 2]!);
      kb.copyWait(0);
      return;
    }
    // Scales a stage ahead (GenLimits.fp8ScalesAhead): stage kt + 1's scale loads issued once stage
    // kt's are used, so that their round trip overlaps the next stage's copy wait, barrier and MMAs
    // instead of following its MMA wait; held in registers (a var per distinct load).
    const ahead1 = scaled && !late && g.limits.fp8ScalesAhead === true ? heldScales(stageScales(tl, rows, i(0))) : undefined;
    kb.loop("kt", i(0), i(nk), (kt) => {
      const st = stageReady(kt);
      if (late) {
        // Stage kt - 1's MMAs (none before the first).
        kb.wgmmaWait(0);
        if (scaled) kb.if(K.gt(kt, i(0)), () => promote(tl, rows, sub(kt, i(1))));
        mmas(st);
      } else {
        mmas(st);
        kb.wgmmaWait(0);
        if (ahead1) {
          scaleInto(ahead1.scales, part);
          ahead1.load(stageScales(tl, rows, K.min(add(kt, i(1)), i(nk - 1))));
        } else if (scaled) promote(tl, rows, kt);
      }
    });
    if (late) {
      kb.wgmmaWait(0);
      if (scaled) promote(tl, rows, i(nk - 1));
    }
    kb.copyWait(0);
  };

  // The quantize epilogue (plan.quant): the group's P column tiles' results of a thread's two rows
  // (16 a row a tile at BN 128), the row's amax over the group by the quad that holds it, the codes
  // written through shared memory as 16-byte stores of row pieces, the scale by the quad's first
  // lane. A row half at a time (fewer results live at once).
  /** A thread's results of the tile just computed in row half hh: block j x 2 + c, rounded to the result's dtype. */
  const resultsOf = (hh: number) => Array.from({ length: 2 * blocks }, (_, n) => kb.let("h", resultAt(4 * (n >> 1) + 2 * hh + (n & 1))));
  const absMax = (vals: Expr[]) => vals.reduce((a: Expr, v) => K.max(a, K.abs(v)), K.f(0));
  /** The tile's rows through shared memory as 16-byte pieces: `words` words a row at stride words + 4 from word `at`, piece by piece. */
  const rowPieces = (words: number, at: number, f: (r: Expr, piece: Expr, base: Expr) => void) => {
    const per = words / 4;
    for (let p = 0; p < (BM * per) / T; p++) {
      const q = kb.let("q", add(kb.lid, i(p * T)));
      const r = kb.let("qr", div(q, i(per)));
      const piece = kb.let("qc", mod(q, i(per)));
      f(r, piece, kb.let("qs", add(i(at), add(mul(r, i(words + 4)), mul(piece, i(4))))));
    }
  };
  /** Word `piece x 4` of a row's group in the codes (G bytes from the group's first column). */
  const groupWord = (tg: TileAt, row: Expr, piece: Expr) => add(div(add(mul(row, i(O)), mul(tg.ct, i(G))), i(4)), mul(piece, i(4)));
  // Shared words: the first tile's bf16 results (BM rows of RS), then the codes (BM rows of CW + 4).
  const CW = G / 4;
  const codesAt = BM * RS;
  /** The group's codes and scales from the last tile's results (in acc) and, with two tiles, the first's (in the code bytes). */
  const quantOut = (tg: TileAt) => {
    const codes = quant!.results[0]!;
    kb.barrier();
    if (P === 2) {
      // The first tile's results back into shared memory as its keepFirst staged them (rows past
      // the expert's read its last row's: in bounds, not used).
      rowPieces(colsPer / 2, 0, (r, piece, base) => {
        const row = kb.let("qrow", add(tg.row0, K.min(r, sub(sub(tg.rowEnd, tg.row0), i(1)))));
        kb.load16("kw", ob, groupWord(tg, row, piece)).forEach((wd, w) => kb.store(S, add(base, i(w)), wd));
      });
      kb.barrier();
    }
    for (let hh = 0; hh < 2; hh++) {
      const r = kb.let("srow", tileRow(hh));
      const first = P === 2 ? Array.from({ length: blocks }, (_, j) => kb.let("kw", kb.load(S, add(mul(r, i(RS)), add(i(4 * j), tq)), "u32"))).flatMap((wd) => [kb.let("h", K.half(wd, false)), kb.let("h", K.half(wd, true))]) : [];
      const last = resultsOf(hh);
      // (The first tile's amax from its values read back: nothing held in registers through the second's K loop.)
      const m = kb.warpMax(kb.let("m", absMax([...first, ...last])), 4);
      const { s, q } = quantRecipe(g, quant!, m);
      // An even lane of a quad pair packs its two codes of a block with its partner's two.
      (P === 2 ? [first, last] : [last]).forEach((vals, p) => {
        for (let j = 0; j < blocks; j++) {
          const word = partnerCodes(kb, [vals[2 * j]!, vals[2 * j + 1]!], q);
          kb.if(K.eq(mod(tq, i(2)), i(0)), () => kb.store(S, add(i(codesAt), add(mul(r, i(CW + 4)), add(i((p * colsPer) / 4 + 2 * j), div(tq, i(2))))), word));
        }
      });
      const row = kb.let("orow", rowOf(tg, hh));
      kb.if(K.and(lt(row, tg.rowEnd), K.eq(tq, i(0))), () => kb.store(g.scalesBuf(codes), g.scaleIndex(codes, add(mul(row, i(O)), mul(tg.ct, i(G)))), s));
    }
    kb.barrier();
    rowPieces(CW, codesAt, (r, piece, base) => {
      const row = kb.let("qrow", add(tg.row0, r));
      kb.if(lt(row, tg.rowEnd), () => kb.store16(ob, groupWord(tg, row, piece), [0, 1, 2, 3].map((w) => kb.load(S, add(base, i(w)), "u32"))));
    });
  };
  /** The bf16 results of a group's first tile into its rows' code bytes (staged as epilogueStaged stages them). */
  const keepFirst = (tg: TileAt) => {
    kb.barrier();
    for (let hh = 0; hh < 2; hh++) {
      const vals = resultsOf(hh);
      const r = kb.let("srow", tileRow(hh));
      for (let j = 0; j < blocks; j++) kb.store(S, add(mul(r, i(RS)), add(i(4 * j), tq)), K.pack(vals[2 * j]!, vals[2 * j + 1]!));
    }
    kb.barrier();
    rowPieces(colsPer / 2, 0, (r, piece, base) => {
      const row = kb.let("qrow", add(tg.row0, r));
      kb.if(lt(row, tg.rowEnd), () => kb.store16(ob, groupWord(tg, row, piece), [0, 1, 2, 3].map((w) => kb.load(S, add(base, i(w)), "u32"))));
    });
  };

  /** Every thread copies and multiplies the workgroup's one tile (with a quantize epilogue, its group's tiles in turn), a workgroup barrier a stage. */
  const plain = () => {
    const tg = tileAt();
    kb.if(ge(tg.e, i(0)), () => {
      const rows = scaleRowsOf(tg);
      if (!quant) {
        mainloop(tg, rows);
        if (staged) epilogueStaged(tg);
        else epilogueOut(tg);
        return;
      }
      // The group's tiles by a loop the renderer keeps rolled: at the 168 registers of three
      // workgroups a multiprocessor ptxas spills 24 bytes so (48 unrolled; the plain program none).
      kb.loop("pt", i(0), i(P), (pt) => {
        const tl = { ...tg, ct: kb.let("ct", add(mul(tg.ct, i(P)), pt)) };
        // (The previous tile's last reads of the stage buffers come before this one's copies into them.)
        if (P > 1) kb.barrier();
        mainloop(tl, rows);
        if (P > 1) kb.if(lt(pt, i(P - 1)), () => keepFirst(tg));
      });
      quantOut(tg);
    });
  };

  // Warp-specialized (tile.producer): the last warpgroup copies, the others multiply, over the
  // workgroup's TP consecutive tiles (the producer copies the next tile's first stages while the
  // MMA warpgroups write the last one's results). Each stage is handed over by two mbarriers:
  // full[st] (the producer's 128 threads arrive once their copies of the stage landed and were
  // fenced for the async proxy, as a thread of the plain program does before its workgroup barrier)
  // and empty[st] (every MMA thread arrives once the MMAs that read the stage completed). The
  // workgroup's stages are counted across its tiles (gs = tile x nk + kt): stage gs is buffer gs % S
  // in its (gs / S)-th use, and its waits name that use's parity. Before it issues a stage, the
  // producer lands the oldest of the LAG stages it has in flight.
  const specialized = () => {
    const TP = tile.tilesPer ?? 1;
    const tiles = Array.from({ length: TP }, (_, p) => tileAt(add(mul(kb.wg, i(TP)), i(p))));
    const bars = kb.mbarriers("stage_bars", 2 * STAGES);
    const full = (st: Expr) => st;
    const empty = (st: Expr) => add(st, i(STAGES));
    kb.if(K.eq(kb.lid, i(0)), () => {
      for (let st = 0; st < STAGES; st++) {
        kb.mbarInit(bars, i(st), PRODUCER_THREADS);
        kb.mbarInit(bars, i(STAGES + st), T - PRODUCER_THREADS);
      }
    });
    kb.barrier();
    const lag = Math.min(PRODUCER_LAG, STAGES - 1);
    const each = (f: (tl: TileAt, p: number) => void) => tiles.forEach((tl, p) => kb.if(ge(tl.e, i(0)), () => f(tl, p)));
    kb.if(
      ge(kb.lid, i(T - PRODUCER_THREADS)),
      () => {
        kb.setmaxnreg(false, PRODUCER_REGS);
        const cid = kb.let("cid", sub(kb.lid, i(T - PRODUCER_THREADS)));
        const land = (gs: Expr, pending: number) => {
          kb.copyWait(pending);
          kb.fenceAsyncShared();
          kb.mbarArrive(bars, full(mod(gs, i(STAGES))));
        };
        each((tl, p) => {
          const loadStage = copier(tl, cid);
          kb.loop("kt", i(0), i(nk), (kt) => {
            const gs = kb.let("gs", add(i(p * nk), kt));
            const st = kb.let("st", mod(gs, i(STAGES)));
            // Stage gs - LAG lands first (the stages after it, LAG - 1, may still be in flight): the
            // MMA warpgroups may need it before they free the buffer this stage waits for (with the
            // wait first, S - 1 stages in flight would never free one: a hang the simulator found).
            kb.if(ge(gs, i(lag)), () => land(sub(gs, i(lag)), lag - 1));
            // The buffer's previous use (stage gs - S) must have been multiplied.
            kb.if(ge(gs, i(STAGES)), () => kb.mbarWait(bars, empty(st), mod(sub(div(gs, i(STAGES)), i(1)), i(2))));
            loadStage(kt, st);
          });
        });
        // The last stages still in flight, oldest first (the tiles with an expert come first).
        const count = tiles.reduce<Expr>((n, tl) => add(n, K.sel(ge(tl.e, i(0)), i(nk), i(0))), i(0));
        const stages = kb.let("stages", count);
        for (let j = lag - 1; j >= 0; j--) {
          const gs = kb.let("gs_last", sub(stages, i(j + 1)));
          kb.if(ge(gs, i(0)), () => land(gs, j));
        }
      },
      () => {
        kb.setmaxnreg(true, consumerRegs);
        each((tl, p) => {
          zeroAcc();
          const rows = scaleRowsOf(tl);
          kb.loop("kt", i(0), i(nk), (kt) => {
            const gs = kb.let("gs", add(i(p * nk), kt));
            const st = kb.let("st", mod(gs, i(STAGES)));
            kb.mbarWait(bars, full(st), mod(div(gs, i(STAGES)), i(2)));
            mmas(st);
            if (scaled) {
              kb.wgmmaWait(0);
              promote(tl, rows, kt);
              kb.mbarArrive(bars, empty(st));
            } else {
              // The previous stage's MMAs are done once at most this stage's are in flight.
              kb.wgmmaWait(1);
              kb.if(K.gt(kt, i(0)), () => kb.mbarArrive(bars, empty(mod(sub(gs, i(1)), i(STAGES)))));
            }
          });
          kb.wgmmaWait(0);
          // The tile's last stage is free before its results are written (the producer goes on).
          if (!scaled) kb.mbarArrive(bars, empty(i((p * nk + nk - 1) % STAGES)));
          epilogueOut(tl);
        });
        // The producer's branch never joins this one (their register budgets differ).
      },
    );
  };
  if (producer) specialized();
  else plain();
  // Workgroups: one per tile (warp-specialized: per tilesPer tiles), tiles <= (rows + BM x (E + 1)) / BM x colTiles.
  const kernel = g.finish({ dim: g.entryDim(rowsDim.add(BM * (E + 1)).mul(tileRuns)), per: BM * (producer ? (tile.tilesPer ?? 1) : 1) });
  // Hopper's FP8 MMA keeps about 14 bits of each 128-wide slice's sum (DeepSeek-V3 3.3.2): measured
  // 3.1e-4 of the largest result on ling-small-fp8's SwiGLU experts (f32 results), where the mma.sync
  // program is exact to 1e-7 (bench/results/fp8-wgmma-2026-12-01-h200.md); 1e-3 still tells a wrong
  // scale (a block's scale is off by percents) from the MMA's rounding.
  return scaled ? { ...kernel, accuracy: 1e-3 } : kernel;
}
