/**
 * Neural-network ops with the numerics of the HF reference implementation: embedding lookup,
 * linear layers (HF weight layout [out, in]), batched matmul, RMSNorm, rotate-half RoPE on the
 * leading rotary dims, and causal grouped-query attention with an fp32 softmax.
 * Accumulations run in double precision and are rounded to the result dtype once; the elementwise
 * steps that HF performs in the activation dtype are rounded to it step by step.
 */
import { Dim, product } from "../dim";
import type { Value } from "../module";
import { isFloat, isInt } from "../dtype";
import { OpError } from "../errors";
import { roundTo } from "../numerics";
import { Tensor, allocData, numelOf } from "../tensor";
import { TensorType } from "../types";
import { broadcastShapes, broadcastIndex } from "./broadcast";
import { plainFloat, swapLast, unbroadcast } from "./vjp";
import { OUT_DTYPE_ATTR, productDtype, realValues } from "./scaled";
import {
  attr,
  bytesOf,
  defineOp,
  expectDims,
  expectDtype,
  expectMinRank,
  expectRank,
  expectSameDtype,
  numelOfShaped,
} from "./registry";

export const EMBEDDING = defineOp({
  name: "embedding",
  summary: "rows of a table picked by integer ids: out[..., :] = table[ids[...], :]",
  operands: ["table", "ids"],
  attrs: {},
  infer([table, ids]) {
    expectRank(table!, 2, "embedding table");
    expectDtype(ids!, isInt, "embedding ids must be integers");
    return [new TensorType(table!.dtype, [...ids!.shape, table!.shape[1]!])];
  },
  traits: ["view"],
  // out[..., h] = table[ids[...], h]
  index: (A, coords) => A.read(0, [A.toIndex(A.read(1, coords.slice(0, -1))), coords[coords.length - 1]!]),
  // d table: each position's cotangent row summed into the row its id picked.
  vjp(b, [table, ids], _outs, [ct]) {
    const n = product(ids!.type.shape);
    const H = table!.type.shape[1]!;
    const rows = b.op1("reshape", [ct!], { shape: [n, H] });
    const at = b.op1("broadcast_to", [b.op1("reshape", [ids!], { shape: [n, Dim.of(1)] })], { shape: [n, H] });
    return [b.op1("scatter_add", [rows, at], { axis: 0, size: table!.type.shape[0]! }), undefined];
  },
  cost(ins, outs) {
    return { flops: 0, bytesRead: bytesOf(outs[0]!) + bytesOf(ins[1]!), bytesWritten: bytesOf(outs[0]!) };
  },
});

export const LINEAR = defineOp({
  name: "linear",
  summary: "x @ w^T with w in HF layout [out_features, in_features], no bias",
  operands: ["x", "w"],
  attrs: { out: OUT_DTYPE_ATTR },
  traits: ["contraction", "gemm", "scaled"],
  infer([x, w], attrs) {
    expectMinRank(x!, 1, "linear input");
    expectRank(w!, 2, "linear weight");
    const dt = productDtype("linear", x!, w!, attrs);
    expectDims(x!.shape[x!.rank - 1]!, w!.shape[1]!, `linear: input features ${x} do not match weight ${w}`);
    return [new TensorType(dt, [...x!.shape.slice(0, -1), w!.shape[0]!])];
  },
  interpret([x, w], _a, ctx) {
    const [O, I] = w!.shape as [number, number];
    const rows = x!.numel / I;
    const dt = ctx.resultDtypes[0]!;
    const out = allocData(dt, rows * O);
    const xd = realValues(x!);
    const wd = realValues(w!);
    for (let r = 0; r < rows; r++) {
      const xo = r * I;
      for (let o = 0; o < O; o++) {
        const wo = o * I;
        let s = 0;
        for (let k = 0; k < I; k++) s += xd[xo + k]! * wd[wo + k]!;
        out[r * O + o] = s;
      }
    }
    return [new Tensor(dt, ctx.resultShapes[0]!, out)];
  },
  cost(ins, outs) {
    const I = ins[1]!.shape[1]!;
    return { flops: 2 * numelOfShaped(outs[0]!) * I, bytesRead: bytesOf(ins[0]!) + bytesOf(ins[1]!), bytesWritten: bytesOf(outs[0]!) };
  },
  vjp(b, [x, w], _outs, [ct]) {
    plainFloat("linear", [x!, w!]);
    const g = ct!.type.dtype === x!.type.dtype ? ct! : b.op1("cast", [ct!], { to: x!.type.dtype });
    // dx = ct . w; dw = ct^T . x over every leading row.
    const dx = b.op1("linear", [g, b.op1("transpose", [w!], { perm: [1, 0] })]);
    const rows = product(x!.type.shape.slice(0, -1));
    const flat = (v: Value, cols: Dim) => (v.type.rank === 2 ? v : b.op1("reshape", [v], { shape: [rows, cols] }));
    const ct2 = flat(g, w!.type.shape[0]!);
    const x2 = flat(x!, w!.type.shape[1]!);
    const dw = b.op1("matmul", [b.op1("transpose", [ct2], { perm: [1, 0] }), x2]);
    return [dx, dw];
  },
});

