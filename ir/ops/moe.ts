/**
 * Mixture-of-experts as first-class ops (DESIGN principle 8). Routing selects experts with
 * `group_topk`; `moe_dispatch` sorts the (token, slot) pairs by expert (and records where each pair
 * landed); `moe_permute` gathers the tokens in that order; `grouped_linear` runs each expert's
 * contiguous rows through that expert's weights only (no dense all-experts compute); `moe_combine`
 * reads each token's rows back and sums them weighted by its routing weights, in fp32 as HF's
 * moe_infer does.
 */
import { Dim } from "../dim";
import { isFloat, isInt } from "../dtype";
import { OpError } from "../errors";
import { roundTo } from "../numerics";
import { Tensor, allocData } from "../tensor";
import { scalesFollowRows, TensorType } from "../types";
import { attr, bytesOf, defineOp, expectDims, expectDtype, expectRank, numelOfShaped } from "./registry";
import { OUT_DTYPE_ATTR, productDtype, realValues } from "./scaled";
import { plainFloat } from "./vjp";

/** Indices of the `k` largest values of v[lo..hi), largest first; ties go to the lower index (as torch.topk on CPU). */
function topIndices(v: ArrayLike<number>, lo: number, hi: number, k: number): number[] {
  const idx: number[] = [];
  for (let i = lo; i < hi; i++) idx.push(i);
  idx.sort((a, b) => {
    const va = v[a]!;
    const vb = v[b]!;
    if (va === vb || (Number.isNaN(va) && Number.isNaN(vb))) return a - b;
    if (Number.isNaN(va)) return -1;
    if (Number.isNaN(vb)) return 1;
    return vb - va;
  });
  return idx.slice(0, k);
}

export const GROUP_TOPK = defineOp({
  name: "group_topk",
  summary:
    "group-limited top-k: experts form `groups` contiguous groups, a group scores the sum of its `group_score_topk` best values, the best `topk_groups` groups stay and the top `k` experts among them are chosen (best first)",
  operands: ["scores"],
  attrs: {
    k: { kind: "int", doc: "experts per token" },
    groups: { kind: "int", doc: "number of expert groups (1: plain top-k)" },
    topk_groups: { kind: "int", doc: "groups kept per token" },
    group_score_topk: { kind: "int", doc: "values summed for a group's score (HF: 2)" },
  },
  infer([s], attrs) {
    expectRank(s!, 2, "group_topk scores ([tokens, experts])");
    expectDtype(s!, isFloat, "group_topk scores must be floats");
    const E = s!.shape[1]!;
    if (!E.isConst()) throw new OpError(`group_topk: the expert count ${E} must be a number`);
    const e = E.value!;
    const k = attr.int(attrs, "k");
    const g = attr.int(attrs, "groups");
    const tg = attr.int(attrs, "topk_groups");
    const gs = attr.int(attrs, "group_score_topk");
    if (!(g >= 1 && e % g === 0)) throw new OpError(`group_topk: ${e} experts do not split into ${g} groups`);
    if (!(tg >= 1 && tg <= g)) throw new OpError(`group_topk: topk_groups ${tg} must be in 1..${g}`);
    if (!(gs >= 1 && gs <= e / g)) throw new OpError(`group_topk: group_score_topk ${gs} must be in 1..${e / g}`);
    if (!(k >= 1 && k <= (e / g) * tg)) throw new OpError(`group_topk: k ${k} must be in 1..${(e / g) * tg} (experts in the kept groups)`);
    return [new TensorType("i32", [s!.shape[0]!, Dim.of(k)])];
  },
  interpret([s], attrs) {
    const [T, E] = s!.shape as [number, number];
    const k = attr.int(attrs, "k");
    const g = attr.int(attrs, "groups");
    const tg = attr.int(attrs, "topk_groups");
    const gs = attr.int(attrs, "group_score_topk");
    const per = E / g;
    const out = allocData("i32", T * k);
    const masked = new Float64Array(E);
    for (let t = 0; t < T; t++) {
      const row = s!.data.subarray(t * E, (t + 1) * E);
      masked.fill(-Infinity);
      if (g === 1) masked.set(row);
      else {
        const groupScore = new Float64Array(g);
        for (let gi = 0; gi < g; gi++) {
          // fp32 sum of the group's best values, as torch sums an fp32 topk result.
          let sum = 0;
          for (const i of topIndices(row, gi * per, (gi + 1) * per, gs)) sum = Math.fround(sum + row[i]!);
          groupScore[gi] = sum;
        }
        for (const gi of topIndices(groupScore, 0, g, tg)) for (let i = gi * per; i < (gi + 1) * per; i++) masked[i] = row[i]!;
      }
      topIndices(masked, 0, E, k).forEach((i, j) => (out[t * k + j] = i));
    }
    return [new Tensor("i32", [T, k], out)];
  },
  // A choice (integer results): not differentiated; no gradient flows to the scores through it.
  vjp: (_b, ins) => ins.map(() => undefined),
});

