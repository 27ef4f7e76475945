/**
 * Golden numerics on the CUDA backend (fp32 ling-tiny): logits and mtp_logits within 1e-4 and
 * greedy_ids through the decode graph; and the bf16 kernels the fp32 golden model does not reach
 * (fused prefill attention, decode attention, grouped expert GEMM) against reference kernels, by
 * the runner's own `selftest`, which also checks a bf16 and an FP8 build's tile programs against the
 * op table's direct forms. Runs only where an NVIDIA GPU exists (the H200 machine, see
 * bench/cuda/device.sh for the same checks as run there); CI has none, so it says it skipped.
 */
import { spawnSync } from "node:child_process";
import { beforeAll, describe, expect, it } from "vitest";
import { buildProgram, hasCudaGpu } from "../../backends/cuda/backend";
import { greedyGenerate } from "../../backends/generation";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { loadCheckpoint, type TestModel } from "../support/load";
import type { Tensor } from "../../ir/tensor";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { resolveCheckpoint } from "../../models/resolve";
import { tensorDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE, SMALL_DIR, SMALL_FP8_DIR } from "../support/paths";
import { goldenGreedy } from "../support/golden";

const gpu = hasCudaGpu();
if (!gpu) console.warn("tests/golden/cuda.test.ts: skipped, no NVIDIA GPU on this machine (the CUDA execution checks run on the H200: bench/cuda/device.sh correct)");

describe.skipIf(!gpu)("CUDA backend vs upstream golden (ling-tiny, fp32)", () => {
  const golden = readAllSafetensors(GOLDEN_FILE);
  let model: TestModel;
  let out: Record<string, Tensor>;

  beforeAll(async () => {
    const spec = resolveCheckpoint(GOLDEN_DIR);
    model = await loadCheckpoint("cuda", spec.checkpointDir);
    out = await model.forward.run({ input_ids: golden["input_ids"]! });
  }, 600_000);

  it("logits and mtp_logits within 1e-4", () => {
    expect(tensorDiff(out["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
    expect(tensorDiff(out["mtp_logits"]!, golden["mtp_logits"]!)).toBeLessThanOrEqual(1e-4);
  });

  it("greedy generation through the decode graph reproduces greedy_ids", async () => {
    const { prompts, tokens, steps } = goldenGreedy(golden);
    const r = await greedyGenerate(model, prompts, steps);
    expect(r.tokens).toEqual(tokens);
  });

  it("the bf16 attention and expert kernels match their references (lingc_model selftest)", async () => {
    const exe = (await buildProgram((await compileProgram({ source: await openSource(GOLDEN_DIR), target: "cuda" })).program)).executables[0]!;
    const r = spawnSync(exe, ["selftest"], { encoding: "utf8" });
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("selftest"));
    expect(lines.length).toBeGreaterThanOrEqual(13);
    expect(lines.filter((l) => !l.endsWith("PASS"))).toEqual([]);
    expect(r.status).toBe(0);
  }, 600_000);
});

// The tile programs of bf16 and FP8 builds against the op table's direct forms of the same steps,
// on the model's own shapes with random weights (selftest's model part: prefill 1 x 333, decode at
// batch 1, 5 and 40). Each template the build uses must have run and passed.
describe.skipIf(!gpu).each([
  [SMALL_DIR, ["flash_wgmma", "decode_attention", "decode_attention_wide", "grouped_gemm", "grouped_gemv", "grouped_gemv_rows", "linear_gemv"]],
  [SMALL_FP8_DIR, ["attention_split", "grouped_gemm_fp8", "grouped_gemv_fp8", "gemv_fp8", "linear_gemv"]],
])("CUDA tile programs of %s (lingc_model selftest)", (dir, templates) => {
  it("each checked against its reference form, within tolerance", async () => {
    const exe = (await buildProgram((await compileProgram({ source: await openSource(dir), target: "cuda" })).program)).executables[0]!;
    const r = spawnSync(exe, ["selftest"], { encoding: "utf8" });
    const steps = r.stdout.split("\n").filter((l) => l.startsWith("selftest step "));
    for (const t of templates) expect(steps.some((l) => l.includes(`: ${t} against `)), t).toBe(true);
    expect(steps.filter((l) => !l.endsWith("PASS"))).toEqual([]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 600_000);
});