export const MATMUL = defineOp({
  name: "matmul",
  summary: "batched a @ b over the last two axes, batch axes broadcast",
  operands: ["a", "b"],
  attrs: {},
  traits: ["contraction", "gemm"],
  infer([a, b]) {
    expectMinRank(a!, 2, "matmul lhs");
    expectMinRank(b!, 2, "matmul rhs");
    expectSameDtype(a!, b!, "matmul operands");
    expectDtype(a!, isFloat, "matmul needs float tensors");
    expectDims(a!.shape[a!.rank - 1]!, b!.shape[b!.rank - 2]!, `matmul: contraction dims of ${a} and ${b} differ`);
    const batch = broadcastShapes([a!.shape.slice(0, -2), b!.shape.slice(0, -2)], "matmul batch axes");
    return [new TensorType(a!.dtype, [...batch, a!.shape[a!.rank - 2]!, b!.shape[b!.rank - 1]!])];
  },
  vjp(bld, [a, b], _outs, [ct]) {
    // da = ct . b^T, db = a^T . ct, each summed back over batch axes it was broadcast along.
    return [unbroadcast(bld, bld.op1("matmul", [ct!, swapLast(bld, b!)]), a!), unbroadcast(bld, bld.op1("matmul", [swapLast(bld, a!), ct!]), b!)];
  },
  interpret([a, b], _x, ctx) {
    const outShape = ctx.resultShapes[0]!;
    const M = a!.shape[a!.rank - 2]!;
    const K = a!.shape[a!.rank - 1]!;
    const N = b!.shape[b!.rank - 1]!;
    const batchShape = outShape.slice(0, -2);
    const ia = broadcastIndex(a!.shape.slice(0, -2), batchShape);
    const ib = broadcastIndex(b!.shape.slice(0, -2), batchShape);
    const nb = numelOf(batchShape);
    const out = allocData(a!.dtype, nb * M * N);
    for (let bi = 0; bi < nb; bi++) {
      const ao = (ia ? ia[bi]! : bi) * M * K;
      const bo = (ib ? ib[bi]! : bi) * K * N;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += a!.data[ao + m * K + k]! * b!.data[bo + k * N + n]!;
          out[(bi * M + m) * N + n] = s;
        }
      }
    }
    return [new Tensor(a!.dtype, outShape, out)];
  },
  cost(ins, outs) {
    const K = ins[0]!.shape[ins[0]!.shape.length - 1]!;
    return { flops: 2 * numelOfShaped(outs[0]!) * K, bytesRead: bytesOf(ins[0]!) + bytesOf(ins[1]!), bytesWritten: bytesOf(outs[0]!) };
  },
});