export const TAKE_ALONG = defineOp({
  name: "take_along",
  summary: "out[t, j] = x[t, idx[t, j]] (gathers each row's selected columns)",
  operands: ["x", "idx"],
  attrs: {},
  infer([x, idx]) {
    expectRank(x!, 2, "take_along x");
    expectRank(idx!, 2, "take_along idx");
    expectDtype(idx!, isInt, "take_along idx must be integers");
    expectDims(x!.shape[0]!, idx!.shape[0]!, "take_along: x and idx rows differ");
    return [new TensorType(x!.dtype, idx!.shape)];
  },
  traits: ["view"],
  index: (A, [t, j]) => A.read(0, [t!, A.toIndex(A.read(1, [t!, j!]))]),
  // The selected columns' cotangents back into their columns (the choice itself is not differentiated).
  vjp: (b, [x, idx], _outs, [ct]) => [b.op1("scatter_add", [ct!, idx!], { axis: 1, size: x!.type.shape[1]! }), undefined],
});

export const MOE_DISPATCH = defineOp({
  name: "moe_dispatch",
  summary:
    "sorts the T*K (token, slot) pairs by chosen expert: `order` lists pair indices t*K+j grouped by expert (stable), `offsets[e]..offsets[e+1]` is expert e's range, and `row_of[p]` is the row where pair p landed (the inverse of order)",
  operands: ["idx"],
  attrs: { num_experts: { kind: "int", doc: "number of experts E" } },
  infer([idx], attrs) {
    expectRank(idx!, 2, "moe_dispatch idx ([tokens, k])");
    expectDtype(idx!, isInt, "moe_dispatch idx must be integers");
    const E = attr.int(attrs, "num_experts");
    if (!(E >= 1)) throw new OpError(`moe_dispatch: num_experts must be positive, got ${E}`);
    return [new TensorType("i32", [idx!.numel()]), new TensorType("i32", [Dim.of(E + 1)]), new TensorType("i32", [idx!.numel()])];
  },
  interpret([idx], attrs) {
    const E = attr.int(attrs, "num_experts");
    const n = idx!.numel;
    const counts = new Array<number>(E + 1).fill(0);
    for (let i = 0; i < n; i++) {
      const e = idx!.data[i]!;
      if (!(e >= 0 && e < E)) throw new OpError(`moe_dispatch: expert id ${e} is outside 0..${E - 1}`);
      counts[e + 1]!++;
    }
    const offsets = allocData("i32", E + 1);
    for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e]! + counts[e + 1]!;
    const fill = Array.from(offsets.subarray(0, E));
    const order = allocData("i32", n);
    const rowOf = allocData("i32", n);
    for (let i = 0; i < n; i++) {
      const r = fill[idx!.data[i]!]!++;
      order[r] = i;
      rowOf[i] = r;
    }
    return [new Tensor("i32", [n], order), new Tensor("i32", [E + 1], offsets), new Tensor("i32", [n], rowOf)];
  },
  // A choice (integer results): not differentiated; no gradient flows to the scores through it.
  vjp: (_b, ins) => ins.map(() => undefined),
});

