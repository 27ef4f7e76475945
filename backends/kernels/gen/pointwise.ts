/**
 * The pointwise generator: one thread per element of a result, for any group whose ops all produce
 * that one shape. Each op says how to compute one element of its result: elementwise ops combine
 * their operands' elements (broadcast), matmul-like ops loop over their contraction, gathers and
 * layout ops (transpose, slice, concat, shift, moe_permute, embedding, reshape) are views that remap
 * the index into their source. So a matmul with an elementwise epilogue, an elementwise chain, or
 * swiglu with its token gather as prologue are each one kernel, and every single op of these kinds
 * is a kernel of one op.
 */
import type { Dim } from "../../../ir/dim";
import { isFloat, type DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { product } from "../../../ir/dim";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";

const VIEW_OPS = new Set(["reshape", "transpose", "slice", "concat", "shift", "moe_permute", "embedding", "take_along", "iota", "constant"]);

const UNARY: Record<string, (x: Expr) => Expr> = {
  neg: K.neg,
  abs: K.abs,
  exp: K.exp,
  log: K.log,
  sqrt: K.sqrt,
  rsqrt: K.rsqrt,
  sin: K.sin,
  cos: K.cos,
  sigmoid: (x) => K.div(K.f(1), K.add(K.f(1), K.exp(K.neg(x)))),
  silu: (x) => K.div(x, K.add(K.f(1), K.exp(K.neg(x)))),
};

const BINARY: Record<string, (a: Expr, b: Expr) => Expr> = {
  add: K.add,
  sub: K.sub,
  mul: K.mul,
  div: K.div,
  maximum: K.max,
  minimum: K.min,
};

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

function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
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
  ) {
    this.ops = new Set(ops);
  }

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
      return this.g.kb.load(this.g.buf(v), idx);
    }
    if (VIEW_OPS.has(p.opName)) return this.view(p, v, idx, here);
    throw new LingcError(`pointwise kernel: ${p.opName} result is needed at another element than the thread's own`);
  }

  coords(v: Value, idx: Expr): Expr[] {
    return unflatten(this.g, idx, this.g.dims(v));
  }

  /** Elements of view-like ops: remap the index into the source. */
  view(p: Op, v: Value, idx: Expr, here: boolean): Expr {
    const g = this.g;
    const a = p.attrs as Record<string, unknown>;
    const src = p.operands[0]!;
    switch (p.opName) {
      case "reshape":
        return this.at(src, idx, here && sameShape(src.type.shape, this.shape));
      case "constant": {
        const values = a["values"] as number[];
        if (values.length !== 1) throw new LingcError("pointwise kernel: only scalar constants can be inlined");
        return isFloat(v.type.dtype) ? K.f(values[0]!) : K.i(values[0]!);
      }
      case "transpose": {
        const perm = a["perm"] as number[];
        const c = this.coords(v, idx);
        const srcCoords = new Array<Expr>(perm.length);
        perm.forEach((pa, j) => (srcCoords[pa] = c[j]!));
        return this.at(src, flatten(srcCoords, g.dims(src)), false);
      }
      case "slice": {
        const axis = ((a["axis"] as number) + v.type.rank) % v.type.rank;
        const c = this.coords(v, idx);
        c[axis] = K.addI(c[axis]!, K.i(a["start"] as number));
        return this.at(src, flatten(c, g.dims(src)), false);
      }
      case "shift": {
        const axis = ((a["axis"] as number) + v.type.rank) % v.type.rank;
        const c = this.coords(v, idx);
        const from = g.kb.let("from", K.sub(c[axis]!, K.i(a["offset"] as number)));
        const len = g.dims(src)[axis]!;
        const inside = K.and(K.ge(from, K.i(0)), K.lt(from, len));
        const safe = K.min(K.max(from, K.i(0)), K.sub(len, K.i(1)));
        c[axis] = safe;
        const fill = isFloat(v.type.dtype) ? K.f(a["fill"] as number) : K.i(a["fill"] as number);
        return K.sel(inside, this.at(src, flatten(c, g.dims(src)), false), fill);
      }
      case "concat": {
        const axis = ((a["axis"] as number) + v.type.rank) % v.type.rank;
        const c = this.coords(v, idx);
        const out = g.kb.var("cat", isFloat(v.type.dtype) ? K.f(0) : K.i(0));
        let start: Expr = K.i(0);
        const parts = p.operands.map((o) => {
          const lo = start;
          start = K.addI(start, g.dims(o)[axis]!);
          return { o, lo, hi: start };
        });
        const chain = (j: number): void => {
          const { o, lo, hi } = parts[j]!;
          const cc = [...c];
          cc[axis] = K.sub(c[axis]!, lo);
          const load = () => out.set(this.at(o, flatten(cc, g.dims(o)), false));
          if (j === parts.length - 1) load();
          else g.kb.if(K.lt(c[axis]!, hi), load, () => chain(j + 1));
        };
        chain(0);
        return out.ref;
      }
      case "moe_permute": {
        const H = g.dims(v)[1]!;
        const row = K.divI(idx, H);
        const token = K.divI(this.at(p.operands[1]!, row, false), K.i(a["k"] as number));
        return this.at(src, K.addI(K.mulI(token, H), K.modI(idx, H)), false);
      }
      case "embedding": {
        const H = g.dims(v)[v.type.rank - 1]!;
        const id = this.at(p.operands[1]!, K.divI(idx, H), false);
        return this.at(src, K.addI(K.mulI(id, H), K.modI(idx, H)), false);
      }
      case "take_along": {
        const Kdim = g.dims(v)[1]!;
        const E = g.dims(src)[1]!;
        const col = this.at(p.operands[1]!, idx, here && sameShape(p.operands[1]!.type.shape, this.shape));
        return this.at(src, K.addI(K.mulI(K.divI(idx, Kdim), E), col), false);
      }
      case "iota":
        return K.addI(g.size(a["start"] as Dim), idx);
    }
    throw new LingcError(`pointwise kernel: no view for ${p.opName}`);
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

  dot(n: Expr, a: (k: Expr) => Expr, b: (k: Expr) => Expr): Expr {
    const acc = this.g.kb.var("acc", K.f(0));
    this.g.kb.for("k", K.i(0), n, (k) => acc.set(K.add(acc.ref, K.mul(a(k), b(k)))));
    return acc.ref;
  }

  compute(op: Op): Expr {
    const g = this.g;
    const v = op.results[0]!;
    const dt: DType = v.type.dtype;
    const operand = (j: number) => {
      const { idx, here } = this.broadcast(op.operands[j]!);
      return this.at(op.operands[j]!, idx, here);
    };
    if (UNARY[op.opName]) return g.fit(UNARY[op.opName]!(operand(0)), dt);
    if (BINARY[op.opName]) return g.fit(BINARY[op.opName]!(operand(0), operand(1)), dt);
    const [x, w] = op.operands as [Value, Value];
    switch (op.opName) {
      case "cast": {
        const e = operand(0);
        if (isFloat(dt)) return g.fit(K.toF(e), dt);
        if (dt === "bool") return K.sel(K.ne(e, e.t === "f32" ? K.f(0) : K.i(0)), K.i(1), K.i(0));
        return K.toI(e);
      }
      case "linear": {
        const [O, I] = g.dims(w) as [Expr, Expr];
        const row = g.kb.let("row", K.divI(this.flat, O));
        const o = g.kb.let("o", K.modI(this.flat, O));
        return g.fit(
          this.dot(
            I,
            (k) => this.at(x, K.addI(K.mulI(row, I), k), false),
            (k) => this.at(w, K.addI(K.mulI(o, I), k), false),
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
        // The expert whose row range holds r: the largest e with offsets[e] <= r (binary search).
        const lo = g.kb.var("lo", K.i(0));
        const hi = g.kb.var("hi", E);
        const steps = Math.ceil(Math.log2((w.type.shape[0]!.value ?? 2) + 1)) + 1;
        g.kb.for("s", K.i(0), K.i(steps), () => {
          const mid = g.kb.let("mid", K.div(K.add(lo.ref, hi.ref), K.i(2)));
          g.kb.if(K.lt(lo.ref, hi.ref), () => {
            g.kb.if(
              K.le(this.at(offsets, K.add(mid, K.i(1)), false), r),
              () => lo.set(K.add(mid, K.i(1))),
              () => hi.set(mid),
            );
          });
        });
        const e = lo.ref;
        return g.fit(
          this.dot(
            I,
            (k) => this.at(x, K.addI(K.mulI(r, I), k), false),
            (k) => this.at(w, K.addI(K.mulI(K.addI(K.mulI(e, O), o), I), k), false),
          ),
          dt,
        );
      }
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
      case "reduce_sum":
      case "reduce_mean":
      case "reduce_max": {
        const a = op.attrs as Record<string, unknown>;
        const rank = x.type.rank;
        const axes = new Set((a["axes"] as number[]).map((ax) => (ax + rank) % rank));
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
    const flat = g.kb.let("flat", g.kb.gid);
    this.flat = flat;
    g.kb.if(K.lt(flat, g.size(product([...this.shape]))), () => {
      for (const op of ops) {
        if (VIEW_OPS.has(op.opName)) continue;
        if (op.results.length !== 1) throw new LingcError(`pointwise kernel: ${op.opName} has several results`);
        this.local.set(op.results[0]!, g.kb.let("v", this.compute(op)));
      }
      for (const o of outputs) g.kb.store(g.buf(o), flat, this.at(o, flat, true));
    });
    return g.finish({ dim: total, per: g.kb.kernel.wg });
  }
}

export function pointwise(g: Gen, ops: Op[]): GeneratedKernel {
  return new Pointwise(g, ops).run(ops);
}

export function isPointwiseOp(name: string): boolean {
  return VIEW_OPS.has(name) || name in UNARY || name in BINARY || ["cast", "linear", "matmul", "grouped_linear", "moe_combine", "rope", "reduce_sum", "reduce_mean", "reduce_max"].includes(name);
}
