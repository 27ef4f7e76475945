/**
 * The pointwise generator: one thread per element of a result, for any group whose ops all produce
 * that one shape. Elementwise ops compute their element by their scalar formula and view ops
 * (transpose, slice, concat, gathers, ...) remap the index into their operands by their index rule,
 * both from the op table; matmul-like ops, rope and reductions have their element rules here
 * (POINTWISE_LOWERED). So a matmul with an elementwise epilogue, an elementwise chain, or swiglu with
 * its token gather as prologue are each one kernel, and every single op of these kinds is a kernel
 * of one op.
 *
 * The "gemv" form (pointwiseGemv) gives each element LANES threads instead of one, for a group whose
 * only loops are its contractions' dot products: the lanes split the dot product (consecutive lanes
 * read consecutive elements of the weight row, where one thread per element reads a row alone) and
 * sum their parts through workgroup memory, then lane 0 stores. A decode step's few rows are then
 * read at the memory's width. Each lane keeps several independent loads in flight (the target's
 * gemv unroll), and a bf16 weight of even rows is read a 32-bit word (two values) a load. The host
 * runs it for few rows (the pointwise template's `few`).
 */
import type { Dim } from "../../../ir/dim";
import { isFloat, type DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { product } from "../../../ir/dim";
import { attrsOf, getOp, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import { kirIndex, opFormula } from "./algebra";
import { expertOfRow } from "./experts";
import type { Gen, GeneratedKernel } from "./context";

/** Row-major coordinates of a flat index. */
export function unflatten(g: Gen, flat: Expr, dims: Expr[]): Expr[] {
  const coords: Expr[] = new Array(dims.length);
  let rest = flat;
  for (let a = dims.length - 1; a >= 0; a--) {
    coords[a] = a === 0 ? rest : K.modI(rest, dims[a]!);
    if (a > 0) rest = K.divI(rest, dims[a]!);
  }
  return coords;
}

export function flatten(coords: Expr[], dims: Expr[]): Expr {
  let acc: Expr = K.i(0);
  coords.forEach((c, a) => (acc = K.addI(K.mulI(acc, dims[a]!), c)));
  return acc;
}

export function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d.equals(b[i]!));
}

class Pointwise {
  readonly local = new Map<Value, Expr>();
  readonly ops: Set<Op>;
  flat!: Expr;
  shape!: readonly Dim[];

  constructor(
    readonly g: Gen,
    ops: Op[],
    /** Threads per element (1: one thread each; more: the gemv form). */
    readonly lanes = 1,
    /** The gemv form's pairs of elements a lane loads per step. */
    readonly unroll = GEMV_UNROLL,
  ) {
    this.ops = new Set(ops);
  }

  /** This thread's lane among its element's (the gemv form). */
  lane!: Expr;

  producer(v: Value): Op | undefined {
    return v.def && this.ops.has(v.def) ? v.def : undefined;
  }

  /** Element `idx` of value v; `here` means idx is the thread's own element of the group shape. */
  at(v: Value, idx: Expr, here: boolean): Expr {
    if (here) {
      const hit = this.local.get(v);
      if (hit) return hit;
    }
    const p = this.producer(v);
    if (!p) {
      if (!this.g.isExternal(v)) throw new LingcError(`pointwise kernel: value ${v.name ?? "?"} is not available`);
      return this.g.load(v, idx);
    }
    if (getOp(p.opName)?.index) return this.view(p, v, idx, here);
    throw new LingcError(`pointwise kernel: ${p.opName} result is needed at another element than the thread's own`);
  }

  coords(v: Value, idx: Expr): Expr[] {
    return unflatten(this.g, idx, this.g.dims(v));
  }

