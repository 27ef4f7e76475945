/** `lingc info ling-1t --passes fp8`: the weights' bytes before and after the fp8 pass (about 2 TB -> 1 TB). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../support/cli";
import { scratchDir, SMALL_DIR, SMALL_FP8_DIR } from "../support/paths";

describe("lingc info --passes fp8", () => {
  it("reports Ling-1T's weights halved by FP8 projections", async () => {
    const r = await cli("info", "ling-1t", "--passes", "fp8", "--json");
    expect(r.code, r.stderr).toBe(0);
    const { weightBytes } = JSON.parse(r.stdout) as { weightBytes: { declared: number; afterPasses: number } };
    // bf16: 2 bytes per parameter (999.7B + 13.2B MTP); fp8 projections: 1 byte plus one f32 scale per 128x128 block.
    expect(weightBytes.declared / 1e12).toBeCloseTo(2.026, 3);
    expect(weightBytes.afterPasses / 1e12).toBeCloseTo(1.016, 3);
    const text = await cli("info", "ling-1t", "--passes", "fp8");
    expect(text.stdout).toMatch(/^ {2}weights {5}2\.026 TB as declared, 1\.016 TB after --passes fp8 \(0\.502x\)$/m);
  });
});

describe("lingc info on a checkpoint whose weights are cast at load", () => {
  it("counts the routed experts at their top-k share whatever the weights' stored dtype (an FP8 checkpoint traces as f32)", async () => {
    const counts = async (dir: string, ...args: string[]) => {
      const r = await cli("info", dir, "--json", ...args);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).parameters as { total: number; active: number; mtpActive: number };
    };
    const bf16 = await counts(SMALL_DIR);
    const fp8 = await counts(SMALL_FP8_DIR);
    expect(bf16.active).toBeLessThan(0.6 * bf16.total);
    expect(fp8).toEqual(bf16);
  });
});

describe("bytes a decode token reads (the CUDA benchmark's bandwidth share)", () => {
  it("counts weights quantized at load as FP8, and routed experts at their top-k share, as for a stored FP8 checkpoint", async () => {
    const dir = scratchDir("lingc-fp8-bytes-");
    const bytes = async (name: string, ...args: string[]) => {
      const r = await cli("compile", ...args, "--target", "cuda", "--graph", "decode", "--out", join(dir, name));
      expect(r.code, r.stderr).toBe(0);
      return Number(/DECODE_WEIGHT_BYTES = (\d+);/.exec(readFileSync(join(dir, name, "model.cu"), "utf8"))![1]);
    };
    const [bf16, atLoad, stored] = await Promise.all([bytes("bf16", SMALL_DIR), bytes("load", SMALL_DIR, "--quantize", "fp8"), bytes("stored", SMALL_FP8_DIR)]);
    expect(atLoad).toBe(stored);
    // ling-small: the quantized projections are most of a token's bytes; the head and embedding row stay bf16.
    expect(atLoad / bf16).toBeGreaterThan(0.5);
    expect(atLoad / bf16).toBeLessThan(0.75);
  }, 60_000);
});

describe("lingc compile --report with weights quantized when bound (--quantize fp8)", () => {
  const dir = scratchDir("lingc-fp8-report-");
  it("counts the weights' quantize kernels once at load, not per token, and their codes as weight bytes: FP8 Ling-mini's decode MoE layer is the 17 kernels CUDA launches, moving about half bf16's bytes", async () => {
    const report = async (...extra: string[]) => {
      const r = await cli("compile", "bench/cuda/ling-mini-2.0-no-mtp", "--target", "cuda", "--graph", "decode", "--dtype", "bf16", ...extra, "--report", "--out", join(dir, `report${extra.length}`));
      expect(r.code, r.stderr).toBe(0);
      const row = /^ {2}moe_layer +19 +(\d+) -> (\d+) +([\d.]+) MB -> ([\d.]+) MB +([\d.]+) MB -> ([\d.]+) MB\n {6}([^\n]*)$/m.exec(r.stdout)!;
      expect(row, r.stdout).not.toBeNull();
      return { kernels: Number(row[2]), bytes: Number(row[4]), activations: Number(row[6]), names: row[7]! };
    };
    const fp8 = await report("--quantize", "fp8", "--activation-scheme", "dynamic");
    const bf16 = await report();
    expect(fp8.kernels).toBe(17);
    expect(fp8.names).toMatch(/, epilogue; once at load: 8 more$/);
    expect(fp8.names).not.toMatch(/quantize, quantize/);
    expect(bf16.names).not.toMatch(/once at load/);
    // FP8 weights at a byte each (and a scale a 128 x 128 block), the activations about the same.
    expect(fp8.bytes / bf16.bytes).toBeGreaterThan(0.5);
    expect(fp8.bytes / bf16.bytes).toBeLessThan(0.56);
    expect(Math.abs(fp8.activations - bf16.activations)).toBeLessThan(0.1 * bf16.activations);
  }, 60_000);
});
