/**
 * FP8 quantization (the quantize op): per scale block of the last two axes, the block's amax, the
 * recipe's scale (every step in f32 as ir/quant.ts computes it), then each element divided (or
 * multiplied) and rounded to the fp8 format, stored beside the scale grid. Activation groups (one
 * row by a power-of-two width, 1x128) take a workgroup each: a thread per element, the amax
 * reduced in workgroup memory, so reads and writes are contiguous across threads (this runs before
 * every W8A8 projection). Other blocks (128x128 weights, quantized once at load) take a thread each.
 * On a warp target a group takes a warp (4 of its elements a lane), or, where the row is whole
 * groups of whole 8-element pieces read from a bf16 or f32 buffer (the token rows the gather reads,
 * too), cb / 16 lanes with 16 consecutive elements each (two 16-byte loads, one 16-byte store of
 * the codes; cb / 8 lanes of 8 where cb is not whole 16s): the scalar form ran Ling-mini's gathered
 * expert inputs at 6.9 ms a forward at 1x8192 on the H200 (fp8-wgmma-2026-12-01-h200.md), well past
 * their bytes' time, and the 8-element form with bytewise stores 7.7 ms (411 us a launch in Nsight
 * Compute: L2 72% busy, DRAM 11%).
 */
import { Dim, product } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import type { DType } from "../../../ir/dtype";
import type { Op, Value } from "../../../ir/module";
import { attrsOf, getOp, OPS } from "../../../ir/ops";
import { fp8Max } from "../../../ir/quant";
import * as K from "../kir";
import { kirIndex } from "./algebra";
import { gatheredRow } from "./experts";
import type { Gen, GeneratedKernel, GenLimits } from "./context";

/**
 * A warp per 1 x cb activation group on a warp-synchronous target (8 groups a workgroup); else a
 * workgroup per group where cb is a power of two that fits; else 64 threads, a block each.
 */
export function quantizeWorkgroup(op: Op, limits: GenLimits): number {
  const [rb, cb] = attrsOf(OPS.quantize, op).block as [number, number];
  if (groupPerWarp(rb, cb, limits)) return WARP_GROUPS * 32;
  return groupWide(rb, cb, limits.maxThreads) ? cb : 64;
}

const groupWide = (rb: number, cb: number, maxThreads: number) => rb === 1 && cb >= 32 && cb <= maxThreads && (cb & (cb - 1)) === 0;
const groupPerWarp = (rb: number, cb: number, limits: GenLimits) => limits.warpSize === 32 && rb === 1 && cb % 32 === 0 && cb <= 32 * 32;
/** Groups (warps) per workgroup of the warp form. */
const WARP_GROUPS = 8;

/**
 * Element `flat` of the quantize's input: from its buffer, or, when a view op of the step made it
 * (the token gather, moe_permute), through that op's index rule from the view's operands.
 */
function inputReader(g: Gen, x: Value, prologue: Op | undefined): (flat: K.Expr) => K.Expr {
  if (!prologue) return (flat) => g.load(x, flat);
  const rule = getOp(prologue.opName)?.index;
  if (!rule || prologue.results[0] !== x || !prologue.operands.every((v) => g.isExternal(v))) throw new LingcError(`quantize kernel: cannot read its input through ${prologue.opName}`);
  const inShapes = prologue.operands.map((o) => o.type.shape);
  return (flat) => {
    const A = kirIndex({ kb: g.kb, size: (d) => g.size(d), readFlat: (j, f) => g.load(prologue.operands[j]!, f), inShapes, outType: x.type.dtype });
    return rule(A, A.unflatten(flat, x.type.shape), { inShapes, outShape: x.type.shape, outType: x.type.dtype, attrs: prologue.attrs });
  };
}

/**
 * Where 16-byte loads can read a 1 x cb group's elements, 8 to a lane: the buffer and the row of it
 * that row r of the quantize's input is (its own, or, through the token gather, the token's:
 * moe_permute's out[r] = x[order[r] / k]); undefined where they cannot (no whole 8-element pieces, a
 * narrow or scaled source, another prologue).
 */
function wideSource(g: Gen, x: Value, prologue: Op | undefined, rb: number, cb: number, C: number): { src: Value; row: (r: K.Expr) => K.Expr } | undefined {
  const L = cb / 8;
  if (rb !== 1 || cb % 8 !== 0 || C % cb !== 0 || L > 32 || (L & (L - 1)) !== 0) return undefined;
  if (!prologue) return g.wide8(x) && g.isExternal(x) ? { src: x, row: (r) => r } : undefined;
  if (prologue.opName !== "moe_permute" || prologue.results[0] !== x) return undefined;
  const [tokens, order] = prologue.operands as [Value, Value];
  if (!g.wide8(tokens) || !g.isExternal(tokens) || !g.isExternal(order) || tokens.type.rank !== 2) return undefined;
  return { src: tokens, row: (r) => g.kb.let("tok", gatheredRow(g, prologue, r)) };
}

