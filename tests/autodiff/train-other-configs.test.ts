/**
 * The train graph of Ling 2.0 configs other than ling-tiny's (6 heads over 3 KV heads, head dim 16,
 * rotary 0.25, 12 experts top-3 over 3 groups, 2 shared experts, 2 dense layers, with MTP; and one
 * without MTP, 1 dense layer, 1 shared expert), seeded random weights: the interpreter and ONNX
 * Runtime agree on the losses, every gradient and the counts (`lingc compare --graph train`).
 */
import { writeFileSync, readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../support/cli";
import { GOLDEN_DIR, scratchDir } from "../support/paths";

const base = JSON.parse(readFileSync(join(GOLDEN_DIR, "..", "ling-small", "config.json"), "utf8")) as Record<string, unknown>;
const other = { ...base, vocab_size: 300, hidden_size: 96, intermediate_size: 160, num_hidden_layers: 3, num_attention_heads: 6, num_key_value_heads: 3, head_dim: 16, partial_rotary_factor: 0.25, num_experts: 12, num_shared_experts: 2, num_experts_per_tok: 3, n_group: 3, topk_group: 2, moe_intermediate_size: 48, first_k_dense_replace: 2, torch_dtype: "float32" };
const CONFIGS: Record<string, Record<string, unknown>> = {
  "with MTP": other,
  "without MTP": { ...other, num_nextn_predict_layers: 0, first_k_dense_replace: 1, num_shared_experts: 1 },
};

describe("the train graph of other configs", () => {
  for (const [name, config] of Object.entries(CONFIGS)) {
    it(`${name}: interp and onnx agree on losses, gradients and counts`, async () => {
      const dir = join(scratchDir("lingc-train-other-"), "ckpt");
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "config.json"), JSON.stringify(config));
      const init = await cli("init", dir, "--weights", join(dir, "model.safetensors"), "--seed", "3", "--inputs", join(dir, "in.safetensors"), "--dims", "B=2,S=10");
      expect(init.code, init.stderr).toBe(0);
      const r = await cli("compare", dir, "--graph", "train", "--backends", "interp,onnx", "--input", join(dir, "in.safetensors"));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^loss_main /m);
      expect(r.stdout).toMatch(/grad\.model\.layers\.\d+\.mlp\.experts\.\*\.down_proj\.weight/);
      expect(r.stdout).toMatch(/tokens_per_expert\.\d+/);
      if (name === "with MTP") expect(r.stdout).toMatch(/^loss_mtp /m);
      expect(r.stdout).toMatch(/all \d+ values interp and onnx share are within 0.0001/);
    }, 120_000);
  }
});
