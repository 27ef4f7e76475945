/**
 * `lingc plan` as a user runs it on Ling-1T: the min-max plan's bottleneck is no worse than the
 * uniform layout's or LING2.md's suggestion's, every stage holds at least one unit and the stages
 * cover the 84 schedule units in order; training with VPP 2 stays above its lower bound; a memory
 * limit no layout meets is an error that says so.
 */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { cli } from "../support/cli";
import { ROOT } from "../support/paths";

interface Layout {
  stages: { units: string[]; seconds: number; weightBytes: number }[];
  max: number;
}

describe("lingc plan", () => {
  it("Ling-1T in 16 stages (prefill 1x4096): balanced better than the uniform layout", async () => {
    const r = await cli("plan", "ling-1t", "--stages", "16", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { units: { name: string }[]; plan: Layout; uniform: Layout; suggested: Layout };
    expect(j.units.length).toBe(84);
    expect(j.plan.stages.length).toBe(16);
    expect(j.plan.stages.flatMap((s) => s.units)).toEqual(j.units.map((u) => u.name));
    expect(j.plan.stages.every((s) => s.units.length > 0)).toBe(true);
    expect(j.plan.max).toBeLessThanOrEqual(j.uniform.max);
    expect(j.plan.max).toBeLessThanOrEqual(j.suggested.max);
  });

  it("Ling-1T training in 21 stages with 2 virtual stages each: above the lower bound", async () => {
    const r = await cli("plan", "ling-1t", "--stages", "21", "--vpp", "2", "--train", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { plan: Layout; uniform: Layout; lowerBound: number };
    expect(j.plan.stages.length).toBe(42);
    expect(j.plan.max).toBeGreaterThanOrEqual(j.lowerBound);
    expect(j.plan.max).toBeLessThanOrEqual(j.uniform.max);
  });

  it("says when no layout fits the memory limit", async () => {
    const r = await cli("plan", "ling-1t", "--stages", "8", "--memory-limit", "141");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no layout keeps every stage within 141.0 GB/);
  });

  it("plans an FP8 model as it runs (FP8 weights and GEMMs; weights quantized at load cost nothing per run), and fits 8 H200s where bf16 does not", async () => {
    const plan = async (...args: string[]) => {
      const r = await cli("plan", ...args, "--stages", "8", "--json");
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { plan: Layout };
    };
    const bf16 = await plan("ling-1t");
    const atLoad = await plan("ling-1t", "--quantize", "fp8", "--dtype", "bf16");
    const stored = await plan(join(ROOT, "bench/cuda/ling-1t-fp8"), "--dtype", "bf16");
    // The same FP8 GEMMs whether the weights come quantized or are quantized at load.
    expect(atLoad.plan.max).toBeCloseTo(stored.plan.max, 9);
    expect(stored.plan.max).toBeLessThan(0.8 * bf16.plan.max);
    // Stored FP8: about half the bytes, every stage within an H200's 150 GB (bf16 needs 2 TB / 8).
    const most = (p: typeof stored) => Math.max(...p.plan.stages.map((s) => s.weightBytes));
    expect(most(stored)).toBeLessThan(150e9);
    expect(most(bf16)).toBeGreaterThan(200e9);
  });
});
