/**
 * Prefill attention as a tile program (flash attention 2 on the bf16 tensor cores, CUDA): written
 * from the runtime's hand-written `flash_attn`, step for step, and measured faster than it on the H200,
 * it replaced that kernel (the CUDA speed issue's "attentions generated").
 *
 * A workgroup of 4 warps takes BM = 128 queries of one head, a warp two tiles of 16 of them; the Q
 * tile is copied to workgroup memory once, and key/value tiles of BN = 64 rows stream through it
 * (async copies, double-buffered) while each warp computes S = Q K^T with mma m16n8k16 (fp32
 * accumulate; Q's and K's fragments by ldmatrix, each K fragment feeding both query tiles), the
 * online softmax in registers (a quad of lanes shares a row: shuffles by 1 and 2; exponentials as
 * exp2 with log2(e) folded in), and O += P V with P re-packed from the S accumulators as the A
 * operand and V's fragments read transposed. Scores are rounded as the op table's attention rounds
 * them in bf16 (the product, then after the scale), and only the tiles that cross the causal
 * diagonal or the keys' end are masked (a branch: the other tiles carry no compares). Two
 * workgroups a multiprocessor (255 registers). Measured on the H200, Ling-mini prefill 1x8192
 * (19 MoE layers' attention): 24.5 ms with one 16-row tile a warp and Q in registers, 23.6 with two
 * tiles, 19.7 with two tiles, exp2 and the unmasked tiles' branch (2026-12-01).
 * Keys and values may lie in a cache's buffer with more rows than keys (Gen.storageRows).
 */
import type { Op, Value } from "../../../ir/module";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { flashOperands, flashTile, onlineSoftmax, storeQuantRows, storeRows } from "./flash-common";

// A warp takes MT = 2 tiles of 16 query rows (rows mt 64 + warp 16 ..: every warp meets the causal
// diagonal alike), so that each K and V fragment read from shared memory feeds two MMAs: with one
// tile a warp the kernel read 256 bytes of shared memory per MMA, which bounds it below the
// tensor cores' rate. Q is read from shared memory per k step (its fragments in registers for both
// tiles would push the accumulators, 192 registers, into spills: measured 2026-12-01).
const FLASH_MT = 2;
const FLASH_WARPS = 4;
const FLASH_BM = FLASH_WARPS * 16 * FLASH_MT;
const FLASH_BN = 64;
export const FLASH_THREADS = 32 * FLASH_WARPS;
const FLASH_MIN_BLOCKS = 2;

/** Whether the tile program runs this attention group: bf16 operands, equal head widths of 64 or 128, on bf16 tensor cores. */
export function coversFlash(ops: readonly Op[], tensorCores: readonly string[] | undefined): boolean {
  const att = ops.find((o) => o.opName === "attention");
  if (!att || !tensorCores?.includes("bf16")) return false;
  const [q, k, v] = att.operands as [Value, Value, Value];
  const d = q.type.shape[3]?.value;
  return [q, k, v].every((x) => x.type.dtype === "bf16" && x.type.rank === 4) && (d === 64 || d === 128) && k.type.shape[3]!.value === d && v.type.shape[3]!.value === d;
}

