/**
 * Compute pipelines by shader text and binding kinds, per device: the same kernel in every layer, and
 * in the forward and decode graphs of a model, is compiled once (ling-tiny: 103 kernels, 36
 * distinct), and the distinct ones compile in parallel (createComputePipelineAsync).
 */
import type { ArtifactLaunch } from "./artifact";
import { chainOf, type Pipeline } from "./launch-plan";

// GPUShaderStage.COMPUTE, spelled out so the host needs no globals.
const COMPUTE = 0x4;

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<Pipeline>>>();

/** What makes two kernels one pipeline: their shader (less its first line, the kernel's name) and binding kinds. */
export function pipelineKey(k: ArtifactLaunch): string {
  return `${k.bindings.map((b) => (b.write ? "w" : "r")).join("")}\n${k.wgsl.replace(/^\/\/ .*\n/, "")}`;
}

/** The pipelines of a launch's chain. */
export function pipelinesOf(device: GPUDevice, k: ArtifactLaunch): Promise<Pipeline[]> {
  return Promise.all(chainOf(k).map((x) => pipelineOf(device, x)));
}

function pipelineOf(device: GPUDevice, k: ArtifactLaunch): Promise<Pipeline> {
  let cache = pipelineCache.get(device);
  if (!cache) pipelineCache.set(device, (cache = new Map()));
  const key = pipelineKey(k);
  let p = cache.get(key);
  if (!p) {
    const entries: GPUBindGroupLayoutEntry[] = k.bindings.map((b, j) => ({ binding: j, visibility: COMPUTE, buffer: { type: b.write ? "storage" : "read-only-storage" } }));
    entries.push({ binding: k.bindings.length, visibility: COMPUTE, buffer: { type: "uniform" } });
    const layout = device.createBindGroupLayout({ entries, label: k.name });
    const module = device.createShaderModule({ code: k.wgsl, label: k.name });
    p = device
      .createComputePipelineAsync({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: "main" }, label: k.name })
      .then(
        (pipeline) => ({ pipeline, layout }),
        // The pipeline's error only says the module is invalid: the shader compiler's own messages say why.
        async (e: unknown) => {
          throw new Error(`${e instanceof Error ? e.message : String(e)}${await shaderErrors(module, k.name)}`);
        },
      );
    cache.set(key, p);
    // A failed compilation is not kept: the next load tries again (and reports it again).
    p.catch(() => cache!.delete(key));
  }
  return p;
}

/** The shader compiler's error messages for a module, as lines "kernel:line:column: message" (empty if none). */
async function shaderErrors(module: GPUShaderModule, name: string): Promise<string> {
  try {
    const info = await module.getCompilationInfo();
    return info.messages
      .filter((m) => m.type === "error")
      .map((m) => `\n - ${name}:${m.lineNum}:${m.linePos}: ${m.message}`)
      .join("");
  } catch {
    return "";
  }
}

/**
 * Compiles pipelines (`work`) under a validation error scope: a compilation WebGPU rejects, thrown
 * or reported in the scope, becomes one error naming it (at load, and when a run first needs a
 * kernel's main form).
 */
export async function compileChecked<T>(device: GPUDevice, work: () => Promise<T>): Promise<T> {
  device.pushErrorScope("validation");
  let out: T;
  try {
    out = await work();
  } catch (e) {
    await device.popErrorScope();
    throw new Error(`WebGPU rejected a kernel of the compiled model: ${e instanceof Error ? e.message : String(e)}`);
  }
  const err = await device.popErrorScope();
  if (err) throw new Error(`WebGPU rejected a kernel of the compiled model: ${err.message}`);
  return out;
}
