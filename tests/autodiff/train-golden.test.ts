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
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir } from "../support/paths";

describe("the train graph of ling-tiny", () => {
  for (const backend of ["interp", "onnx"]) it(`reproduces upstream's losses and gradients on ${backend}`, async () => {
    const out = join(scratchDir("lingc-train-"), "train.safetensors");
    const r = await cli("run", GOLDEN_DIR, "--graph", "train", "--backend", backend, "--input", GOLDEN_FILE, "--out", out);
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
  }, 60_000);
});

describe("what the backward recomputes never changes the numbers", () => {
  it("saving every forward value instead of recomputing it gives bitwise the same losses, gradients and counts (interp)", async () => {
    const dir = scratchDir("lingc-train-save-");
    const run = async (extra: string[], name: string) => {
      const out = join(dir, name);
      const r = await cli("run", GOLDEN_DIR, "--graph", "train", ...extra, "--input", GOLDEN_FILE, "--out", out);
      expect(r.code, r.stderr).toBe(0);
      return readAllSafetensors(out);
    };
    const recomputed = await run([], "recompute.safetensors");
    const saved = await run(["--passes", "autodiff{save=all},cse,dce"], "save.safetensors");
    expect(Object.keys(saved).sort()).toEqual(Object.keys(recomputed).sort());
    for (const [k, t] of Object.entries(recomputed)) expect(Buffer.from(saved[k]!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
  }, 60_000);
});
