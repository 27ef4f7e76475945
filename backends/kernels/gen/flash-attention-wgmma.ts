/**
 * Prefill attention on Hopper's warpgroup MMAs (CUDA sm_90a): the flash tile program's steps
 * (flash-attention.ts: online softmax, scores rounded as the op table's attention rounds them, only
 * the tiles across the causal diagonal or the keys' end masked) with both products as wgmma, Q, K
 * and V read from 128-byte-swizzled shared tiles, the layout the expert GEMM's MMAs read (row r of a
 * 64-wide chunk at byte 128 r, 16-byte piece p at piece p ^ (r % 8)).
 *
 * A workgroup is one or two warpgroups (LINGC_FLASH_WGMMA_WARPGROUPS), each 64 queries of one head
 * (BM = 64 or 128: two share each block's K and V tiles). The Q tile is copied once (HD / 64
 * chunks); per block of BN = 64 keys, whose K and V rows were copied (async, as they lie: keys x
 * head dims) while the block before was multiplied, past the block's one workgroup barrier the next
 * block's copies start, then:
 *   - S = Q K^T: HD / 16 MMAs m64n64k16, K the K-major B operand; the softmax on the accumulators
 *     (a row's 64 scores over the 4 lanes of a quad, as mma's m16n8 layout);
 *   - O += P V: 4 MMAs m64nHDk16 into the output accumulators (rescaled by the softmax's correction
 *     before), P from registers (each k16 slice: two 8-column blocks of the scores as bf16 pairs, mma
 *     m16n8k16's A fragment), V the MN-major B operand (no transpose).
 * Pipelined (the default with one warpgroup; LINGC_FLASH_WGMMA_PIPE=off: each product waited for at
 * once), block j + 1's Q K^T is issued before block j's softmax, which runs while the tensor cores
 * compute it and block j - 1's P V (FA3's overlap within a warpgroup); see the loop's comments.
 * The default prefill attention where the profile has warpgroup MMAs (measured faster than
 * flash_tile on the H200: bench/results/flash-wgmma-2026-12-02-h200.md, and pipelined faster than
 * not: bench/results/qkv-dispatch-pipe-2026-12-02-h200.md); checked against the
 * interpreter by the kir simulator (tests/cuda/simulate-attention.test.ts) and on the H200 (device.sh
 * flashwgmma, and selftest against the plain attention).
 */
import { LingcError } from "../../../ir/errors";
import type { Op } from "../../../ir/module";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { flashOperands, flashTile, onlineSoftmax, storeQuantRows, storeRows } from "./flash-common";

/** Threads of a workgroup of `warpgroups` warpgroups (each its own 64 queries). */
export const flashWgmmaThreads = (warpgroups: number) => 128 * warpgroups;
const BN = 64;
/** 32-bit words of a swizzled tile row (128 bytes: 64 bf16). */
const ROW = 32;

