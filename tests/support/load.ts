/** Loading a checkpoint on a backend the way the CLI does (through the driver), for tests. */
import type { GraphRunner, LoadedModel } from "../../backends/backend";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import type { TargetSettings } from "../../compiler/driver/targets";

export interface TestModel extends LoadedModel {
  forward: GraphRunner;
  decode: GraphRunner;
}

export async function loadCheckpoint(backend: string, checkpointDir: string, settings: TargetSettings = {}, passes?: string): Promise<TestModel> {
  const { model } = await loadModel({ source: await openSource(checkpointDir), backend, settings, passes });
  return { ...model, forward: model.graphs["forward"]!, decode: model.graphs["decode"]! };
}
