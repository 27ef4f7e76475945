/**
 * WebGPU in Node: Dawn through the `webgpu` package (on CI, Mesa's software Vulkan). The object
 * returned by create() is kept on a module variable for the whole run: if it is garbage-collected
 * while work is pending, the process dies inside Dawn (../shared/TOOLCHAIN.md).
 */
import { LingcError } from "../../ir/errors";

let gpuRoot: GPU | undefined;

async function gpu(): Promise<GPU> {
  if (gpuRoot) return gpuRoot;
  let mod: { create: (flags: string[]) => GPU };
  try {
    mod = (await import("webgpu")) as unknown as { create: (flags: string[]) => GPU };
  } catch (e) {
    throw new LingcError(`WebGPU for Node (the 'webgpu' package) could not be loaded: ${(e as Error).message}`);
  }
  // Full-precision GPU timestamps: Dawn rounds them down to 65,536 ns by default (a browser's
  // mitigation of timing attacks), which made every per-kernel time a multiple of 65.5 us.
  gpuRoot = mod.create(["disable-dawn-features=timestamp_quantization"]);
  return gpuRoot;
}

/** A fresh adapter (an adapter gives out one device, so each device needs its own). */
export async function nodeAdapter(): Promise<GPUAdapter> {
  const adapter = await (await gpu()).requestAdapter();
  if (!adapter) throw new LingcError("no WebGPU adapter found (on Linux without a GPU, install Mesa's Vulkan drivers: see README)");
  return adapter;
}

/** A device with at least these limits (each checked against the adapter's, naming the one it lacks). */
export async function nodeDevice(requiredLimits?: Record<string, number>): Promise<GPUDevice> {
  const adapter = await nodeAdapter();
  const have = adapter.limits as unknown as Record<string, number>;
  for (const [k, v] of Object.entries(requiredLimits ?? {})) {
    if (typeof have[k] === "number" && have[k]! < v) throw new LingcError(`the model was compiled for ${k} = ${v}, but this WebGPU adapter allows ${have[k]} (compile for --target-profile adapter, or with a smaller --limit)`);
  }
  // Timestamp queries, where the adapter has them, time each kernel on the GPU when profiling.
  const requiredFeatures: GPUFeatureName[] = adapter.features.has("timestamp-query") ? ["timestamp-query"] : [];
  const device = await adapter.requestDevice({ ...(requiredLimits && Object.keys(requiredLimits).length ? { requiredLimits } : {}), requiredFeatures });
  device.addEventListener?.("uncapturederror", (e) => {
    process.stderr.write(`lingc: WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}\n`);
  });
  return device;
}

/** Keeps the Dawn instance alive until the end of the process. */
export function keepGpuAlive(): GPU | undefined {
  return gpuRoot;
}