/**
 * A quantize op's recipe in kir (each step in f32 as ir/quant.ts computes it): the scale of a block
 * with this amax, and how a value becomes its code.
 */
export function quantRecipe(g: Gen, op: Op, amax: K.Expr): { s: K.Expr; q: (v: K.Expr) => K.Expr } {
  const { to, recipe } = attrsOf(OPS.quantize, op);
  const fmax = fp8Max(to);
  const kb = g.kb;
  const fit = (v: K.Expr) => g.fit(v, to as DType);
  const f = (v: number) => K.f(v);
  if (recipe === "transformers") {
    // torch: scale = reciprocal(amax) * fmax (1 where amax is 0); q = clamp(x * scale); s = 1 / scale.
    const scale = kb.let("scale", K.sel(K.gt(amax, f(0)), K.mul(K.div(f(1), amax), f(fmax)), f(1)));
    return { s: kb.let("s", K.div(f(1), scale)), q: (v) => fit(K.min(K.max(K.mul(v, scale), f(-fmax)), f(fmax))) };
  }
  let sv: K.Expr = K.div(K.max(amax, f(recipe === "dynamic" ? 1e-12 : 1e-4)), f(fmax));
  if (recipe === "ling-ue8m0") sv = K.call("pow2_ceil", sv);
  const s = kb.let("s", sv);
  // Each value divided by the group's scale through the scale's reciprocal, found once (kir quot).
  return { s, q: codeOf(g, op, s, kb.let("rs", K.div(f(1), s))) };
}

/**
 * How a value becomes its code given its block's scale s (and, where a kernel has it once for many
 * values, r = 1 / s rounded once: the same codes, kir quot), for the recipes that divide by s (not
 * "transformers", which multiplies by its own reciprocal).
 */
export function codeOf(g: Gen, op: Op, s: K.Expr, r?: K.Expr): (v: K.Expr) => K.Expr {
  const { to, recipe } = attrsOf(OPS.quantize, op);
  if (recipe === "transformers") throw new LingcError("quantize kernel: the transformers recipe's codes come from its own multiplier, not from the scale");
  return (v) => g.fit(r ? K.quot(v, s, r) : K.div(v, s), to as DType);
}

/**
 * The codes of a thread's two adjacent values and its quad partner's (lane ^ 1, the next two
 * columns) as one word, `v0, v1` first: an MMA accumulator layout's row, quantized by `q`. Every
 * lane shuffles; the even lane of the pair holds the word to store.
 */
export function partnerCodes(kb: K.KernelBuilder, [v0, v1]: readonly [K.Expr, K.Expr], q: (v: K.Expr) => K.Expr): K.Expr {
  const n = [v0, v1].map((v) => kb.let("pn", { k: "shfl", t: "f32", a: v, mask: 1 }));
  return K.packE4m3([v0, v1, ...n].map(q));
}

/**
 * A step's trailing activation quantize of the result of the ops before it, and those ops (a step
 * backends/cuda/quant-epilogue.ts merged, its quantize rebound to read that result: a grouped
 * matmul's or an attention's).
 */
export function splitQuantEpilogue(ops: readonly Op[]): { quant?: Op; ops: readonly Op[] } {
  const q = ops[ops.length - 1];
  if (q?.opName !== "quantize" || ops.length < 2) return { ops };
  const before = ops.slice(0, -1);
  return q.operands[0] === before[before.length - 1]!.results[0] ? { quant: q, ops: before } : { ops };
}

/** The quantize of a step: alone, or with a view op before it (moe_permute) as its prologue. */
export function quantizeOps(ops: readonly Op[]): { op: Op; prologue?: Op } | undefined {
  const q = ops.filter((o) => o.opName === "quantize");
  if (q.length !== 1) return undefined;
  if (ops.length === 1) return { op: q[0]! };
  const pro = ops.find((o) => o !== q[0]);
  if (ops.length !== 2 || !pro || pro.opName !== "moe_permute" || q[0]!.operands[0] !== pro.results[0]) return undefined;
  return { op: q[0]!, prologue: pro };
}

