/**
 * The bf16 grouped expert GEMM on Hopper's warpgroup MMAs (wgmma): the same steps, plan, tile
 * finder and epilogue as the mma.sync program (grouped-gemm.ts), with the operands read by the
 * tensor cores from shared memory instead of from registers. A workgroup is bm / 64 warpgroups, each
 * 64 rows by all bn weight rows (SwiGLU: bn / 2 gate rows and the same columns' up rows), its
 * accumulators bn / 2 floats a thread. K runs in stages of 64 elements (one 128-byte row per tile
 * row), copied by 16-byte async copies into the 128-byte swizzle the MMAs' descriptors name (chunk c
 * of row r at chunk c ^ (r % 8)), `stages` deep; each stage is four k16 MMAs per warpgroup.
 *
 * Selected by a tile "wgmma,bm,bn,stages" (LINGC_BF16_TILE, or the profile's bf16 tile).
 *
 * The H200 profile's bf16 tile (wgmma,128,256,4): checked against the interpreter, memcheck and
 * racecheck, and timed against the mma.sync tiles by `bash bench/cuda/device.sh tiles`
 * (bench/results/tiles-2026-12-01-wgmma-h200.md).
 */
import type { DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { attrsOf, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { applyEpilogue, copyRows, gemmTile, gemmTileThreads, groupedGemmPlan, workgroupTile } from "./grouped-gemm";

/** K elements per stage: one 128-byte swizzle row of bf16. */
const BK = 64;
/** 32-bit words of a tile row in shared memory. */
const ROW_WORDS = BK / 2;

export function groupedGemmWgmmaKernel(g: Gen, ops: readonly Op[]): GeneratedKernel {
  const plan = groupedGemmPlan(ops, g.limits, "bf16")!;
  const tile = gemmTile(g.limits, "bf16");
  const kb = g.kb;
  const { gate, up, permute, epilogue } = plan;
  const [x, w, offsets] = gate.operands as [Value, Value, Value];
  const out = (epilogue.length ? epilogue[epilogue.length - 1]! : gate).results[0]!;
  const what = "grouped bf16 GEMM (wgmma)";
  if (g.step.writes.size !== 1 || !g.step.writes.has(out)) throw new LingcError(`${what}: the step must write only its last result (${g.step.kernel?.name ?? gate.opName})`);
  const { bm: BM, bn: BN, stages: STAGES } = tile;
  const T = gemmTileThreads(tile);
  if (kb.kernel.wg !== T) throw new LingcError(`${what}: a ${BM}x${BN} tile needs ${T} threads, not ${kb.kernel.wg}`);
  const smem = 4 * STAGES * (BM + BN) * ROW_WORDS;
  const room = Math.max(g.limits.maxWorkgroupBytes, g.limits.maxDynamicWorkgroupBytes ?? 0);
  if (smem > room) throw new LingcError(`${what}: a ${BM}x${BN} tile of ${STAGES} stages needs ${smem} bytes of shared memory, the target gives ${room}`);
  const [E, O, I] = w.type.shape.map((d) => d.value!) as [number, number, number];
  const swiglu = up !== undefined;
  if (swiglu && BN % 16 !== 0) throw new LingcError(`${what}: a SwiGLU tile's ${BN} weight rows must split into two halves of 8-column blocks`);
  const colsPer = swiglu ? BN / 2 : BN;
  const colTiles = Math.ceil(O / colsPer);
  const xb = g.buf(permute ? permute.operands[0]! : x, true);
  const orderB = permute ? g.buf(permute.operands[1]!) : undefined;
  const k = permute ? attrsOf(OPS.moe_permute, permute).k : 1;
  const wb = [g.buf(w, true), ...(up ? [g.buf(up.operands[1]!, true)] : [])];
  const offb = g.buf(offsets);
  const ob = g.buf(out);
  const rowsDim = x.type.shape[0]!;
  const { i, add, mul, div, mod, lt, ge, and } = K;

  const { ct, e, row0 } = workgroupTile(g, offb, E, BM, colTiles);
  kb.if(ge(e, i(0)), () => {
    const rowEnd = kb.let("row_end", K.min(kb.load(offb, add(e, i(1))), add(row0, i(BM))));
    // Stage s: A rows at word s x (BM + BN) x 32, B rows after them; 1024-byte aligned (BM and BN
    // are multiples of 8 rows of 128 bytes).
    const S = kb.shared(kb.fresh("tiles"), "u32", STAGES * (BM + BN) * ROW_WORDS, 1024);
    const aBase = (st: Expr) => mul(st, i((BM + BN) * ROW_WORDS));
    const bBase = (st: Expr) => add(mul(st, i((BM + BN) * ROW_WORDS)), i(BM * ROW_WORDS));

    // Copies: chunk c = lid % 8 of rows lid / 8 + pass x T / 8; T / 8 is a multiple of 8, so a
    // thread's rows share r % 8 and with it the swizzled chunk c ^ (r % 8).
    const per = T / 8;
    const lr = kb.let("lr", div(kb.lid, i(8)));
    const lc = kb.let("lc", mod(kb.lid, i(8)));
    const sw = kb.let("sw", mul(K.xor(lc, mod(lr, i(8))), i(4)));
    // Whole passes only: a pass past the tile's rows would write into the next stage's.
    if (BN % per !== 0 || (swiglu && (BN / 2) % per !== 0)) throw new LingcError(`${what}: a ${BM}x${BN} tile cannot be copied ${per} rows at a time${swiglu ? " (gate and up halves apart)" : ""}`);
    const { aRows, bRows } = copyRows(kb, { lr, per, row0, rowEnd, orderB, k, e, ct, colsPer, O, I, BM, BN, wb });
    const partial = I % BK !== 0;
    const loadStage = (kt: Expr, st: Expr) => {
      const kk = kb.let("kk", add(mul(kt, i(BK)), mul(lc, i(8))));
      const kin = partial ? kb.let("kin", lt(kk, i(I))) : undefined;
      const valid = (ok: Expr) => (kin ? and(ok, kin) : ok);
      const at = (base: Expr) => (kin ? add(base, K.sel(kin, kk, i(0))) : add(base, kk));
      const dst = (base: Expr, r: number) => add(add(base, mul(add(lr, i(r)), i(ROW_WORDS))), sw);
      for (const a of aRows) kb.copy16(S, dst(aBase(st), a.at), xb, at(a.base), valid(a.ok));
      for (const b of bRows) kb.copy16(S, dst(bBase(st), b.at), b.buf, at(b.base), valid(b.ok));
      kb.copyCommit();
    };

    const acc = kb.array("acc", "f32", BN / 2);
    kb.for("j", i(0), i(BN / 2), (j) => kb.store(acc, j, K.f(0)));
    const wgi = kb.let("wgi", div(kb.lid, i(128)));
    const nk = Math.ceil(I / BK);
    for (let p = 0; p < STAGES - 1; p++) kb.if(lt(i(p), i(nk)), () => loadStage(i(p), i(p)), () => kb.copyCommit());
    kb.loop("kt", i(0), i(nk), (kt) => {
      kb.copyWait(STAGES - 2);
      // The copies that landed are this thread's; the MMAs read them through the async proxy.
      kb.fenceAsyncShared();
      kb.barrier();
      // The buffer the last iteration's MMAs read is free (they completed before its end).
      const next = add(kt, i(STAGES - 1));
      kb.if(lt(next, i(nk)), () => loadStage(next, mod(next, i(STAGES))), () => kb.copyCommit());
      const st = kb.let("st", mod(kt, i(STAGES)));
      kb.wgmmaFence();
      // k16 slice ks starts 32 bytes (8 words) into each swizzled row.
      for (let ks = 0; ks < BK / 16; ks++) {
        const a = add(add(aBase(st), mul(wgi, i(64 * ROW_WORDS))), i(ks * 8));
        const b = add(bBase(st), i(ks * 8));
        kb.wgmma({ m: 64, n: BN, k: 16, ab: "bf16" }, acc, S, a, b);
      }
      kb.wgmmaCommit();
      kb.wgmmaWait(0);
    });
    kb.copyWait(0);

    // Epilogue: thread (warp w of its warpgroup, g = lane / 4, t = lane % 4) holds rows 16w + g (+8)
    // of its warpgroup's 64, columns 8j + 2t (+1) of each 8-column block j (SwiGLU: block j of the
    // gate half pairs with block j + BN / 16 of the up half).
    const lane = kb.let("lane", mod(kb.lid, i(32)));
    const wq = kb.let("wq", mod(div(kb.lid, i(32)), i(4)));
    const gr = kb.let("gr", div(lane, i(4)));
    const tq = kb.let("tq", mod(lane, i(4)));
    const blocks = swiglu ? BN / 16 : BN / 8;
    const gateDt = gate.results[0]!.type.dtype;
    const upDt = up?.results[0]!.type.dtype;
    for (let hh = 0; hh < 2; hh++) {
      const row = kb.let("orow", add(row0, add(mul(wgi, i(64)), add(mul(wq, i(16)), add(gr, i(hh * 8))))));
      kb.if(lt(row, rowEnd), () => {
        for (let j = 0; j < blocks; j++)
          for (let c = 0; c < 2; c++) {
            const col = kb.let("ocol", add(mul(ct, i(colsPer)), add(i(j * 8 + c), mul(tq, i(2)))));
            kb.if(lt(col, i(O)), () => {
              const at = 4 * j + 2 * hh + c;
              const vals = new Map<Value, Expr>([[gate.results[0]!, g.fit(kb.load(acc, i(at), "f32"), gateDt)]]);
              if (up) vals.set(up.results[0]!, g.fit(kb.load(acc, i(at + 4 * blocks), "f32"), upDt as DType));
              kb.store(ob, add(mul(row, i(O)), col), applyEpilogue(g, epilogue, vals, out));
            });
          }
      });
    }
  });
  return g.finish({ dim: g.entryDim(rowsDim.add(BM * (E + 1)).mul(colTiles)), per: BM });
}
