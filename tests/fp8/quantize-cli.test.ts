/**
 * `lingc quantize` as a user runs it: ling-small (bf16) gives ling-small-fp8's tensors and scales
 * bit for bit and its config (up to key order), prints the health report (also as JSON), refuses an
 * existing output folder or an already quantized checkpoint, and leaves nothing behind when it fails.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { scratchDir, SMALL_DIR, SMALL_FP8_DIR } from "../support/paths";

describe("lingc quantize", () => {
  const dir = scratchDir("lingc-quantize-");

  it("reproduces ling-small-fp8 from ling-small bit for bit, with its health report", async () => {
    const out = join(dir, "fp8");
    const r = await cli("quantize", SMALL_DIR, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/quantized 164\/164 tensors/);
    expect(r.stdout).toMatch(/^tensor +shape +underflow +cosine +worst block rel\. error$/m);
    expect(r.stdout).toMatch(/^model\.layers\.0\.attention\.query_key_value\.weight +\[512, 256\] +\d\.\d\de[-+]\d+ +0\.99\d{4} +\d\.\d{3}e-\d$/m);
    expect(r.stdout).toMatch(/^164 tensors; highest underflow/m);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8"))).toEqual(JSON.parse(readFileSync(join(SMALL_FP8_DIR, "config.json"), "utf8")));
    const got = readAllSafetensors(join(out, "model.safetensors"));
    const want = readAllSafetensors(join(SMALL_FP8_DIR, "model.safetensors"));
    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    const differing = Object.keys(want).filter((n) => got[n]!.dtype !== want[n]!.dtype || got[n]!.shape.join() !== want[n]!.shape.join() || got[n]!.data.some((v, i) => !Object.is(v, want[n]!.data[i]!)));
    expect(differing).toEqual([]);
  }, 120_000);

  it("prints the report as JSON with --json", async () => {
    const r = await cli("quantize", SMALL_DIR, "--out", join(dir, "json"), "--json");
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { tensors: { name: string; underflow: number; cosine: number; worstBlockRelError: number }[] };
    expect(report.tensors).toHaveLength(164);
    for (const t of report.tensors) {
      expect(t.cosine).toBeGreaterThan(0.999);
      expect(t.underflow).toBeLessThan(1e-3);
      expect(t.worstBlockRelError).toBeLessThan(0.05);
    }
  }, 120_000);

  it("refuses an existing output folder and an FP8 checkpoint, leaving nothing behind", async () => {
    const exists = await cli("quantize", SMALL_DIR, "--out", SMALL_FP8_DIR);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toMatch(/ling-small-fp8 already exists; give a new folder/);
    const again = await cli("quantize", SMALL_FP8_DIR, "--out", join(dir, "again"));
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/config\.json: the checkpoint is already quantized/);
    expect(existsSync(join(dir, "again"))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });
});