export function flashWgmmaKernel(g: Gen, ops: Op[], warpgroups: number, pipelined = false): GeneratedKernel {
  if (warpgroups !== 1 && warpgroups !== 2) throw new LingcError(`flash attention (wgmma): 1 or 2 warpgroups a workgroup, not ${warpgroups}`);
  if (pipelined && warpgroups !== 1) throw new LingcError("flash attention (wgmma): the pipelined form takes one warpgroup a workgroup");
  const THREADS = flashWgmmaThreads(warpgroups);
  const BM = 64 * warpgroups;
  const { a, quant, dtype, transposed, grid, HD, NH, NKV, S, T, Tr, TrV, BH, qb, kbuf, vbuf, ob } = flashOperands(g, ops, "flash attention (wgmma)", THREADS);
  const kb = g.kb;
  const CH = HD / 64; // 64-wide chunks of a head
  const { i, add, sub, mul, div, mod, lt, gt, or, sel } = K;

  // One workgroup array (the MMAs read Q, K and V from it; P stays in registers): Q [CH][BM rows],
  // K twice (the block being multiplied and the next one in flight) and V twice (pipelined: three
  // times, one for the P V in flight past its block) [CH][BN rows], each a whole number of 1024-byte blocks.
  const VB = pipelined ? 3 : 2;
  const [QW, KW] = [CH * BM * ROW, CH * BN * ROW];
  const smem = kb.shared(kb.fresh("tiles"), "u32", QW + (2 + VB) * KW, 1024);
  const [Qs, Ks, Vs] = [0, QW, QW + 2 * KW];
  /** Word of element pair (piece, word in piece) of row r in a chunk starting at word base. */
  const at = (base: Expr, r: Expr, piece: Expr, w: Expr) => add(add(base, mul(r, i(ROW))), add(mul(K.xor(piece, mod(r, i(8))), i(4)), w));

  flashTile(kb, { S, BH, NH, NKV, BM }, (tile) => {
    const { bh, q0, b, grp } = tile;
    const warp = kb.let("warp", div(kb.lid, i(32)));
    const lane = kb.let("lane", mod(kb.lid, i(32)));
    const gr = kb.let("gr", div(lane, i(4)));
    const tq = kb.let("tq", mod(lane, i(4)));
    const off = kb.let("off", sub(T, S)); // query i sits at key position i + off
    // The thread's two rows of the tile (accumulator layout: warp w's rows 16 w + g and + 8).
    const tr = [kb.let("tr0", add(mul(warp, i(16)), gr)), kb.let("tr1", add(add(mul(warp, i(16)), gr), i(8)))] as const;
    // The warpgroup's first row in the Q tile (its first product's A operand).
    const wgRow = kb.let("wgrow", mul(div(warp, i(4)), i(64 * ROW)));
    const rows = tr.map((r) => kb.let("r", add(q0, r)));
    const kBase = kb.let("kbase", mul(mul(add(mul(b, i(NKV)), grp), Tr), i(HD)));
    const vBase = kb.let("vbase", mul(mul(add(mul(b, i(NKV)), grp), TrV), i(HD)));

    // Rows by 16-byte async copies: piece p (8 dims) of row r at its swizzled place; rows past
    // `limit` are zeros. A thread copies piece lid % 8 of rows lid / 8 + (threads / 8) j of each chunk. Q, K
    // and V all lie as they are in memory (V [keys x dims] is B of P V read MN-major).
    const lr = kb.let("lr", div(kb.lid, i(8)));
    const lp = kb.let("lp", mod(kb.lid, i(8)));
    const copyRows = (dst: Expr, n: number, row0: Expr, limit: Expr, src: string, srcRow: (r: Expr) => Expr) => {
      for (let c = 0; c < CH; c++)
        for (let j = 0; j < n / (THREADS / 8); j++) {
          const r = add(lr, i((THREADS / 8) * j));
          const ok = kb.let("ok", lt(add(row0, r), limit));
          const from = add(srcRow(sel(ok, add(row0, r), i(0))), add(i(64 * c), mul(lp, i(8))));
          kb.copy16(smem, at(add(dst, i(c * n * ROW)), r, lp, i(0)), src, from, ok);
        }
    };
    const qRow0 = kb.let("qrow0", mul(bh, S));
    if (!pipelined) copyRows(i(Qs), BM, q0, S, qb, (r) => mul(add(qRow0, r), i(HD)));

    const o = kb.array("o", "f32", HD / 2);
    for (let j = 0; j < HD / 2; j++) kb.store(o, i(j), K.f(0));
    const sc = kb.array("s", "f32", BN / 2);
    const m = [kb.var("m", K.f(-Infinity)), kb.var("m", K.f(-Infinity))] as const;
    const l = [kb.var("l", K.f(0)), kb.var("l", K.f(0))] as const;
    const lastQuery = kb.let("last_q", sub(K.min(S, add(q0, i(BM))), i(1)));
    const kend = kb.let("kend", a.causal ? K.min(T, add(add(lastQuery, off), i(1))) : T);
    const nblocks = kb.let("nblocks", div(add(kend, i(BN - 1)), i(BN)));
    const masking = (j0: Expr) => kb.let("masked", or(gt(add(j0, i(BN)), T), a.causal ? gt(add(j0, i(BN - 1)), add(q0, off)) : K.lit(0, "bool")));
    const lim = rows.map((r) => kb.let("lim", a.causal ? K.min(sub(T, i(1)), add(r, off)) : sub(T, i(1))));
    const sAt = (j: number, hh: number, e: number) => i(4 * j + 2 * hh + e);
    /** S = Q K^T of the K tile at word kAt into `acc` (the first MMA writes it without reading it). */
    const scores = (acc: string, kAt: Expr) => {
      kb.wgmmaFence();
      for (let ks = 0; ks < HD / 16; ks++) {
        const c = Math.floor(ks / 4);
        const slice = (ks % 4) * 8;
        kb.wgmma({ m: 64, n: BN, k: 16, ab: "bf16" }, acc, smem, add(wgRow, i(Qs + c * BM * ROW + slice)), add(kAt, i(c * BN * ROW + slice)), { zero: ks === 0 });
      }
      kb.wgmmaCommit();
    };
    /**
     * The scores' softmax (the mask only in the blocks that need it), the outputs rescaled (their
     * last P V must be complete: `ready` waits for it), then O += P V issued with P from registers:
     * k16 slice ks is 8-column blocks 2 ks and 2 ks + 1 of the accumulators as bf16 pairs (rows g
     * and g + 8 of each); V's rows (keys 16 ks ..) read MN-major, its 64-dim chunks BN rows apart.
     */
    const softmaxAndPv = (acc: string, j0: Expr, vAt: Expr, ready: () => void) => {
      const c = onlineSoftmax(kb, { sc: acc, at: sAt, blocks: BN / 8, j0, tq, lim, masked: masking(j0), scale: a.scale, m, l });
      const p = Array.from({ length: BN / 16 }, (_, ks) =>
        [0, 1].flatMap((half) => [0, 1].map((hh) => kb.let("p", K.pack(kb.load(acc, sAt(2 * ks + half, hh, 0), "f32"), kb.load(acc, sAt(2 * ks + half, hh, 1), "f32"))))),
      );
      ready();
      for (let j = 0; j < HD / 8; j++) for (let q4 = 0; q4 < 4; q4++) kb.store(o, i(4 * j + q4), mul(kb.load(o, i(4 * j + q4), "f32"), c[q4 >> 1]!));
      kb.wgmmaFence();
      for (let ks = 0; ks < BN / 16; ks++) kb.wgmma({ m: 64, n: HD, k: 16, ab: "bf16" }, o, smem, p[ks]!, add(vAt, i(ks * 16 * ROW)), { bMn: BN * ROW });
      kb.wgmmaCommit();
    };
    /** Rows of block blk into the tile at word dst: zeros past `limit` (T, or 0 for a block past the last). */
    const copyTile = (dst: Expr, blk: Expr, limit: Expr, src: string, base: Expr) => copyRows(dst, BN, kb.let("cj0", mul(blk, i(BN))), limit, src, (r) => add(base, mul(r, i(HD))));
    const kTile = (blk: Expr) => add(i(Ks), mul(mod(blk, i(2)), i(KW)));
    const vTile = (blk: Expr) => add(i(Vs), mul(mod(blk, i(VB)), i(KW)));
    const limitOf = (blk: Expr, n: Expr) => sel(lt(blk, n), T, i(0));

    if (!pipelined) {
      /** Block blk's K and V into buffer blk % 2 (all zeros past `limit`: a block past the last). */
      const copyBlock = (blk: Expr, limit: Expr) => {
        copyTile(kTile(blk), blk, limit, kbuf, kBase);
        copyTile(vTile(blk), blk, limit, vbuf, vBase);
        kb.copyCommit();
      };
      copyBlock(i(0), T); // with Q: the first group
      kb.loop("blk", i(0), nblocks, (blk) => {
        // One barrier a block: past it, this block's copies (the only group in flight) are every
        // thread's, and every warp has finished the last block, whose MMAs (waited for) read the other
        // buffers, which the next block's copies then rewrite (past the last block, zero-filled rows).
        kb.copyWait(0);
        kb.fenceAsyncShared();
        kb.barrier();
        copyBlock(add(blk, i(1)), limitOf(add(blk, i(1)), nblocks));
        scores(sc, kTile(blk));
        kb.wgmmaWait(0);
        softmaxAndPv(sc, mul(blk, i(BN)), vTile(blk), () => {});
        kb.wgmmaWait(0);
      });
    } else {
      // Block j's softmax runs while the tensor cores compute block j + 1's scores (into the other of
      // two score arrays: the loop takes blocks two at a time, so each array is registers of its own,
      // and runs an even count, the extra block all keys masked) and block j - 1's P V, which is
      // waited for only before the rescale. At the top of block j: S_j complete, K_{j+1} and V_j
      // landed; in flight: P V_{j-1} and the copies of K_{j+2} and V_{j+1}.
      const sc2 = kb.array("s", "f32", BN / 2);
      // (Zeros first: each array's first MMA, outside the loop for sc, reads it, for nothing, and
      // nvcc refuses a read of registers never set.)
      for (let j = 0; j < BN / 2; j++) for (const acc of [sc, sc2]) kb.store(acc, i(j), K.f(0));
      const nb = kb.let("nb", mul(div(add(nblocks, i(1)), i(2)), i(2)));
      copyRows(i(Qs), BM, q0, S, qb, (r) => mul(add(qRow0, r), i(HD)));
      copyTile(kTile(i(0)), i(0), T, kbuf, kBase);
      copyTile(vTile(i(0)), i(0), T, vbuf, vBase);
      copyTile(kTile(i(1)), i(1), limitOf(i(1), nblocks), kbuf, kBase);
      kb.copyCommit();
      kb.copyWait(0);
      kb.fenceAsyncShared();
      kb.barrier();
      scores(sc, kTile(i(0)));
      kb.wgmmaWait(0);
      kb.barrier(); // every warp's S_0 read K_0's buffer, which K_2 takes
      copyTile(kTile(i(2)), i(2), limitOf(i(2), nblocks), kbuf, kBase);
      copyTile(vTile(i(1)), i(1), limitOf(i(1), nblocks), vbuf, vBase);
      kb.copyCommit();
      const block = (j: Expr, cur: string, next: string) => {
        const j1 = kb.let("j1", add(j, i(1)));
        scores(next, kTile(j1)); // S_{j+1} (past the last block: zero keys, never used)
        // Past the softmax, P V_{j-1} (the outputs' last) and S_{j+1} complete: all of them waited
        // for. (Waiting only for P V_{j-1}, leaving S_{j+1} in flight, ptxas cannot prove across the
        // loop's back edge, and serializes every wgmma of the kernel: C7514.)
        softmaxAndPv(cur, mul(j, i(BN)), vTile(j), () => kb.wgmmaWait(0));
        // P V_j in flight. K_{j+2} and V_{j+1} landed; every warp is past S_{j+1} (K_{j+1}'s buffer,
        // which K_{j+3} takes) and P V_{j-1} (V_{j-1}'s, which V_{j+2} takes).
        kb.copyWait(0);
        kb.fenceAsyncShared();
        kb.barrier();
        const j3 = kb.let("j3", add(j, i(3)));
        const j2 = kb.let("j2", add(j, i(2)));
        copyTile(kTile(j3), j3, limitOf(j3, nblocks), kbuf, kBase);
        copyTile(vTile(j2), j2, limitOf(j2, nblocks), vbuf, vBase);
        kb.copyCommit();
      };
      kb.loop("pair", i(0), div(nb, i(2)), (pair) => {
        const j = kb.let("j", mul(pair, i(2)));
        block(j, sc, sc2);
        block(add(j, i(1)), sc2, sc);
      });
      kb.wgmmaWait(0);
    }

    const oAt = (d: number, hh: number, e: number) => i(4 * d + 2 * hh + e);
    // A quantize epilogue stages its codes in Q's words (no copy in flight writes them).
    if (quant) storeQuantRows(g, { ob, quant, dtype, acc: o, tiles: [{ at: oAt, rows, tileRows: tr, l }], tq, S, HD, NH, tile, transposed, stage: smem, stageAt: Qs, stageWords: QW, BM, threads: THREADS });
    else storeRows(kb, { ob, acc: o, at: oAt, rows, l, tq, S, HD, NH, tile, transposed });
  });
  kb.copyWait(0);
  return g.finish(grid(BM));
}
