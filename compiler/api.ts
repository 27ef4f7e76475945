/**
 * lingc's public API for scripts (the package's main export, `import { load } from "lingc"`): load a
 * model (a built-in config, a checkpoint folder, a model file or an IR text) on a backend, run its
 * graphs, generate tokens (greedy or sampled, streamed through a callback, stopping at the config's
 * end-of-sequence ids). The types here are the whole surface: they name no internal module, so the
 * package's declarations are this file's alone (scripts/build.mjs emits them to dist/api.d.ts). Errors
 * in the input are Errors whose message says what is wrong and where, as the CLI prints them.
 */
import "../ir/ops";
import { loadModel } from "./driver/load";
import { publicModel } from "./public-model";
import { folderTokenizer } from "./driver/tokenizer";
import { openSource } from "./driver/source";
import { LingcError } from "../ir/errors";

// Source maps on, as the CLI's launcher does: provenance in IR dumps names the model's .ts lines.
process.setSourceMapsEnabled(true);

/** A tensor as the API takes and returns it: element type, shape, row-major values. */
export interface Tensor {
  dtype: "f32" | "f16" | "bf16" | "i64" | "i32" | "u8" | "bool" | string;
  shape: readonly number[];
  data: Float32Array | Int32Array | Float64Array | BigInt64Array | ArrayLike<number>;
}

export interface LoadOptions {
  /** Which backend runs the graphs (default "interp"): "interp", "onnx" (needs onnxruntime-node), "wgsl" (WebGPU through Dawn) or "cuda". */
  backend?: "interp" | "onnx" | "wgsl" | "cuda";
  /** Where the weights are, for a model that has none of its own (a built-in config, a model file, an IR text). */
  weights?: string;
  /** The dtype activations are computed in (default: the checkpoint's). */
  dtype?: "f32" | "bf16" | "f16";
  /** Quantize the projections to FP8 when the weights are bound. */
  quantize?: "fp8";
  /** Cut each graph into this many pipeline stages. */
  stages?: number;
  /** A pass pipeline replacing the backend's default. */
  passes?: string;
  /** Also compile the model's draft graph (its MTP layer), for generate's `draft: "mtp"`. */
  draft?: "mtp";
}

export interface GenerateOptions {
  /** How many tokens to generate per prompt at most. */
  maxNewTokens: number;
  /** 0 (default) is greedy; above it, tokens are sampled. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** The sampling seed (default 0): one seed gives the same ids on every run and backend. */
  seed?: number;
  /** Ids that end a sequence (default: the model config's eos_token_id); [] never stops early. */
  eosTokenIds?: readonly number[];
  /** Called with each new token as it is chosen (sequence index, token id). */
  onToken?: (sequence: number, token: number) => void;
  /** Speculative decoding with the model's MTP layer as the draft (load with `draft: "mtp"`): greedy only, the same ids as without. */
  draft?: "mtp";
}

/** What `import model from "lingc:ling-tiny"` (or `"./config.json?lingc"`) gives a bundled web app: the model compiled to WGSL at build time. */
export interface CompiledModel {
  /** The compiled graphs (WGSL kernels and launch plans) by name. */
  readonly artifacts: Readonly<Record<string, unknown>>;
  /** WebGPU limits above the defaults the kernels were compiled for: request them with the device. */
  readonly requiredLimits: Readonly<Record<string, number>>;
  /** Loads it on a WebGPU device (a GPUDevice) with the checkpoint's model.safetensors bytes. */
  load(device: object, weights: ArrayBuffer): Promise<Model>;
  /** Text to ids and back, when the config.json imported has a tokenizer.json beside it (embedded at build time). */
  readonly tokenizer?: { encode(text: string): number[]; decode(ids: readonly number[]): string };
}

export interface Model {
  /** The graphs it holds (forward, decode), with their inputs and outputs. */
  readonly graphs: Readonly<Record<string, { inputs: readonly { name: string; dtype: string; shape: readonly string[] }[]; outputs: readonly { name: string; dtype: string; shape: readonly string[] }[] }>>;
  /** The backend that runs it. */
  readonly backend: string;
  /** Text to ids and back, when the checkpoint folder has a tokenizer.json (tokenizers.js). */
  readonly tokenizer?: { encode(text: string): number[]; decode(ids: readonly number[]): string };
  /** Runs one graph (default "forward") on named inputs; returns every output by name. */
  run(inputs: Readonly<Record<string, Tensor>>, graph?: string): Promise<Record<string, Tensor>>;
  /** New token ids per prompt. */
  generate(prompts: readonly (readonly number[])[], options: GenerateOptions): Promise<number[][]>;
  /** Frees what the backend holds (device memory, sessions, files). */
  close(): void;
}

/** Loads a model on a backend: compiles its graphs for the backend's target and binds the weights. */
export async function load(model: string, options: LoadOptions = {}): Promise<Model> {
  if (options.draft && (options.stages ?? 1) > 1) throw new LingcError("load: draft 'mtp' runs the model in one stage; it does not combine with stages yet");
  const source = await openSource(model, options.weights, options.dtype ? { dtype: options.dtype } : {});
  const { model: loaded, backend } = await loadModel({
    source,
    backend: options.backend ?? "interp",
    settings: { quantize: options.quantize, stages: options.stages },
    passes: options.passes,
    ...(options.draft ? { graphs: [...source.graphs, "draft"] } : {}),
  });
  return publicModel(loaded, backend, source.config?.eosTokenIds ?? [], folderTokenizer(source.weights));
}
