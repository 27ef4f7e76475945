/**
 * What the two flash attention tile programs (flash-attention.ts on mma.sync, flash-attention-wgmma.ts
 * on warpgroup MMAs) share: which query tile and head a workgroup takes, the online softmax of a
 * thread's score fragments, and the normalized rows written out. Both hold scores and outputs in the
 * MMA accumulator layout (per 8-column block, a thread's row g columns 2t, 2t + 1, then row g + 8), so
 * a thread's two rows are a quad's, reduced by shuffles across its 4 lanes.
 */
import { attrsOf, OPS } from "../../../ir/ops";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { product, type Dim } from "../../../ir/dim";
import type { DType } from "../../../ir/dtype";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen } from "./context";
import { partnerCodes, quantRecipe, splitQuantEpilogue } from "./quant";

type Var = { ref: Expr; set: (e: Expr) => void };

/**
 * A flash attention step's operands: the attention op and its sizes, and the kernel's buffers and
 * sizes bound (queries, keys, values, the result; with a quantize epilogue, the codes instead).
 */
export function flashOperands(g: Gen, ops: readonly Op[], what: string, threads: number) {
  const att = ops.find((o) => o.opName === "attention");
  if (!att) throw new LingcError(`${what} without its attention op`);
  if (g.kb.kernel.wg !== threads) throw new LingcError(`${what}: ${g.kb.kernel.wg} threads, the tile program is written for ${threads}`);
  const [q, k, v] = att.operands as [Value, Value, Value];
  const [Bd, NHd, Sd, Dd] = q.type.shape as [Dim, Dim, Dim, Dim];
  const { quant, ops: body } = splitQuantEpilogue(ops);
  const out = body[body.length - 1]!.results[0]!;
  return {
    /** The trailing quantize of the result (backends/cuda/quant-epilogue.ts), whose codes the program writes instead. */
    quant,
    /** The result's element type (what a quantize epilogue's values are rounded to first). */
    dtype: out.type.dtype,
    a: attrsOf(OPS.attention, att),
    transposed: ops.some((o) => o.opName === "transpose"),
    /** Workgroups: tiles x heads, tiles = ceil(S / bm) <= (S + bm - 1) / bm (the extra ones exit). */
    grid: (bm: number) => ({ dim: g.entryDim(product([Bd, NHd]).mul(Sd.add(bm - 1))), per: bm }),
    HD: Dd.value!,
    NH: NHd.value!,
    NKV: k.type.shape[1]!.value!,
    S: g.size(Sd),
    T: g.size(k.type.shape[2]!),
    Tr: g.storageRows(k, 2),
    TrV: g.storageRows(v, 2),
    BH: g.size(product([Bd, NHd])),
    qb: g.buf(q),
    kbuf: g.buf(k),
    vbuf: g.buf(v),
    ob: quant ? g.buf(quant.results[0]!, true) : g.buf(out),
  };
}

/** The workgroup's query tile (the longest causal ones first: workgroup w takes tile tiles - 1 - w / BH of head w % BH) and head. */
export interface FlashTile {
  bh: Expr;
  q0: Expr;
  h: Expr;
  b: Expr;
  /** The KV head of the query head. */
  grp: Expr;
}

/** Runs `body` for the workgroup's tile (workgroups past tiles x heads run nothing). */
export function flashTile(kb: K.KernelBuilder, o: { S: Expr; BH: Expr; NH: number; NKV: number; BM: number }, body: (t: FlashTile) => void): void {
  const { i, add, sub, mul, div, mod, lt } = K;
  const tiles = kb.let("tiles", div(add(o.S, i(o.BM - 1)), i(o.BM)));
  kb.if(lt(kb.wg, mul(tiles, o.BH)), () => {
    const bh = kb.let("bh", mod(kb.wg, o.BH));
    const q0 = kb.let("q0", mul(sub(sub(tiles, i(1)), div(kb.wg, o.BH)), i(o.BM)));
    const h = kb.let("h", mod(bh, i(o.NH)));
    const b = kb.let("b", div(bh, i(o.NH)));
    body({ bh, q0, h, b, grp: kb.let("grp", div(h, i(o.NH / o.NKV))) });
  });
}

/**
 * One block of keys of a thread's two rows: the scores in `sc` (at(j, hh, e): block j, row hh, column
 * e) rounded as the op table's attention rounds them (the product, then after the scale), keys past a
 * row's last (`lim`) masked only when `masked` holds (a branch: the other blocks carry no compares),
 * the running maximum `m` and sum `l` updated, and the probabilities written back in place of the
 * scores. Gives each row's correction of what it summed before (to scale its outputs by).
 */
