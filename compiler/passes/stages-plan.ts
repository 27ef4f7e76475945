/**
 * A pipeline plan for a model (issue 12, `lingc plan`): its schedule units (stages-units.ts) timed by the
 * target's rates (stages-cost.ts), cut into stages by the exact min-max partition (stages-partition.ts), next to
 * the uniform layout (transformer layers split evenly, the embedding on the first stage, heads and
 * the MTP layer on the last, as Megatron lays them out by default) and LING2.md 3.2's suggested
 * layout (the last stage holds only the MTP layer and the heads, the first the embedding and one
 * layer fewer than the others).
 *
 * Training: a unit's time is its forward times `trainFactor` (forward, backward twice the forward,
 * and the forward again under full recompute, as Ling-1T trained: 4); a stage's memory is its
 * weights with their gradients and AdamW state (bf16 weight, f32 master copy, gradient and two
 * moments: 18 bytes a bf16 parameter) plus, per micro-batch in flight (p - s under 1F1B on stage s),
 * each layer's input kept for the recomputing backward. Inference: weights and the KV cache of the
 * plan's batch and sequence.
 */
import { LingcError } from "../../ir/errors";
import type { Module } from "../../ir/module";
import type { DeviceRates } from "../../ir/target/cuda";
import { interleavedPartition, lowerBound, minMaxPartition, stageTime, type Partition, type PartitionInput } from "./stages-partition";
import { scheduleUnits, type Unit } from "./stages-units";

export interface PlanOptions {
  stages: number;
  virtual: number;
  train: boolean;
  sizes: ReadonlyMap<string, number>;
  rates: DeviceRates;
  /** Bytes a stage may hold (undefined: no limit). */
  memoryLimit?: number;
  /** Training: forward + backward (+ recompute) per forward. */
  trainFactor: number;
}

export interface StageReport {
  units: string[];
  seconds: number;
  weightBytes: number;
  memoryBytes: number;
}

export interface LayoutReport {
  name: string;
  stages: StageReport[];
  /** The bottleneck (V > 1: the largest device load) and max / mean. */
  max: number;
  imbalance: number;
}

export interface PlanReport {
  units: Unit[];
  plan: LayoutReport;
  uniform?: LayoutReport;
  suggested?: LayoutReport;
  /** V > 1: the lower bound any plan's bottleneck is above. */
  lowerBound?: number;
  ms: number;
}

const isLayer = (u: Unit) => u.kind !== "embedding" && u.kind !== "head" && u.kind !== "between" && u.kind !== "mtp";

export function planPipeline(m: Module, o: PlanOptions): PlanReport {
  const t0 = performance.now();
  const units = scheduleUnits(m, o.sizes, o.rates);
  const factor = o.train ? o.trainFactor : 1;
  const input: PartitionInput = {
    seconds: units.map((u) => u.seconds * factor),
    sendSeconds: units.map((u) => (u.cutBytes / o.rates.linkBandwidth) * (o.train ? 2 : 1)),
  };
  const p = o.stages;
  const memory = (stage: number, from: number, to: number, devices = p) => {
    let bytes = 0;
    for (let i = from; i < to; i++) {
      const u = units[i]!;
      // A training stage: weights (2 bytes), f32 master, gradient and two moments per parameter.
      bytes += o.train ? u.weightBytes * 9 : u.weightBytes + u.cacheBytes;
      if (o.train && isLayer(u)) bytes += (devices - (stage % devices)) * u.cutBytes;
    }
    return bytes;
  };
  if (o.memoryLimit !== undefined) input.fits = (stage, from, to) => memory(stage, from, to) <= o.memoryLimit!;
  const best = o.virtual > 1 ? interleavedPartition(input, p, o.virtual) : minMaxPartition(input, p);
  if (!best) {
    const need = o.memoryLimit === undefined ? "" : `: no layout keeps every stage within ${(o.memoryLimit / 1e9).toFixed(1)} GB (the model's total is ${(memory(0, 0, units.length, 1) / 1e9).toFixed(1)} GB)`;
    throw new LingcError(`cannot cut ${units.length} schedule units into ${p * o.virtual} stages${need}`);
  }
  const report = (name: string, part: Partition): LayoutReport => {
    const stages = part.bounds.slice(0, -1).map((b, s) => {
      const e = part.bounds[s + 1]!;
      return { units: units.slice(b, e).map((u) => u.name), seconds: stageTime(input, b, e), weightBytes: units.slice(b, e).reduce((a, u) => a + u.weightBytes, 0), memoryBytes: memory(s, b, e) };
    });
    const loads = o.virtual > 1 ? Array.from({ length: p }, (_, d) => stages.filter((_, c) => c % p === d).reduce((a, st) => a + st.seconds, 0)) : stages.map((st) => st.seconds);
    const max = Math.max(...loads);
    return { name, stages, max, imbalance: max / (loads.reduce((a, b) => a + b, 0) / loads.length) };
  };
  const out: PlanReport = { units, plan: report("lingc (min-max DP)", best), ms: 0 };
  const fixed = (bounds: number[] | undefined) => bounds && { bounds, stageSeconds: [], max: 0 };
  const uni = fixed(uniformBounds(units, p * o.virtual));
  if (uni) out.uniform = report("uniform", uni);
  const sug = fixed(suggestedBounds(units, p * o.virtual));
  if (sug) out.suggested = report("LING2.md 3.2 suggestion", sug);
  if (o.virtual > 1) out.lowerBound = lowerBound(input, p);
  out.ms = performance.now() - t0;
  return out;
}

/** Layers split evenly in order (earlier stages take the remainder), embedding first, the rest last. */
function uniformBounds(units: Unit[], stages: number, layersFirst = 0): number[] | undefined {
  const layers = units.map((u, i) => (isLayer(u) ? i : -1)).filter((i) => i >= 0);
  const firstLayer = layers[0];
  const lastLayer = layers[layers.length - 1];
  if (firstLayer === undefined || lastLayer === undefined || layers.length < stages) return undefined;
  const counts = Array.from({ length: stages }, (_, s) => Math.floor(layers.length / stages) + (s < layers.length % stages ? 1 : 0));
  if (layersFirst) {
    counts[0] = Math.max(0, counts[0]! - layersFirst);
    let extra = layers.length - counts.reduce((a, b) => a + b, 0);
    for (let s = 1; extra > 0; s = (s % (stages - 1)) + 1, extra--) counts[s]!++;
  }
  const bounds = [0];
  let at = 0;
  for (let s = 0; s < stages - 1; s++) {
    at += counts[s]!;
    bounds.push(layers[at - 1]! + 1);
  }
  bounds.push(units.length);
  return bounds.every((b, i) => i === 0 || b > bounds[i - 1]!) ? bounds : undefined;
}

/** LING2.md 3.2's suggestion: the last stage only the MTP layer and the heads; the first one layer fewer. */
function suggestedBounds(units: Unit[], stages: number): number[] | undefined {
  const layers = units.map((u, i) => (isLayer(u) ? i : -1)).filter((i) => i >= 0);
  if (stages < 3 || layers.length < stages - 1) return undefined;
  const lastLayer = layers[layers.length - 1]!;
  const head = uniformBounds(units.slice(0, lastLayer + 1), stages - 1, 1);
  return head && [...head.slice(0, -1), lastLayer + 1, units.length];
}
