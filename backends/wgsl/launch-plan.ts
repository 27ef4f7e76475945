/**
 * A run's launches resolved once for each choice of forms (which kernels take their few-rows form):
 * the pipelines, the storage slots each launch binds (aliases followed), where its sizes go in the
 * run's uniform buffer, and the bind group it used last. A decode step of Ling-mini-2.0's shape
 * encodes some three hundred launches; looking each kernel's forms, pipelines and slots up again
 * every step, and building a bind-group key from its buffers, was most of the host's time a step
 * (bench/results/wgsl-2026-12-04-h200.md). With the plan a step evaluates its sizes, compares its
 * buffers with the last ones by identity, and calls the encoder.
 */
import { evalTerms, type ArtifactKernel, type ArtifactLaunch, type WgslArtifact } from "./artifact";

export interface Pipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

/**
 * A kernel's pipelines, and its few-rows alternative's (ArtifactKernel.few). A kernel with a few-rows
 * form compiles that one at load and its main form when a run first needs it (a decode graph's
 * workgroup tiles may never run; on llvmpipe each costs seconds to compile).
 */
export interface KernelPipelines {
  /** One per launch of the form (ArtifactLaunch.then). */
  main?: Pipeline[];
  few?: Pipeline[];
}

/** Launches a step's kernel chain holds at most (a kernel and the one it is followed by). */
export const MAX_CHAIN = 2;

/** A launch and the launches after it (ArtifactLaunch.then). */
export function chainOf(k: ArtifactLaunch): ArtifactLaunch[] {
  const chain = [k];
  while (chain[chain.length - 1]!.then) chain.push(chain[chain.length - 1]!.then!);
  if (chain.length > MAX_CHAIN) throw new Error(`kernel ${k.name}: a chain of ${chain.length} launches, over the host's ${MAX_CHAIN}`);
  return chain;
}

/** Whether this run's sizes pick kernel k's few-rows form. */
export function picksFew(k: ArtifactKernel, bindings: ReadonlyMap<string, number>): boolean {
  return k.few !== undefined && evalTerms(k.few.dim, bindings) <= k.few.max;
}

/** A bind group and the storage buffers it binds, in binding order. */
export interface BoundGroup {
  buffers: GPUBuffer[];
  group: GPUBindGroup;
}

export interface PlannedLaunch {
  launch: ArtifactLaunch;
  pipeline: Pipeline;
  /** The storage slot (aliases followed) and the part of it that each binding binds. */
  slots: number[];
  parts: number[];
  /** 32-bit words of its uniform block (at least 4: WebGPU's smallest uniform binding). */
  words: number;
  /** Its sizes' block in a run's shared uniform buffer (kernel n x MAX_CHAIN + its place in the chain). */
  block: number;
  /** The bind group it was last encoded with, under each of the graph's two shared uniform buffers. */
  last: [BoundGroup | undefined, BoundGroup | undefined];
  /** Its bind group's key in the graph's BindGroupCache (where the buffers changed). */
  key: string;
}

export interface PlannedKernel {
  n: number;
  kernel: ArtifactKernel;
  launches: PlannedLaunch[];
}

export interface LaunchPlan {
  /** The kernels a run launches, in order (load-time kernels left out). */
  kernels: PlannedKernel[];
  /** Every storage slot they bind, once. */
  slots: number[];
}

/** Slot id -> the slot that holds its storage (aliases followed). */
export function storageId(a: WgslArtifact, id: number): number {
  let s = a.slots[id]!;
  while (s.source === "alias") s = a.slots[s.aliasOf!]!;
  return s.id;
}

/** Kernel n in its few-rows form or its main one, resolved against its compiled pipelines. */
export function plannedKernel(a: WgslArtifact, n: number, few: boolean, pipelines: KernelPipelines): PlannedKernel {
  const kernel = a.kernels[n]!;
  const chain = chainOf(few ? kernel.few!.launch : kernel);
  const compiled = (few ? pipelines.few : pipelines.main) ?? fail(`kernel ${kernel.name}: its ${few ? "few-rows" : "main"} pipeline was not compiled`);
  const launches = chain.map((launch, c): PlannedLaunch => ({
    launch,
    pipeline: compiled[c]!,
    slots: launch.bindings.map((b) => storageId(a, b.slot)),
    parts: launch.bindings.map((b) => b.part),
    words: Math.max(4, Math.ceil(launch.uniforms.length / 4) * 4),
    block: n * MAX_CHAIN + c,
    last: [undefined, undefined],
    key: `${n}${few ? "f" : "m"}${c}`,
  }));
  return { n, kernel, launches };
}

/** The run's plan for these forms (`few[n]`: kernel n takes its few-rows form). */
export function launchPlan(a: WgslArtifact, few: readonly boolean[], pipelines: readonly KernelPipelines[]): LaunchPlan {
  const kernels = a.kernels.flatMap((k, n) => (k.atLoad ? [] : [plannedKernel(a, n, few[n]!, pipelines[n]!)]));
  const slots = [...new Set(kernels.flatMap((k) => k.launches.flatMap((l) => l.slots)))];
  return { kernels, slots };
}

function fail(message: string): never {
  throw new Error(message);
}
