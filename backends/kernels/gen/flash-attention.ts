/**
 * Prefill attention as a tile program (flash attention 2 on the bf16 tensor cores, CUDA): written
 * from the runtime's hand-written `flash_attn`, step for step, and measured faster than it on the H200,
 * it replaced that kernel (the CUDA speed issue's "attentions generated").
 *
 * A workgroup takes BM = 64 queries of one head, a warp 16 of them, their Q fragments held in
 * registers; key/value tiles of BN = 64 rows stream through workgroup memory (async copies,
 * double-buffered) while each warp computes S = Q K^T with mma m16n8k16 (fp32 accumulate), the
 * online softmax in registers (a quad of lanes shares a row: shuffles by 1 and 2), and O += P V with
 * P re-packed from the S accumulators as the A operand and V's fragments read transposed. Scores are
 * rounded as the op table's attention rounds them in bf16 (the product, then after the scale), and
 * only the tiles that cross the causal diagonal or the keys' end are masked. Three workgroups a
 * multiprocessor (the registers that allows: measured on the runtime's kernel, 2026-12-01).
 * Keys and values may lie in a cache's buffer with more rows than keys (Gen.storageRows).
 */
import { attrsOf, OPS } from "../../../ir/ops";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { product } from "../../../ir/dim";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";

const FLASH_BM = 64;
const FLASH_BN = 64;
export const FLASH_THREADS = 128;
const FLASH_MIN_BLOCKS = 3;

/** Whether the tile program runs this attention group: bf16 operands, equal head widths of 64 or 128, on bf16 tensor cores. */
export function coversFlash(ops: readonly Op[], tensorCores: readonly string[] | undefined): boolean {
  const att = ops.find((o) => o.opName === "attention");
  if (!att || !tensorCores?.includes("bf16")) return false;
  const [q, k, v] = att.operands as [Value, Value, Value];
  const d = q.type.shape[3]?.value;
  return [q, k, v].every((x) => x.type.dtype === "bf16" && x.type.rank === 4) && (d === 64 || d === 128) && k.type.shape[3]!.value === d && v.type.shape[3]!.value === d;
}

