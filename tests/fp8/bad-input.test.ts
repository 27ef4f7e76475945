/**
 * Broken FP8 checkpoints are refused before anything runs, naming the tensor or the config key: a
 * scale grid that does not match its weight's blocks, a format lingc does not read.
 */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { Tensor } from "../../ir/tensor";
import { cli } from "../support/cli";
import { scratchDir, SMALL_FP8_DIR, SMALL_FP8_GOLDEN } from "../support/paths";

describe("a broken FP8 checkpoint", () => {
  const dir = scratchDir("lingc-fp8-bad-");

  it("with a scale grid that does not match its weight's blocks is refused naming the tensor", async () => {
    const bad = join(dir, "scales");
    cpSync(SMALL_FP8_DIR, bad, { recursive: true });
    const t = readAllSafetensors(join(bad, "model.safetensors"));
    const name = "model.layers.1.attention.dense.weight_scale_inv";
    t[name] = new Tensor("f32", [2, 1], Float32Array.from([1, 1]));
    writeSafetensors(join(bad, "model.safetensors"), t);
    const r = await cli("run", bad, "--input", SMALL_FP8_GOLDEN, "--out", join(dir, "o.safetensors"));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `lingc: error: ${join(bad, "model.safetensors")}: tensor "${name}" has shape [2, 1], the model expects [2, 2]\n`,
    );
  });

  it("whose quantization_config names an unsupported format is refused naming the key and its line", async () => {
    const bad = join(dir, "fmt");
    cpSync(SMALL_FP8_DIR, bad, { recursive: true });
    const cfg = readFileSync(join(SMALL_FP8_DIR, "config.json"), "utf8").replace('"fmt": "e4m3"', '"fmt": "e3m4"');
    writeFileSync(join(bad, "config.json"), cfg);
    const line = cfg.split("\n").findIndex((l) => l.includes('"fmt"')) + 1;
    const r = await cli("run", bad, "--input", SMALL_FP8_GOLDEN, "--out", join(dir, "o.safetensors"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`config\\.json:${line}:\\d+: .*quantization_config\\.fmt "e3m4"`));
  });
});
