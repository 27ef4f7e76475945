/**
 * The router kernel's gate logits (backends/kernels/gen/router.ts: lanes sharing an expert's dot
 * product, many independent loads per step) on WebGPU against the interpreter: 72 experts (128
 * threads in 16 groups of 8 lanes, so the fifth expert slot runs past the last expert) and hidden 192
 * (whole steps of 8 lanes x 12 loads; ling-tiny's golden tests take the masked tail of a hidden
 * size that is no multiple of a step). Top 2 only: each top-k round is seconds of llvmpipe's shader
 * compile, and the rounds are not what is tested.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { tensorDiff } from "../support/compare";
import { scratchDir } from "../support/paths";

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

const router = (T: number, E: number, H: number, groups: number, topkGroups: number, k: number) => `module @r {
  func @r(%x: f32[${T}, ${H}]) weights(@gate.weight: f32[${E}, ${H}], @gate.expert_bias: f32[${E}]) -> (idx: i32[${T}, ${k}], weights: f32[${T}, ${k}]) {
    %logits = linear(%x, @gate.weight) : f32[${T}, ${E}]
    %scores = sigmoid(%logits) : f32[${T}, ${E}]
    %sel = add(%scores, @gate.expert_bias) : f32[${T}, ${E}]
    %idx = group_topk(%sel) {k = ${k}, groups = ${groups}, topk_groups = ${topkGroups}, group_score_topk = 2} : i32[${T}, ${k}]
    %w = take_along(%scores, %idx) : f32[${T}, ${k}]
    %sum = reduce_sum(%w) {axes = [-1], keepdims = true} : f32[${T}, 1]
    %wn = div(%w, %sum) : f32[${T}, ${k}]
    return %idx, %wn
  }
}
`;

describe("the router kernel's gate logits on WebGPU", () => {
  const dir = scratchDir("lingc-wgsl-router-");
  it.each([
    ["72 experts in 4 groups, hidden 192", 72, 192, 4, 2, 2],
  ] as const)("%s: the interpreter's experts and weights", async (name, E, H, groups, topkGroups, k) => {
    const T = 3;
    const r = lcg(E + H);
    const tag = `r${E}x${H}`;
    writeFileSync(join(dir, `${tag}.lir`), router(T, E, H, groups, topkGroups, k));
    writeSafetensors(join(dir, `${tag}-w.safetensors`), {
      "gate.weight": Tensor.from("f32", [E, H], Array.from({ length: E * H }, () => r() * 0.2)),
      "gate.expert_bias": Tensor.from("f32", [E], Array.from({ length: E }, () => r() * 0.01)),
    });
    writeSafetensors(join(dir, `${tag}-in.safetensors`), { x: Tensor.from("f32", [T, H], Array.from({ length: T * H }, () => r() * 2)) });
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `${tag}-${backend}.safetensors`);
      const res = await cli("run", join(dir, `${tag}.lir`), "--weights", join(dir, `${tag}-w.safetensors`), "--backend", backend, "--input", join(dir, `${tag}-in.safetensors`), "--out", file);
      expect(res.code, `${name}: ${res.stderr}`).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    expect(Array.from(out["wgsl"]!["idx"]!.data)).toEqual(Array.from(out["interp"]!["idx"]!.data));
    // The logits summed in another order (fp32).
    expect(tensorDiff(out["wgsl"]!["weights"]!, out["interp"]!["weights"]!)).toBeLessThanOrEqual(1e-5);
  }, 120_000);
});
