/** broadcast_to (added for the reductions' and slice's derivatives) runs the same on every backend. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../support/cli";
import { scratchDir } from "../support/paths";

describe("broadcast_to", () => {
  it("gives the interpreter's values on onnx and wgsl, with a symbolic leading axis", async () => {
    const dir = scratchDir("lingc-bcast-");
    const lir = join(dir, "b.lir");
    writeFileSync(
      lir,
      `module @b {
  func @b(%a: f32[3, 1], %x: f32[T, 3, 4]) -> (y: f32[T, 3, 4]) {
    %e = broadcast_to(%a) {shape = [T, 3, 4]} : f32[T, 3, 4]
    %y = mul(%e, %x) : f32[T, 3, 4]
    return %y
  }
}
`,
    );
    const init = await cli("init", lir, "--weights", join(dir, "w.safetensors"), "--inputs", join(dir, "in.safetensors"), "--dims", "T=2");
    expect(init.code, init.stderr).toBe(0);
    for (const backend of ["onnx", "wgsl"]) {
      const r = await cli("compare", lir, "--backends", `interp,${backend}`, "--input", join(dir, "in.safetensors"), "--tolerance", "0");
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/within 0/);
    }
  });
});
