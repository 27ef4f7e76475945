/**
 * Broken checkpoints and configs: each gets one clear line naming the tensor, key or file, a
 * non-zero exit, no stack trace, and no output file.
 */
import { copyFileSync, existsSync, readFileSync, truncateSync, writeFileSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir, SMALL_DIR } from "../support/paths";

const root = scratchDir();
const weights = readAllSafetensors(join(GOLDEN_DIR, "model.safetensors"));
const config = JSON.parse(readFileSync(join(GOLDEN_DIR, "config.json"), "utf8"));

function checkpoint(name: string, opts: { tensors?: Record<string, Tensor>; config?: Record<string, unknown>; rawConfig?: string } = {}): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), opts.rawConfig ?? JSON.stringify(opts.config ?? config, null, 2));
  writeSafetensors(join(dir, "model.safetensors"), opts.tensors ?? weights);
  return dir;
}

async function runOn(dir: string) {
  const out = join(root, `${dir.split("/").pop()}.out.safetensors`);
  const r = await cli("run", dir, "--backend", "interp", "--input", GOLDEN_FILE, "--out", out);
  expect(existsSync(out), "no output file may be left behind").toBe(false);
  expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  return r;
}

const without = (name: string) => Object.fromEntries(Object.entries(weights).filter(([k]) => k !== name));