export const RMS_NORM = defineOp({
  name: "rms_norm",
  summary: "w * cast(x * rsqrt(mean(x^2, -1) + eps), x.dtype), the statistics in fp32 (HF numerics)",
  operands: ["x", "w"],
  attrs: { eps: { kind: "float", doc: "added to the mean square" } },
  infer([x, w]) {
    expectMinRank(x!, 1, "rms_norm input");
    expectRank(w!, 1, "rms_norm weight");
    expectSameDtype(x!, w!, "rms_norm input and weight");
    expectDtype(x!, isFloat, "rms_norm needs float tensors");
    expectDims(x!.shape[x!.rank - 1]!, w!.shape[0]!, `rms_norm: weight ${w} does not match the last axis of ${x}`);
    return [new TensorType(x!.dtype, x!.shape)];
  },
  interpret([x, w], attrs) {
    const eps = attr.float(attrs, "eps");
    const D = w!.shape[0]!;
    const rows = x!.numel / Math.max(D, 1);
    const dt = x!.dtype;
    const out = allocData(dt, x!.numel);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let i = 0; i < D; i++) ss += x!.data[r * D + i]! ** 2;
      // The statistics in f32 as HF computes them: the mean square, plus eps, and its rsqrt each an f32.
      const inv = Math.fround(1 / Math.sqrt(Math.fround(Math.fround(ss / D) + eps)));
      for (let i = 0; i < D; i++) out[r * D + i] = w!.data[i]! * roundTo(x!.data[r * D + i]! * inv, dt);
    }
    return [new Tensor(dt, x!.shape, out)];
  },
  vjp(b, [x, w], _outs, [ct], attrs) {
    plainFloat("rms_norm", [x!, w!]);
    // n = x r with r = rsqrt(mean(x^2) + eps): dw = sum over rows of ct n; with dn = ct w,
    // dx = r (dn - n mean(dn n)) (the row statistics kept as [..., 1] and broadcast).
    const last = x!.type.rank - 1;
    const op = (name: string, ...vs: Value[]) => b.op1(name, vs);
    const meanLast = (v: Value) => b.op1("reduce_mean", [v], { axes: [last], keepdims: true });
    const eps = b.op1("constant", [], { values: [attr.float(attrs, "eps")], dtype: x!.type.dtype });
    const r = op("rsqrt", op("add", meanLast(op("mul", x!, x!)), eps));
    const n = op("mul", x!, r);
    const dn = op("mul", ct!, w!);
    const dx = op("mul", r, op("sub", dn, op("mul", n, meanLast(op("mul", dn, n)))));
    const lead = Array.from({ length: last }, (_, i) => i);
    const dw = lead.length ? b.op1("reduce_sum", [op("mul", ct!, n)], { axes: lead, keepdims: false }) : op("mul", ct!, n);
    return [dx, dw];
  },
  cost(ins, outs) {
    return { flops: 4 * numelOfShaped(outs[0]!), bytesRead: bytesOf(ins[0]!) + bytesOf(ins[1]!), bytesWritten: bytesOf(outs[0]!) };
  },
});

export const ROPE = defineOp({
  name: "rope",
  summary:
    "rotate-half rotary embedding on the first 2*half dims of the last axis (the rest pass through); x is [..., S, d], cos and sin are [S, half]",
  operands: ["x", "cos", "sin"],
  attrs: {},
  infer([x, cos, sin]) {
    expectMinRank(x!, 2, "rope input");
    expectRank(cos!, 2, "rope cos");
    expectSameDtype(x!, cos!, "rope input and cos");
    expectSameDtype(x!, sin!, "rope input and sin");
    expectDtype(x!, isFloat, "rope needs float tensors");
    if (!cos!.equals(sin!)) throw new OpError(`rope cos ${cos} and sin ${sin} differ`);
    expectDims(x!.shape[x!.rank - 2]!, cos!.shape[0]!, `rope: positions of ${x} and cos ${cos} differ`);
    const half = cos!.shape[1]!;
    const d = x!.shape[x!.rank - 1]!;
    if (half.isConst() && d.isConst() && 2 * half.value! > d.value!) throw new OpError(`rope: rotary dims 2*${half} exceed head dim ${d}`);
    if (!half.isConst()) throw new OpError(`rope: the rotary width ${half} must be a number`);
    return [new TensorType(x!.dtype, x!.shape)];
  },
  // A rotation by -angle undoes it, and a rotation is orthogonal: dx = rope(ct, cos, -sin). The
  // positions' cos and sin are not trained.
  vjp: (b, [, cos, sin], _outs, [ct]) => [b.op1("rope", [ct!, cos!, b.op1("neg", [sin!])]), undefined, undefined],
  // The rotation as slices and arithmetic on the activation dtype, each step rounded as interpret
  // rounds it: x1*cos - x2*sin and x2*cos + x1*sin on the rotary half-pairs, the rest passed through.
  decompose(b, [x, cos, sin]) {
    const d = x!.type.shape[x!.type.rank - 1]!.value!;
    const half = cos!.type.shape[1]!.value!;
    const part = (start: number, end: number) => b.op1("slice", [x!], { axis: -1, start, end });
    const x1 = part(0, half);
    const x2 = part(half, 2 * half);
    const mul = (p: Value, q: Value) => b.op1("mul", [p, q]);
    const o1 = b.op1("sub", [mul(x1, cos!), mul(x2, sin!)]);
    const o2 = b.op1("add", [mul(x2, cos!), mul(x1, sin!)]);
    return [b.op1("concat", 2 * half < d ? [o1, o2, part(2 * half, d)] : [o1, o2], { axis: -1 })];
  },
  interpret([x, cos, sin]) {
    const dt = x!.dtype;
    const r = (v: number) => roundTo(v, dt);
    const d = x!.shape[x!.rank - 1]!;
    const S = x!.shape[x!.rank - 2]!;
    const half = cos!.shape[1]!;
    const rows = x!.numel / Math.max(d, 1);
    const out = allocData(dt, x!.numel);
    out.set(x!.data);
    for (let row = 0; row < rows; row++) {
      const s = row % S;
      const o = row * d;
      for (let j = 0; j < half; j++) {
        const c = cos!.data[s * half + j]!;
        const sn = sin!.data[s * half + j]!;
        const a = x!.data[o + j]!;
        const b = x!.data[o + j + half]!;
        out[o + j] = r(r(a * c) + r(-b * sn));
        out[o + j + half] = r(r(b * c) + r(a * sn));
      }
    }
    return [new Tensor(dt, x!.shape, out)];
  },
  cost(ins, outs) {
    return { flops: 3 * numelOfShaped(outs[0]!), bytesRead: bytesOf(ins[0]!) + bytesOf(ins[1]!) + bytesOf(ins[2]!), bytesWritten: bytesOf(outs[0]!) };
  },
});

