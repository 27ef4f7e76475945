/**
 * moe_dispatch on WebGPU (backends/kernels/gen/dispatch.ts) against the interpreter: a thread per
 * expert (6 and 256 experts: at most the workgroup's threads) and the one-thread form (300 experts,
 * over the baseline's 256 threads); the order, offsets and rows of a stable counting sort, with an
 * expert that gets no pair and one that gets many.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { compileProgramWgsl } from "../../backends/wgsl/backend";
import { cli } from "../support/cli";
import { scratchDir } from "../support/paths";

const dispatch = (T: number, K: number, E: number) => `module @d {
  func @d(%ids: i32[${T}, ${K}]) -> (order: i32[${T * K}], offsets: i32[${E + 1}], rows: i32[${T * K}]) {
    %order, %offsets, %rows = moe_dispatch(%ids) {num_experts = ${E}} : i32[${T * K}], i32[${E + 1}], i32[${T * K}]
    return %order, %offsets, %rows
  }
}
`;

describe("moe_dispatch on WebGPU", () => {
  const dir = scratchDir("lingc-wgsl-dispatch-");
  it.each([
    ["a thread per expert (6 experts)", 6, 8],
    ["a thread per expert (256 experts)", 256, 256],
    ["one thread (300 experts)", 300, 1],
  ] as const)("%s: the interpreter's order, offsets and rows", async (_what, E, threads) => {
    const [T, K] = [37, 4];
    // Expert 1 in every token; expert 0 never; the rest spread (distinct experts within a token).
    const ids = Array.from({ length: T }, (_, t) => [1, 2 + ((t * 7) % (E - 4)), 2 + ((t * 7 + 1) % (E - 4)), E - 1 - (t % 2)]).flat();
    const lir = join(dir, `d${E}.lir`);
    writeFileSync(lir, dispatch(T, K, E));
    const { program } = await compileProgram({ source: await openSource(lir), target: "wgsl" });
    expect(compileProgramWgsl(program)[0]!.kernels.map((k) => k.workgroupSize)).toEqual([threads]);
    writeSafetensors(join(dir, `in${E}.safetensors`), { ids: Tensor.from("i32", [T, K], ids) });
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `${backend}${E}.safetensors`);
      const res = await cli("run", lir, "--backend", backend, "--input", join(dir, `in${E}.safetensors`), "--out", file);
      expect(res.code, res.stderr).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    for (const name of ["order", "offsets", "rows"]) expect(Array.from(out["wgsl"]![name]!.data), name).toEqual(Array.from(out["interp"]![name]!.data));
    expect(out["wgsl"]!["offsets"]!.data[1]).toBe(0);
    expect(out["wgsl"]!["offsets"]!.data[2]).toBe(T);
  }, 120_000);
});
