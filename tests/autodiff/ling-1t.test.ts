/**
 * Ling-1T's training graph stays folded: one backward function per layer function (dense, MoE,
 * MTP), called once per layer, and a gradient for every trained tensor (experts stacked per layer).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../support/cli";
import { scratchDir } from "../support/paths";

describe("Ling-1T's train graph", () => {
  it("is differentiated folded: 3 backward functions, 81 backward calls, a gradient per trained tensor", async () => {
    const dir = scratchDir("lingc-1t-train-");
    const r = await cli("compile", "ling-1t", "--graph", "train", "--target", "ir", "--out", dir, "--time-passes");
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(join(dir, "train.lir"), "utf8");
    const funcs = [...text.matchAll(/^ {2}func @([\w.]+)\(/gm)].map((m) => m[1]);
    expect(funcs).toEqual(["dense_layer", "dense_layer.backward", "moe_layer", "moe_layer.backward", "mtp_layer", "mtp_layer.backward", "train"]);
    // 80 layers and the MTP layer, each called forward and backward (the MTP layer's MoE layer inside it).
    const entry = text.slice(text.indexOf("func @train("));
    expect(entry.match(/call @\w+_layer\(/g)?.length).toBe(81);
    expect(entry.match(/call @\w+_layer\.backward\(/g)?.length).toBe(81);
    // Experts stay stacked per layer in the IR; the MTP layer (80) has its own projections.
    const grads = new Set([...entry.matchAll(/"?grad\.([\w.*]+)"?:/g)].map((m) => m[1]));
    expect(grads.has("model.layers.79.mlp.experts.*.gate_proj.weight")).toBe(true);
    expect(grads.has("model.layers.80.eh_proj.weight")).toBe(true);
    expect([...grads].some((g) => g!.endsWith("expert_bias"))).toBe(false);
    expect(r.stderr).toMatch(/pass autodiff\s+[\d.]+ ms/);
  });

  it("gets a recompute plan per layer function: kept bytes within the budget, shown in the dump and as remarks", async () => {
    const dir = scratchDir("lingc-1t-recompute-");
    const r = await cli("compile", "ling-1t", "--graph", "train", "--target", "ir", "--out", dir, "--passes", "cse,dce,recompute{budget=50%}", "--time-passes");
    expect(r.code, r.stderr).toBe(0);
    const remarks = [...r.stderr.matchAll(/^recompute @(\w+): keeps \d+ values?, [\d.]+ [KMG]iB \(([\d.]+)% of/gm)];
    expect(remarks.map((x) => x[1]).sort()).toEqual(["dense_layer", "moe_layer", "mtp_layer"]);
    for (const x of remarks) expect(Number(x[2]), x[0]).toBeLessThanOrEqual(50);
    const text = readFileSync(join(dir, "train.lir"), "utf8");
    expect(text.match(/recompute = "keeps/g)?.length).toBe(3);
    // The MoE layer function returns what its plan keeps; its backward reads them.
    expect(text).toMatch(/func @moe_layer\([^]*?-> \([^)]*saved\.0: /);
    expect(text).toMatch(/func @moe_layer\.backward\([^)]*%saved\.0: /);
    expect(r.stderr).toMatch(/pass recompute\s+[\d.]+ ms/);
  });

  it("refuses a recompute after fusion, saying where it goes", async () => {
    const r = await cli("compile", "ling-tiny", "--graph", "train", "--target", "ir", "--out", scratchDir("lingc-rc-order-"), "--passes", "cse,dce,fusion{profile=cuda-sm90a},recompute{budget=50%}");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/recompute: @\w+ already calls kernel @[\w.]+: run recompute before fusion/);
  });

  it("refuses a bad budget", async () => {
    const r = await cli("compile", "ling-tiny", "--graph", "train", "--target", "ir", "--out", scratchDir("lingc-rc-bad-"), "--passes", "recompute{budget=half}");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/budget 'half' is not none, a percentage/);
  });
});
