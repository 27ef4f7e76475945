/**
 * Pointwise kernels compute runs of consecutive elements a thread (GenLimits.pointwiseRun) on a GPU
 * adapter's WebGPU profile, not on llvmpipe's, where they were slower. Their numbers: the GPU-forms
 * golden run in tests/wgsl/wgsl.test.ts (runs included).
 */
import { describe, expect, it } from "vitest";
import { compileWgsl } from "../../backends/wgsl/compile";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { GOLDEN_DIR } from "../support/paths";
import type { WebGpuProfile } from "../../ir/target";

describe("pointwise runs on WebGPU", () => {
  it("a GPU adapter's profile computes runs of four elements a pointwise thread; llvmpipe's keeps one (there they were slower)", async () => {
    const perOf = async (gpuForms: boolean) => {
      const { program } = await compileProgram({ source: await openSource(GOLDEN_DIR), target: "wgsl", graphs: ["forward"], settings: {} });
      const a = compileWgsl(program.graphs[0]!, { ...(program.profile as WebGpuProfile), gpuForms });
      return a.kernels.filter((k) => k.fusion === "epilogue" || k.fusion === "elementwise").map((k) => k.grid.per);
    };
    const gpu = await perOf(true);
    const cpu = await perOf(false);
    // 64 threads x 4 elements where the rows are a multiple of 4 and nothing loops (an epilogue of a
    // contraction keeps its own form).
    expect(gpu.filter((p) => p === 256).length).toBeGreaterThanOrEqual(3);
    expect(cpu).not.toContain(256);
    expect(cpu.length).toBe(gpu.length);
  });
});