export function onlineSoftmax(
  kb: K.KernelBuilder,
  o: { sc: string; at: (j: number, hh: number, e: number) => Expr; blocks: number; j0: Expr; tq: Expr; lim: readonly Expr[]; masked: Expr; scale: number; m: readonly Var[]; l: readonly Var[] },
): Expr[] {
  const { i, add, sub, mul, gt, sel } = K;
  const LOG2E = K.f(Math.LOG2E);
  // A row's two adjacent scores rounded to bf16 together: one paired conversion and two exact
  // widenings (K.pack, K.half) where two single roundings take four instructions.
  const rb2 = (a: Expr, b: Expr): [Expr, Expr] => {
    const w = kb.let("rw", K.pack(a, b));
    return [K.half(w, false), K.half(w, true)];
  };
  const mx = [kb.var("mx", K.f(-Infinity)), kb.var("mx", K.f(-Infinity))];
  const score = (withMask: boolean) => {
    for (let j = 0; j < o.blocks; j++)
      for (let hh = 0; hh < 2; hh++) {
        const [r0, r1] = rb2(kb.load(o.sc, o.at(j, hh, 0), "f32"), kb.load(o.sc, o.at(j, hh, 1), "f32"));
        rb2(mul(r0, K.f(o.scale)), mul(r1, K.f(o.scale))).forEach((sv, e) => {
          const key = add(o.j0, add(i(j * 8 + e), mul(o.tq, i(2))));
          const v = kb.let("sv", withMask ? sel(gt(key, o.lim[hh]!), K.f(-Infinity), sv) : sv);
          kb.store(o.sc, o.at(j, hh, e), v);
          mx[hh]!.set(K.max(mx[hh]!.ref, v));
        });
      }
  };
  kb.if(o.masked, () => score(true), () => score(false));
  const base: Expr[] = [];
  const c: Expr[] = [];
  for (let hh = 0; hh < 2; hh++) {
    for (const sh of [1, 2]) mx[hh]!.set(K.max(mx[hh]!.ref, { k: "shfl", t: "f32", a: mx[hh]!.ref, mask: sh }));
    const mn = kb.let("mn", K.max(o.m[hh]!.ref, mx[hh]!.ref));
    // A row that has seen no key yet (past S, or masked so far) keeps a finite base.
    // exp(x - base) as 2^(x log2(e) - base log2(e)): one multiply-add and one instruction.
    base.push(kb.let("base", mul(sel(K.eq(mn, K.f(-Infinity)), K.f(0), mn), LOG2E)));
    c.push(kb.let("c", K.exp2(sub(mul(o.m[hh]!.ref, LOG2E), base[hh]!))));
    o.m[hh]!.set(mn);
  }
  const ls = [kb.var("ls", K.f(0)), kb.var("ls", K.f(0))];
  for (let j = 0; j < o.blocks; j++)
    for (let e = 0; e < 2; e++)
      for (let hh = 0; hh < 2; hh++) {
        const at = o.at(j, hh, e);
        const pv = kb.let("p", K.exp2(sub(mul(kb.load(o.sc, at, "f32"), LOG2E), base[hh]!)));
        kb.store(o.sc, at, pv);
        ls[hh]!.set(add(ls[hh]!.ref, pv));
      }
  for (let hh = 0; hh < 2; hh++) {
    for (const sh of [1, 2]) ls[hh]!.set(add(ls[hh]!.ref, { k: "shfl", t: "f32", a: ls[hh]!.ref, mask: sh }));
    o.l[hh]!.set(add(mul(o.l[hh]!.ref, c[hh]!), ls[hh]!.ref));
  }
  return c;
}

/**
 * A thread's two rows of the output (rows[hh], absolute query rows), columns 8 d + 2 t (+ 1), from
 * the accumulators (`at(d, hh, e)` in `o`) normalized by the rows' sums; into [B, S, heads, d] when
 * the group transposes the result, else [B, heads, S, d].
 */
export function storeRows(
  kb: K.KernelBuilder,
  o: { ob: string; acc: string; at: (d: number, hh: number, e: number) => Expr; rows: readonly Expr[]; l: readonly Var[]; tq: Expr; S: Expr; HD: number; NH: number; tile: FlashTile; transposed: boolean },
): void {
  const { i, add, mul, lt } = K;
  for (let hh = 0; hh < 2; hh++) {
    const r = o.rows[hh]!;
    const inv = kb.let("inv", rowInverse(kb, o.l[hh]!));
    kb.if(lt(r, o.S), () => {
      const at = kb.let("orow", rowAt(o, r));
      for (let d = 0; d < o.HD / 8; d++)
        for (let e = 0; e < 2; e++) kb.store(o.ob, add(at, add(i(d * 8 + e), mul(o.tq, i(2)))), mul(kb.load(o.acc, o.at(d, hh, e), "f32"), inv));
    });
  }
}

/** A row's normalizer: 1 / its sum, 0 for a row that saw no key. */
const rowInverse = (kb: K.KernelBuilder, l: Var) => K.sel(K.gt(l.ref, K.f(0)), K.div(K.f(1), l.ref), K.f(0));

/** The flat index of a row's first output of the tile's head: [B, S, heads, d] when transposed, else [B, heads, S, d]. */
function rowAt(o: { S: Expr; HD: number; NH: number; tile: FlashTile; transposed: boolean }, r: Expr): Expr {
  const { i, add, mul } = K;
  const { b, h, bh } = o.tile;
  return o.transposed ? mul(add(mul(add(mul(b, o.S), r), i(o.NH)), h), i(o.HD)) : mul(add(mul(bh, o.S), r), i(o.HD));
}

