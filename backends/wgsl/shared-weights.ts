/**
 * What a model's graphs share on one device (forward, prefill and decode read the same weights), by
 * what the buffers hold: its weights, uploaded once (by weightKey), and what its load-time kernels
 * computed from them (a weight quantized at load: by loadKey), computed once.
 */
import { evalTerms, type ArtifactSlot } from "./artifact";
import type { PlannedKernel } from "./launch-plan";
import { pipelineKey } from "./pipelines";

export class SharedWeights {
  readonly weights = new Map<string, Promise<GPUBuffer[]>>();
  readonly computed = new Map<string, GPUBuffer[]>();
}

/** What a weight slot's buffers hold: the checkpoint tensor, its shape, and how it is stored (packed, in parts). */
export function weightKey(s: ArtifactSlot, shape: readonly number[]): string {
  return `${s.weight}|${s.dtype}|${shape.join(",")}|${s.packed ? "e4m3" : s.bf16Pairs ? "bf16" : "words"}|${s.parts ? `${s.parts.rows}x${s.parts.count}` : ""}`;
}

/** Ids of GPU buffers, for the keys of what load-time kernels computed from them. */
const bufferIds = new WeakMap<GPUBuffer, number>();
let nextBufferId = 0;

function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = nextBufferId++));
  return id;
}

/**
 * What a load-time kernel computes: its shaders, sizes (constant at load) and the buffers it reads
 * (weights, or what earlier load-time kernels wrote), by identity: the same key, the same results.
 */
export function loadKey(k: PlannedKernel, bufferOf: (id: number) => GPUBuffer[]): string {
  const none = new Map<string, number>();
  return k.launches
    .map((l) => {
      const reads = l.launch.bindings.flatMap((b, j) => (b.write ? [] : [bufferId(bufferOf(l.slots[j]!)[l.parts[j]!]!)]));
      const sizes = [evalTerms(l.launch.grid.dim, none), ...l.launch.uniforms.map((u) => evalTerms(u.dim, none))];
      return `${pipelineKey(l.launch)}|${sizes.join(",")}|${reads.join(",")}`;
    })
    .join("\n");
}
