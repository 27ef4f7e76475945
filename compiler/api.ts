/**
 * lingc's public API for scripts (the package's main export, `import { load } from "lingc"`): load a
 * model (a built-in config, a checkpoint folder, a model file or an IR text) on a backend, run its
 * graphs, generate tokens (greedy or sampled, streamed through a callback, stopping at the config's
 * end-of-sequence ids). The types here are the whole surface: they name no internal module, so the
 * package's declarations are this file's alone (scripts/build.mjs emits them to dist/api.d.ts). Errors
 * in the input are Errors whose message says what is wrong and where, as the CLI prints them.
 */
import "../ir/ops";
import { generate as generateTokens } from "../backends/generation";
import { LingcError } from "../ir/errors";
import { Tensor as InternalTensor } from "../ir/tensor";
import type { DType } from "../ir/dtype";
import { loadModel } from "./driver/load";
import { openSource } from "./driver/source";

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
}

export interface Model {
  /** The graphs it holds (forward, decode), with their inputs and outputs. */
  readonly graphs: Readonly<Record<string, { inputs: readonly { name: string; dtype: string; shape: readonly string[] }[]; outputs: readonly { name: string; dtype: string; shape: readonly string[] }[] }>>;
  /** The backend that runs it. */
  readonly backend: string;
  /** Runs one graph (default "forward") on named inputs; returns every output by name. */
  run(inputs: Readonly<Record<string, Tensor>>, graph?: string): Promise<Record<string, Tensor>>;
  /** New token ids per prompt. */
  generate(prompts: readonly (readonly number[])[], options: GenerateOptions): Promise<number[][]>;
  /** Frees what the backend holds (device memory, sessions, files). */
  close(): void;
}

const asInternal = (name: string, t: Tensor): InternalTensor => {
  if (t instanceof InternalTensor) return t;
  if (!Array.isArray(t.shape) || !t.data) throw new LingcError(`input ${name}: a tensor needs dtype, shape and data`);
  const data = t.data instanceof BigInt64Array ? Array.from(t.data, Number) : (t.data as ArrayLike<number>);
  return InternalTensor.from(t.dtype as DType, t.shape, data);
};

/** Loads a model on a backend: compiles its graphs for the backend's target and binds the weights. */
export async function load(model: string, options: LoadOptions = {}): Promise<Model> {
  const source = await openSource(model, options.weights, options.dtype ? { dtype: options.dtype } : {});
  const { model: loaded, backend } = await loadModel({
    source,
    backend: options.backend ?? "interp",
    settings: { quantize: options.quantize, stages: options.stages },
    passes: options.passes,
  });
  const eos = source.config?.eosTokenIds ?? [];
  return {
    graphs: Object.fromEntries(Object.entries(loaded.signatures).map(([name, s]) => [name, { inputs: s.inputs, outputs: s.outputs }])),
    backend,
    async run(inputs, graph = "forward") {
      const runner = loaded.graphs[graph];
      if (!runner) throw new LingcError(`the model has no graph '${graph}' (it has ${Object.keys(loaded.graphs).join(", ")})`);
      return runner.run(Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, asInternal(k, t)])));
    },
    async generate(prompts, o) {
      const r = await generateTokens(
        loaded,
        prompts.map((p) => [...p]),
        o.maxNewTokens,
        {
          sampling: { temperature: o.temperature ?? 0, ...(o.topK !== undefined ? { topK: o.topK } : {}), ...(o.topP !== undefined ? { topP: o.topP } : {}), seed: o.seed ?? 0 },
          eos: o.eosTokenIds ?? eos,
          ...(o.onToken ? { onToken: o.onToken } : {}),
        },
      );
      return r.tokens;
    },
    close: () => loaded.close(),
  };
}
