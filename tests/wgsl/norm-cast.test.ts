/**
 * The residual_norm kernel that also writes the normalized row as fp32 (the MoE router's input, a
 * cast joined to the norm's group) on WebGPU against the interpreter, in bf16: the same rounded
 * values in both outputs.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { tensorDiff } from "../support/compare";
import { scratchDir } from "../support/paths";

const LIR = `module @m {
  func @m(%h: bf16[T, 96], %d: bf16[T, 96])
      weights(
        @norm.weight: bf16[96]
      )
      -> (hidden: bf16[T, 96], f: f32[T, 96], n: bf16[T, 96], r: bf16[T, 96]) {
    %s = add(%h, %d) : bf16[T, 96]
    %n = rms_norm(%s, @norm.weight) {eps = 1e-6} : bf16[T, 96]
    %f = cast(%n) {to = f32} : f32[T, 96]
    %r = neg(%n) : bf16[T, 96]
    return %s, %f, %n, %r
  }
}
`;

describe("residual_norm with the fp32 copy of its row (WebGPU)", () => {
  it("writes the interpreter's numbers to both outputs", async () => {
    const dir = scratchDir("lingc-norm-cast-");
    writeFileSync(join(dir, "m.lir"), LIR);
    const vals = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k) * (1 + (i % 7)));
    writeSafetensors(join(dir, "w.safetensors"), { "norm.weight": Tensor.from("bf16", [96], vals(96, 1).map((v) => 0.5 + v / 16)) });
    writeSafetensors(join(dir, "in.safetensors"), { h: Tensor.from("bf16", [5, 96], vals(480, 2)), d: Tensor.from("bf16", [5, 96], vals(480, 3)) });
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `${backend}.safetensors`);
      const r = await cli("run", join(dir, "m.lir"), "--weights", join(dir, "w.safetensors"), "--backend", backend, "--input", join(dir, "in.safetensors"), "--out", file);
      expect(r.code, r.stderr).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    const { program } = await (await import("../../compiler/driver/compile")).compileProgram({ source: await (await import("../../compiler/driver/source")).openSource(join(dir, "m.lir")), target: "wgsl" });
    const kernels = (await import("../../backends/wgsl/backend")).compileProgramWgsl(program).flatMap((a) => a.kernels);
    // One norm kernel writes hidden, n and f; the neg is its own.
    expect(kernels.map((k) => k.fusion)).toEqual(["residual_norm", "neg"]);
    for (const name of ["hidden", "f", "n", "r"]) expect(tensorDiff(out["wgsl"]![name]!, out["interp"]![name]!), name).toBeLessThanOrEqual(1e-6);
    // The fp32 copy is the bf16 row exactly.
    expect(tensorDiff(out["wgsl"]!["f"]!, out["wgsl"]!["n"]!)).toBe(0);
  }, 60_000);
});
