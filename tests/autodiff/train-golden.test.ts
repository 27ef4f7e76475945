/**
 * ling-tiny's training step against upstream's (tests/data/golden/ling-tiny/train_golden.safetensors:
 * torch autograd, fp32): `lingc run --graph train` on the interpreter and on ONNX Runtime gives loss, loss_main and
 * loss_mtp within 1e-5 relative and every trained tensor's gradient within 1e-4 of its max abs value
 * (under the checkpoint's names: the stacked experts' written per expert), tokens_per_expert
 * identical; expert_bias (a buffer) has no gradient.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { hasCudaGpu } from "../../backends/cuda/backend";
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir } from "../support/paths";

describe("the train graph of ling-tiny", () => {
  const cases: [string, string[]][] = [
    ["interp", []],
    ["onnx", []],
    // A recompute plan, then the ONNX target's own pipeline: the layer functions return what the plan keeps.
    ["onnx", ["--passes", "recompute{budget=50%,at=B=2;S=12},cse,dce,decompose{ops=rope}"]],
    // On an NVIDIA GPU only (the H200: bench/cuda/device.sh train runs the same); CI skips them.
    ["cuda", []],
    ["cuda", ["--passes", "cse,dce,recompute{budget=50%,at=B=2;S=12},fusion{profile=cuda-sm90a},select{profile=cuda-sm90a}"]],
  ];
  const gpu = hasCudaGpu();
  for (const [backend, pipeline] of cases) it.skipIf(backend === "cuda" && !gpu)(`reproduces upstream's losses and gradients on ${backend}${pipeline.length ? ` (${pipeline[1]})` : ""}`, async () => {
    const out = join(scratchDir("lingc-train-"), "train.safetensors");
    const r = await cli("run", GOLDEN_DIR, "--graph", "train", "--backend", backend, ...pipeline, "--input", GOLDEN_FILE, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    const got = readAllSafetensors(out);
    const want = readAllSafetensors(join(GOLDEN_DIR, "train_golden.safetensors"));
    for (const k of ["loss", "loss_main", "loss_mtp"]) {
      expect(got[k]!.shape).toEqual([1]);
      expect(Math.abs(got[k]!.data[0]! / want[k]!.data[0]! - 1), k).toBeLessThanOrEqual(1e-5);
    }
    const grads = Object.keys(want).filter((k) => k.startsWith("grad."));
    expect(grads.length).toBe(190);
    for (const name of grads) {
      const w = want[name]!;
      expect(got[name], name).toBeDefined();
      expect(got[name]!.shape, name).toEqual(w.shape);
      const data = got[name]!.data;
      let most = 0;
      let diff = 0;
      for (let i = 0; i < w.numel; i++) {
        most = Math.max(most, Math.abs(w.data[i]!));
        diff = Math.max(diff, Math.abs(data[i]! - w.data[i]!));
      }
      expect(diff, `${name}: max error ${diff} against max |g| ${most}`).toBeLessThanOrEqual(1e-4 * most);
    }
    // Tokens per expert of each MoE layer (the MTP layer's included): identical.
    const counts = Object.keys(want).filter((k) => k.startsWith("tokens_per_expert."));
    expect(counts.length).toBe(3);
    for (const k of counts) {
      expect(got[k]?.dtype, k).toBe("i64");
      expect([...got[k]!.data], k).toEqual([...want[k]!.data]);
    }
    // Nothing else was given a gradient (expert_bias is a buffer).
    const extra = Object.keys(got).filter((k) => k.startsWith("grad.") && !grads.includes(k));
    expect(extra).toEqual([]);
  }, 600_000);
});

describe("what the backward recomputes never changes the numbers", () => {
  it("saving forward values instead of recomputing them (all of them, or a recompute plan at any budget) gives bitwise the same losses, gradients and counts (interp)", async () => {
    const dir = scratchDir("lingc-train-save-");
    const run = async (extra: string[], name: string) => {
      const out = join(dir, name);
      const r = await cli("run", GOLDEN_DIR, "--graph", "train", ...extra, "--input", GOLDEN_FILE, "--out", out);
      expect(r.code, r.stderr).toBe(0);
      return readAllSafetensors(out);
    };
    const recomputed = await run([], "recompute.safetensors");
    const variants = {
      "autodiff{save=all}": ["--passes", "autodiff{save=all},cse,dce"],
      "recompute{budget=none}": ["--passes", "recompute{budget=none},cse,dce"],
      "recompute{budget=50%}": ["--passes", "recompute{budget=50%,at=B=2;S=12},cse,dce"],
      "recompute{budget=25%}": ["--passes", "cse,recompute{budget=25%,at=B=2;S=12},dce"],
      "recompute{budget=1KiB}": ["--passes", "recompute{budget=1KiB},cse,dce"],
    };
    for (const [name, args] of Object.entries(variants)) {
      const got = await run(args, `${name.replace(/\W+/g, "-")}.safetensors`);
      expect(Object.keys(got).sort(), name).toEqual(Object.keys(recomputed).sort());
      for (const [k, t] of Object.entries(recomputed)) expect(Buffer.from(got[k]!.data.buffer).equals(Buffer.from(t.data.buffer)), `${name}: ${k}`).toBe(true);
    }
  }, 120_000);
});