export const ATTENTION = defineOp({
  name: "attention",
  summary:
    "softmax(q k^T * scale) v per head with grouped KV heads (query head h uses KV head h / (nh/nkv)); causal masks are aligned to the end (query i sits at position T-S+i); softmax in fp32",
  operands: ["q", "k", "v"],
  attrs: {
    scale: { kind: "float", doc: "multiplies q k^T (usually 1/sqrt(head_dim))" },
    causal: { kind: "bool", doc: "mask keys after each query's position" },
  },
  infer([q, k, v]) {
    for (const [t, n] of [
      [q, "q"],
      [k, "k"],
      [v, "v"],
    ] as const) {
      expectRank(t!, 4, `attention ${n} ([B, heads, seq, dim])`);
      expectSameDtype(q!, t!, "attention q, k and v");
    }
    expectDtype(q!, isFloat, "attention needs float tensors");
    const [B, nh, S, d] = q!.shape as [Dim, Dim, Dim, Dim];
    const [Bk, nkv, T, dk] = k!.shape as [Dim, Dim, Dim, Dim];
    const [Bv, nkv2, T2, dv] = v!.shape as [Dim, Dim, Dim, Dim];
    expectDims(B, Bk, "attention: q and k batch differ");
    expectDims(B, Bv, "attention: q and v batch differ");
    expectDims(d, dk, "attention: q and k head dims differ");
    expectDims(nkv, nkv2, "attention: k and v head counts differ");
    expectDims(T, T2, "attention: k and v lengths differ");
    if (!nh.isConst() || !nkv.isConst()) throw new OpError("attention head counts must be numbers");
    if (nkv.value === 0 || nh.value! % nkv.value! !== 0) throw new OpError(`attention: ${nh} query heads cannot share ${nkv} KV heads evenly`);
    return [new TensorType(q!.dtype, [B, nh, S, dv])];
  },
  interpret([q, k, v], attrs) {
    const scale = attr.float(attrs, "scale");
    const causal = attr.bool(attrs, "causal");
    const dt = q!.dtype;
    const r = (x: number) => roundTo(x, dt);
    const [B, nh, S, d] = q!.shape as [number, number, number, number];
    const [, nkv, T] = k!.shape as [number, number, number];
    const dv = v!.shape[3]!;
    if (causal && S > T) throw new OpError(`causal attention with ${S} queries needs at least as many keys, got ${T}`);
    const rep = nh / nkv;
    const out = allocData(dt, B * nh * S * dv);
    const scores = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < nh; h++) {
        const kh = Math.floor(h / rep);
        const qBase = (b * nh + h) * S * d;
        const kBase = (b * nkv + kh) * T * d;
        const vBase = (b * nkv + kh) * T * dv;
        for (let i = 0; i < S; i++) {
          const visible = causal ? T - S + i + 1 : T;
          let max = -Infinity;
          for (let j = 0; j < visible; j++) {
            let s = 0;
            for (let c = 0; c < d; c++) s += q!.data[qBase + i * d + c]! * k!.data[kBase + j * d + c]!;
            const sc = r(r(s) * scale);
            scores[j] = sc;
            if (sc > max) max = sc;
          }
          let sum = 0;
          for (let j = 0; j < visible; j++) {
            const e = Math.exp(scores[j]! - max);
            scores[j] = e;
            sum += e;
          }
          for (let j = 0; j < visible; j++) scores[j] = r(Math.fround(scores[j]! / sum));
          const o = ((b * nh + h) * S + i) * dv;
          for (let c = 0; c < dv; c++) {
            let acc = 0;
            for (let j = 0; j < visible; j++) acc += scores[j]! * v!.data[vBase + j * dv + c]!;
            out[o + c] = acc;
          }
        }
      }
    }
    return [new Tensor(dt, [B, nh, S, dv], out)];
  },
  cost(ins, outs) {
    const [B, nh, S, d] = ins[0]!.shape as [number, number, number, number];
    const T = ins[1]!.shape[2]!;
    const dv = ins[2]!.shape[3]!;
    return {
      flops: 2 * B * nh * S * T * (d + dv),
      bytesRead: bytesOf(ins[0]!) + bytesOf(ins[1]!) + bytesOf(ins[2]!),
      bytesWritten: bytesOf(outs[0]!),
    };
  },
  vjp(b, [q, k, v], _outs, [ct], attrs) {
    // The probabilities P come from the op itself with an identity as the values (so the mask and
    // the grouped heads are exactly the forward's); then dV = P^T dO, dP = dO V^T,
    // dS = P (dP - rowsum(dP P)), dQ = scale dS K, dK = scale dS^T Q, with the grouped heads' dK
    // and dV summed over the query heads that share them.
    plainFloat("attention", [q!, k!, v!]);
    const [B, nh] = q!.type.shape as [Dim, Dim];
    const [, nkv, T] = k!.type.shape as [Dim, Dim, Dim];
    const rep = nh.value! / nkv.value!;
    const dt = q!.type.dtype;
    const op = (name: string, ...vs: Value[]) => b.op1(name, vs);
    const scale = b.op1("constant", [], { values: [attr.float(attrs, "scale")], dtype: dt });
    // I [T, T] = scatter of ones at (t, t), broadcast to [B, nkv, T, T].
    const ids = b.op1("iota", [], { start: Dim.of(0), length: T, dtype: "i32" });
    const col = b.op1("reshape", [ids], { shape: [T, Dim.of(1)] });
    const ones = b.op1("broadcast_to", [b.op1("constant", [], { values: [1], dtype: dt })], { shape: [T, Dim.of(1)] });
    const eye = b.op1("scatter_add", [ones, col], { axis: 1, size: T });
    const p = b.op1("attention", [q!, k!, b.op1("broadcast_to", [eye], { shape: [B, nkv, T, T] })], { ...attrs });
    // The KV heads repeated for their query heads, and the sum back over them.
    const repeat = (x: Value) => {
      const s = x.type.shape;
      const five = b.op1("reshape", [x], { shape: [s[0]!, s[1]!, Dim.of(1), s[2]!, s[3]!] });
      return b.op1("reshape", [b.op1("broadcast_to", [five], { shape: [s[0]!, s[1]!, Dim.of(rep), s[2]!, s[3]!] })], { shape: [s[0]!, nh, s[2]!, s[3]!] });
    };
    const fold = (x: Value) => {
      const s = x.type.shape;
      return rep === 1 ? x : b.op1("reduce_sum", [b.op1("reshape", [x], { shape: [s[0]!, nkv, Dim.of(rep), s[2]!, s[3]!] })], { axes: [2] });
    };
    const kr = rep === 1 ? k! : repeat(k!);
    const vr = rep === 1 ? v! : repeat(v!);
    const dv = fold(op("matmul", swapLast(b, p), ct!));
    const dp = op("matmul", ct!, swapLast(b, vr));
    const ds = op("mul", p, op("sub", dp, b.op1("reduce_sum", [op("mul", dp, p)], { axes: [-1], keepdims: true })));
    const dq = op("mul", op("matmul", ds, kr), scale);
    const dk = fold(op("mul", op("matmul", swapLast(b, ds), q!), scale));
    return [dq, dk, dv];
  },
});

