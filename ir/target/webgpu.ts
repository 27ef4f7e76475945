/**
 * WebGPU target profiles (DESIGN principle 10: targets are data). The baseline is the limits every
 * WebGPU implementation guarantees (the spec's defaults); `adapter` reads the live adapter's. The
 * compile checks kernels and weights against them and splits or refuses with the limit named.
 */
import { LingcError } from "../errors";

export interface WebGpuProfile {
  kind: "webgpu";
  name: string;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupsPerDimension: number;
  features: string[];
  /**
   * Kernel forms that pay on a GPU but cost a CPU adapter (llvmpipe: seconds of shader compile per
   * tile, barriers dearer than the reads they save): dense linear layers as workgroup tiles and few
   * rows' dot products split over lanes (the gemv form). Off in the baseline profile; the adapter
   * profile turns them on for a GPU (LINGC_WGSL_GPU_FORMS=1 or 0 overrides either).
   */
  gpuForms: boolean;
  /**
   * Neighbouring pairs of elements each gemv lane loads per step, independent loads written out: 4
   * on a GPU (on the H200 through Dawn, Ling-mini shape with 4 layers, a decode step's GPU time: 1
   * pair 4.26 ms, 2 pairs 3.67, 4 pairs 3.34, 8 pairs 3.41; bench/results/wgsl-2026-12-01-h200.md),
   * 1 for a CPU adapter, whose shader compiler pays for every copy. LINGC_WGSL_GEMV_UNROLL overrides it.
   */
  gemvUnroll: number;
}

/** WebGPU's default limits (https://www.w3.org/TR/webgpu/#limit-default). */
export const BASELINE: WebGpuProfile = {
  kind: "webgpu",
  name: "webgpu-baseline",
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupsPerDimension: 65535,
  features: [],
  gpuForms: false,
  gemvUnroll: 4,
};

const LIMIT_KEYS = Object.keys(BASELINE).filter((k) => k !== "name" && k !== "features" && k !== "kind" && k !== "gpuForms" && k !== "gemvUnroll") as (keyof WebGpuProfile)[];

/** Whether an adapter is a CPU rasterizer (Mesa's llvmpipe/lavapipe, SwiftShader), by what it says of itself. */
export function isCpuAdapter(info: { description?: string; device?: string; architecture?: string } | undefined): boolean {
  return /llvmpipe|lavapipe|swiftshader/i.test(`${info?.description ?? ""} ${info?.device ?? ""} ${info?.architecture ?? ""}`);
}

/** The profile of a live adapter (its limits and features; the GPU kernel forms unless it is a CPU). */
export function profileFromAdapter(adapter: { limits: Record<string, number> | object; features: Iterable<string>; info?: { description?: string; device?: string; architecture?: string } }): WebGpuProfile {
  const cpu = isCpuAdapter(adapter.info);
  const p: WebGpuProfile = { ...BASELINE, name: "webgpu-adapter", features: [...adapter.features].sort(), gpuForms: !cpu, gemvUnroll: cpu ? 1 : BASELINE.gemvUnroll };
  const limits = adapter.limits as Record<string, number>;
  for (const k of LIMIT_KEYS) if (typeof limits[k] === "number") (p as unknown as Record<string, number>)[k] = limits[k]!;
  return p;
}

/**
 * The limits a device must be asked for to run code compiled for this profile: those above
 * WebGPU's defaults (a device gets the defaults unless it asks; the adapter profile, or a --limit
 * override, may have compiled kernels that need more).
 */
export function requiredLimits(p: WebGpuProfile): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of LIMIT_KEYS) {
    const v = p[k] as number;
    if (v > (BASELINE[k] as number)) out[k] = v;
  }
  return out;
}

/** Applies `--limit NAME=VALUE` overrides (for testing how the compiler copes with small limits). */
export function withLimits(p: WebGpuProfile, overrides: readonly string[]): WebGpuProfile {
  const out = { ...p } as unknown as Record<string, unknown>;
  for (const o of overrides) {
    const m = /^([A-Za-z]+)=(\d+)$/.exec(o.trim());
    if (!m || !LIMIT_KEYS.includes(m[1] as keyof WebGpuProfile)) throw new LingcError(`--limit '${o}': expected NAME=VALUE with NAME one of ${LIMIT_KEYS.join(", ")}`);
    out[m[1]!] = Number(m[2]);
  }
  // "+" between overrides: the name appears in pass options, where a comma separates options.
  out["name"] = `${p.name}+${overrides.map((o) => o.trim()).join("+")}`;
  return out as unknown as WebGpuProfile;
}
