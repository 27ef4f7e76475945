/**
 * What a backend provides to the CLI's run/generate/compare commands: a model loaded from a
 * checkpoint, with runners for the forward and decode graphs that take and return tensors by the
 * graphs' input and output names. Every backend has the same contract, so one generate loop and
 * one comparison tool serve them all.
 */
import type { Tensor } from "../ir/tensor";
import type { LingConfig } from "../models/config";

export type Observer = (name: string, value: Tensor) => void;

export interface GraphRunner {
  /** Runs the graph. `observe` receives named internal values where the backend can expose them. */
  run(inputs: Readonly<Record<string, Tensor>>, observe?: Observer): Promise<Record<string, Tensor>>;
}

export interface LoadedModel {
  config: LingConfig;
  forward: GraphRunner;
  decode: GraphRunner;
  /**
   * Greedy generation done by the backend itself (the CUDA program keeps the KV cache on the GPU);
   * backends without it use the shared loop in generate.ts over forward and decode.
   */
  generate?(prompts: number[][], maxNew: number): Promise<{ tokens: number[][]; stepLogits: Float32Array[][] }>;
  close(): void;
}

/** Settings a backend may read (the others ignore them). */
export interface BackendOptions {
  /** Fusions to switch off (`--no-fuse`). */
  noFuse?: string[];
  /** WebGPU: the target profile, "baseline" (default) or "adapter". */
  targetProfile?: string;
  /** WebGPU: limit overrides NAME=VALUE. */
  limits?: string[];
}

export interface Backend {
  name: string;
  summary: string;
  load(config: LingConfig, checkpointDir: string, options?: BackendOptions): Promise<LoadedModel>;
}
