/**
 * `lingc init <model>`: seeded random weights for every weight a model declares (and, on request,
 * random inputs for a graph), so that any model, the README's toy MLP included, can be run and
 * compared across backends without a checkpoint. Matrices are uniform in +-1/sqrt(fan-in); vectors
 * (norm scales, biases) are 1 +- 0.05; stacked expert weights are written one tensor per expert
 * under their HF names.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { LingcError } from "../../../ir/errors";
import { isFloat, type DType } from "../../../ir/dtype";
import { allocData, Tensor } from "../../../ir/tensor";
import { roundArrayInPlace } from "../../../ir/numerics";
import { isStackedWeight } from "../../../ir/module";
import { collectWeights, expertNames } from "../../../ir/weights";
import { generationRole, tokensInput } from "../../../ir/generation";
import { writeSafetensors, type LazyTensor } from "../../../backends/weights/safetensors";
import { refuseInputAsOutput } from "../io";
import { openSource } from "../../driver/source";
import { int, parseDims, str } from "../args";
import type { Command } from "./command";

/** A small seeded generator (mulberry32): the same seed gives the same weights everywhere. */
export class Seeded {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The next value in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** out[i] = base + scale x (2 next() - 1), the same values as that many next() calls, in one loop (no call per value: a model's worth of weights). */
  fill(out: Float32Array | Float64Array, base: number, scale: number): void {
    let s = this.state;
    for (let i = 0; i < out.length; i++) {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = base + scale * (2 * (((t ^ (t >>> 14)) >>> 0) / 4294967296) - 1);
    }
    this.state = s;
  }
}

function randomTensor(dtype: DType, shape: number[], rng: Seeded): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const vector = shape.length === 1;
  // Straight into the tensor's typed array: a plain array of a large model's embedding (hundreds of
  // millions of numbers) does not fit the JS heap.
  const data = allocData(dtype, n);
  rng.fill(data, vector ? 1 : 0, vector ? 0.05 : 1 / Math.sqrt(shape[shape.length - 1] || 1));
  if (data instanceof Float32Array) roundArrayInPlace(data, dtype);
  return new Tensor(dtype, shape, data);
}

export const init: Command = {
  spec: {
    name: "init",
    summary: "Writes seeded random weights for every weight a model declares (and random inputs for a graph on request), as safetensors.",
    positionals: [{ name: "model", help: "a model file (.ts), an IR text (.lir), a built-in config or a checkpoint folder" }],
    options: [
      { name: "weights", value: "FILE", help: "where to write the weights (.safetensors)", required: true },
      { name: "seed", value: "N", help: "random seed (default 1)" },
      { name: "inputs", value: "FILE", help: "also write random inputs for the graph (.safetensors)" },
      { name: "graph", value: "NAME", help: "the graph whose inputs --inputs writes (default: the first)" },
      { name: "dims", value: "SYM=N,...", help: "sizes of the graph's symbols for --inputs, e.g. B=2,S=5" },
    ],
    notes: ["example: lingc init examples/toy-mlp.ts --seed 7 --weights out/toy/model.safetensors --inputs out/toy/input.safetensors --dims B=2,S=5"],
  },
  async run(args, io) {
    const source = await openSource(args.positionals[0]!);
    const seed = int(args, "seed", 0) ?? 1;
    const rng = new Seeded(seed);
    // Made as the file is written (sorted by name, the order the values are drawn in): a large
    // model's weights never sit in memory at once.
    const weights: Record<string, LazyTensor> = {};
    for (const g of source.graphs) {
      for (const w of collectWeights(source.module(g))) {
        const shape = w.type.shape.map((d) => d.value!);
        const names = isStackedWeight(w.name) ? expertNames(w.name, shape[0]!) : [w.name];
        const part = isStackedWeight(w.name) ? shape.slice(1) : shape;
        const dtype = w.type.dtype;
        for (const n of names) if (!weights[n]) weights[n] = { dtype, shape: part, make: () => randomTensor(dtype, part, rng) };
      }
    }
    // The config is read, the outputs written: neither may be the other, nor the two outputs one file.
    const modelArg = args.positionals[0]!;
    const configFile = existsSync(join(modelArg, "config.json")) ? join(modelArg, "config.json") : undefined;
    refuseInputAsOutput(str(args, "weights")!, [configFile], "--weights");
    const inputsOut = str(args, "inputs");
    if (inputsOut) refuseInputAsOutput(inputsOut, [configFile], "--inputs");
    if (inputsOut && resolve(inputsOut) === resolve(str(args, "weights")!)) throw new LingcError(`--inputs ${inputsOut} is the --weights file too; give them two files`);
    writeSafetensors(str(args, "weights")!, weights);
    io.err(`wrote ${Object.keys(weights).length} weight tensor(s) to ${str(args, "weights")} (seed ${seed})\n`);
    const inputsPath = str(args, "inputs");
    if (!inputsPath) return 0;
    const graph = str(args, "graph") ?? source.graphs[0]!;
    const m = source.module(graph);
    const dims = parseDims(str(args, "dims"));
    // Token ids: the input a generation graph declares (its vocabulary the logits' last axis), or
    // one the module's `tokens` and `vocab` attributes name (a forward or training graph's).
    const role = generationRole(m);
    const logits = role ? m.entry!.results.find((r) => r.name === role.logits) : undefined;
    const tokens = tokensInput(m);
    const vocab = logits?.value.type.shape[logits.value.type.rank - 1]?.value ?? (m.attrs["vocab"] ? Number(m.attrs["vocab"]) : undefined);
    const inputs: Record<string, Tensor> = {};
    for (const p of m.entry!.params) {
      const shape = p.type.shape.map((d) => {
        for (const s of d.symbols()) if (!dims.has(s)) throw new LingcError(`input ${p.name} has the symbol ${s}: give its size with --dims ${s}=N`);
        return d.eval(dims);
      });
      if (isFloat(p.type.dtype)) inputs[p.name!] = Tensor.from(p.type.dtype, shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * rng.next() - 1));
      else if (p.name === tokens && vocab) inputs[p.name!] = Tensor.from(p.type.dtype, shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.floor(rng.next() * vocab)));
      else throw new LingcError(`input ${p.name} is ${p.type}: lingc does not make up integer inputs (only token ids: the input a module's generation role or tokens attribute names)`);
    }
    writeSafetensors(inputsPath, inputs);
    io.err(`wrote ${Object.keys(inputs).join(", ")} to ${inputsPath}\n`);
    return 0;
  },
};