export const MOE_PERMUTE = defineOp({
  name: "moe_permute",
  summary: "rows of x in dispatch order: out[r] = x[order[r] / k] (an fp8 x scaled per row or in 1 x G groups: its scale rows with it)",
  operands: ["x", "order"],
  attrs: { k: { kind: "int", doc: "experts per token" } },
  infer([x, order], attrs) {
    expectRank(x!, 2, "moe_permute x ([tokens, hidden])");
    expectRank(order!, 1, "moe_permute order");
    expectDtype(order!, isInt, "moe_permute order must be integers");
    const k = attr.int(attrs, "k");
    if (!(k >= 1)) throw new OpError(`moe_permute: k must be positive, got ${k}`);
    expectDims(order!.shape[0]!, x!.shape[0]!.mul(k), "moe_permute: order length must be tokens*k");
    // A row's scales move with it where no scale spans two rows.
    const g = x!.quant?.granularity;
    if (g && !scalesFollowRows(g)) throw new OpError(`moe_permute of ${x}: its scales span rows that the gather moves apart (only per-row or 1 x G scales move with their rows)`);
    return [new TensorType(x!.dtype, [order!.shape[0]!, x!.shape[1]!], x!.quant)];
  },
  traits: ["view", "scaled"],
  index: (A, [r, h], c) => A.read(0, [A.div(A.toIndex(A.read(1, [r!])), A.int(c.attrs["k"] as number)), h!]),
  // Gathered rows, and for a scaled x their scale rows (the layout's grid has one row per row).
  interpret([x, order], attrs) {
    const k = attr.int(attrs, "k");
    const [R, H] = [order!.shape[0]!, x!.shape[1]!];
    const rows = (data: ArrayLike<number>, width: number, into: Float32Array | Float64Array) => {
      for (let r = 0; r < R; r++) {
        const t = Math.floor(order!.data[r]! / k);
        if (!(t >= 0 && t < x!.shape[0]!)) throw new OpError(`moe_permute: order[${r}] = ${order!.data[r]} names token ${t} of ${x!.shape[0]}`);
        for (let j = 0; j < width; j++) into[r * width + j] = data[t * width + j]!;
      }
      return into;
    };
    const data = rows(x!.data, H, allocData(x!.dtype, R * H));
    if (!x!.scaled) return [new Tensor(x!.dtype, [R, H], data)];
    const sw = x!.scaled.scales.length / x!.shape[0]!;
    return [new Tensor(x!.dtype, [R, H], data, { layout: x!.scaled.layout, scales: rows(x!.scaled.scales, sw, new Float32Array(R * sw)) as Float32Array })];
  },
  vjp(b, [x, order], _outs, [ct], attrs) {
    // Row r came from token order[r] / k: the rows' cotangents summed back into their tokens (the
    // division in f32, exact below 2^24 rows).
    const k = attr.int(attrs, "k");
    const f = b.op1("cast", [order!], { to: "f32" });
    const token = b.op1("cast", [b.op1("div", [f, b.op1("constant", [], { values: [k], dtype: "f32" })])], { to: order!.type.dtype });
    const R = order!.type.shape[0]!;
    const at = b.op1("broadcast_to", [b.op1("reshape", [token], { shape: [R, Dim.of(1)] })], { shape: [...ct!.type.shape] });
    return [b.op1("scatter_add", [ct!, at], { axis: 0, size: x!.type.shape[0]! }), undefined];
  },
});

/** Rows offsets[e]..offsets[e+1] of expert e, checked to lie in 0..N. */
function expertRows(opName: string, offsets: Tensor, e: number, N: number): [number, number] {
  const lo = offsets.data[e]!;
  const hi = offsets.data[e + 1]!;
  if (!(lo >= 0 && hi >= lo && hi <= N)) throw new OpError(`${opName}: offsets ${lo}..${hi} of expert ${e} are outside 0..${N}`);
  return [lo, hi];
}

