/**
 * The driver's flow (DESIGN "the flow"): a source's graphs -> the target's pipeline (or the user's)
 * -> a Program for the backend; weights are bound to the program by name. Each step is a plain
 * function of the previous step's value; backends only ever see the Program.
 */
import { LingcError } from "../../ir/errors";
import { collectWeights } from "../../ir/weights";
import { ProfileRegistry } from "../../ir/target";
import type { BoundWeights, Program } from "../../backends/backend";
import { bindCheckpoint } from "../../backends/weights/bind";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { parsePipeline, runPasses, type PassRunOptions, type PassTiming } from "../passes/manager";
import type { Source } from "./source";
import { defaultPipeline, targetProfile, type Target, type TargetSettings } from "./targets";

export interface CompileRequest {
  source: Source;
  /** The graphs to compile (default: all the source has). */
  graphs?: readonly string[];
  target: Target;
  settings?: TargetSettings;
  /** A pipeline that replaces the target's default (`--passes`). */
  passes?: string;
  /** Printing and verification around the passes. */
  passRun?: Omit<PassRunOptions, "profiles">;
}

export interface Compiled {
  program: Program;
  /** The pipeline that ran, as text. */
  pipeline: string;
  timings: PassTiming[];
}

/**
 * The pipeline a target runs, as text, and the profile it compiles for (registered in `profiles`):
 * the target's default for these settings, or `passes` when given.
 */
export async function pipelineFor(target: Target, settings: TargetSettings, passes: string | undefined, profiles: ProfileRegistry) {
  const profile = await targetProfile(target, settings, profiles);
  if (passes !== undefined && settings.noFuse?.length) {
    throw new LingcError("--no-fuse changes the target's default pipeline; with --passes, write fusion{disable=...} in the pipeline instead");
  }
  return { profile, text: passes ?? defaultPipeline(target, profile, settings) };
}

export async function compileProgram(req: CompileRequest): Promise<Compiled> {
  const profiles = new ProfileRegistry();
  const { profile, text } = await pipelineFor(req.target, req.settings ?? {}, req.passes, profiles);
  const passes = parsePipeline(text);
  const timings: PassTiming[] = [];
  const graphs = (req.graphs ?? req.source.graphs).map((g) => {
    const m = req.source.module(g);
    timings.push(...runPasses(m, passes, { ...req.passRun, profiles }));
    return m;
  });
  return { program: { graphs, profile }, pipeline: text, timings };
}

/** Opens the source's weights and checks them against every graph of the program (closed again on failure). */
export function bindWeights(source: Source, program: Program): BoundWeights {
  const declares = program.graphs.some((m) => collectWeights(m).length > 0);
  if (!source.weights && !declares) {
    return {
      get(name) {
        throw new LingcError(`the program declares no weight ${name}`);
      },
    };
  }
  if (!source.weights) {
    const what = source.config ? "is a built-in config with no weights" : "has no weights";
    throw new LingcError(`'${source.label}' ${what}: give a checkpoint folder (config.json + *.safetensors), or --weights with a folder or a .safetensors file`);
  }
  const ck = Checkpoint.open(source.weights);
  try {
    return { ...bindCheckpoint(program.graphs, ck), checkpoint: ck };
  } catch (e) {
    ck.close();
    throw e;
  }
}
