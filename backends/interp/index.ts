/** The interpreter as a backend: runs the program's graphs with the reference interpreter (ir/interpret.ts). */
import { interpret, type WeightResults, type WeightSource } from "../../ir/interpret";
import { getOp } from "../../ir/ops";
import type { Module } from "../../ir/module";
import { signatureOf, type Backend, type GraphRunner, type LoadedModel } from "../backend";

function runner(m: Module, weights: WeightSource): GraphRunner {
  // Weight casts and quantizations are computed on the first run and kept, as at load on a GPU.
  const weightResults: WeightResults = new WeakMap();
  return {
    async run(inputs, observe) {
      return interpret(m, inputs, weights, { observe, weightResults });
    },
  };
}

export const interpBackend: Backend = {
  name: "interp",
  summary: "the reference interpreter (CPU, exact HF numerics; slow, meant for checking)",
  target: "interp",
  lowers: (name) => getOp(name) !== undefined,
  async load(program, weights): Promise<LoadedModel> {
    return {
      graphs: Object.fromEntries(program.graphs.map((m) => [m.name, runner(m, weights)])),
      signatures: Object.fromEntries(program.graphs.map((m) => [m.name, signatureOf(m)])),
      close: () => undefined,
    };
  },
};