/**
 * storeRows with the step's trailing quantize (its codes buffer `ob`): each row's values rounded to
 * the result's dtype (as the result's store would round them), its groups of G columns (G divides the
 * head dim, so a group is one head's and one quad's: the amax by two shuffles) quantized by the
 * quantize's recipe, an even lane packing its two codes of a column block with its partner's two, the
 * rows' codes staged in workgroup memory (`stage`, `stageWords` from word `stageAt`: the caller's,
 * free once every warp is past its last MMA; BM rows of HD / 4 + 4 words) and written as 16-byte pieces, a group's
 * scale by the quad's first lane. The codes' writes are then whole 16-byte pieces of a row (a store a
 * code at a time left the L2 with partial writes: quant.ts).
 */
export function storeQuantRows(
  g: Gen,
  o: {
    ob: string;
    quant: Op;
    dtype: DType;
    acc: string;
    /** The thread's 16-row tiles (one, or a warp's several): each with its accumulators' places, its two rows (absolute and in the workgroup's tile) and their sums. */
    tiles: readonly { at: (d: number, hh: number, e: number) => Expr; rows: readonly Expr[]; tileRows: readonly Expr[]; l: readonly Var[] }[];
    tq: Expr;
    S: Expr;
    HD: number;
    NH: number;
    tile: FlashTile;
    transposed: boolean;
    stage: string;
    stageAt: number;
    stageWords: number;
    BM: number;
    threads: number;
  },
): void {
  const kb = g.kb;
  const { i, add, mul, div, mod, lt, eq } = K;
  const { to, block } = attrsOf(OPS.quantize, o.quant);
  const [rb, G] = block as [number, number];
  if (to !== "f8e4m3fn" || rb !== 1 || o.HD % G !== 0 || G % 8 !== 0 || o.HD % 32 !== 0) throw new LingcError(`flash attention: cannot quantize its result in ${rb} x ${G} groups of ${to} (head dim ${o.HD}) in its epilogue`);
  const codes = o.quant.results[0]!;
  const RW = o.HD / 4 + 4; // a staged row's words (4 of padding: rows start in other banks)
  if (o.BM * RW > o.stageWords) throw new LingcError(`flash attention: ${o.BM} rows of ${RW} words of codes do not fit the ${o.stageWords} words it stages them in`);
  kb.barrier(); // every warp past its last MMA, which read the staging words
  for (const t of o.tiles) for (let hh = 0; hh < 2; hh++) {
    const r = t.rows[hh]!;
    const inv = kb.let("inv", rowInverse(kb, t.l[hh]!));
    const vals = Array.from({ length: o.HD / 4 }, (_, n) => kb.let("ov", g.fit(mul(kb.load(o.acc, t.at(n >> 1, hh, n & 1), "f32"), inv), o.dtype)));
    const at = kb.let("orow", rowAt(o, r));
    const perGroup = G / 4; // a thread's values of a group: G / 8 column blocks, two each
    for (let gi = 0; gi < o.HD / G; gi++) {
      const mine = vals.slice(gi * perGroup, (gi + 1) * perGroup);
      const m = kb.warpMax(kb.let("m", mine.reduce((a: Expr, v) => K.max(a, K.abs(v)), K.f(0))), 4);
      const { s, q } = quantRecipe(g, o.quant, m);
      for (let j = 0; j < G / 8; j++) {
        const word = partnerCodes(kb, [mine[2 * j]!, mine[2 * j + 1]!], q);
        const d = gi * (G / 8) + j;
        // Columns 8 d + 2 tq .. + 3 of the row: word 2 d + tq / 2.
        kb.if(eq(mod(o.tq, i(2)), i(0)), () => kb.store(o.stage, add(i(o.stageAt), add(mul(t.tileRows[hh]!, i(RW)), add(i(2 * d), div(o.tq, i(2))))), word));
      }
      kb.if(K.and(lt(r, o.S), eq(o.tq, i(0))), () => kb.store(g.scalesBuf(codes), g.scaleIndex(codes, add(at, i(gi * G))), s));
    }
  }
  kb.barrier();
  // The staged rows as 16-byte pieces, HD / 16 a row, spread over the workgroup's threads.
  const per = o.HD / 16;
  for (let p = 0; p < (o.BM * per) / o.threads; p++) {
    const n = kb.let("qn", add(kb.lid, i(p * o.threads)));
    const r = kb.let("qr", div(n, i(per)));
    const piece = kb.let("qp", mod(n, i(per)));
    const row = kb.let("qrow", add(o.tile.q0, r));
    const base = kb.let("qs", add(i(o.stageAt), add(mul(r, i(RW)), mul(piece, i(4)))));
    kb.if(lt(row, o.S), () => kb.store16(o.ob, add(div(rowAt(o, row), i(4)), mul(piece, i(4))), [0, 1, 2, 3].map((w) => kb.load(o.stage, add(base, i(w)), "u32"))));
  }
}
