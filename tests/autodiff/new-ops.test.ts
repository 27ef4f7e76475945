/**
 * The ops added for derivatives run the same on every backend: broadcast_to (reductions, slice),
 * scatter_add (the gathers), grouped_outer (the experts' weight gradient).
 */
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

  const compareAll = async (dir: string, lir: string, dims: string) => {
    const init = await cli("init", lir, "--weights", join(dir, "w.safetensors"), "--inputs", join(dir, "in.safetensors"), "--dims", dims);
    expect(init.code, init.stderr).toBe(0);
    for (const backend of ["onnx", "wgsl"]) {
      const r = await cli("compare", lir, "--backends", `interp,${backend}`, "--input", join(dir, "in.safetensors"), "--tolerance", "1e-5");
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
  };

  it("scatter_add and grouped_outer give the interpreter's values on onnx and wgsl", async () => {
    const dir = scratchDir("lingc-scatter-");
    // Indices and offsets from the data: ids from an iota (repeating rows), offsets fixed.
    const lir = join(dir, "s.lir");
    writeFileSync(
      lir,
      `module @s {
  func @s(%src: f32[6, 4], %a: f32[7, 3], %b: f32[7, 5]) -> (y: f32[4, 4], z: f32[3, 3, 5]) {
    %i = iota() {start = 0, length = 6, dtype = i32} : i32[6]
    %f = cast(%i) {to = f32} : f32[6]
    %h = constant() {values = [0.5], dtype = f32} : f32[]
    %q = mul(%f, %h) : f32[6]
    %qi = cast(%q) {to = i32} : i32[6]
    %r = reshape(%qi) {shape = [6, 1]} : i32[6, 1]
    %idx = broadcast_to(%r) {shape = [6, 4]} : i32[6, 4]
    %y = scatter_add(%src, %idx) {axis = 0, size = 4} : f32[4, 4]
    %off = constant() {values = [0, 3, 3, 7], dtype = i32} : i32[4]
    %z = grouped_outer(%a, %b, %off) : f32[3, 3, 5]
    return %y, %z
  }
}
`,
    );
    await compareAll(dir, lir, "");
  });
});
