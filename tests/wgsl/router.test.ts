/**
 * The router kernel on WebGPU (backends/kernels/gen/router.ts: gate logits with lanes sharing an
 * expert's dot product and many independent loads per step; top-k by rank) against the interpreter:
 * 72 experts (128 threads in 16 groups of 8 lanes, so the fifth expert slot runs past the last
 * expert) and hidden 192 (whole steps of 8 lanes x 12 loads; ling-tiny's golden tests take the
 * masked tail of a hidden size that is no multiple of a step), every expert tied with another.
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
    ["72 experts in 4 groups, hidden 192, top 6", 72, 192, 4, 2, 6],
  ] as const)("%s: the interpreter's experts and weights", async (name, E, H, groups, topkGroups, k) => {
    const T = 3;
    const r = lcg(E + H);
    const tag = `r${E}x${H}`;
    writeFileSync(join(dir, `${tag}.lir`), router(T, E, H, groups, topkGroups, k));
    // Experts 2j and 2j + 1 alike (rows and bias): every score ties with its pair's, and the lower
    // index must come first, as the interpreter (torch.topk) has it.
    const gate = Array.from({ length: E * H }, () => r() * 0.2);
    const bias = Array.from({ length: E }, () => r() * 0.01);
    for (let e = 1; e < E; e += 2) {
      gate.copyWithin(e * H, (e - 1) * H, e * H);
      bias[e] = bias[e - 1]!;
    }
    writeSafetensors(join(dir, `${tag}-w.safetensors`), {
      "gate.weight": Tensor.from("f32", [E, H], gate),
      "gate.expert_bias": Tensor.from("f32", [E], bias),
    });
    writeSafetensors(join(dir, `${tag}-in.safetensors`), { x: Tensor.from("f32", [T, H], Array.from({ length: T * H }, () => r() * 2)) });
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `${tag}-${backend}.safetensors`);
      const res = await cli("run", join(dir, `${tag}.lir`), "--weights", join(dir, `${tag}-w.safetensors`), "--backend", backend, "--input", join(dir, `${tag}-in.safetensors`), "--out", file);
      expect(res.code, `${name}: ${res.stderr}`).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    const ids = Array.from(out["interp"]!["idx"]!.data);
    // The ties are real: each token's picks come in pairs, lower index first.
    for (let j = 0; j < T * k; j += 2) expect(ids[j + 1]! - ids[j]!).toBe(1);
    expect(Array.from(out["wgsl"]!["idx"]!.data)).toEqual(ids);
    // The logits summed in another order (fp32).
    expect(tensorDiff(out["wgsl"]!["weights"]!, out["interp"]!["weights"]!)).toBeLessThanOrEqual(1e-5);
  }, 120_000);
});