export const GROUPED_LINEAR = defineOp({
  name: "grouped_linear",
  summary: "per-expert linear: rows offsets[e]..offsets[e+1] of x times w[e]^T (w is [E, out, in]); experts with no rows cost nothing",
  operands: ["x", "w", "offsets"],
  attrs: { out: OUT_DTYPE_ATTR },
  traits: ["contraction", "gemm", "scaled"],
  infer([x, w, offsets], attrs) {
    expectRank(x!, 2, "grouped_linear x ([rows, in])");
    expectRank(w!, 3, "grouped_linear w ([experts, out, in])");
    expectRank(offsets!, 1, "grouped_linear offsets");
    expectDtype(offsets!, isInt, "grouped_linear offsets must be integers");
    const dt = productDtype("grouped_linear", x!, w!, attrs);
    expectDims(x!.shape[1]!, w!.shape[2]!, `grouped_linear: input features of ${x} do not match ${w}`);
    expectDims(offsets!.shape[0]!, w!.shape[0]!.add(1), "grouped_linear: offsets must have experts+1 entries");
    return [new TensorType(dt, [x!.shape[0]!, w!.shape[1]!])];
  },
  interpret([x, w, offsets], _a, ctx) {
    const [E, O, I] = w!.shape as [number, number, number];
    const N = x!.shape[0]!;
    const dt = ctx.resultDtypes[0]!;
    const out = allocData(dt, N * O);
    const xd = realValues(x!);
    const wd = realValues(w!);
    for (let e = 0; e < E; e++) {
      const [lo, hi] = expertRows("grouped_linear", offsets!, e, N);
      const wBase = e * O * I;
      for (let r = lo; r < hi; r++) {
        for (let o = 0; o < O; o++) {
          let s = 0;
          for (let c = 0; c < I; c++) s += xd[r * I + c]! * wd[wBase + o * I + c]!;
          out[r * O + o] = s;
        }
      }
    }
    return [new Tensor(dt, [N, O], out)];
  },
  cost(ins, outs) {
    const [E, O, I] = ins[1]!.shape as [number, number, number];
    const N = ins[0]!.shape[0]!;
    // Only experts that receive rows are read: at most min(E, N) of them.
    const touched = Math.min(E, N);
    const wBytes = (bytesOf(ins[1]!) / Math.max(E, 1)) * touched;
    return { flops: 2 * N * O * I, bytesRead: bytesOf(ins[0]!) + wBytes + bytesOf(ins[2]!), bytesWritten: bytesOf(outs[0]!) };
  },
  vjp(b, [x, w, offsets], _outs, [ct]) {
    plainFloat("grouped_linear", [x!, w!]);
    const g = ct!.type.dtype === x!.type.dtype ? ct! : b.op1("cast", [ct!], { to: x!.type.dtype });
    // dx: each row's cotangent through its expert's transposed weight; dw[e] = sum over e's rows of ct^T x.
    const dx = b.op1("grouped_linear", [g, b.op1("transpose", [w!], { perm: [0, 2, 1] }), offsets!]);
    return [dx, b.op1("grouped_outer", [g, x!, offsets!]), undefined];
  },
});

export const GROUPED_OUTER = defineOp({
  name: "grouped_outer",
  summary: "per-expert sum of outer products: out[e] = sum over rows offsets[e]..offsets[e+1] of a[r]^T b[r] ([E, A, B]; grouped_linear's weight gradient)",
  operands: ["a", "b", "offsets"],
  attrs: {},
  traits: ["contraction"],
  infer([a, b, offsets]) {
    expectRank(a!, 2, "grouped_outer a ([rows, A])");
    expectRank(b!, 2, "grouped_outer b ([rows, B])");
    expectRank(offsets!, 1, "grouped_outer offsets");
    expectDtype(offsets!, isInt, "grouped_outer offsets must be integers");
    expectDtype(a!, isFloat, "grouped_outer needs float tensors");
    if (a!.dtype !== b!.dtype) throw new OpError(`grouped_outer operands must have the same dtype: ${a} vs ${b}`);
    expectDims(a!.shape[0]!, b!.shape[0]!, "grouped_outer: a and b rows differ");
    const E = offsets!.shape[0]!.value;
    if (E === undefined) throw new OpError(`grouped_outer: offsets ${offsets} must have a number of entries`);
    return [new TensorType(a!.dtype, [Dim.of(E - 1), a!.shape[1]!, b!.shape[1]!])];
  },
  interpret([a, b, offsets], _attrs, ctx) {
    const [E, A, B] = ctx.resultShapes[0]! as [number, number, number];
    const N = a!.shape[0]!;
    const out = new Float64Array(E * A * B);
    for (let e = 0; e < E; e++) {
      const [lo, hi] = expertRows("grouped_outer", offsets!, e, N);
      for (let r = lo; r < hi; r++) for (let i = 0; i < A; i++) for (let j = 0; j < B; j++) out[(e * A + i) * B + j] += a!.data[r * A + i]! * b!.data[r * B + j]!;
    }
    const data = allocData(a!.dtype, out.length);
    data.set(out);
    return [new Tensor(a!.dtype, [E, A, B], data)];
  },
  // out[e] = sum_r a[r]^T b[r]: d a[r] = ct[e] b[r] (grouped_linear of b by ct), d b[r] = a[r] ct[e]
  // (grouped_linear of a by ct transposed); the offsets are a choice.
  vjp: (b, [a, bb, offsets], _outs, [ct]) => [
    b.op1("grouped_linear", [bb!, ct!, offsets!]),
    b.op1("grouped_linear", [a!, b.op1("transpose", [ct!], { perm: [0, 2, 1] }), offsets!]),
    undefined,
  ],
});

