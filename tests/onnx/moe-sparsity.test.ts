/**
 * Dropless sparse MoE in ONNX: the emitted compute does not grow with the number of experts (only
 * the weights do), and every expert that any token chose gives the interpreter's result.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { emitOnnx } from "../../backends/onnx/emit";
import { decodeModel, type GraphProto } from "../../backends/onnx/proto";
import { unboundLayout } from "../../backends/onnx/weights";
import { Tensor } from "../../ir/tensor";
import { configFromHf } from "../../models/config";
import { buildLing2 } from "../../models/ling2";
import { resolveCheckpoint } from "../../models/resolve";
import { maxAbsDiff } from "../support/compare";
import { loadCheckpoint } from "../support/load";
import { forOnnx } from "../support/onnx";
import { scratchDir } from "../support/paths";
import { rng, writeRandomCheckpoint } from "../support/random-checkpoint";

const base = {
  model_type: "bailing_moe",
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  partial_rotary_factor: 0.5,
  num_experts_per_tok: 4,
  num_shared_experts: 1,
  n_group: 4,
  topk_group: 2,
  moe_intermediate_size: 8,
  first_k_dense_replace: 1,
  num_nextn_predict_layers: 1,
  routed_scaling_factor: 2.5,
  torch_dtype: "float32",
};

/** opType -> count over the main graph and every subgraph, plus the Concat fan-in (weights) separately. */
function census(g: GraphProto, acc = new Map<string, number>()): Map<string, number> {
  for (const n of g.node ?? []) {
    acc.set(n.opType!, (acc.get(n.opType!) ?? 0) + 1);
    for (const a of n.attribute ?? []) if (a.g) census(a.g, acc);
  }
  return acc;
}

describe("dropless sparse MoE in ONNX", () => {
  it("16 and 256 experts give the same nodes (same loops, same matmuls); only the weights grow", () => {
    const emit = (experts: number) => decodeModel(emitOnnx(forOnnx(buildLing2(configFromHf({ ...base, num_experts: experts }, "m", "config.json"), "forward")), { weights: unboundLayout() }).bytes);
    const small = emit(16);
    const large = emit(256);
    expect(census(large.graph!)).toEqual(census(small.graph!));
    const loops = (m: ReturnType<typeof emit>) => m.graph!.node!.filter((n) => n.opType === "Loop").length;
    expect(loops(small)).toBe(3 * 2); // gate, up and down projections of the 2 MoE layers (one main, one MTP)
    expect(large.graph!.initializer!.length - small.graph!.initializer!.length).toBe((256 - 16) * 3 * 2);
  });

  it("every expert any token chose gives the interpreter's output for that token", async () => {
    const dir = join(scratchDir(), "moe");
    writeRandomCheckpoint(dir, { ...base, num_experts: 16 }, 5);
    const spec = resolveCheckpoint(dir);
    const r = rng(9);
    const [B, S] = [2, 16];
    const ids = Tensor.from("i64", [B, S], Array.from({ length: B * S }, () => Math.floor(r() * 64)));
    const seen = async (backend: string) => {
      const m = await loadCheckpoint(backend, spec.checkpointDir);
      const obs: Record<string, Tensor> = {};
      await m.forward.run({ input_ids: ids }, (n, t) => (obs[n] = t));
      m.close();
      return obs;
    };
    const ref = await seen("interp");
    const got = await seen("onnx");
    for (const layer of [1, 2]) {
      const idx = ref[`model.layers.${layer}.mlp.topk_idx`]!;
      expect(Array.from(got[`model.layers.${layer}.mlp.topk_idx`]!.data)).toEqual(Array.from(idx.data));
      const chosen = new Set(Array.from(idx.data));
      expect(chosen.size, `layer ${layer}: experts used`).toBeGreaterThanOrEqual(14);
      const a = ref[`model.layers.${layer}.mlp.routed`]!;
      const b = got[`model.layers.${layer}.mlp.routed`]!;
      const H = a.shape[1]!;
      for (let t = 0; t < B * S; t++) {
        expect(maxAbsDiff(a.data.subarray(t * H, (t + 1) * H), b.data.subarray(t * H, (t + 1) * H)), `layer ${layer}, token ${t}`).toBeLessThan(1e-5);
      }
    }
  });
});
