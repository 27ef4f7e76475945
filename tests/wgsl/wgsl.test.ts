/** The WGSL backend on the local WebGPU adapter (Mesa's software Vulkan in CI) against the golden numbers. */
import { beforeAll, describe, expect, it } from "vitest";
import { greedyGenerate } from "../../backends/generation";
import { loadCheckpoint, type TestModel } from "../support/load";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { resolveCheckpoint } from "../../models/resolve";
import { cli } from "../support/cli";
import { maxAbsDiff, tensorDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE } from "../support/paths";
import { goldenGreedy } from "../support/golden";

const golden = readAllSafetensors(GOLDEN_FILE);
const spec = resolveCheckpoint(GOLDEN_DIR);
const { prompts, tokens: wantIds, steps, stepLogits } = goldenGreedy(golden);

describe.each([
  ["every fusion on", [], false],
  ["every fusion off", ["all"], false],
  // What a GPU adapter's profile compiles (dense linear tiles, the gemv form for few rows, no
  // norm_matmul), forced on llvmpipe.
  ["every fusion on, the GPU kernel forms", [], true],
])("wgsl, %s", (_label, noFuse, gpuForms) => {
  let model: TestModel;
  let out: Record<string, Tensor>;
  beforeAll(async () => {
    if (gpuForms) {
      process.env["LINGC_WGSL_GPU_FORMS"] = "1";
      // One pair of loads a gemv step: llvmpipe compiles the unrolled form's shaders for minutes on
      // two cores (tests/wgsl/grouped-gemm.test.ts runs the unrolled form on its edge shapes; the
      // H200's golden run, bench/cuda/device.sh wgsl, the whole model with it).
      process.env["LINGC_WGSL_GEMV_UNROLL"] = "1";
    }
    try {
      model = await loadCheckpoint("wgsl", spec.checkpointDir, { noFuse: [...noFuse] });
    } finally {
      delete process.env["LINGC_WGSL_GPU_FORMS"];
      delete process.env["LINGC_WGSL_GEMV_UNROLL"];
    }
    out = await model.forward.run({ input_ids: golden["input_ids"]! });
  }, 180_000);

  it("logits and mtp_logits match the golden within 1e-4", () => {
    expect(tensorDiff(out["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
    expect(tensorDiff(out["mtp_logits"]!, golden["mtp_logits"]!)).toBeLessThanOrEqual(1e-4);
  });

  it("gives the same outputs after a run on other tokens (kept buffers are not cleared: every kernel writes its outputs whole)", async () => {
    const ids = golden["input_ids"]!;
    const V = golden["logits"]!.shape[2]!;
    const other = Tensor.from("i64", [...ids.shape], Array.from(ids.data as ArrayLike<number | bigint>, (v, k) => (Number(v) * 7 + k + 1) % V));
    const o = await model.forward.run({ input_ids: other });
    expect(tensorDiff(o["logits"]!, out["logits"]!)).toBeGreaterThan(0.01);
    const again = await model.forward.run({ input_ids: ids });
    expect(tensorDiff(again["logits"]!, out["logits"]!)).toBe(0);
    expect(tensorDiff(again["mtp_logits"]!, out["mtp_logits"]!)).toBe(0);
  });

  it("generate reproduces greedy_ids through the decode graph and its KV cache", async () => {
    const r = await greedyGenerate(model, prompts, steps);
    expect(r.tokens).toEqual(wantIds);
    for (let b = 0; b < prompts.length; b++) for (let s = 0; s < steps; s++) expect(maxAbsDiff(r.stepLogits[b]![s]!, stepLogits(b, s))).toBeLessThanOrEqual(1e-4);
  });
});

describe("wgsl, fused vs unfused", () => {
  it("give the same logits within 1e-5", async () => {
    const run = async (noFuse: string[]) => {
      const m = await loadCheckpoint("wgsl", spec.checkpointDir, { noFuse });
      const o = await m.forward.run({ input_ids: golden["input_ids"]! });
      m.close();
      return o;
    };
    const [a, b] = [await run([]), await run(["all"])];
    expect(tensorDiff(a["logits"]!, b["logits"]!)).toBeLessThanOrEqual(1e-5);
    expect(tensorDiff(a["mtp_logits"]!, b["mtp_logits"]!)).toBeLessThanOrEqual(1e-5);
  }, 120_000);
});

describe("WebGPU limits", () => {
  it("a weight over maxStorageBufferBindingSize is split over bindings and still gives the golden numbers", async () => {
    // The embedding, lm_head and the stacked expert weights (128 KiB as f32) exceed a 64 KiB limit and are split in two.
    const m = await loadCheckpoint("wgsl", spec.checkpointDir, { limits: ["maxStorageBufferBindingSize=65536"] });
    const o = await m.forward.run({ input_ids: golden["input_ids"]! });
    m.close();
    expect(tensorDiff(o["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
  }, 120_000);

  it("a weight that cannot be split within the buffer limit is refused with the limits named", async () => {
    const r = await cli("run", GOLDEN_DIR, "--backend", "wgsl", "--limit", "maxStorageBufferBindingSize=4096", "--input", GOLDEN_FILE, "--out", "/tmp/lingc-never.safetensors");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/weight model\.\S+ \(f32 \[[\d, ]+\], \d+ bytes as f32 on the GPU\) exceeds maxStorageBufferBindingSize = 4096 bytes, and one row of it \(\d+ bytes\) does too, so it cannot be split/);
  });

  it("a compile for WebGPU's baseline refuses Ling-1T's 5 GB embedding with the limits named", async () => {
    const r = await cli("compile", "ling-1t", "--target", "wgsl", "--out", "/tmp/lingc-1t-wgsl");
    expect(r.code).toBe(1);
    // (bf16, held two values to a word: 157184 x 8192 x 2 bytes.)
    expect(r.stderr).toMatch(/model\.word_embeddings\.weight \(2575302656 bytes as packed bf16\) is split into 20 bindings .* over maxStorageBuffersPerShaderStage = 8 \(profile webgpu-baseline\)/);
  });
});

describe("wgsl pipelines", () => {
  it("are compiled once per distinct kernel (shader and bindings) across a model's graphs, asynchronously", async () => {
    const { nodeDevice } = await import("../../backends/wgsl/node");
    const { loadModel } = await import("../../compiler/driver/load");
    const { openSource } = await import("../../compiler/driver/source");
    const { compileProgram } = await import("../../compiler/driver/compile");
    const { compileProgramWgsl } = await import("../../backends/wgsl/backend");
    const { pipelineKey } = await import("../../backends/wgsl/pipelines");
    // Every device shares the prototype: count the pipelines any of them creates.
    const probe = await nodeDevice();
    const proto = Object.getPrototypeOf(probe) as GPUDevice;
    const realAsync = proto.createComputePipelineAsync;
    const realSync = proto.createComputePipeline;
    let created = 0;
    let sync = 0;
    proto.createComputePipelineAsync = function (this: GPUDevice, d: GPUComputePipelineDescriptor) {
      created++;
      return realAsync.call(this, d);
    };
    proto.createComputePipeline = function (this: GPUDevice, d: GPUComputePipelineDescriptor) {
      sync++;
      return realSync.call(this, d);
    };
    try {
      const source = await openSource(GOLDEN_DIR);
      const { model } = await loadModel({ source, backend: "wgsl" });
      model.close();
      // What the two graphs hold: kernels, and distinct (shader, binding kinds) pairs among them.
      const { program } = await compileProgram({ source, target: "wgsl" });
      // (A kernel with a few-rows alternative, the tiled experts' pointwise form, compiles that one at
      // load and its tiles when a run first picks them.)
      const kernels = compileProgramWgsl(program).flatMap((a) =>
        a.kernels.flatMap((k) => {
          const l = k.few && !k.atLoad ? k.few.launch : k;
          return l.then ? [l, l.then] : [l];
        }),
      );
      const distinct = new Set(kernels.map(pipelineKey));
      expect(kernels.length).toBeGreaterThan(distinct.size * 1.5);
      expect(created).toBe(distinct.size);
      expect(sync).toBe(0);
    } finally {
      proto.createComputePipelineAsync = realAsync;
      proto.createComputePipeline = realSync;
      probe.destroy();
    }
  }, 120_000);
});