export const MOE_COMBINE = defineOp({
  name: "moe_combine",
  summary: "out[t] = sum_j weights[t, j] * y[row_of[t*K+j]], accumulated in fp32 in slot order, then cast to y's dtype",
  operands: ["y", "row_of", "weights"],
  attrs: {},
  traits: ["contraction"],
  infer([y, rowOf, weights]) {
    expectRank(y!, 2, "moe_combine y ([rows, hidden])");
    expectRank(rowOf!, 1, "moe_combine row_of");
    expectRank(weights!, 2, "moe_combine weights ([tokens, k])");
    expectDtype(rowOf!, isInt, "moe_combine row_of must be integers");
    expectDtype(y!, isFloat, "moe_combine y must be floats");
    if (weights!.dtype !== "f32") throw new OpError(`moe_combine weights must be f32 (the routing weights), got ${weights}`);
    expectDims(rowOf!.shape[0]!, y!.shape[0]!, "moe_combine: row_of and y rows differ");
    expectDims(weights!.numel(), y!.shape[0]!, "moe_combine: weights must have one entry per row of y");
    return [new TensorType(y!.dtype, [weights!.shape[0]!, y!.shape[1]!])];
  },
  interpret([y, rowOf, weights]) {
    const [T, K] = weights!.shape as [number, number];
    const H = y!.shape[1]!;
    const n = T * K;
    for (let p = 0; p < n; p++) {
      const r = rowOf!.data[p]!;
      if (!(r >= 0 && r < n)) throw new OpError(`moe_combine: row_of entry ${r} is outside 0..${n - 1}`);
    }
    const out = allocData(y!.dtype, T * H);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        let acc = 0;
        for (let j = 0; j < K; j++) {
          const w = weights!.data[t * K + j]!;
          acc = Math.fround(acc + Math.fround(w * y!.data[rowOf!.data[t * K + j]! * H + h]!));
        }
        out[t * H + h] = roundTo(acc, y!.dtype);
      }
    }
    return [new Tensor(y!.dtype, [T, H], out)];
  },
  cost(ins, outs) {
    return { flops: 2 * numelOfShaped(ins[0]!), bytesRead: bytesOf(ins[0]!) + bytesOf(ins[1]!) + bytesOf(ins[2]!), bytesWritten: bytesOf(outs[0]!) };
  },
  vjp(b, [y, rowOf, weights], _outs, [ct]) {
    // Slot p = t*K + j reads row row_of[p] of y with weight weights[t, j]:
    // d weights[t, j] = ct[t] . y[row_of[p]]; d y[row_of[p]] += weights[t, j] ct[t].
    const [T, K] = weights!.type.shape as [Dim, Dim];
    const n = y!.type.shape[0]!;
    const H = y!.type.shape[1]!;
    const k = K.value;
    if (k === undefined) throw new OpError(`moe_combine: its derivative needs the number of experts per token as a number, got ${weights!.type}`);
    const g = ct!.type.dtype === "f32" ? ct! : b.op1("cast", [ct!], { to: "f32" });
    const yf = y!.type.dtype === "f32" ? y! : b.op1("cast", [y!], { to: "f32" });
    const slots = b.op1("iota", [], { start: Dim.of(0), length: n, dtype: rowOf!.type.dtype });
    const ctRep = b.op1("moe_permute", [g, slots], { k }); // [n, H]: ct[p / K]
    const picked = b.op1("moe_permute", [yf, rowOf!], { k: 1 }); // [n, H]: y[row_of[p]]
    const dw = b.op1("reshape", [b.op1("reduce_sum", [b.op1("mul", [picked, ctRep])], { axes: [1] })], { shape: [T, K] });
    const weighted = b.op1("mul", [ctRep, b.op1("reshape", [weights!], { shape: [n, Dim.of(1)] })]);
    const at = b.op1("broadcast_to", [b.op1("reshape", [rowOf!], { shape: [n, Dim.of(1)] })], { shape: [n, H] });
    let dy = b.op1("scatter_add", [weighted, at], { axis: 0, size: n });
    if (dy.type.dtype !== y!.type.dtype) dy = b.op1("cast", [dy], { to: y!.type.dtype });
    return [dy, undefined, dw];
  },
});
