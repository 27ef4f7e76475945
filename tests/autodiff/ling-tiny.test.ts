/**
 * autodiff through the whole folded Ling 2.0 forward (ling-tiny: GQA attention with QK-norm and
 * partial RoPE, the group-limited router, routed and shared experts): the gradient of the summed
 * logits with respect to weights of each layer kind against central differences of the interpreter
 * run on a perturbed checkpoint. (The training loss with MTP is the next step of issue 11.)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir } from "../support/paths";

/** A copy of a safetensors file with one f32 element of one tensor changed by d. */
function perturbed(src: string, dst: string, name: string, i: number, d: number): void {
  const b = Buffer.from(readFileSync(src));
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const t = header[name]!;
  if (t.dtype !== "F32") throw new Error(`${name} is ${t.dtype}`);
  const at = 8 + n + t.data_offsets[0] + 4 * i;
  b.writeFloatLE(b.readFloatLE(at) + d, at);
  writeFileSync(dst, b);
}

describe("autodiff of ling-tiny's forward", () => {
  it("differentiates the folded graph; weight gradients match central differences", async () => {
    const dir = scratchDir("lingc-ad-tiny-");
    const c = await cli("compile", "ling-tiny", "--graph", "forward", "--target", "ir", "--passes", "autodiff", "--out", dir);
    expect(c.code, c.stderr).toBe(0);
    const lir = join(dir, "forward.lir");
    const text = readFileSync(lir, "utf8");
    for (const f of ["@dense_layer.backward", "@moe_layer.backward"]) expect(text).toContain(`func ${f}(`);
    const run = async (weights: string, out: string) => {
      const r = await cli("run", lir, "--weights", weights, "--input", GOLDEN_FILE, "--out", out);
      expect(r.code, r.stderr).toBe(0);
      return readAllSafetensors(out);
    };
    const base = await run(GOLDEN_DIR, join(dir, "base.safetensors"));
    const model = join(GOLDEN_DIR, "model.safetensors");
    const h = 1e-3;
    for (const [name, i] of [
      ["model.layers.0.attention.query_key_value.weight", 5],
      ["model.layers.1.mlp.shared_experts.up_proj.weight", 11],
      ["model.norm.weight", 3],
    ] as const) {
      const got = base[`grad.${name}`]!.data[i]!;
      const total = async (d: number) => {
        perturbed(model, join(dir, "p.safetensors"), name, i, d);
        return [...(await run(join(dir, "p.safetensors"), join(dir, "p-out.safetensors")))["logits"]!.data].reduce((a, x) => a + x, 0);
      };
      const want = ((await total(h)) - (await total(-h))) / (2 * h);
      expect(Math.abs(got - want), `grad.${name}[${i}]: ${got} vs ${want}`).toBeLessThanOrEqual(1e-2 * Math.max(1, Math.abs(want)));
    }
  }, 120_000);
});
