/**
 * Builds a checkpoint with random weights for any Ling 2.0 config: the tensor names and shapes come
 * from the traced graph's weight declarations, so this works for every size and setting.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Tensor } from "../../ir/tensor";
import { isStackedWeight } from "../../ir/module";
import { collectWeights, expertNames } from "../../ir/weights";
import { writeSafetensors } from "../../backends/weights/safetensors";
import { configFromHf } from "../../models/config";
import { buildLing2 } from "../../models/ling2";
import { Seeded } from "../../compiler/cli/commands/init";

/** A small deterministic PRNG (the one `lingc init` uses). */
export const rng = (seed: number): (() => number) => {
  const s = new Seeded(seed);
  return () => s.next();
};

export function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

/** Writes config.json and model.safetensors with random weights into `dir`; returns the tensors. */
export function writeRandomCheckpoint(dir: string, hfConfig: Record<string, unknown>, seed = 1): Record<string, Tensor> {
  mkdirSync(dir, { recursive: true });
  const cfg = configFromHf(hfConfig, "random", "config.json");
  const m = buildLing2(cfg, "forward");
  const r = rng(seed);
  const tensors: Record<string, Tensor> = {};
  const make = (name: string, shape: number[], dtype: Tensor["dtype"]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = name.endsWith("norm.weight");
    const isBias = name.endsWith("expert_bias");
    const fanIn = shape[shape.length - 1] ?? 1;
    const vals = Array.from({ length: n }, () => (isNorm ? 1 + 0.1 * normal(r) : isBias ? 0.05 * normal(r) : normal(r) / Math.sqrt(fanIn)));
    tensors[name] = Tensor.from(dtype, shape, vals);
  };
  for (const w of collectWeights(m)) {
    const shape = w.type.shape.map((d) => d.value!);
    if (isStackedWeight(w.name)) for (const n of expertNames(w.name, shape[0]!)) make(n, shape.slice(1), w.type.dtype);
    else make(w.name, shape, w.type.dtype);
  }
  writeFileSync(join(dir, "config.json"), JSON.stringify(hfConfig, null, 2));
  writeSafetensors(join(dir, "model.safetensors"), tensors);
  return tensors;
}
