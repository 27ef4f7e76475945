/**
 * Targets and their default pipelines, as data (`lingc compile --target T --print-pipeline`). A
 * pipeline is the text the pass manager parses; the profile a target compiles for is named in it,
 * so printing the pipeline shows exactly what the backend will receive.
 */
import { LingcError } from "../../ir/errors";
import { CUDA_SM90A, ONNX_23, ProfileRegistry, WEBGPU_BASELINE, type TargetProfile } from "../../ir/target";
import { profileFromAdapter, withLimits } from "../../ir/target/webgpu";
import { checkFusionNames } from "../passes/fusion";
import { allOps } from "../../ir/ops";
import { getBackend } from "../../backends";

export const TARGETS = ["ir", "onnx", "wgsl", "cuda"] as const;
export type Target = (typeof TARGETS)[number] | "interp";

export interface TargetSettings {
  /** Fusions switched off in the default pipeline (`--no-fuse`). */
  noFuse?: readonly string[];
  /** WebGPU: "baseline" (default) or "adapter" (the live adapter's limits). */
  webgpuProfile?: string;
  /** WebGPU: limit overrides NAME=VALUE. */
  limits?: readonly string[];
  /**
   * FP8 projections: the fp8 pass that starts the pipeline (set by the driver for an FP8
   * checkpoint, or for `--quantize fp8`; see fp8Settings in compile.ts).
   */
  fp8?: Fp8Settings;
  /** `--activation-scheme`: how an FP8 model treats the inputs of its FP8 projections. */
  activationScheme?: "dynamic" | "none";
  /** `--fp8-gather`: where the routed experts' inputs are quantized, before their token gather or after it (default: fp8Defaults, by target). */
  fp8Gather?: "before" | "after";
  /** `--quantize fp8`: quantize the model's projections to FP8 when its weights are bound. */
  quantize?: "fp8";
  /** `--stages N`: cut each graph into N pipeline stages after the pipeline (the pipeline pass). */
  stages?: number;
  /** `--prefer KIND:KERNEL,...` (CUDA): the runtime's kernel for a kind of step, whatever the sizes (select's prefer). */
  prefer?: readonly string[];
}

export interface Fp8Settings {
  format: "e4m3" | "e5m2";
  weightBlock: number;
  activations: "dynamic" | "none";
  /** stored: the checkpoint holds the projections in fp8; quantize: quantized from its weights. */
  weights: "stored" | "quantize";
  /** The fp8 pass's `gather` (default: fp8Defaults, by target). */
  gather?: "before" | "after";
}

/** The fp8 pass of these settings, as pipeline text. */
export function fp8PassText(f: Fp8Settings): string {
  return `fp8{format=${f.format},weight-block=${f.weightBlock},activations=${f.activations},weights=${f.weights}${f.gather ? `,gather=${f.gather}` : ""}}`;
}

/**
 * The fp8 settings with the target's default where a setting is left open: on CUDA the routed
 * experts' tokens are quantized before their gather (measured on the H200, Ling-mini W8A8, same
 * call: prefill 1x8192 49.74-50.18 ms against 51.07-51.26 after, decode batch 1 1.393-1.418 against
 * 1.424-1.440 ms a step, batch 32 5.63-5.64 against 5.47-5.48; bench/results/fp8-norm-2026-12-02-h200.md);
 * elsewhere after (WebGPU's baseline profile has too few storage buffers for the experts' kernels
 * over gathered codes).
 */
export function fp8Defaults(target: Target, f: Fp8Settings): Fp8Settings {
  return f.gather || f.activations !== "dynamic" ? f : { ...f, gather: target === "cuda" ? "before" : "after" };
}