describe("bad checkpoints", () => {
  it("a missing tensor is named", async () => {
    const r = await runOn(checkpoint("missing", { tensors: without("model.layers.2.mlp.experts.7.up_proj.weight") }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tensor "model\.layers\.2\.mlp\.experts\.7\.up_proj\.weight" is missing/);
  });

  it("a tensor of the wrong shape is named with both shapes", async () => {
    const t = { ...weights, "model.layers.1.attention.dense.weight": Tensor.zeros("f32", [64, 32]) };
    const r = await runOn(checkpoint("shape", { tensors: t }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tensor "model\.layers\.1\.attention\.dense\.weight" has shape \[64, 32\], the model expects \[64, 64\]/);
  });

  it("a tensor of the wrong dtype is named with both dtypes", async () => {
    const w = weights["model.norm.weight"]!;
    const t = { ...weights, "model.norm.weight": Tensor.from("f16", w.shape, w.data) };
    const r = await runOn(checkpoint("dtype", { tensors: t }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tensor "model\.norm\.weight" has dtype F16 \(f16\), the model expects F32 \(f32\)/);
  });

  it("a truncated weights file is named, with the tensor that runs past its end", async () => {
    const dir = checkpoint("truncated");
    const file = join(dir, "model.safetensors");
    truncateSync(file, statSync(file).size - 1000);
    const r = await runOn(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/truncated\/model\.safetensors: tensor "[^"]+": its data ends at byte \d+ of the data section, which has only \d+ bytes \(the file is truncated\)/);
  });

  it("an absurd header length is refused before anything is allocated", async () => {
    const dir = checkpoint("absurd");
    const file = join(dir, "model.safetensors");
    const bytes = readFileSync(file);
    bytes.writeBigUInt64LE(0xffffffffffffn, 0);
    writeFileSync(file, bytes);
    const r = await runOn(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/absurd\/model\.safetensors: header length 281474976710655 is absurd/);
  });

  it("a config missing a key names the file and the key", async () => {
    const { hidden_size: _, ...rest } = config;
    const r = await runOn(checkpoint("nokey", { config: rest }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nokey\/config\.json: config key "hidden_size" is missing/);
  });

  it("a config value of the wrong kind is located at its line and column", async () => {
    const raw = JSON.stringify({ ...config, num_experts: "sixteen" }, null, 2);
    const r = await runOn(checkpoint("badval", { rawConfig: raw }));
    expect(r.code).toBe(1);
    const line = raw.split("\n").findIndex((l) => l.includes('"num_experts"')) + 1;
    expect(r.stderr).toMatch(new RegExp(`badval/config\\.json:${line}:3: config key "num_experts" must be an integer >= 1, got "sixteen"`));
  });

  it("values that would make every number NaN are refused at their line (exit 1), not found in the logits", async () => {
    for (const [key, value, message] of [
      ["rope_theta", 0, /config key "rope_theta" must be a number above 1, got 0/],
      ["rms_norm_eps", -1, /config key "rms_norm_eps" must be a positive number, got -1/],
    ] as const) {
      const raw = JSON.stringify({ ...config, [key]: value }, null, 2);
      const r = await runOn(checkpoint(`nan-${key}`, { rawConfig: raw }));
      expect(r.code, key).toBe(1);
      const line = raw.split("\n").findIndex((l) => l.includes(`"${key}"`)) + 1;
      expect(r.stderr).toMatch(new RegExp(`config\\.json:${line}:3: `));
      expect(r.stderr).toMatch(message);
    }
  });

  it("sizes far past the family (a million layers) are refused at once, naming the bound (exit 1)", async () => {
    const raw = JSON.stringify({ ...config, num_hidden_layers: 1000000 }, null, 2);
    const r = await runOn(checkpoint("huge", { rawConfig: raw }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/config key "num_hidden_layers" \(1000000\) is past what lingc accepts \(512\)/);
  });

  it("a non-finite weight is refused when it is read, naming the tensor and the position (interp, wgsl)", async () => {
    const w = weights["model.layers.1.mlp.experts.3.down_proj.weight"]!;
    const data = Float32Array.from(w.data);
    data[2 * 32 + 5] = Number.POSITIVE_INFINITY;
    const dir = checkpoint("inf", { tensors: { ...weights, "model.layers.1.mlp.experts.3.down_proj.weight": new Tensor("f32", w.shape, data) } });
    for (const backend of ["interp", "wgsl"]) {
      const r = await cli("run", dir, "--backend", backend, "--input", GOLDEN_FILE, "--out", join(dir, "o.safetensors"));
      expect(r.code, backend).toBe(1);
      expect(r.stderr).toMatch(/weight "model\.layers\.1\.mlp\.experts\.3\.down_proj\.weight" holds Infinity at \[2, 5\]; lingc refuses non-finite weights/);
    }
  });

  it("a non-finite bf16 weight is refused on wgsl too, where it is read as bit patterns (BoundWeights.bf16Bits), naming the expert and position", async () => {
    const small = readAllSafetensors(join(SMALL_DIR, "model.safetensors"));
    const name = "model.layers.1.mlp.experts.3.down_proj.weight";
    const w = small[name]!;
    expect(w.dtype).toBe("bf16");
    const data = Float32Array.from(w.data);
    data[2 * w.shape[1]! + 5] = Number.NEGATIVE_INFINITY;
    const dir = join(root, "inf-bf16");
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(SMALL_DIR, "config.json"), join(dir, "config.json"));
    writeSafetensors(join(dir, "model.safetensors"), { ...small, [name]: new Tensor("bf16", w.shape, data) });
    const out = join(dir, "o.safetensors");
    const r = await cli("run", dir, "--backend", "wgsl", "--input", GOLDEN_FILE, "--out", out);
    expect(r.code).toBe(1);
    expect(existsSync(out)).toBe(false);
    expect(r.stderr).toMatch(/weight "model\.layers\.1\.mlp\.experts\.3\.down_proj\.weight" holds -Infinity at \[2, 5\]; lingc refuses non-finite weights/);
    expect(r.stderr).not.toMatch(/\n\s+at |please report/);
  });

  it("inconsistent and unsupported settings are explained", async () => {
    const r1 = await runOn(checkpoint("kv", { config: { ...config, num_key_value_heads: 3 } }));
    expect(r1.stderr).toMatch(/config key "num_key_value_heads" \(3\) must divide num_attention_heads \(4\)/);
    const r2 = await runOn(checkpoint("act", { config: { ...config, hidden_act: "gelu" } }));
    expect(r2.stderr).toMatch(/not implemented: hidden_act "gelu"/);
    const r3 = await runOn(checkpoint("json", { rawConfig: "{ not json" }));
    expect(r3.stderr).toMatch(/json\/config\.json: not valid JSON/);
  });

  it("a sharded checkpoint with an index is read", async () => {
    const dir = join(root, "sharded");
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(GOLDEN_DIR, "config.json"), join(dir, "config.json"));
    const names = Object.keys(weights).sort();
    const half = Math.floor(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const map: Record<string, string> = {};
    shards.forEach((ns, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(dir, file), Object.fromEntries(ns.map((n) => [n, weights[n]!])));
      for (const n of ns) map[n] = file;
    });
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: map }));
    const out = join(root, "sharded.out.safetensors");
    const r = await cli("run", dir, "--input", GOLDEN_FILE, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
  });
});
