/** The interpreter as a backend: runs the traced graphs with the reference interpreter (ir/interpret.ts). */
import { interpret } from "../../ir/interpret";
import { buildLing2 } from "../../models/ling2";
import { bindCheckpoint } from "../../models/checkpoint/bind";
import { Checkpoint } from "../../models/checkpoint/checkpoint";
import type { Backend, GraphRunner, LoadedModel } from "../backend";
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
    const forward = buildLing2(config, "forward");
    const decode = buildLing2(config, "decode");
    const ck = Checkpoint.open(checkpointDir);
    try {
      const weights = bindCheckpoint([forward, decode], ck);
      return { config, forward: runner(forward, weights), decode: runner(decode, weights), close: () => ck.close() };
    } catch (e) {
      ck.close();
      throw e;
    }
  },
};
