/**
 * What the commands that compile or run a model share: the model positional, where weights come
 * from, and the options that shape the target's pipeline (fusions to switch off, the WebGPU
 * profile, a whole replacement pipeline).
 */
import { LingcError } from "../../../ir/errors";
import { parsePipeline } from "../../passes/manager";
import type { SourceOptions } from "../../driver/source";
import type { TargetSettings } from "../../driver/targets";
import { int, str, UsageError, type OptionSpec, type ParsedArgs } from "../args";

export const MODEL_POSITIONAL = { name: "model", help: "a checkpoint folder (config.json + *.safetensors), a built-in config, or an IR text (.lir) with --weights" };

export const WEIGHTS_OPTION: OptionSpec = { name: "weights", value: "PATH", help: "where the weights are: a checkpoint folder or a .safetensors file (default: the model's checkpoint folder)" };

export const DTYPE_OPTION: OptionSpec = {
  name: "dtype",
  value: "DTYPE",
  help: "the dtype to compute activations in (default: the checkpoint's torch_dtype; f32 for an FP8 checkpoint); weights stored otherwise are cast to it",
  choices: ["f32", "bf16", "f16"],
};

/** How the model is traced, from --dtype (f32 by default with --quantize fp8, as for an FP8 checkpoint). */
export function sourceOptions(args: ParsedArgs): SourceOptions {
  const dtype = (str(args, "dtype") ?? (str(args, "quantize") === "fp8" ? "f32" : undefined)) as SourceOptions["dtype"];
  return dtype ? { dtype } : {};
}

/**
 * --passes, checked as an option value: a pipeline that does not parse (an unknown pass, a bad
 * option of one) is a usage error (exit 2) like any other bad option value.
 */
export function passesOption(args: ParsedArgs): string | undefined {
  const text = str(args, "passes");
  if (text === undefined) return undefined;
  try {
    parsePipeline(text);
  } catch (e) {
    if (e instanceof LingcError) throw new UsageError(`--passes: ${e.message}`);
    throw e;
  }
  return text;
}

export const PIPELINE_OPTIONS: OptionSpec[] = [
  { name: "passes", value: "LIST", help: "the pass pipeline, replacing the target's default (see --print-pipeline); empty for none" },
  { name: "no-fuse", value: "LIST", help: "fusions to switch off in the default pipeline (router, qk_norm_rope, attention, swiglu, quantize, residual_norm, norm_matmul, elementwise, or all)" },
  { name: "target-profile", value: "NAME", help: "WebGPU limits to compile for: baseline (default) or adapter", choices: ["baseline", "adapter"] },
  { name: "limit", value: "NAME=V,...", help: "override WebGPU limits, e.g. maxStorageBufferBindingSize=65536" },
  { name: "quantize", value: "FORMAT", help: "quantize the model's projections when its weights are bound (fp8: 128x128 weight blocks, transformers' recipe)", choices: ["fp8"] },
  { name: "stages", value: "N", help: "cut each graph into N pipeline stages balanced by predicted time (the pipeline pass, after the target's passes)" },
  { name: "prefer", value: "KIND:KERNEL,...", help: "--target/--backend cuda: run a kind of step with this kernel whatever the sizes, e.g. expert:expert_loop or attention:attn_tiles; expert:expert_gemv, linear:gemv, dense_swiglu:gemv and attention:attn_decode put the runtime's kernels back in the places of the generated ones, their size conditions kept; router:router runs the router a workgroup per token (where the warp router, the default, applies)" },
  { name: "activation-scheme", value: "S", help: "FP8 models: dynamic quantizes each projection's input per token (1x128 groups), none keeps it (weight-only); default: the checkpoint's", choices: ["dynamic", "none"] },
  { name: "fp8-gather", value: "WHEN", help: "FP8 models, dynamic activations: before quantizes the tokens the routed experts gather and gathers their codes (the same codes, T rows quantized instead of T x k), after quantizes the gathered rows (default: before on cuda, after elsewhere)", choices: ["after", "before"] },
];

export function targetSettings(args: ParsedArgs): TargetSettings {
  const list = (name: string) => str(args, name)?.split(",").map((s) => s.trim()).filter(Boolean);
  return {
    noFuse: list("no-fuse"),
    webgpuProfile: str(args, "target-profile"),
    limits: list("limit"),
    quantize: str(args, "quantize") as TargetSettings["quantize"],
    activationScheme: str(args, "activation-scheme") as TargetSettings["activationScheme"],
    fp8Gather: str(args, "fp8-gather") as TargetSettings["fp8Gather"],
    stages: int(args, "stages", 1),
    prefer: list("prefer"),
  };
}