export function flashAttentionKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const att = ops.find((o) => o.opName === "attention");
  if (!att) throw new LingcError("flash attention kernel without its attention op");
  if (g.kb.kernel.wg !== FLASH_THREADS) throw new LingcError(`flash attention: ${g.kb.kernel.wg} threads, the tile program is written for ${FLASH_THREADS}`);
  const [q, k, v] = att.operands as [Value, Value, Value];
  const a = attrsOf(OPS.attention, att);
  const out = ops[ops.length - 1]!.results[0]!;
  const transposed = ops.some((o) => o.opName === "transpose");
  const [Bd, NHd, Sd, Dd] = q.type.shape;
  const HD = Dd!.value!;
  const NH = NHd!.value!;
  const NKV = k.type.shape[1]!.value!;
  const kb = g.kb;
  kb.kernel.minBlocks = FLASH_MIN_BLOCKS;
  const { i, add, sub, mul, div, mod, lt, gt, and, or, sel } = K;
  const S = g.size(Sd!);
  const T = g.size(k.type.shape[2]!);
  const Tr = g.storageRows(k, 2);
  const TrV = g.storageRows(v, 2);
  const BH = g.size(product([Bd!, NHd!]));
  const qb = g.buf(q);
  const kbuf = g.buf(k);
  const vbuf = g.buf(v);
  const ob = g.buf(out);
  const LDW = HD / 2 + 4; // a padded shared row in 32-bit words (HD bf16 + 8): fragment reads hit distinct banks
  const CH = HD / 8; // 16-byte chunks of a row

  const tiles = kb.let("tiles", div(add(S, i(FLASH_BM - 1)), i(FLASH_BM)));
  kb.if(lt(kb.wg, mul(tiles, BH)), () => {
    // The longest (causal) tiles first: workgroup w takes tile tiles - 1 - w / BH of head w % BH.
    const bh = kb.let("bh", mod(kb.wg, BH));
    const q0 = kb.let("q0", mul(sub(sub(tiles, i(1)), div(kb.wg, BH)), i(FLASH_BM)));
    const h = kb.let("h", mod(bh, i(NH)));
    const b = kb.let("b", div(bh, i(NH)));
    const grp = kb.let("grp", div(h, i(NH / NKV)));
    const warp = kb.let("warp", div(kb.lid, i(32)));
    const lane = kb.let("lane", mod(kb.lid, i(32)));
    const gr = kb.let("gr", div(lane, i(4)));
    const tq = kb.let("tq", mod(lane, i(4)));
    const mi = kb.let("mi", div(lane, i(8)));
    const mr = kb.let("mr", mod(lane, i(8)));
    const off = kb.let("off", sub(T, S)); // query i sits at key position i + off
    const r0 = kb.let("r0", add(add(q0, mul(warp, i(16))), gr));
    const r1 = kb.let("r1", add(r0, i(8)));
    const kBase = kb.let("kbase", mul(mul(add(mul(b, i(NKV)), grp), Tr), i(HD)));
    const vBase = kb.let("vbase", mul(mul(add(mul(b, i(NKV)), grp), TrV), i(HD)));
    const Ks = kb.shared(kb.fresh("k_tile"), "u32", 2 * FLASH_BN * LDW);
    const Vs = kb.shared(kb.fresh("v_tile"), "u32", 2 * FLASH_BN * LDW);

    // Q fragments (a0..a3 of each 16-wide k slice) from global memory, words of two bf16: rows r0
    // and r1, columns kk 16 + 2 tq (+ 8); zeros past S.
    const qa = kb.array("qa", "u32", (HD / 16) * 4);
    // Word of row r's first pair of this thread (the row clamped into the queries), and word c / 2 past it.
    const rows = [r0, r1].map((r) => ({ r, word: kb.let("qrow", add(mul(add(mul(bh, S), K.min(r, sub(S, i(1)))), i(HD / 2)), tq)) }));
    const qWord = (row: { r: Expr; word: Expr }, c: number) => sel(lt(row.r, S), kb.loadWord(qb, add(row.word, i(c / 2))), K.lit(0, "u32"));
    for (let kk = 0; kk < HD / 16; kk++) {
      kb.store(qa, i(kk * 4 + 0), qWord(rows[0]!, kk * 16));
      kb.store(qa, i(kk * 4 + 1), qWord(rows[1]!, kk * 16));
      kb.store(qa, i(kk * 4 + 2), qWord(rows[0]!, kk * 16 + 8));
      kb.store(qa, i(kk * 4 + 3), qWord(rows[1]!, kk * 16 + 8));
    }
    const qFrag = (kk: number) => [0, 1, 2, 3].map((j) => kb.load(qa, i(kk * 4 + j), "u32"));
    const o = kb.array("o", "f32", (HD / 8) * 4);
    for (let j = 0; j < (HD / 8) * 4; j++) kb.store(o, i(j), K.f(0));
    const m0 = kb.var("m0", K.f(-Infinity));
    const m1 = kb.var("m1", K.f(-Infinity));
    const l0 = kb.var("l0", K.f(0));
    const l1 = kb.var("l1", K.f(0));
    const lastQuery = kb.let("last_q", sub(K.min(S, add(q0, i(FLASH_BM))), i(1)));
    const kend = kb.let("kend", a.causal ? K.min(T, add(add(lastQuery, off), i(1))) : T);
    const nblocks = kb.let("nblocks", div(add(kend, i(FLASH_BN - 1)), i(FLASH_BN)));

    // A K/V tile: row r of it at lid / CH + p (128 / CH), chunk lid % CH; rows past the keys are zeros.
    const lr = kb.let("lr", div(kb.lid, i(CH)));
    const lc = kb.let("lc", mod(kb.lid, i(CH)));
    const loadTile = (blk: Expr, buf: Expr) => {
      const j0 = kb.let("j0", mul(blk, i(FLASH_BN)));
      for (let p = 0; p < (FLASH_BN * CH) / FLASH_THREADS; p++) {
        const r = add(lr, i((p * FLASH_THREADS) / CH));
        const ok = kb.let("ok", lt(add(j0, r), T));
        const j = sel(ok, add(j0, r), i(0));
        const dst = add(mul(add(mul(buf, i(FLASH_BN)), r), i(LDW)), mul(lc, i(4)));
        kb.copy16(Ks, dst, kbuf, add(kBase, add(mul(j, i(HD)), mul(lc, i(8)))), ok);
        kb.copy16(Vs, dst, vbuf, add(vBase, add(mul(j, i(HD)), mul(lc, i(8)))), ok);
      }
      kb.copyCommit();
    };
    loadTile(i(0), i(0));
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
      const sc = kb.array("s", "f32", (FLASH_BN / 8) * 4);
      for (let j = 0; j < (FLASH_BN / 8) * 4; j++) kb.store(sc, i(j), K.f(0));
      // K fragments by ldmatrix: matrices (keys nt.., dims kk..), (keys nt.., dims kk+8..), (keys
      // nt+8.., dims kk..), (keys nt+8.., dims kk+8..): b0, b1 of key tiles nt and nt + 1.
      const kRow = kb.let("krow", add(mul(buf, i(FLASH_BN)), add(mul(div(mi, i(2)), i(8)), mr)));
      for (let kk = 0; kk < HD / 16; kk++) {
        const af = qFrag(kk);
        for (let nt = 0; nt < FLASH_BN / 8; nt += 2) {
          const bf = kb.ldsm("kf", Ks, add(mul(add(kRow, i(nt * 8)), i(LDW)), add(i(kk * 8), mul(mod(mi, i(2)), i(4)))));
          kb.mma("m16n8k16.bf16", sc, i(nt * 4), af, [bf[0]!, bf[1]!]);
          kb.mma("m16n8k16.bf16", sc, i((nt + 1) * 4), af, [bf[2]!, bf[3]!]);
        }
      }
      const j0 = kb.let("kj0", mul(blk, i(FLASH_BN)));
      // Only a tile past the keys' end or across the causal diagonal masks (the same for the whole
      // workgroup: every key of the other tiles is at most its first query's position).
      const masked = kb.let("masked", or(gt(add(j0, i(FLASH_BN)), T), a.causal ? gt(add(j0, i(FLASH_BN - 1)), add(q0, off)) : K.lit(0, "bool")));
      // The last key each of the thread's rows sees.
      const lim0 = kb.let("lim0", a.causal ? K.min(sub(T, i(1)), add(r0, off)) : sub(T, i(1)));
      const lim1 = kb.let("lim1", a.causal ? K.min(sub(T, i(1)), add(r1, off)) : sub(T, i(1)));
      const mx0 = kb.var("mx0", K.f(-Infinity));
      const mx1 = kb.var("mx1", K.f(-Infinity));
      const scale = K.f(a.scale);
      const rb = (x: Expr) => K.round("bf16", x);
      for (let nt = 0; nt < FLASH_BN / 8; nt++)
        for (let e = 0; e < 2; e++) {
          const j = add(j0, add(i(nt * 8 + e), mul(tq, i(2))));
          const v0 = kb.let("sa", sel(and(masked, gt(j, lim0)), K.f(-Infinity), rb(mul(rb(kb.load(sc, i(nt * 4 + e), "f32")), scale))));
          const v1 = kb.let("sb", sel(and(masked, gt(j, lim1)), K.f(-Infinity), rb(mul(rb(kb.load(sc, i(nt * 4 + 2 + e), "f32")), scale))));
          kb.store(sc, i(nt * 4 + e), v0);
          kb.store(sc, i(nt * 4 + 2 + e), v1);
          mx0.set(K.max(mx0.ref, v0));
          mx1.set(K.max(mx1.ref, v1));
        }
      for (const s of [1, 2]) {
        mx0.set(K.max(mx0.ref, { k: "shfl", t: "f32", a: mx0.ref, mask: s }));
        mx1.set(K.max(mx1.ref, { k: "shfl", t: "f32", a: mx1.ref, mask: s }));
      }
      const mn0 = kb.let("mn0", K.max(m0.ref, mx0.ref));
      const mn1 = kb.let("mn1", K.max(m1.ref, mx1.ref));
      // A row that has seen no key yet (past S, or masked so far) keeps a finite base.
      const base0 = kb.let("base0", sel(K.eq(mn0, K.f(-Infinity)), K.f(0), mn0));
      const base1 = kb.let("base1", sel(K.eq(mn1, K.f(-Infinity)), K.f(0), mn1));
      const c0 = kb.let("c0", K.exp(sub(m0.ref, base0)));
      const c1 = kb.let("c1", K.exp(sub(m1.ref, base1)));
      const ls0 = kb.var("ls0", K.f(0));
      const ls1 = kb.var("ls1", K.f(0));
      for (let nt = 0; nt < FLASH_BN / 8; nt++)
        for (let e = 0; e < 2; e++) {
          const p0 = kb.let("p", K.exp(sub(kb.load(sc, i(nt * 4 + e), "f32"), base0)));
          const p1 = kb.let("p", K.exp(sub(kb.load(sc, i(nt * 4 + 2 + e), "f32"), base1)));
          kb.store(sc, i(nt * 4 + e), p0);
          kb.store(sc, i(nt * 4 + 2 + e), p1);
          ls0.set(add(ls0.ref, p0));
          ls1.set(add(ls1.ref, p1));
        }
      for (const s of [1, 2]) {
        ls0.set(add(ls0.ref, { k: "shfl", t: "f32", a: ls0.ref, mask: s }));
        ls1.set(add(ls1.ref, { k: "shfl", t: "f32", a: ls1.ref, mask: s }));
      }
      l0.set(add(mul(l0.ref, c0), ls0.ref));
      l1.set(add(mul(l1.ref, c1), ls1.ref));
      m0.set(mn0);
      m1.set(mn1);
      for (let d = 0; d < HD / 8; d++) {
        kb.store(o, i(d * 4 + 0), mul(kb.load(o, i(d * 4 + 0), "f32"), c0));
        kb.store(o, i(d * 4 + 1), mul(kb.load(o, i(d * 4 + 1), "f32"), c0));
        kb.store(o, i(d * 4 + 2), mul(kb.load(o, i(d * 4 + 2), "f32"), c1));
        kb.store(o, i(d * 4 + 3), mul(kb.load(o, i(d * 4 + 3), "f32"), c1));
      }
      // P V: P's A fragments from the probabilities (key slice kk: key tiles 2 kk and 2 kk + 1); V
      // fragments by ldmatrix.trans: matrices (keys kk.., dims d..), (keys kk+8.., dims d..), (keys
      // kk.., dims d+8..), (keys kk+8.., dims d+8..): b0, b1 of dim tiles d and d + 1.
      const vRow = kb.let("vrow", add(mul(buf, i(FLASH_BN)), add(mul(mod(mi, i(2)), i(8)), mr)));
      const p = (t: number, j: number) => kb.load(sc, i(t * 4 + j), "f32");
      for (let kk = 0; kk < FLASH_BN / 16; kk++) {
        const pa = [K.pack(p(2 * kk, 0), p(2 * kk, 1)), K.pack(p(2 * kk, 2), p(2 * kk, 3)), K.pack(p(2 * kk + 1, 0), p(2 * kk + 1, 1)), K.pack(p(2 * kk + 1, 2), p(2 * kk + 1, 3))].map((w) =>
          kb.let("pa", w),
        );
        for (let d = 0; d < HD / 8; d += 2) {
          const bf = kb.ldsm("vf", Vs, add(mul(add(vRow, i(kk * 16)), i(LDW)), add(i(d * 4), mul(div(mi, i(2)), i(4)))), true);
          kb.mma("m16n8k16.bf16", o, i(d * 4), pa, [bf[0]!, bf[1]!]);
          kb.mma("m16n8k16.bf16", o, i((d + 1) * 4), pa, [bf[2]!, bf[3]!]);
        }
      }
      kb.barrier(); // this buffer is the next iteration's load target but one
    });

    // Rows r0 and r1, columns d 8 + 2 tq (+ 1), normalized by their sums; [B, S, heads, d] when
    // the group transposes the result, else [B, heads, S, d].
    const inv0 = kb.let("inv0", sel(gt(l0.ref, K.f(0)), K.div(K.f(1), l0.ref), K.f(0)));
    const inv1 = kb.let("inv1", sel(gt(l1.ref, K.f(0)), K.div(K.f(1), l1.ref), K.f(0)));
    const rowAt = (r: Expr) => (transposed ? mul(add(mul(add(mul(b, S), r), i(NH)), h), i(HD)) : mul(add(mul(bh, S), r), i(HD)));
    for (const [r, inv, hh] of [
      [r0, inv0, 0],
      [r1, inv1, 2],
    ] as const) {
      kb.if(lt(r, S), () => {
        const at = kb.let("orow", rowAt(r));
        for (let d = 0; d < HD / 8; d++)
          for (let c = 0; c < 2; c++) kb.store(ob, add(at, add(i(d * 8 + c), mul(tq, i(2)))), mul(kb.load(o, i(d * 4 + hh + c), "f32"), inv));
      });
    }
  });
  kb.copyWait(0);
  // Workgroups: tiles x heads, tiles = ceil(S / BM) <= (S + BM - 1) / BM (the extra ones exit).
  return g.finish({ dim: g.entryDim(product([Bd!, NHd!]).mul(Sd!.add(FLASH_BM - 1))), per: FLASH_BM });
}
