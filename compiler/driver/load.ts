/** Loading a source on a backend: compile for the backend's target, bind the weights, load. */
import { getBackend } from "../../backends";
import type { BackendOptions, BoundWeights, LoadedModel, Program } from "../../backends/backend";
import { bindWeights, compileProgram } from "./compile";
import type { Source } from "./source";
import type { TargetSettings } from "./targets";

export interface LoadRequest {
  source: Source;
  backend: string;
  settings?: TargetSettings;
  passes?: string;
  options?: BackendOptions;
  /** The graphs to load (default: the source's). */
  graphs?: readonly string[];
  /** Weights from elsewhere than the source's checkpoint (a benchmark's random weights). */
  weights?: BoundWeights;
}

export interface Loaded {
  model: LoadedModel;
  program: Program;
  backend: string;
}

export async function loadModel(req: LoadRequest): Promise<Loaded> {
  const backend = getBackend(req.backend);
  const { program } = await compileProgram({ source: req.source, target: backend.target, settings: req.settings, passes: req.passes, graphs: req.graphs });
  const weights = req.weights ?? bindWeights(req.source, program);
  try {
    const model = await backend.load(program, weights, req.options);
    return {
      model: {
        ...model,
        close: () => {
          model.close();
          weights.checkpoint?.close();
        },
      },
      program,
      backend: backend.name,
    };
  } catch (e) {
    weights.checkpoint?.close();
    throw e;
  }
}
