/**
 * What every checkpoint-reading backend does first: trace the forward and decode graphs, open the
 * checkpoint and check it against both (shapes and dtypes, by name), then build the loaded model.
 * The checkpoint is closed if anything on the way throws; afterwards the model's close() owns it.
 */
import type { WeightSource } from "../ir/interpret";
import type { Module } from "../ir/module";
import { bindCheckpoint } from "../models/checkpoint/bind";
import { Checkpoint } from "../models/checkpoint/checkpoint";
import type { LingConfig } from "../models/config";
import { buildLing2 } from "../models/ling2";

export interface BoundGraphs {
  ck: Checkpoint;
  forward: Module;
  decode: Module;
  weights: WeightSource;
}

export async function withBoundCheckpoint<T>(config: LingConfig, checkpointDir: string, use: (b: BoundGraphs) => T | Promise<T>): Promise<T> {
  const forward = buildLing2(config, "forward");
  const decode = buildLing2(config, "decode");
  const ck = Checkpoint.open(checkpointDir);
  try {
    return await use({ ck, forward, decode, weights: bindCheckpoint([forward, decode], ck) });
  } catch (e) {
    ck.close();
    throw e;
  }
}