  /** Elements of view ops: the op's index rule, with its reads remapped into the operands. */
  view(p: Op, v: Value, idx: Expr, here: boolean): Expr {
    // A reshape keeps the row-major flat index: its element is its operand's at the same index (the
    // thread's own, when idx is; an op of the group with another shape of the same size computes its
    // element at the thread's flat index in its own dims: a contraction before a reshape).
    if (p.opName === "reshape") return this.at(p.operands[0]!, idx, here);
    const rule = getOp(p.opName)!.index!;
    const inShapes = p.operands.map((o) => o.type.shape);
    const A = kirIndex({
      kb: this.g.kb,
      size: (d) => this.g.size(d),
      // The operand's element at the thread's own index is the thread's own element of that operand.
      readFlat: (j, flat) => this.at(p.operands[j]!, flat, here && flat === idx && sameShape(inShapes[j]!, this.shape)),
      inShapes,
      outType: v.type.dtype,
    });
    return rule(A, A.unflatten(idx, v.type.shape), { inShapes, outShape: v.type.shape, outType: v.type.dtype, attrs: p.attrs });
  }

  /** Index of element `flat` of the group shape in a broadcast operand. */
  broadcast(v: Value): { idx: Expr; here: boolean } {
    if (sameShape(v.type.shape, this.shape)) return { idx: this.flat, here: true };
    const out = this.g.shapeDims(this.shape);
    const c = unflatten(this.g, this.flat, out);
    const rank = v.type.rank;
    const vd = this.g.dims(v);
    const cc = v.type.shape.map((d, j) => (d.equals(1) ? K.i(0) : c[c.length - rank + j]!));
    return { idx: flatten(cc, vd), here: false };
  }

  /** `bPair`: b's elements k and k + 1 (k even) with one load, where b is read in pairs (Gen.readsPairs) and n is even. */
  dot(n: Expr, a: (k: Expr) => Expr, b: (k: Expr) => Expr, bPair?: (k: Expr) => [Expr, Expr]): Expr {
    const kb = this.g.kb;
    const acc = kb.var("acc", K.f(0));
    if (this.lanes === 1) {
      kb.for("k", K.i(0), n, (k) => acc.set(K.add(acc.ref, K.mul(a(k), b(k)))));
      return acc.ref;
    }
    // The gemv form: each step, lane l reads `unroll` pairs of neighbouring elements,
    // k = 2 (l + lanes u) + {0, 1}: loads that do not depend on each other, written out (WGSL
    // compilers do not unroll), all issued before the products that use them. A loop of one load
    // pair per step keeps one load in flight per thread, a fraction of what the memory needs to run
    // at its rate. The element's lanes (consecutive threads) then add their parts pairwise in
    // workgroup memory. Every thread reaches the barriers (run() clamps instead of branching).
    // A bf16 weight of an even row length is read a word (two values) a load.
    const L = this.lanes;
    const stride = 2 * L * this.unroll;
    const pairs = bPair && n.k === "lit" && n.v % 2 === 0 ? bPair : undefined;
    // Past n (when the step does not divide it) a lane reads the last element (pair) and adds nothing.
    const exact = n.k === "lit" && n.v % stride === 0;
    const last = exact ? undefined : kb.let("k_last", K.sub(n, K.i(pairs ? 2 : 1)));
    kb.for("k0", K.i(0), n, (k0) => {
      const first = kb.let("k", K.add(k0, K.mul(this.lane, K.i(2))));
      const terms: { k: Expr; a: Expr; b: Expr }[] = [];
      for (let u = 0; u < this.unroll; u++) {
        if (pairs) {
          // k even, n even: k < n covers k + 1 too.
          const k = kb.let("k", K.add(first, K.i(2 * L * u)));
          const kc = last ? kb.let("kc", K.min(k, last)) : k;
          const [w0, w1] = pairs(kc);
          terms.push({ k, a: kb.let("xa", a(kc)), b: kb.let("wb", w0) }, { k, a: kb.let("xa", a(K.add(kc, K.i(1)))), b: kb.let("wb", w1) });
          continue;
        }
        for (let p = 0; p < 2; p++) {
          const k = kb.let("k", K.add(first, K.i(2 * L * u + p)));
          const kc = last ? kb.let("kc", K.min(k, last)) : k;
          terms.push({ k, a: kb.let("xa", a(kc)), b: kb.let("wb", b(kc)) });
        }
      }
      for (const t of terms) {
        const prod = K.mul(t.a, t.b);
        acc.set(K.add(acc.ref, last ? K.sel(K.lt(t.k, n), prod, K.f(0)) : prod));
      }
    }, K.i(stride));
    const red = kb.shared(kb.fresh("lanes"), "f32", kb.kernel.wg);
    kb.store(red, kb.lid, acc.ref);
    kb.barrier();
    for (let s = this.lanes / 2; s >= 1; s /= 2) {
      kb.if(K.lt(this.lane, K.i(s)), () => kb.store(red, kb.lid, K.add(kb.load(red, kb.lid), kb.load(red, K.add(kb.lid, K.i(s))))));
      kb.barrier();
    }
    return kb.let("dot", kb.load(red, K.sub(kb.lid, this.lane)));
  }

