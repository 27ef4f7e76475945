/**
 * The model definition beyond ling-tiny: random checkpoints of Ling 2.0 configs with other head and
 * KV-head counts, group counts, shared-expert counts, rotary fractions, dense-layer counts and
 * options, run through the interpreter and compared with an independent plain implementation
 * (tests/support/ling2-reference.ts); and the decode graph checked against the forward graph.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { greedyGenerate } from "../../backends/generation";
import { loadCheckpoint } from "../support/load";
import { Tensor } from "../../ir/tensor";
import { resolveCheckpoint } from "../../models/resolve";
import { referenceForward } from "../support/ling2-reference";
import { maxAbsDiff, rowSets } from "../support/compare";
import { scratchDir } from "../support/paths";
import { rng, writeRandomCheckpoint } from "../support/random-checkpoint";

const base = {
  model_type: "bailing_moe",
  vocab_size: 96,
  hidden_size: 48,
  intermediate_size: 72,
  num_hidden_layers: 3,
  num_attention_heads: 6,
  num_key_value_heads: 3,
  head_dim: 8,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  partial_rotary_factor: 0.5,
  num_experts: 12,
  num_experts_per_tok: 3,
  num_shared_experts: 1,
  n_group: 3,
  topk_group: 2,
  moe_intermediate_size: 16,
  first_k_dense_replace: 1,
  num_nextn_predict_layers: 1,
  routed_scaling_factor: 2.5,
  torch_dtype: "float32",
};

const VARIANTS: [string, Record<string, unknown>][] = [
  ["6 heads / 3 KV heads, 3 groups", {}],
  ["multi-query (8 heads, 1 KV head), head_dim 12", { num_attention_heads: 8, num_key_value_heads: 1, head_dim: 12 }],
  ["no grouping, 2 shared experts, 2 dense layers", { n_group: 1, topk_group: 1, num_shared_experts: 2, first_k_dense_replace: 2, num_hidden_layers: 4 }],
  ["rotary_dim 2 (a quarter of the head), no shared expert", { partial_rotary_factor: undefined, rotary_dim: 2, num_shared_experts: 0 }],
  ["full rotary, 4 groups keep 3, top-5", { partial_rotary_factor: 1.0, n_group: 4, topk_group: 3, num_experts_per_tok: 5 }],
  ["no dense layer, no MTP, tied embeddings, no QK-norm, no expert bias", { first_k_dense_replace: 0, num_nextn_predict_layers: 0, tie_word_embeddings: true, use_qk_norm: false, moe_router_enable_expert_bias: false }],
  ["YaRN scaling", { rope_scaling: { type: "yarn", factor: 4.0, original_max_position_embeddings: 16 } }],
];

const dir = scratchDir();

describe.each(VARIANTS)("Ling 2.0 variant: %s", (label, overrides) => {
  const hf = Object.fromEntries(Object.entries({ ...base, ...overrides }).filter(([, v]) => v !== undefined));
  const ckDir = join(dir, label.replace(/[^a-z0-9]+/gi, "_"));
  const weights = writeRandomCheckpoint(ckDir, hf, 7);
  const spec = resolveCheckpoint(ckDir);
  const cfg = spec.config;
  const r = rng(3);
  const B = 2;
  const S = 7;
  const ids = Array.from({ length: B }, () => Array.from({ length: S }, () => Math.floor(r() * cfg.vocabSize)));

  it("the interpreter matches the independent reference (logits, MTP logits, hidden states, expert choices)", async () => {
    const model = await loadCheckpoint("interp", spec.checkpointDir);
    const observed: Record<string, Tensor> = {};
    const out = await model.forward.run({ input_ids: Tensor.from("i64", [B, S], ids.flat()) }, (n, t) => (observed[n] = t));
    const ref = referenceForward(cfg, (n) => weights[n]!.data, ids);
    for (const [l, sets] of ref.topk) {
      expect(rowSets(observed[`model.layers.${l}.mlp.topk_idx`]!), `layer ${l} experts`).toEqual(sets.map((s) => [...s].sort((a, b) => a - b)));
    }
    ref.hidden.forEach((h, i) => expect(maxAbsDiff(observed[`hidden.${i}`]!.data, h.flatMap((row) => [...row])), `hidden.${i}`).toBeLessThan(1e-4));
    expect(maxAbsDiff(out["logits"]!.data, ref.logits.flatMap((row) => [...row]))).toBeLessThan(1e-4);
    if (cfg.numMtpLayers > 0) expect(maxAbsDiff(out["mtp_logits"]!.data, ref.mtpLogits!.flatMap((row) => [...row]))).toBeLessThan(1e-4);
    else expect(out["mtp_logits"]).toBeUndefined();
    model.close();
  });

  it("decode steps through the KV cache give the forward pass's logits", async () => {
    const model = await loadCheckpoint("interp", spec.checkpointDir);
    const full = await model.forward.run({ input_ids: Tensor.from("i64", [B, S], ids.flat()) });
    const prefix = ids.map((row) => row.slice(0, 3));
    const pre = await model.forward.run({ input_ids: Tensor.from("i64", [B, 3], prefix.flat()) });
    let cache = pre;
    for (let pos = 3; pos < S; pos++) {
      const inputs: Record<string, Tensor> = { input_ids: Tensor.from("i64", [B, 1], ids.map((row) => row[pos]!)) };
      for (let i = 0; i < cfg.numLayers; i++) {
        inputs[`past.${i}.key`] = cache[`present.${i}.key`]!;
        inputs[`past.${i}.value`] = cache[`present.${i}.value`]!;
      }
      cache = await model.decode.run(inputs);
      const V = cfg.vocabSize;
      for (let b = 0; b < B; b++) {
        const got = cache["logits"]!.data.subarray(b * V, (b + 1) * V);
        const want = full["logits"]!.data.subarray((b * S + pos) * V, (b * S + pos + 1) * V);
        expect(maxAbsDiff(got, want), `position ${pos}, sequence ${b}`).toBeLessThan(1e-5);
      }
    }
    // Prompts of different lengths are batched separately and still decode.
    const g = await greedyGenerate(model, [ids[0]!.slice(0, 4), ids[1]!], 2);
    expect(g.tokens.map((t) => t.length)).toEqual([2, 2]);
    model.close();
  });
});