export function flashAttentionKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const { a, quant, dtype, transposed, grid, HD, NH, NKV, S, T, Tr, TrV, BH, qb, kbuf, vbuf, ob } = flashOperands(g, ops, "flash attention", FLASH_THREADS);
  const kb = g.kb;
  kb.kernel.minBlocks = FLASH_MIN_BLOCKS;
  const { i, add, sub, mul, div, mod, lt, gt, or, sel } = K;
  const LDW = HD / 2 + 4; // a padded shared row in 32-bit words (HD bf16 + 8): fragment reads hit distinct banks
  const CH = HD / 8; // 16-byte chunks of a row

  flashTile(kb, { S, BH, NH, NKV, BM: FLASH_BM }, (tile) => {
    const { bh, q0, b, grp } = tile;
    const warp = kb.let("warp", div(kb.lid, i(32)));
    const lane = kb.let("lane", mod(kb.lid, i(32)));
    const gr = kb.let("gr", div(lane, i(4)));
    const tq = kb.let("tq", mod(lane, i(4)));
    const mi = kb.let("mi", div(lane, i(8)));
    const mr = kb.let("mr", mod(lane, i(8)));
    const off = kb.let("off", sub(T, S)); // query i sits at key position i + off
    const MT = FLASH_MT;
    const tilesOf = (f: (mt: number) => void) => {
      for (let mt = 0; mt < MT; mt++) f(mt);
    };
    // The first row (in the workgroup's tile) of each of the warp's query tiles, and the thread's two
    // absolute rows of each.
    const tile0 = Array.from({ length: MT }, (_, mt) => kb.let("t0", add(i(mt * FLASH_WARPS * 16), mul(warp, i(16)))));
    const rows = tile0.map((t) => {
      const r0 = kb.let("r0", add(q0, add(t, gr)));
      return [r0, kb.let("r1", add(r0, i(8)))] as const;
    });
    const kBase = kb.let("kbase", mul(mul(add(mul(b, i(NKV)), grp), Tr), i(HD)));
    const vBase = kb.let("vbase", mul(mul(add(mul(b, i(NKV)), grp), TrV), i(HD)));
    const Qs = kb.shared(kb.fresh("q_tile"), "u32", FLASH_BM * LDW);
    const Ks = kb.shared(kb.fresh("k_tile"), "u32", 2 * FLASH_BN * LDW);
    const Vs = kb.shared(kb.fresh("v_tile"), "u32", 2 * FLASH_BN * LDW);

    // Row r of a tile at lid / CH + p (threads / CH), chunk lid % CH (16 bytes); rows past the end are zeros.
    const lr = kb.let("lr", div(kb.lid, i(CH)));
    const lc = kb.let("lc", mod(kb.lid, i(CH)));
    const RSTEP = FLASH_THREADS / CH;
    // The Q tile, once (its own async-copy group, complete with the first K/V tile's).
    const qRow0 = kb.let("qrow0", mul(bh, S));
    for (let p = 0; p < FLASH_BM / RSTEP; p++) {
      const r = add(lr, i(p * RSTEP));
      const ok = kb.let("ok", lt(add(q0, r), S));
      const src = add(mul(add(qRow0, sel(ok, add(q0, r), i(0))), i(HD)), mul(lc, i(8)));
      kb.copy16(Qs, add(mul(r, i(LDW)), mul(lc, i(4))), qb, src, ok);
    }
    kb.copyCommit();

    const o = kb.array("o", "f32", MT * (HD / 8) * 4);
    for (let j = 0; j < MT * (HD / 8) * 4; j++) kb.store(o, i(j), K.f(0));
    const oAt = (mt: number, d: number, j: number) => i((mt * (HD / 8) + d) * 4 + j);
    // Running max and sum of each row (tile mt, half hh: rows r0 and r1).
    const m = rows.map(() => [kb.var("m", K.f(-Infinity)), kb.var("m", K.f(-Infinity))] as const);
    const l = rows.map(() => [kb.var("l", K.f(0)), kb.var("l", K.f(0))] as const);
    const lastQuery = kb.let("last_q", sub(K.min(S, add(q0, i(FLASH_BM))), i(1)));
    const kend = kb.let("kend", a.causal ? K.min(T, add(add(lastQuery, off), i(1))) : T);
    const nblocks = kb.let("nblocks", div(add(kend, i(FLASH_BN - 1)), i(FLASH_BN)));

    const loadTile = (blk: Expr, buf: Expr) => {
      const j0 = kb.let("j0", mul(blk, i(FLASH_BN)));
      for (let p = 0; p < FLASH_BN / RSTEP; p++) {
        const r = add(lr, i(p * RSTEP));
        const ok = kb.let("ok", lt(add(j0, r), T));
        const j = sel(ok, add(j0, r), i(0));
        const dst = add(mul(add(mul(buf, i(FLASH_BN)), r), i(LDW)), mul(lc, i(4)));
        kb.copy16(Ks, dst, kbuf, add(kBase, add(mul(j, i(HD)), mul(lc, i(8)))), ok);
        kb.copy16(Vs, dst, vbuf, add(vBase, add(mul(j, i(HD)), mul(lc, i(8)))), ok);
      }
      kb.copyCommit();
    };
    loadTile(i(0), i(0));
    // Q's A fragments by ldmatrix: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) of the lane's tile.
    const qRow = tile0.map((t) => kb.let("qrow", add(t, add(mul(mod(mi, i(2)), i(8)), mr))));
    kb.loop("blk", i(0), nblocks, (blk) => {
      const buf = kb.let("buf", mod(blk, i(2)));
      kb.if(
        lt(add(blk, i(1)), nblocks),
        () => {
          loadTile(add(blk, i(1)), sub(i(1), buf));
          kb.copyWait(1);
        },
        () => kb.copyWait(0),
      );
      kb.barrier();
      const sc = kb.array("s", "f32", MT * (FLASH_BN / 8) * 4);
      const sAt = (mt: number, nt: number, j: number) => i((mt * (FLASH_BN / 8) + nt) * 4 + j);
      for (let j = 0; j < MT * (FLASH_BN / 8) * 4; j++) kb.store(sc, i(j), K.f(0));
      // K fragments by ldmatrix: matrices (keys nt.., dims kk..), (keys nt.., dims kk+8..), (keys
      // nt+8.., dims kk..), (keys nt+8.., dims kk+8..): b0, b1 of key tiles nt and nt + 1; each
      // feeds both of the warp's query tiles.
      const kRow = kb.let("krow", add(mul(buf, i(FLASH_BN)), add(mul(div(mi, i(2)), i(8)), mr)));
      for (let kk = 0; kk < HD / 16; kk++) {
        const af = qRow.map((qr) => kb.ldsm("qf", Qs, add(mul(qr, i(LDW)), add(i(kk * 8), mul(div(mi, i(2)), i(4))))));
        for (let nt = 0; nt < FLASH_BN / 8; nt += 2) {
          const bf = kb.ldsm("kf", Ks, add(mul(add(kRow, i(nt * 8)), i(LDW)), add(i(kk * 8), mul(mod(mi, i(2)), i(4)))));
          tilesOf((mt) => {
            kb.mma("m16n8k16.bf16", sc, sAt(mt, nt, 0), af[mt]!, [bf[0]!, bf[1]!]);
            kb.mma("m16n8k16.bf16", sc, sAt(mt, nt + 1, 0), af[mt]!, [bf[2]!, bf[3]!]);
          });
        }
      }
      const j0 = kb.let("kj0", mul(blk, i(FLASH_BN)));
      // Only a tile past the keys' end or across the causal diagonal masks (the same for the whole
      // workgroup: every key of the other tiles is at most its first query's position).
      const masked = kb.let("masked", or(gt(add(j0, i(FLASH_BN)), T), a.causal ? gt(add(j0, i(FLASH_BN - 1)), add(q0, off)) : K.lit(0, "bool")));
      const cs: Expr[][] = [];
      tilesOf((mt) => {
        // The last key each of the thread's rows sees.
        const lim = rows[mt]!.map((r) => kb.let("lim", a.causal ? K.min(sub(T, i(1)), add(r, off)) : sub(T, i(1))));
        const c = onlineSoftmax(kb, { sc, at: (j, hh, e) => sAt(mt, j, 2 * hh + e), blocks: FLASH_BN / 8, j0, tq, lim, masked, scale: a.scale, m: m[mt]!, l: l[mt]! });
        cs.push(c);
      });
      tilesOf((mt) => {
        for (let d = 0; d < HD / 8; d++)
          for (let j = 0; j < 4; j++) kb.store(o, oAt(mt, d, j), mul(kb.load(o, oAt(mt, d, j), "f32"), cs[mt]![j >> 1]!));
      });
      // P V: P's A fragments from the probabilities (key slice kk: key tiles 2 kk and 2 kk + 1); V
      // fragments by ldmatrix.trans: matrices (keys kk.., dims d..), (keys kk+8.., dims d..), (keys
      // kk.., dims d+8..), (keys kk+8.., dims d+8..): b0, b1 of dim tiles d and d + 1, each feeding
      // both query tiles.
      const vRow = kb.let("vrow", add(mul(buf, i(FLASH_BN)), add(mul(mod(mi, i(2)), i(8)), mr)));
      const pr = (mt: number, t: number, j: number) => kb.load(sc, sAt(mt, t, j), "f32");
      for (let kk = 0; kk < FLASH_BN / 16; kk++) {
        const pa = Array.from({ length: MT }, (_, mt) =>
          [K.pack(pr(mt, 2 * kk, 0), pr(mt, 2 * kk, 1)), K.pack(pr(mt, 2 * kk, 2), pr(mt, 2 * kk, 3)), K.pack(pr(mt, 2 * kk + 1, 0), pr(mt, 2 * kk + 1, 1)), K.pack(pr(mt, 2 * kk + 1, 2), pr(mt, 2 * kk + 1, 3))].map((w) =>
            kb.let("pa", w),
          ),
        );
        for (let d = 0; d < HD / 8; d += 2) {
          const bf = kb.ldsm("vf", Vs, add(mul(add(vRow, i(kk * 16)), i(LDW)), add(i(d * 4), mul(div(mi, i(2)), i(4)))), true);
          tilesOf((mt) => {
            kb.mma("m16n8k16.bf16", o, oAt(mt, d, 0), pa[mt]!, [bf[0]!, bf[1]!]);
            kb.mma("m16n8k16.bf16", o, oAt(mt, d + 1, 0), pa[mt]!, [bf[2]!, bf[3]!]);
          });
        }
      }
      kb.barrier(); // this buffer is the next iteration's load target but one
    });

    // Rows r0 and r1 of each tile, normalized by their sums (with a quantize epilogue, its codes
    // staged in Q's words, which no copy in flight writes).
    const at = (mt: number) => (d: number, hh: number, e: number) => oAt(mt, d, 2 * hh + e);
    if (quant) {
      const tiles = Array.from({ length: MT }, (_, mt) => ({ at: at(mt), rows: rows[mt]!, tileRows: [add(tile0[mt]!, gr), add(add(tile0[mt]!, gr), i(8))], l: l[mt]! }));
      storeQuantRows(g, { ob, quant, dtype, acc: o, tiles, tq, S, HD, NH, tile, transposed, stage: Qs, stageAt: 0, stageWords: FLASH_BM * LDW, BM: FLASH_BM, threads: FLASH_THREADS });
    } else tilesOf((mt) => storeRows(kb, { ob, acc: o, at: at(mt), rows: rows[mt]!, l: l[mt]!, tq, S, HD, NH, tile, transposed }));
  });
  kb.copyWait(0);
  return g.finish(grid(FLASH_BM));
}
