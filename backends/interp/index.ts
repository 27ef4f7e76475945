/** The interpreter as a backend: runs the traced graphs with the reference interpreter (ir/interpret.ts). */
import { interpret } from "../../ir/interpret";
import type { Backend, GraphRunner, LoadedModel } from "../backend";
import { withBoundCheckpoint } from "../bound";
import type { Module } from "../../ir/module";
import type { WeightSource } from "../../ir/interpret";

function runner(m: Module, weights: WeightSource): GraphRunner {
  return {
    async run(inputs, observe) {
      return interpret(m, inputs, weights, { observe });
    },
  };
}

export const interpBackend: Backend = {
  name: "interp",
  summary: "the reference interpreter (CPU, exact HF numerics; slow, meant for checking)",
  async load(config, checkpointDir): Promise<LoadedModel> {
    return withBoundCheckpoint(config, checkpointDir, ({ ck, forward, decode, weights }) => ({
      config,
      forward: runner(forward, weights),
      decode: runner(decode, weights),
      close: () => ck.close(),
    }));
  },
};
