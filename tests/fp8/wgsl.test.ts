/**
 * FP8 weights on WebGPU take one byte per value (packed four to a word, decoded in the kernels) plus
 * their f32 block scales; every other weight four bytes. `lingc compile --target wgsl` reports it.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { scratchDir, SMALL_FP8_DIR } from "../support/paths";

describe("FP8 weights on the GPU (wgsl)", () => {
  const dir = scratchDir("lingc-fp8-wgsl-");

  it("take one byte per fp8 value plus the scales, and compile reports it", async () => {
    const r = await cli("compile", SMALL_FP8_DIR, "--target", "wgsl", "--out", dir);
    expect(r.code, r.stderr).toBe(0);
    const ck = readAllSafetensors(join(SMALL_FP8_DIR, "model.safetensors"));
    const want = Object.values(ck).reduce((sum, t) => sum + t.numel * (t.dtype === "f8e4m3fn" ? 1 : 4), 0);
    const a = JSON.parse(readFileSync(join(dir, "forward.wgsl.json"), "utf8")) as { weightBytes: number; slots: { packed?: boolean }[] };
    expect(a.weightBytes).toBe(want);
    expect(a.slots.filter((s) => s.packed).length).toBeGreaterThan(0);
    expect(r.stderr).toContain(`forward.wgsl.json (weights on the GPU: ${(want / 1e6).toFixed(2)} MB)`);
  });
});