export function quantizeKernel(g: Gen, op: Op, prologue?: Op): GeneratedKernel {
  const x = op.operands[0]!;
  const out = op.results[0]!;
  const read = inputReader(g, x, prologue);
  const [rb, cb] = attrsOf(OPS.quantize, op).block as [number, number];
  const kb = g.kb;
  const dims = g.dims(x);
  const rank = dims.length;
  const C = dims[rank - 1]!;
  const R = dims[rank - 2]!;
  const gc = K.divI(K.addI(C, K.i(cb - 1)), K.i(cb));
  const gr = K.divI(K.addI(R, K.i(rb - 1)), K.i(rb));
  const lead = product(x.type.shape.slice(0, rank - 2));
  const Cn = x.type.shape[rank - 1]!.value;
  if (Cn === undefined) throw new LingcError(`quantize kernel: the last axis of ${x.type} must be a number`);
  const Rd = x.type.shape[rank - 2]!;
  // Threads: one per block, lead x ceil(R / rb) x ceil(C / cb); a symbolic R counts R rows of blocks
  // (at least as many; the extra threads return).
  const gridDim = product([lead, Rd.isConst() ? Dim.of(Math.ceil(Rd.value! / rb)) : Rd, Dim.of(Math.ceil(Cn / cb))]);
  const nBlocks = K.mulI(K.mulI(g.size(lead), gr), gc);
  const f = (v: number) => K.f(v);
  const recipeOf = (amax: K.Expr) => quantRecipe(g, op, amax);
  const wide = wideSource(g, x, prologue, rb, cb, Cn);
  if (wide && groupPerWarp(rb, cb, g.limits) && kb.kernel.wg === WARP_GROUPS * 32) {
    // 8 consecutive elements a lane, one 16-byte load (bf16; two for f32) of the row, or of the token
    // row the gather reads; a group's L = cb / 8 lanes reduce its amax by shuffles, 32 / L groups a
    // warp. Every lane runs the loads and shuffles (lanes of groups past the last read the last
    // group again: a warp's shuffles run in all its lanes) and only groups that exist store.
    // 16 elements a lane where a group is whole 16-element pieces (two 16-byte loads, one 16-byte
    // store of the 16 codes: a lane's 8 codes stored a byte at a time kept the L2 busy with partial
    // writes, 411 us for Ling-mini's gathered expert rows at 1x8192 with DRAM at 11%); else 8.
    const E = cb % 16 === 0 && cb / 16 <= 32 ? 16 : 8;
    const L = cb / E;
    const GW = 32 / L;
    const lane = kb.let("lane", K.modI(kb.lid, K.i(32)));
    const t = kb.let("t", K.addI(K.mulI(kb.wg, K.i(WARP_GROUPS * GW)), K.divI(kb.lid, K.i(L))));
    const live = kb.let("live", K.lt(t, nBlocks));
    const tc = kb.let("tc", K.min(t, K.sub(nBlocks, K.i(1))));
    const bc = kb.let("bc", K.modI(tc, gc));
    const row = kb.let("row", K.divI(tc, gc));
    const c0 = kb.let("c0", K.addI(K.mulI(bc, K.i(cb)), K.mulI(K.modI(lane, K.i(L)), K.i(E))));
    const src = kb.let("src", K.addI(K.mulI(wide.row(row), C), c0));
    const vals = [...g.load8(wide.src, src), ...(E === 16 ? g.load8(wide.src, K.addI(src, K.i(8))) : [])].map((v) => kb.let("v", v));
    const m = kb.let("m", vals.reduce((a: K.Expr, v) => K.max(a, K.abs(v)), f(0)));
    const amax = kb.warpMax(m, L);
    const { s, q } = recipeOf(amax);
    kb.if(live, () => {
      const flat = kb.let("flat", K.addI(K.mulI(row, C), c0));
      if (E === 16) kb.store16(g.buf(out, true), K.divI(flat, K.i(4)), [0, 1, 2, 3].map((w) => K.packE4m3(vals.slice(4 * w, 4 * w + 4).map(q))));
      else vals.forEach((v, e) => kb.store(g.buf(out, true), K.addI(flat, K.i(e)), q(v)));
      kb.if(K.eq(K.modI(lane, K.i(L)), K.i(0)), () => kb.store(g.scalesBuf(out), g.scaleIndex(out, K.addI(K.mulI(row, C), K.mulI(bc, K.i(cb)))), s));
    });
    return g.finish({ dim: g.entryDim(product([lead, Rd, Dim.of(Math.ceil(Cn / cb))])), per: WARP_GROUPS * GW });
  }
  if (groupPerWarp(rb, cb, g.limits) && kb.kernel.wg === WARP_GROUPS * 32) {
    // A warp per group: lane l holds columns c0 + l, c0 + l + 32, ... (each load of the warp is
    // contiguous), the amax by shuffles; WARP_GROUPS groups per workgroup.
    const per = cb / 32;
    const t = kb.let("t", K.addI(K.mulI(kb.wg, K.i(WARP_GROUPS)), K.divI(kb.lid, K.i(32))));
    const lane = kb.let("lane", K.modI(kb.lid, K.i(32)));
    kb.if(K.lt(t, nBlocks), () => {
      const bc = kb.let("bc", K.modI(t, gc));
      const row = kb.let("row", K.divI(t, gc));
      const vals: { c: K.Expr; flat: K.Expr; v: K.Expr }[] = [];
      let m: K.Expr = f(0);
      for (let j = 0; j < per; j++) {
        const c = kb.let("c", K.addI(K.mulI(bc, K.i(cb)), K.addI(lane, K.i(32 * j))));
        const flat = kb.let("flat", K.addI(K.mulI(row, C), c));
        const v = kb.var("v", f(0));
        kb.if(K.lt(c, C), () => v.set(read(flat)));
        vals.push({ c, flat, v: v.ref });
        m = kb.let("m", K.max(m, K.abs(v.ref)));
      }
      const amax = kb.warpMax(m);
      const { s, q } = recipeOf(amax);
      for (const { c, flat, v } of vals) kb.if(K.lt(c, C), () => kb.store(g.buf(out, true), flat, q(v)));
      kb.if(K.eq(lane, K.i(0)), () => kb.store(g.scalesBuf(out), g.scaleIndex(out, K.addI(K.mulI(row, C), K.mulI(bc, K.i(cb)))), s));
    });
    // Groups: lead x rows x ceil(C / cb), WARP_GROUPS a workgroup.
    return g.finish({ dim: g.entryDim(product([lead, Rd, Dim.of(Math.ceil(Cn / cb))])), per: WARP_GROUPS });
  }
  if (groupWide(rb, cb, kb.kernel.wg) && kb.kernel.wg === cb) {
    // A workgroup per group: thread lid holds column c0 + lid (0 past the row's end).
    const grid = product([lead, Rd, Dim.of(Math.ceil(Cn / cb))]);
    const t = kb.let("t", kb.wg);
    kb.if(K.lt(t, nBlocks), () => {
      const bc = kb.let("bc", K.modI(t, gc));
      const row = kb.let("row", K.divI(t, gc));
      const c = kb.let("c", K.addI(K.mulI(bc, K.i(cb)), kb.lid));
      const flat = kb.let("flat", K.addI(K.mulI(row, C), c));
      const inside = K.lt(c, C);
      const v = kb.var("v", f(0));
      kb.if(inside, () => v.set(read(flat)));
      const amax = kb.workgroupMax(K.abs(v.ref));
      const { s, q } = recipeOf(amax);
      kb.if(inside, () => kb.store(g.buf(out, true), flat, q(v.ref)));
      kb.if(K.eq(kb.lid, K.i(0)), () => kb.store(g.scalesBuf(out), g.scaleIndex(out, K.addI(K.mulI(row, C), K.mulI(bc, K.i(cb)))), s));
    });
    return g.finish({ dim: g.entryDim(grid), per: 1 });
  }
  const t = kb.let("t", kb.gid);
  kb.if(K.lt(t, nBlocks), () => {
    const bc = kb.let("bc", K.modI(t, gc));
    const rest = kb.let("rest", K.divI(t, gc));
    const br = kb.let("br", K.modI(rest, gr));
    const l = kb.let("l", K.divI(rest, gr));
    const r0 = kb.let("r0", K.mulI(br, K.i(rb)));
    const c0 = kb.let("c0", K.mulI(bc, K.i(cb)));
    const r1 = kb.let("r1", K.min(K.addI(r0, K.i(rb)), R));
    const c1 = kb.let("c1", K.min(K.addI(c0, K.i(cb)), C));
    const at = (r: K.Expr, c: K.Expr) => K.addI(K.mulI(K.addI(K.mulI(l, R), r), C), c);
    const each = (body: (flat: K.Expr) => void) => kb.for("r", r0, r1, (r) => kb.for("c", c0, c1, (c) => body(at(r, c))));
    const amax = kb.var("amax", K.f(0));
    each((flat) => amax.set(K.max(amax.ref, K.abs(read(flat)))));
    const { s, q } = recipeOf(amax.ref);
    each((flat) => kb.store(g.buf(out, true), flat, q(read(flat))));
    kb.store(g.scalesBuf(out), g.scaleIndex(out, at(r0, c0)), s);
  });
  return g.finish({ dim: g.entryDim(gridDim), per: kb.kernel.wg });
}