  compute(op: Op): Expr {
    const g = this.g;
    const v = op.results[0]!;
    const dt: DType = v.type.dtype;
    const operand = (j: number) => {
      const { idx, here } = this.broadcast(op.operands[j]!);
      return this.at(op.operands[j]!, idx, here);
    };
    if (getOp(op.opName)?.scalar) return g.fit(opFormula(op, op.operands.map((_, j) => operand(j))), dt);
    const [x, w] = op.operands as [Value, Value];
    switch (op.opName) {
      case "linear": {
        const [O, I] = g.dims(w) as [Expr, Expr];
        const row = g.kb.let("row", K.divI(this.flat, O));
        const o = g.kb.let("o", K.modI(this.flat, O));
        const wAt = (k: Expr) => K.addI(K.mulI(o, I), k);
        return g.fit(
          this.dot(
            I,
            (k) => this.at(x, K.addI(K.mulI(row, I), k), false),
            (k) => this.at(w, wAt(k), false),
            this.lanes > 1 && g.readsPairs(w) ? (k) => g.loadPair(w, wAt(k)) : undefined,
          ),
          dt,
        );
      }
      case "matmul": {
        const od = g.dims(v);
        const c = unflatten(g, this.flat, od);
        const r = od.length;
        const Kd = g.dims(x)[x.type.rank - 1]!;
        const batchIdx = (t: Value, i1: Expr, i2: Expr) => {
          const td = g.dims(t);
          const cc = t.type.shape.slice(0, -2).map((d, j) => (d.equals(1) ? K.i(0) : c[r - 2 - (t.type.rank - 2) + j]!));
          return flatten([...cc, i1, i2], td);
        };
        return g.fit(
          this.dot(
            Kd,
            (k) => this.at(x, batchIdx(x, c[r - 2]!, k), false),
            (k) => this.at(w, batchIdx(w, k, c[r - 1]!), false),
          ),
          dt,
        );
      }
      case "grouped_linear": {
        const [E, O, I] = g.dims(w) as [Expr, Expr, Expr];
        const offsets = op.operands[2]!;
        const r = g.kb.let("r", K.divI(this.flat, O));
        const o = g.kb.let("o", K.modI(this.flat, O));
        const e = expertOfRow(g.kb, (i) => this.at(offsets, i, false), r, E, w.type.shape[0]!.value);
        const wAt = (k: Expr) => K.addI(K.mulI(K.addI(K.mulI(e, O), o), I), k);
        return g.fit(
          this.dot(
            I,
            (k) => this.at(x, K.addI(K.mulI(r, I), k), false),
            (k) => this.at(w, wAt(k), false),
            this.lanes > 1 && g.readsPairs(w) ? (k) => g.loadPair(w, wAt(k)) : undefined,
          ),
          dt,
        );
      }
      case "dequantize":
        // The scaled operand's element times its block's scale (Gen.load), in the result's dtype.
        return g.fit(this.at(x, this.flat, true), dt);
      case "moe_combine": {
        const [y, rowOf, weights] = op.operands as [Value, Value, Value];
        const H = g.dims(v)[1]!;
        const Kd = g.dims(weights)[1]!;
        const t = g.kb.let("t", K.divI(this.flat, H));
        const h = g.kb.let("h", K.modI(this.flat, H));
        const acc = g.kb.var("acc", K.f(0));
        g.kb.for("j", K.i(0), Kd, (j) => {
          const pair = K.addI(K.mulI(t, Kd), j);
          const row = this.at(rowOf, pair, false);
          acc.set(K.add(acc.ref, K.mul(this.at(weights, pair, false), this.at(y, K.addI(K.mulI(row, H), h), false))));
        });
        return g.fit(acc.ref, dt);
      }
      case "rope": {
        const [cosT, sinT] = [op.operands[1]!, op.operands[2]!];
        const vd = g.dims(v);
        const d = vd[vd.length - 1]!;
        const S = vd[vd.length - 2]!;
        const half = g.dims(cosT)[1]!;
        const c = g.kb.let("c", K.modI(this.flat, d));
        const s = g.kb.let("s", K.modI(K.divI(this.flat, d), S));
        const base = K.sub(this.flat, c);
        const out = g.kb.var("rot", K.f(0));
        const r = (e: Expr) => g.fit(e, dt);
        g.kb.if(
          K.lt(c, half),
          () => {
            const cs = this.at(cosT, K.addI(K.mulI(s, half), c), false);
            const sn = this.at(sinT, K.addI(K.mulI(s, half), c), false);
            out.set(r(K.add(r(K.mul(this.at(x, this.flat, true), cs)), r(K.neg(K.mul(this.at(x, K.add(base, K.add(c, half)), false), sn))))));
          },
          () =>
            g.kb.if(
              K.lt(c, K.mul(half, K.i(2))),
              () => {
                const j = K.sub(c, half);
                const cs = this.at(cosT, K.addI(K.mulI(s, half), j), false);
                const sn = this.at(sinT, K.addI(K.mulI(s, half), j), false);
                out.set(r(K.add(r(K.mul(this.at(x, this.flat, true), cs)), r(K.mul(this.at(x, K.add(base, j), false), sn)))));
              },
              () => out.set(this.at(x, this.flat, true)),
            ),
        );
        return out.ref;
      }
      case "grouped_outer": {
        // Element (e, i, j): the sum over expert e's rows of a[r, i] b[r, j].
        const [a, bb, offsets] = op.operands as [Value, Value, Value];
        const [, A, B] = g.dims(v) as [Expr, Expr, Expr];
        const e = g.kb.let("e", K.divI(this.flat, K.mulI(A, B)));
        const ij = g.kb.let("ij", K.modI(this.flat, K.mulI(A, B)));
        const i = g.kb.let("i", K.divI(ij, B));
        const j = g.kb.let("j", K.modI(ij, B));
        const acc = g.kb.var("acc", K.f(0));
        g.kb.for("r", this.at(offsets, e, false), this.at(offsets, K.add(e, K.i(1)), false), (r) =>
          acc.set(K.add(acc.ref, K.mul(this.at(a, K.addI(K.mulI(r, A), i), false), this.at(bb, K.addI(K.mulI(r, B), j), false)))),
        );
        return g.fit(acc.ref, dt);
      }
      case "scatter_add": {
        // Output element (.., c, ..): the sum of src over the positions along the axis whose index is c.
        const idx = op.operands[1]!;
        const axis = (attrsOf(OPS.scatter_add, op).axis + x.type.rank) % x.type.rank;
        const sd = g.dims(x);
        const oc = unflatten(g, this.flat, g.dims(v));
        const acc = g.kb.var("acc", K.f(0));
        g.kb.for("j", K.i(0), sd[axis]!, (j) => {
          const at = flatten(oc.map((c, a) => (a === axis ? j : c)), sd);
          g.kb.if(K.eq(this.at(idx, at, false), oc[axis]!), () => acc.set(K.add(acc.ref, this.at(x, at, false))));
        });
        return g.fit(acc.ref, dt);
      }
      case "reduce_sum":
      case "reduce_mean":
      case "reduce_max": {
        const rank = x.type.rank;
        const axes = new Set(attrsOf(OPS[op.opName as "reduce_sum" | "reduce_mean" | "reduce_max"], op).axes.map((ax) => (ax + rank) % rank));
        const xd = g.dims(x);
        const outDims = x.type.shape.map((d, j) => (axes.has(j) ? K.i(1) : xd[j]!));
        const oc = unflatten(g, this.flat, outDims);
        const acc = g.kb.var("acc", op.opName === "reduce_max" ? K.f(-Infinity) : isFloat(dt) ? K.f(0) : K.i(0));
        const coords = [...oc];
        const loops = [...axes].sort((p, q) => p - q);
        const nest = (li: number): void => {
          if (li === loops.length) {
            const val = this.at(x, flatten(coords, xd), false);
            acc.set(op.opName === "reduce_max" ? K.max(acc.ref, val) : K.add(acc.ref, val));
            return;
          }
          const ax = loops[li]!;
          g.kb.for("red", K.i(0), xd[ax]!, (iv) => {
            coords[ax] = iv;
            nest(li + 1);
          });
        };
        nest(0);
        if (op.opName === "reduce_mean") {
          let count: Expr = K.i(1);
          for (const ax of loops) count = K.mulI(count, xd[ax]!);
          return g.fit(K.div(acc.ref, K.toF(count)), dt);
        }
        return g.fit(acc.ref, dt);
      }
    }
    throw new LingcError(`pointwise kernel: no element rule for '${op.opName}'`);
  }

