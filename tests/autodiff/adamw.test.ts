/**
 * The adamw pass (one optimizer step as IR ops) against the update written out here in double
 * precision from the gradients autodiff gives: torch's clip_grad_norm_ (times min(1, clip/(norm +
 * 1e-6))), torch.optim.AdamW's step (decoupled decay on tensors of rank 2 and more, bias-corrected
 * moments), over two steps so the moments carry; and the expert-bias update (LING2.md 2.5).
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { verifyModule } from "../../ir/verify";
import { Tensor } from "../../ir/tensor";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { rng } from "../support/fd";

const TEXT = `
module @m attributes {objective = "loss", frozen = "expert_bias", expert_bias = "layers.{}.expert_bias"} {
  func @m(%x: f32[2, 4], %counts: i64[4])
      weights(
        @g: f32[4],
        @w: f32[3, 4],
        @layers.0.expert_bias: f32[4]
      )
      -> (loss: f32[], tokens_per_expert.0: i64[4]) {
    %h = mul(%x, @g) : f32[2, 4]
    %b = add(%h, @layers.0.expert_bias) : f32[2, 4]
    %y = linear(%b, @w) : f32[2, 3]
    %s = mul(%y, %y) : f32[2, 3]
    %loss = reduce_sum(%s) {axes = [0, 1], keepdims = false} : f32[]
    return %loss, %counts
  }
}`;

describe("the adamw pass", () => {
  it("computes clipping, AdamW and the expert-bias update as torch and Megatron do, step after step", () => {
    const grads = parseModule(TEXT);
    runPasses(grads, parsePipeline("autodiff"));
    const step = parseModule(TEXT);
    const [b1, b2, eps, wd, clip, rate, lr] = [0.8, 0.9, 1e-8, 0.1, 0.5, 1e-2, 0.05];
    runPasses(step, parsePipeline(`autodiff,adamw{beta1=${b1},beta2=${b2},wd=${wd},clip=${clip},bias_rate=${rate}},dce`));
    verifyModule(step);
    const r = rng(5);
    const rand = (shape: number[]) => Tensor.from("f32", shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * r() - 1));
    const x = rand([2, 4]);
    const counts = Tensor.from("i64", [4], [5, 0, 2, 1]);
    let w: Record<string, Tensor> = { g: rand([4]), w: rand([3, 4]), "layers.0.expert_bias": Tensor.from("f32", [4], [0, 0.01, 0, -0.01]) };
    const moments: Record<string, number[]> = { "adam_m.g": [0, 0, 0, 0], "adam_v.g": [0, 0, 0, 0], "adam_m.w": Array(12).fill(0), "adam_v.w": Array(12).fill(0) };
    for (const t of [1, 2]) {
      const source = { get: (name: string) => w[name]! };
      const g = interpret(grads, { x, counts }, source);
      // The expected step, in double.
      const norm = Math.sqrt(["g", "w"].reduce((s, k) => s + [...g[`grad.${k}`]!.data].reduce((a, v) => a + v * v, 0), 0));
      const coef = Math.min(1, clip / (norm + 1e-6));
      const want: Record<string, number[]> = {};
      for (const k of ["g", "w"]) {
        const m1 = [...g[`grad.${k}`]!.data].map((d, i) => b1 * moments[`adam_m.${k}`]![i]! + (1 - b1) * d * coef);
        const v1 = [...g[`grad.${k}`]!.data].map((d, i) => b2 * moments[`adam_v.${k}`]![i]! + (1 - b2) * (d * coef) ** 2);
        const decay = w[k]!.shape.length >= 2 ? 1 - lr * wd : 1;
        want[`new.${k}`] = [...w[k]!.data].map((p, i) => p * decay - (lr / (1 - b1 ** t)) * (m1[i]! / (Math.sqrt(v1[i]!) / Math.sqrt(1 - b2 ** t) + eps)));
        want[`adam_m.${k}`] = m1;
        want[`adam_v.${k}`] = v1;
      }
      const load = [5, 0, 2, 1];
      const mean = load.reduce((a, b) => a + b, 0) / 4;
      const sign = load.map((l) => Math.sign(mean - l));
      const msign = sign.reduce((a, b) => a + b, 0) / 4;
      want["new.layers.0.expert_bias"] = [...w["layers.0.expert_bias"]!.data].map((b, i) => b + rate * (sign[i]! - msign));
      const out = interpret(step, { x, counts, lr: Tensor.from("f32", [1], [lr]), step: Tensor.from("f32", [1], [t]), ...Object.fromEntries(Object.entries(moments).map(([k, v]) => [k, Tensor.from("f32", [v.length === 4 ? 4 : 3, ...(v.length === 4 ? [] : [4])], v)])) }, source);
      expect(out["grad_norm"]!.data[0]).toBeCloseTo(norm, 5);
      expect(out["loss"]!.data[0]).toBeCloseTo(g["loss"]!.data[0]!, 6);
      for (const [k, v] of Object.entries(want)) {
        const got = [...out[k]!.data];
        for (let i = 0; i < v.length; i++) expect(Math.abs(got[i]! - v[i]!), `${k}[${i}] at step ${t}`).toBeLessThanOrEqual(2e-6 * Math.max(1, Math.abs(v[i]!)));
      }
      expect(coef, "the clip is active in this test").toBeLessThan(1);
      w = { g: out["new.g"]!, w: out["new.w"]!, "layers.0.expert_bias": out["new.layers.0.expert_bias"]! };
      for (const k of Object.keys(moments)) moments[k] = [...out[k]!.data];
    }
  });

  it("refuses a module without gradients, and a count without an expert_bias attribute", () => {
    const m = parseModule(TEXT);
    expect(() => runPasses(m, parsePipeline("adamw"))).toThrow(/returns no grad.<weight> results \(run autodiff first\)/);
    const n = parseModule(TEXT.replace(', expert_bias = "layers.{}.expert_bias"', ""));
    expect(() => runPasses(n, parsePipeline("autodiff,adamw"))).toThrow(/returns tokens_per_expert.0 but the module names no expert_bias weight/);
  });
});
