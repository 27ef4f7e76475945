/**
 * Binding a checkpoint to a graph by HF tensor name. Every weight the graph declares is checked
 * before anything runs (present, same dtype, same shape; for stacked expert weights, every expert's
 * tensor), so a bad checkpoint fails up front with one line that names the tensor. Tensors are then
 * read on first use and kept; stacked weights are assembled from the per-expert tensors.
 */
import { LingcError } from "../../ir/errors";
import type { WeightSource } from "../../ir/interpret";
import { isStackedWeight, type Module } from "../../ir/module";
import { Tensor, allocData, shapeToString } from "../../ir/tensor";
import type { TensorType } from "../../ir/types";
import { collectWeights, expertNames } from "../../ir/weights";
import type { Checkpoint } from "./checkpoint";

function checkTensor(ck: Checkpoint, name: string, dtype: string, shape: readonly number[], role: string): void {
  const e = ck.entry(name);
  if (!e) throw new LingcError(`${ck.dir}: tensor "${name}" is missing (the model needs it as ${role})`);
  const en = e.entry;
  if (en.dtype !== dtype) {
    throw new LingcError(`${e.file.path}: tensor "${name}" has dtype ${en.stDtype}, the model expects ${dtype}${en.dtype === undefined ? "" : ` (${en.dtype})`}`);
  }
  if (en.shape.length !== shape.length || en.shape.some((d, i) => d !== shape[i])) {
    throw new LingcError(`${e.file.path}: tensor "${name}" has shape ${shapeToString(en.shape)}, the model expects ${shapeToString(shape)}`);
  }
}

/** Checks every weight of `m` against the checkpoint; throws on the first problem. */
export function checkCheckpoint(m: Module, ck: Checkpoint): void {
  for (const w of collectWeights(m)) {
    const shape = w.type.shape.map((d) => d.value!);
    if (isStackedWeight(w.name)) {
      for (const n of expertNames(w.name, shape[0]!)) checkTensor(ck, n, w.type.dtype, shape.slice(1), `one expert of ${w.type}`);
    } else {
      checkTensor(ck, w.name, w.type.dtype, shape, w.type.toString());
    }
  }
}

/** A weight source over a checkpoint, after checking it against the graph(s) that will use it. */
export function bindCheckpoint(modules: readonly Module[], ck: Checkpoint): WeightSource {
  for (const m of modules) checkCheckpoint(m, ck);
  const cache = new Map<string, Tensor>();
  return {
    get(name: string, type: TensorType): Tensor {
      const hit = cache.get(name);
      if (hit) return hit;
      let t: Tensor;
      if (isStackedWeight(name)) {
        const shape = type.shape.map((d) => d.value!);
        const per = shape.slice(1).reduce((a, b) => a * b, 1);
        const data = allocData(type.dtype, shape[0]! * per);
        expertNames(name, shape[0]!).forEach((n, e) => data.set(ck.read(n).data, e * per));
        t = new Tensor(type.dtype, shape, data);
      } else {
        t = ck.read(name);
      }
      cache.set(name, t);
      return t;
    },
  };
}
