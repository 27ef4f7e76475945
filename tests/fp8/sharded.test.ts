/**
 * A sharded checkpoint through FP8: ling-small split over two shards with an index, quantized by
 * `lingc quantize` (shards and index kept, each scale beside its weight), then run weight-only on
 * the interpreter: upstream's W8A16 logits within 1e-4.
 */
import { copyFileSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import type { Tensor } from "../../ir/tensor";
import { cli } from "../support/cli";
import { tensorDiff } from "../support/compare";
import { scratchDir, SMALL_DIR, SMALL_FP8_GOLDEN } from "../support/paths";

describe("a sharded checkpoint", () => {
  const dir = scratchDir("lingc-fp8-sharded-");

  it("is quantized shard by shard and runs W8A16 with upstream's logits", async () => {
    const src = join(dir, "bf16");
    mkdirSync(src);
    copyFileSync(join(SMALL_DIR, "config.json"), join(src, "config.json"));
    const all = readAllSafetensors(join(SMALL_DIR, "model.safetensors"));
    const names = Object.keys(all).sort();
    const shards = [names.slice(0, names.length / 2), names.slice(names.length / 2)];
    const weightMap: Record<string, string> = {};
    shards.forEach((part, k) => {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      writeSafetensors(join(src, file), Object.fromEntries(part.map((n) => [n, all[n]!])) as Record<string, Tensor>);
      for (const n of part) weightMap[n] = file;
    });
    writeFileSync(join(src, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));

    const out = join(dir, "fp8");
    const r = await cli("quantize", src, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(out, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
    const qkv = "model.layers.0.attention.query_key_value.weight";
    expect(index.weight_map[`${qkv}_scale_inv`]).toBe(index.weight_map[qkv]);
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]));

    const golden = readAllSafetensors(SMALL_FP8_GOLDEN);
    const { model } = await loadModel({ source: await openSource(out), backend: "interp", settings: { activationScheme: "none" } });
    const o = await model.graphs["forward"]!.run({ input_ids: golden["input_ids"]! });
    expect(tensorDiff(o["logits"]!, golden["logits_w8a16"]!)).toBeLessThanOrEqual(1e-4);
  }, 60_000);
});
