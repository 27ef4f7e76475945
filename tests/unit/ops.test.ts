/** Op-table entries: reference implementations against direct computations, and shape rules. */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { Dim } from "../../ir/dim";
import { OpError } from "../../ir/errors";
import type { Attrs } from "../../ir/module";
import { getOp } from "../../ir/ops";
import { interpretOp } from "../../ir/ops/interpret-rules";
import { Tensor } from "../../ir/tensor";
import { tensor, TensorType } from "../../ir/types";
import { rng, normal } from "../support/random-checkpoint";
import { maxAbsDiff } from "../support/compare";

function run(name: string, ins: Tensor[], attrs: Attrs = {}): Tensor[] {
  const def = getOp(name)!;
  const types = def.infer(
    ins.map((t) => new TensorType(t.dtype, t.shape.map((d) => Dim.of(d)))),
    attrs,
  );
  return interpretOp(def, ins, attrs, { resultShapes: types.map((t) => t.shape.map((d) => d.value!)), resultDtypes: types.map((t) => t.dtype), dim: (d) => d.value! });
}

const rand = (r: () => number, dtype: Tensor["dtype"], shape: number[]) => Tensor.from(dtype, shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => normal(r)));

describe("MoE ops", () => {
  const r = rng(11);
  const T = 7;
  const H = 5;
  const I = 3;
  const E = 6;
  const K = 2;
  const x = rand(r, "f32", [T, H]);
  const wg = rand(r, "f32", [E, I, H]);
  const idx = Tensor.from("i32", [T, K], [0, 5, 5, 1, 2, 0, 5, 3, 1, 2, 0, 1, 4, 5]);
  const weights = rand(r, "f32", [T, K]);

  it("dispatch + permute + grouped_linear + combine equal each token's weighted sum over its chosen experts", () => {
    const [order, offsets, rowOf] = run("moe_dispatch", [idx], { num_experts: E });
    expect(Array.from(offsets!.data)).toEqual([0, 3, 6, 8, 9, 10, 14]);
    for (let r = 0; r < T * K; r++) expect(rowOf!.data[order!.data[r]!]).toBe(r);
    const rows = run("moe_permute", [x, order!], { k: K })[0]!;
    const y = run("grouped_linear", [rows, wg, offsets!])[0]!;
    // Combine needs [rows, H']: use the expert outputs (size I) directly as the hidden size.
    const out = run("moe_combine", [y, rowOf!, weights])[0]!;
    const want: number[] = [];
    for (let t = 0; t < T; t++) {
      for (let o = 0; o < I; o++) {
        let acc = 0;
        for (let j = 0; j < K; j++) {
          const e = idx.data[t * K + j]!;
          let s = 0;
          for (let c = 0; c < H; c++) s += x.data[t * H + c]! * wg.data[(e * I + o) * H + c]!;
          acc += weights.data[t * K + j]! * s;
        }
        want.push(acc);
      }
    }
    expect(maxAbsDiff(out.data, want)).toBeLessThan(1e-5);
  });

  it("grouped_linear touches only experts that received rows (cost counts them)", () => {
    const cost = getOp("grouped_linear")!.cost!(
      [
        { dtype: "bf16", shape: [8, 4096] },
        { dtype: "bf16", shape: [256, 1024, 4096] },
        { dtype: "i32", shape: [257] },
      ],
      [{ dtype: "bf16", shape: [8, 1024] }],
      {},
    );
    expect(cost.bytesRead).toBe(8 * 4096 * 2 + 8 * 1024 * 4096 * 2 + 257 * 4);
    expect(cost.flops).toBe(2 * 8 * 1024 * 4096);
  });

  it("group_topk: group score = sum of the best two, best groups kept, ties to the lower index", () => {
    // 2 tokens, 8 experts in 4 groups of 2; keep 2 groups; choose 3.
    const s = Tensor.from("f32", [2, 8], [0.9, 0.1, 0.5, 0.5, 0.8, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
    const out = run("group_topk", [s], { k: 3, groups: 4, topk_groups: 2, group_score_topk: 2 })[0]!;
    // token 0: group sums 1.0, 1.0, 1.1, 0.4 -> groups 2 and 0 (tie 0/1 goes to 0); best three: 0.9(e0), 0.8(e4), 0.3(e5)
    expect(Array.from(out.data.subarray(0, 3))).toEqual([0, 4, 5]);
    // token 1: all equal -> groups 0, 1 -> experts 0, 1, 2
    expect(Array.from(out.data.subarray(3, 6))).toEqual([0, 1, 2]);
  });

  it("group_topk refuses a k larger than the kept groups hold", () => {
    expect(() => getOp("group_topk")!.infer([tensor("f32", ["T", 8])], { k: 5, groups: 4, topk_groups: 2, group_score_topk: 2 })).toThrow(OpError);
  });
});

describe("attention", () => {
  it("GQA: query head h reads KV head h / (nh/nkv); causal masks are aligned to the end", () => {
    const r = rng(5);
    const [B, nh, nkv, S, T, d] = [1, 4, 2, 2, 3, 4];
    const q = rand(r, "f32", [B, nh, S, d]);
    const k = rand(r, "f32", [B, nkv, T, d]);
    const v = rand(r, "f32", [B, nkv, T, d]);
    const out = run("attention", [q, k, v], { scale: 0.5, causal: true })[0]!;
    const want: number[] = [];
    for (let h = 0; h < nh; h++) {
      const g = Math.floor(h / 2);
      for (let i = 0; i < S; i++) {
        const visible = T - S + i + 1;
        const sc = Array.from({ length: visible }, (_, j) => {
          let s = 0;
          for (let c = 0; c < d; c++) s += q.data[(h * S + i) * d + c]! * k.data[(g * T + j) * d + c]!;
          return s * 0.5;
        });
        const m = Math.max(...sc);
        const e = sc.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < d; c++) want.push(e.reduce((acc, p, j) => acc + (p / z) * v.data[(g * T + j) * d + c]!, 0));
      }
    }
    expect(maxAbsDiff(out.data, want)).toBeLessThan(1e-6);
  });
});

describe("rope", () => {
  it("rotates the first 2*half dims (rotate-half pairing) and passes the rest through", () => {
    const x = Tensor.from("f32", [1, 1, 6], [1, 2, 3, 4, 5, 6]);
    const c = Math.cos(0.3);
    const s = Math.sin(0.3);
    const cosT = Tensor.from("f32", [1, 2], [c, 1]);
    const sinT = Tensor.from("f32", [1, 2], [s, 0]);
    const out = run("rope", [x, cosT, sinT])[0]!;
    expect(maxAbsDiff(out.data, [1 * c - 3 * s, 2, 3 * c + 1 * s, 4, 5, 6])).toBeLessThan(1e-6);
  });
});

describe("rms_norm", () => {
  it("normalizes in fp32, rounds to the input dtype, then multiplies by the weight (HF numerics)", () => {
    const x = Tensor.from("bf16", [1, 4], [1, 2, 3, 4]);
    const w = Tensor.from("bf16", [4], [1, 1, 2, 0.5]);
    const out = run("rms_norm", [x, w], { eps: 1e-6 })[0]!;
    const inv = 1 / Math.sqrt(7.5 + 1e-6);
    expect(maxAbsDiff(out.data, [1 * inv, 2 * inv, 2 * 3 * inv, 0.5 * 4 * inv])).toBeLessThan(1e-2);
  });
});

describe("shape rules", () => {
  it("broadcast, reshape, slice and concat check their inputs", () => {
    const add = getOp("add")!;
    expect(add.infer([tensor("f32", ["B", 1, 4]), tensor("f32", [3, 1])], {})[0]!.toString()).toBe("f32[B, 3, 4]");
    expect(() => add.infer([tensor("f32", [2]), tensor("bf16", [2])], {})).toThrow(/same dtype/);
    expect(() => add.infer([tensor("f32", ["B"]), tensor("f32", ["S"])], {})).toThrow(/do not broadcast/);
    expect(() => getOp("reshape")!.infer([tensor("f32", ["B", "S", 4])], { shape: [Dim.sym("B"), Dim.of(8)] })).toThrow(/changes the element count/);
    expect(() => getOp("slice")!.infer([tensor("f32", [4])], { axis: 0, start: 2, end: 5 })).toThrow(/exceeds/);
    expect(getOp("concat")!.infer([tensor("f32", ["B", 2, "P", 4]), tensor("f32", ["B", 2, 1, 4])], { axis: 2 })[0]!.toString()).toBe("f32[B, 2, P+1, 4]");
  });
});
