/**
 * `lingc compare`'s tolerance: an absolute 1e-4 for f32 and integer values; bf16 and f16 values are
 * held to 2 ulps of the reference value's largest element (an absolute 1e-4 is below one bf16 ulp
 * anywhere past 2^-6), unless --tolerance sets one absolute bound for all.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { writeSafetensors } from "../../backends/weights/safetensors";
import { diffValues } from "../../compiler/cli/commands/compare";
import { cli } from "../support/cli";
import { scratchDir } from "../support/paths";

describe("compare's tolerance by dtype", () => {
  it("counts bf16 and f16 differences in ulps of the largest element; f32 ones against 1e-4", () => {
    // Largest element 3 (bf16 ulp there 2^-6, f16 2^-9): a difference of 2^-5 is 2 ulps, 2^-4 is 4.
    const t = (dt: "bf16" | "f16" | "f32", v: number[]) => Tensor.from(dt, [v.length], v);
    const a = { b: t("bf16", [3, 0.5]), c: t("bf16", [3, 0.5]), h: t("f16", [3, 0.5]), f: t("f32", [3, 0.5]) };
    const b = { b: t("bf16", [3, 0.5 + 2 ** -5]), c: t("bf16", [3, 0.5 + 2 ** -4]), h: t("f16", [3, 0.5 + 2 ** -7]), f: t("f32", [3, 0.5 + 2 ** -14]) };
    const d = Object.fromEntries(diffValues(["b", "c", "h", "f"], a, b).map((x) => [x.name, x]));
    expect([d["b"]!.maxUlps, d["b"]!.over]).toEqual([2, false]);
    expect([d["c"]!.maxUlps, d["c"]!.over]).toEqual([4, true]);
    expect([d["h"]!.maxUlps, d["h"]!.over]).toEqual([4, true]);
    expect([d["f"]!.maxUlps, d["f"]!.over]).toEqual([undefined, false]);
    // An absolute tolerance applies to every value.
    expect(diffValues(["b"], a, b, 1e-4).map((x) => x.over)).toEqual([true]);
  });

  it("the CLI on a bf16 block: interp and onnx agree within 2 ulps (exit 0, a max ulps column); --tolerance is one absolute bound for all", async () => {
    const dir = scratchDir("lingc-compare-");
    writeFileSync(
      join(dir, "m.lir"),
      `module @m {
  func @m(%x: bf16[4, 64]) weights(@w: bf16[32, 64]) -> (y: bf16[4, 32]) {
    %h = linear(%x, @w) : bf16[4, 32]
    %y = silu(%h) : bf16[4, 32]
    return %y
  }
}
`,
    );
    const seq = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 0.77 + k))).map((v) => new Float32Array(new Uint32Array([new Uint32Array(Float32Array.of(v).buffer)[0]! & 0xffff0000]).buffer)[0]!);
    writeSafetensors(join(dir, "w.safetensors"), { w: Tensor.from("bf16", [32, 64], seq(32 * 64, 1)) });
    writeSafetensors(join(dir, "x.safetensors"), { x: Tensor.from("bf16", [4, 64], seq(4 * 64, 2)) });
    const args = ["compare", join(dir, "m.lir"), "--weights", join(dir, "w.safetensors"), "--input", join(dir, "x.safetensors"), "--backends", "interp,onnx"];
    const r = await cli(...args);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/max ulps/);
    expect(r.stdout).toContain("are within 0.0001 (bf16 and f16 values: 2 ulps)");
    // An absolute bound below one bf16 ulp of the result's values: the ulps rule no longer applies.
    const strict = await cli(...args, "--tolerance", "1e-9");
    expect(strict.stdout).not.toMatch(/bf16 and f16 values/);
  });
});
