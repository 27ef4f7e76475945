/** `lingc run` writes a scaled fp8 output with its scale grid beside it (`<name>.scale`). */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { scratchDir, SMALL_FP8_GOLDEN } from "../support/paths";

describe("lingc run on a graph with a scaled fp8 output", () => {
  const dir = scratchDir("lingc-fp8-run-");

  it("writes the fp8 values and their scales", async () => {
    const golden = readAllSafetensors(SMALL_FP8_GOLDEN);
    const name = "layers.0.mlp.down_proj";
    const x = golden[`aq.${name}.x`]!;
    const q = "f8e4m3fn[32, 640] scale(f32, block(1, 128))";
    writeFileSync(
      join(dir, "p.lir"),
      `module @p {
  func @p(%x: f32[32, 640]) -> (q: ${q}) {
    %q = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : ${q} scope("aq")
    return %q
  }
}
`,
    );
    writeSafetensors(join(dir, "x.safetensors"), { x });
    const r = await cli("run", join(dir, "p.lir"), "--input", join(dir, "x.safetensors"), "--out", join(dir, "o.safetensors"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/wrote q, q\.scale to /);
    const o = readAllSafetensors(join(dir, "o.safetensors"));
    expect(o["q"]!.dtype).toBe("f8e4m3fn");
    expect(Array.from(o["q"]!.data)).toEqual(Array.from(golden[`aq.${name}.q`]!.data));
    expect(o["q.scale"]!.shape).toEqual([32, 5]);
    expect(Array.from(o["q.scale"]!.data)).toEqual(Array.from(golden[`aq.${name}.s`]!.data));
  });
});
