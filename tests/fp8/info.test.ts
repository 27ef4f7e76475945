/** `lingc info ling-1t --passes fp8`: the weights' bytes before and after the fp8 pass (about 2 TB -> 1 TB). */
import { describe, expect, it } from "vitest";
import { cli } from "../support/cli";

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
