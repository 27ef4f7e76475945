/**
 * What a backend is given and what it gives back. The driver (compiler/driver) traces or parses the
 * graphs, runs the target's pass pipeline and binds the weights; a backend receives the resulting
 * modules (a Program) with its target profile and the bound weights, and returns runners that take
 * and return tensors by the graphs' input and output names. A backend knows nothing of any model: the
 * module attributes say what generation needs (generation.ts).
 */
import type { DType } from "../ir/dtype";
import type { WeightSource } from "../ir/interpret";
import type { Module } from "../ir/module";
import type { Tensor } from "../ir/tensor";
import type { TensorType } from "../ir/types";
import type { TargetProfile } from "../ir/target";
import type { Checkpoint } from "./weights/checkpoint";

export type Observer = (name: string, value: Tensor) => void;

/** A tensor a backend keeps in its device memory between runs (generation's KV cache); only that backend reads it. */
export interface DeviceTensor {
  readonly onDevice: true;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export function isDeviceTensor(t: Tensor | DeviceTensor): t is DeviceTensor {
  return (t as DeviceTensor).onDevice === true;
}

export interface GraphRunner {
  /** Runs the graph. `observe` receives named internal values where the backend can expose them. */
  run(inputs: Readonly<Record<string, Tensor>>, observe?: Observer): Promise<Record<string, Tensor>>;
  /**
   * Runs with inputs that may already be in device memory, and leaves the outputs named in `keep`
   * there (backends with device memory): generation keeps the KV cache on the device so. Of the
   * outputs named in `lastPosition` ([B, S, ...]) the caller needs the last position only: a backend
   * may return them as [B, 1, ...] (a prompt's logits: rows x vocabulary, read back for one row).
   */
  runOnDevice?(inputs: Readonly<Record<string, Tensor | DeviceTensor>>, keep: ReadonlySet<string>, lastPosition?: ReadonlySet<string>): Promise<Record<string, Tensor | DeviceTensor>>;
  /**
   * runOnDevice without waiting for the read-backs: resolves once the run is on the device's queue,
   * with the kept outputs (inputs of the next launch at once: the device runs launches in order) and,
   * given `nextToken` (an output of logits [B, S, V]), each sequence's greedy next token chosen on
   * the device ([B, 1] ids, the next decode step's input; `release` frees it). `read` resolves with
   * the outputs read back and the ids the device chose. Greedy generation so overlaps the host's
   * work and the read-back's latency with the device's.
   */
  launchOnDevice?(inputs: Readonly<Record<string, Tensor | DeviceTensor>>, keep: ReadonlySet<string>, opts: { lastPosition?: ReadonlySet<string>; nextToken: string }): Promise<LaunchedOnDevice>;
}

export interface LaunchedOnDevice {
  kept: Record<string, DeviceTensor>;
  nextToken: DeviceTensor;
  read: Promise<{ outputs: Record<string, Tensor>; nextToken: Int32Array }>;
}

/** A graph's interface as plain data: its name, module attributes, inputs and outputs. */
export interface GraphSignature {
  name: string;
  attrs: Readonly<Record<string, string>>;
  inputs: { name: string; dtype: DType; shape: string[] }[];
  outputs: { name: string; dtype: DType; shape: string[] }[];
}

export function signatureOf(m: Module): GraphSignature {
  const entry = m.entry;
  if (!entry) throw new Error(`module @${m.name} has no entry function`);
  const io = (name: string | undefined, t: { dtype: DType; shape: readonly { toString(): string }[] }) => ({ name: name ?? "", dtype: t.dtype, shape: t.shape.map((d) => d.toString()) });
  return {
    name: m.name,
    // Sorted, as the text form prints them: a traced and a parsed module give the same signature.
    attrs: Object.fromEntries(Object.keys(m.attrs).sort().map((k) => [k, m.attrs[k]!])),
    inputs: entry.params.map((p) => io(p.name, p.type)),
    outputs: entry.results.map((r) => io(r.name, r.value.type)),
  };
}

/** The compiled graphs a backend loads: the modules its target's pipeline produced. */
export interface Program {
  graphs: readonly Module[];
  /** The target profile the pipeline compiled for (what the backend's code generation must respect too). */
  profile?: TargetProfile;
}

/** Weights bound to the program by name (checked against every graph before anything runs). */
export interface BoundWeights extends WeightSource {
  /**
   * The checkpoint the tensors live in, for targets that read its files themselves (ONNX, CUDA);
   * undefined for a program that declares no weights.
   */
  checkpoint?: Checkpoint;
  /**
   * Reads a weight only to check it (no NaN or infinity; throws naming the tensor), keeping nothing:
   * for targets that read the checkpoint's files themselves.
   */
  check?(name: string, type: TensorType): void;
  /**
   * A bf16 weight's values as their 16-bit patterns, where the source holds them so (no decoding to
   * f32 and back for a target that stores bf16): undefined where it does not.
   */
  bf16Bits?(name: string, type: TensorType): Uint16Array | undefined;
}

export interface LoadedModel {
  graphs: Readonly<Record<string, GraphRunner>>;
  signatures: Readonly<Record<string, GraphSignature>>;
  /**
   * Greedy generation done by the backend itself (the CUDA program keeps the KV cache on the GPU),
   * with speculative decoding when asked (`draft`); backends without it use the shared loops in
   * generation.ts and speculative.ts over the graphs.
   */
  generate?(prompts: number[][], maxNew: number, opts?: { draft?: "mtp" }): Promise<{ tokens: number[][]; stepLogits: Float32Array[][]; draft?: DraftStats }>;
  /**
   * With runOnDevice: `t` copied once into a buffer with room for `rows` positions along `axis`, so
   * that the graphs that grow it (cache_append) write only the new rows each step.
   */
  reserve?(t: DeviceTensor, axis: number, rows: number): DeviceTensor;
  /** Frees a device tensor's memory (shared by every tensor made from it by in-place growth). */
  release?(t: DeviceTensor): void;
  /**
   * With reserve: the same buffer holding only the first `length` positions along `axis` (the rows
   * after them are overwritten by the next growth): speculative decoding drops a rejected token so.
   */
  truncate?(t: DeviceTensor, axis: number, length: number): DeviceTensor;
  close(): void;
}

/** How speculative decoding's drafts fared. */
export interface DraftStats {
  /** Drafts checked by the main model. */
  drafted: number;
  /** Of them, those the main model agreed with (each saved a main forward). */
  accepted: number;
  /** Main-model forwards (the prefill included). */
  mainForwards: number;
  /** Draft-graph runs. */
  draftRuns: number;
}

/** Settings a backend may read (the others ignore them). */
export interface BackendOptions {
  /** Print each kernel's time (backends that can). */
  profileKernels?: boolean;
}

export interface Backend {
  name: string;
  summary: string;
  /** The target whose pipeline prepares the program ("interp" runs the IR as it is). */
  target: "interp" | "onnx" | "wgsl" | "cuda";
  /**
   * Whether the backend runs this op itself; an op it does not run but that has a decomposition is
   * decomposed by the target's pipeline (compiler/driver/targets.ts).
   */
  lowers(opName: string): boolean;
  load(program: Program, weights: BoundWeights, options?: BackendOptions): Promise<LoadedModel>;
}