  /**
   * Elements a thread computes (the target's pointwiseRun): 1 unless the group's rows are a literal
   * multiple of it and no op loops over more than a few elements (contractions, reductions: their
   * loops would be written out once per element of the run).
   */
  runLength(ops: readonly Op[]): number {
    const C = this.g.limits.pointwiseRun ?? 1;
    const row = this.shape[this.shape.length - 1]?.value;
    if (C <= 1 || row === undefined || row % C !== 0) return 1;
    return ops.some((o) => DOTS.has(o.opName) || (LOOPING.has(o.opName) && o.opName !== "moe_combine")) ? 1 : C;
  }

  run(ops: Op[]): GeneratedKernel {
    const g = this.g;
    const outputs = ops.flatMap((o) => o.results).filter((r) => g.isOutput(r));
    if (outputs.length === 0) throw new LingcError("pointwise kernel without outputs");
    const main = outputs[outputs.length - 1]!;
    this.shape = main.type.shape;
    for (const o of outputs) {
      if (!sameShape(o.type.shape, this.shape)) throw new LingcError(`pointwise kernel: outputs of different shapes (${o.type} vs ${main.type})`);
    }
    const total = product(this.shape.map((d) => g.entryDim(d)));
    const n = g.size(product([...this.shape]));
    const body = () => {
      for (const op of ops) {
        if (getOp(op.opName)?.index) continue;
        if (op.results.length !== 1) throw new LingcError(`pointwise kernel: ${op.opName} has several results`);
        this.local.set(op.results[0]!, g.kb.let("v", this.compute(op)));
      }
    };
    if (this.lanes === 1) {
      const C = this.runLength(ops);
      if (C > 1) {
        // A run of C consecutive elements a thread, in one row (C divides the row): their indices
        // are written x C + u, which kir's divI/modI fold to the row's own index math, shared by
        // the run (e.g. the combine's expert rows and weights, read once for C elements).
        const th = g.kb.let("run", g.kb.gid);
        g.kb.if(K.lt(K.mul(th, K.i(C)), n), () => {
          for (let u = 0; u < C; u++) {
            const flat = u === 0 ? K.mul(th, K.i(C)) : K.add(K.mul(th, K.i(C)), K.i(u));
            this.flat = flat;
            this.local.clear();
            body();
            for (const o of outputs) g.kb.store(g.buf(o), flat, this.at(o, flat, true));
          }
        });
        return g.finish({ dim: total, per: g.kb.kernel.wg * C });
      }
      const flat = g.kb.let("flat", g.kb.gid);
      this.flat = flat;
      g.kb.if(K.lt(flat, n), () => {
        body();
        for (const o of outputs) g.kb.store(g.buf(o), flat, this.at(o, flat, true));
      });
      return g.finish({ dim: total, per: g.kb.kernel.wg });
    }
    // The gemv form: element wg x (threads / lanes) + lid / lanes. Past the end, a thread computes
    // the last element (its lanes' barriers are every thread's) and does not store.
    const per = g.kb.kernel.wg / this.lanes;
    const own = g.kb.let("flat", K.add(K.mul(g.kb.wg, K.i(per)), K.div(g.kb.lid, K.i(this.lanes))));
    this.lane = g.kb.let("lane", K.mod(g.kb.lid, K.i(this.lanes)));
    this.flat = g.kb.let("flat_c", K.min(own, K.sub(n, K.i(1))));
    body();
    g.kb.if(K.and(K.lt(own, n), K.eq(this.lane, K.i(0))), () => {
      for (const o of outputs) g.kb.store(g.buf(o), this.flat, this.at(o, this.flat, true));
    });
    return g.finish({ dim: total, per });
  }
}

