/**
 * The driver's flow (DESIGN "the flow"): a source's graphs -> the target's pipeline (or the user's)
 * -> a Program for the backend; weights are bound to the program by name. Each step is a plain
 * function of the previous step's value; backends only ever see the Program.
 */
import { LingcError } from "../../ir/errors";
import { collectWeights } from "../../ir/weights";
import { ProfileRegistry } from "../../ir/target";
import type { BoundWeights, Program } from "../../backends/backend";
import { bindCheckpoint, checkpointNames, refuseUnknownTensors } from "../../backends/weights/bind";
import { checkConfigRecord, configRecord } from "../../models/config-record";
import { generationRole } from "../../ir/generation";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { parsePipeline, runPasses, type PassRunOptions, type PassTiming } from "../passes/manager";
import type { Source } from "./source";
import { defaultPipeline, targetProfile, type Fp8Settings, type Target, type TargetSettings } from "./targets";

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
  if (passes !== undefined && settings.prefer?.length) {
    throw new LingcError("--prefer changes the target's default pipeline; with --passes, write select{prefer=...} in the pipeline instead");
  }
  const text = passes ?? defaultPipeline(target, profile, settings);
  const stages = settings.stages && settings.stages > 1 ? `pipeline{stages=${settings.stages}}` : "";
  return { profile, text: [text, stages].filter(Boolean).join(",") };
}

/**
 * The settings with the source's FP8 layout folded in: an FP8 checkpoint's projections are stored
 * in fp8 (its quantization_config), `--quantize fp8` quantizes them from the weights at load;
 * `--activation-scheme` chooses what happens to their inputs.
 */
export function fp8Settings(source: Source, settings: TargetSettings): TargetSettings {
  const q = source.config?.quantization;
  if (!q && !settings.quantize) {
    if (settings.activationScheme) throw new LingcError(`--activation-scheme applies to FP8 models (an FP8 checkpoint, or --quantize fp8); ${source.label} has no FP8 projections`);
    if (settings.fp8Gather) throw new LingcError(`--fp8-gather applies to FP8 models (an FP8 checkpoint, or --quantize fp8); ${source.label} has no FP8 projections`);
    return settings;
  }
  if (!source.config) throw new LingcError(`--quantize applies to a model traced from a config; ${source.label} is already a graph`);
  if (q && settings.quantize) throw new LingcError(`${source.label} is already an FP8 checkpoint (its config.json has a quantization_config); leave out --quantize`);
  if (q && q.weightBlock[0] !== q.weightBlock[1]) throw new LingcError(`${source.label}: weight_block_size [${q.weightBlock.join(", ")}] is not square; lingc's fp8 pass takes square blocks`);
  const fp8: Fp8Settings = q
    ? { format: q.format === "f8e4m3fn" ? "e4m3" : "e5m2", weightBlock: q.weightBlock[0], activations: settings.activationScheme ?? q.activationScheme, weights: "stored" }
    : { format: "e4m3", weightBlock: 128, activations: settings.activationScheme ?? "dynamic", weights: "quantize" };
  if (settings.fp8Gather && fp8.activations !== "dynamic") throw new LingcError(`--fp8-gather places the activations' quantization; with --activation-scheme none there is none`);
  return { ...settings, fp8: settings.fp8Gather ? { ...fp8, gather: settings.fp8Gather } : fp8 };
}

export async function compileProgram(req: CompileRequest): Promise<Compiled> {
  const profiles = new ProfileRegistry();
  const { profile, text } = await pipelineFor(req.target, fp8Settings(req.source, req.settings ?? {}), req.passes, profiles);
  const passes = parsePipeline(text);
  const timings: PassTiming[] = [];
  // A training graph (its `objective` attribute names the loss) is differentiated first, and a
  // training step (its `optimizer` attribute) gets the optimizer's pass after that, unless the
  // pipeline given already runs them.
  let prefix = "";
  // Cut into stages by plan, a program's graphs must be cut at the same layers (each stage keeps its
  // layers' KV cache from prefill to decode): the decode graph is planned first and the others take
  // its cuts (their schedule units start the same way; forward and prefill only add the head, and
  // forward the MTP layer).
  const names = req.graphs ?? req.source.graphs;
  const planned = passes.some((p) => p.pass.name === "pipeline" && !(p.options["cuts"] as readonly string[] | undefined)?.length);
  const modules = new Map(names.map((g) => [g, req.source.module(g)]));
  const order = planned ? [...names].sort((a, b) => Number(generationRole(modules.get(b)!)?.role === "decode") - Number(generationRole(modules.get(a)!)?.role === "decode")) : names;
  let cuts: string | undefined;
  for (const g of order) {
    const m = modules.get(g)!;
    const has = (name: string) => passes.some((p) => p.pass.name === name);
    const differentiate = m.attrs["objective"] !== undefined && !has("autodiff");
    const optimizer = m.attrs["optimizer"];
    const step = optimizer !== undefined && !has(optimizer) ? optimizer : "";
    const added = [differentiate ? "autodiff" : "", step].filter(Boolean).join(",");
    if (added) prefix = added;
    const these = cuts ? passes.map((p) => (p.pass.name === "pipeline" ? { ...p, options: { ...p.options, cuts: cuts!.split(",") } } : p)) : passes;
    timings.push(...runPasses(m, [...parsePipeline(added), ...these], { ...req.passRun, profiles }));
    if (planned && cuts === undefined) cuts = m.attrs["pipeline_cuts"] || undefined;
  }
  const graphs = names.map((g) => modules.get(g)!);
  return { program: { graphs, profile }, pipeline: prefix ? `${prefix}${text ? `,${text}` : ""}` : text, timings };
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
    const bound = bindCheckpoint(program.graphs, ck);
    // A model traced from a config: every tensor must be a weight of one of its graphs (as compiled,
    // or as traced: fp8 scales are the compiled graphs'). An IR text or model file bound with
    // --weights may read a part of a checkpoint on purpose.
    if (source.config) {
      // A built-in config given --weights: the folder's config.json must describe the same model.
      checkConfigRecord(configRecord(source.config), source.weights, `model ${source.label}`);
      // Graphs the program does not hold (the forward's MTP layer when only decode was compiled) are
      // traced for their weight names; the program's own graphs are not traced again.
      const compiled = new Set(program.graphs.map((m) => m.name));
      const others = source.graphs.filter((g) => !compiled.has(g)).map((g) => source.module(g));
      const known = checkpointNames([...program.graphs, ...others]);
      refuseUnknownTensors(ck, known);
    } else {
      // A graph from text (an IR file) records the config it was traced from: the checkpoint's must match.
      const recorded = program.graphs.find((m) => m.attrs["config"])?.attrs["config"];
      if (recorded) checkConfigRecord(recorded, source.weights, source.label);
    }
    return { ...bound, checkpoint: ck };
  } catch (e) {
    ck.close();
    throw e;
  }
}