/** The profile a target compiles for (registered in `profiles` under its name). */
export async function targetProfile(target: Target, settings: TargetSettings, profiles: ProfileRegistry): Promise<TargetProfile | undefined> {
  let p: TargetProfile | undefined;
  if (target === "wgsl" || (target === "ir" && (settings.webgpuProfile || settings.limits?.length))) {
    const name = settings.webgpuProfile ?? "baseline";
    if (name === "baseline") p = WEBGPU_BASELINE;
    else if (name === "adapter") {
      const { nodeAdapter } = await import("../../backends/wgsl/node");
      p = profileFromAdapter(await nodeAdapter());
    } else throw new LingcError(`unknown target profile '${name}' (baseline or adapter)`);
    if (settings.limits?.length) p = withLimits(p, settings.limits);
    // The GPU kernel forms forced on or off (tests run them on llvmpipe; a benchmark can compare).
    const forms = typeof process !== "undefined" ? process.env["LINGC_WGSL_GPU_FORMS"] : undefined;
    if (forms === "1" || forms === "0") p = { ...p, name: `${p.name}+gpu-forms=${forms}`, gpuForms: forms === "1" };
    else if (forms) throw new LingcError(`LINGC_WGSL_GPU_FORMS '${forms}': expected 1 or 0`);
    // The gemv form's loads per step (an A/B on a GPU; a test that compiles a whole model's GPU forms on llvmpipe).
    const unroll = typeof process !== "undefined" ? process.env["LINGC_WGSL_GEMV_UNROLL"] : undefined;
    if (unroll !== undefined) {
      if (!/^[1-8]$/.test(unroll)) throw new LingcError(`LINGC_WGSL_GEMV_UNROLL '${unroll}': expected a whole number from 1 to 8`);
      p = { ...p, name: `${p.name}+gemv-unroll=${unroll}`, gemvUnroll: Number(unroll) };
    }
    profiles.register(p);
    // For --target ir the profile is only made available to a --passes pipeline (fusion{profile=...}).
    return target === "wgsl" ? p : undefined;
  }
  if (settings.webgpuProfile || settings.limits?.length) throw new LingcError(`--target-profile and --limit set WebGPU limits; they do not apply to target ${target}`);
  if (target === "cuda") p = CUDA_SM90A;
  if (target === "onnx") p = ONNX_23;
  if (p) profiles.register(p);
  return p;
}

/** The ops a target's backend does not run itself but can run decomposed (none for ir). */
function decomposed(target: Target): string[] {
  if (target === "ir") return [];
  const backend = getBackend(target);
  return allOps()
    .filter((d) => d.decompose && !backend.lowers(d.name))
    .map((d) => d.name)
    .sort();
}

/** The default pipeline of a target for a profile. */
export function defaultPipeline(target: Target, profile: TargetProfile | undefined, settings: TargetSettings): string {
  const noFuse = settings.noFuse ?? [];
  checkFusionNames(noFuse);
  // FP8 first: cse after it merges the activation quantizations that projections share.
  // CUDA: a linear of operands widened to f32 (the router gate) multiplies the narrow ones on the
  // tensor cores into f32 (castlinear; cuBLASLt bf16 x bf16 -> f32), before dce drops the casts.
  const passes = [...(settings.fp8 ? [fp8PassText(fp8Defaults(target, settings.fp8))] : []), ...(target === "cuda" ? ["castlinear"] : []), "cse", "dce"];
  const ops = decomposed(target);
  if (ops.length) passes.push(`decompose{ops=${ops.join(",")}}`);
  const prefer = settings.prefer ?? [];
  if (prefer.length && target !== "cuda") throw new LingcError(`--prefer chooses the CUDA runtime's kernels; it does not apply to target ${target}`);
  const fusing = target === "wgsl" || target === "cuda";
  if (!fusing) {
    if (noFuse.length) throw new LingcError(`--no-fuse applies to the targets that fuse kernels (wgsl, cuda), not ${target}`);
    return passes.join(",");
  }
  const opts = [`profile=${profile!.name}`, ...(noFuse.length ? [`disable=${noFuse.join(",")}`] : [])];
  passes.push(`fusion{${opts.join(",")}}`);
  // On CUDA the runtime's kernel choices are part of the plan.
  if (target === "cuda") passes.push(`select{profile=${profile!.name}${prefer.length ? `,prefer=${prefer.join(",")}` : ""}}`);
  return passes.join(",");
}