export function pointwise(g: Gen, ops: Op[]): GeneratedKernel {
  return new Pointwise(g, ops).run(ops);
}

/** Consecutive elements a CUDA pointwise thread computes (GenLimits.pointwiseRun). */
export const POINTWISE_RUN = 4;

/** Threads per element of the gemv form: a warp's width of a weight row per read. */
export const GEMV_LANES = 32;
/** Neighbouring pairs of elements a gemv lane loads per step where the target does not say (WebGpuProfile.gemvUnroll). */
export const GEMV_UNROLL = 4;
/** Threads of a gemv workgroup (8 elements). */
export const GEMV_THREADS = 256;
/** Rows up to which the host runs a linear layer in the gemv form (a decode step's; from 17 rows a 32-row tile wastes at most half its rows and reads each weight once per tile). */
export const GEMV_MAX_ROWS = 16;

/** Ops whose element loops (all but dot products): computed by every lane alike, they would cost the gemv form lanes-fold. */
const LOOPING = new Set(["moe_combine", "reduce_sum", "reduce_mean", "reduce_max", "scatter_add", "grouped_outer"]);
const DOTS = new Set(["linear", "matmul", "grouped_linear"]);

/**
 * A group the gemv form covers: pointwise, with a contraction, and no other op that loops; the
 * rows (elements over the last dim of its contraction's result) the host compares to GEMV_MAX_ROWS.
 */
