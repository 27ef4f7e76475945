/**
 * The README's toy model (examples/toy-mlp.ts, the README's DSL snippet) as a user runs it: seeded
 * random weights and inputs from `lingc init`, then `lingc run` on interp, onnx and wgsl, each within
 * 1e-5 of the interpreter (cuda runs it on the H200: bench/cuda/device.sh correct).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { maxAbsDiff } from "../support/compare";
import { ROOT, scratchDir } from "../support/paths";

const dir = scratchDir("lingc-toy-");
const MODEL = join(ROOT, "examples/toy-mlp.ts");

describe("the README's toy model", () => {
  it("is the README's DSL snippet", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const example = readFileSync(MODEL, "utf8");
    const snippet = /```ts\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(example).toContain(snippet.replace('from "./compiler/dsl"', 'from "../compiler/dsl"').trim());
  });

  it("gets seeded weights and inputs from lingc init (the same seed gives the same bytes)", async () => {
    const a = await cli("init", MODEL, "--seed", "7", "--weights", join(dir, "model.safetensors"), "--inputs", join(dir, "input.safetensors"), "--dims", "B=2,S=5");
    expect(a.code, a.stderr).toBe(0);
    const b = await cli("init", MODEL, "--seed", "7", "--weights", join(dir, "again.safetensors"));
    expect(b.code, b.stderr).toBe(0);
    expect(readFileSync(join(dir, "again.safetensors")).equals(readFileSync(join(dir, "model.safetensors")))).toBe(true);
    expect(Object.keys(readAllSafetensors(join(dir, "model.safetensors"))).sort()).toEqual([
      "layers.0.mlp.down_proj.weight",
      "layers.0.mlp.gate_proj.weight",
      "layers.0.mlp.up_proj.weight",
      "layers.0.norm.weight",
      "layers.1.mlp.down_proj.weight",
      "layers.1.mlp.gate_proj.weight",
      "layers.1.mlp.up_proj.weight",
      "layers.1.norm.weight",
    ]);
  });

  it.each(["onnx", "wgsl"])("runs through lingc run on %s within 1e-5 of the interpreter", async (backend) => {
    const run = async (b: string) => {
      const out = join(dir, `${b}.safetensors`);
      const r = await cli("run", MODEL, "--weights", join(dir, "model.safetensors"), "--input", join(dir, "input.safetensors"), "--backend", b, "--out", out);
      expect(r.code, r.stderr).toBe(0);
      return readAllSafetensors(out)["y"]!;
    };
    const ref = await run("interp");
    expect(ref.shape).toEqual([2, 5, 64]);
    const got = await run(backend);
    expect(maxAbsDiff(got.data, ref.data)).toBeLessThanOrEqual(1e-5);
  });

  it("refuses to run without weights, and names a missing one", async () => {
    const none = await cli("run", MODEL, "--input", join(dir, "input.safetensors"), "--out", join(dir, "x.safetensors"));
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/toy-mlp\.ts' has no weights: give a checkpoint folder .* or --weights/);
    const wrong = await cli("run", MODEL, "--weights", join(dir, "input.safetensors"), "--input", join(dir, "input.safetensors"), "--out", join(dir, "x.safetensors"));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/tensor "layers\.0\.norm\.weight" is missing/);
  });
});