export function gemvRows(ops: readonly Op[]): Dim | undefined {
  if (!ops.every((o) => isPointwiseOp(o.opName)) || ops.some((o) => LOOPING.has(o.opName))) return undefined;
  const dot = ops.find((o) => DOTS.has(o.opName));
  if (!dot) return undefined;
  const shape = dot.results[0]!.type.shape;
  return product([...shape.slice(0, -1)]);
}

/** The gemv form of a pointwise group (gemvRows covers it). */
export function pointwiseGemv(g: Gen, ops: Op[]): GeneratedKernel {
  if (g.kb.kernel.wg % GEMV_LANES !== 0) throw new LingcError(`gemv kernel: ${g.kb.kernel.wg} threads are not whole elements of ${GEMV_LANES} lanes`);
  return new Pointwise(g, ops, GEMV_LANES, g.limits.gemvUnroll ?? GEMV_UNROLL).run(ops);
}

/** Ops the pointwise generator computes by their own element rule here (not by a formula or index rule). */
export const POINTWISE_LOWERED = ["linear", "matmul", "grouped_linear", "moe_combine", "rope", "reduce_sum", "reduce_mean", "reduce_max", "dequantize", "scatter_add", "grouped_outer"] as const;

/** Whether one op alone can be a pointwise kernel: by its scalar formula, its index rule, or an element rule here. */
export function isPointwiseOp(name: string): boolean {
  const def = getOp(name);
  return !!def?.scalar || !!def?.index || (POINTWISE_LOWERED as readonly string[]).includes(name);
}
