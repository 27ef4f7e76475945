/**
 * The compiled form of a graph for WebGPU: shaders and a launch plan as plain data (JSON), so the
 * host that runs it (host.ts) needs nothing from the compiler. This is what the esbuild plugin
 * embeds in a web app's bundle.
 */
import type { GraphSignature } from "../backend";

/** A dim as polynomial terms: sum of coef * product(symbols). */
export type DimTerms = [number, string[]][];

export type ArtifactDtype = "f32" | "f16" | "bf16" | "f8e4m3fn" | "f8e5m2" | "i32" | "i64" | "bool" | "u8";

export interface ArtifactSlot {
  id: number;
  dtype: ArtifactDtype;
  shape: DimTerms[];
  source: "input" | "weight" | "constant" | "computed" | "alias";
  name?: string;
  weight?: string;
  aliasOf?: number;
  /** Constant data, row-major (a single value is splatted). */
  values?: number[];
  /** A weight stored as several GPU buffers of `rows` leading-axis rows each (it exceeds a binding limit). */
  parts?: { rows: number; count: number };
  /** A scaled fp8 tensor: the slot of its scale grid (f32), in blocks of the last two axes. */
  scales?: { slot: number; block: [number, number] };
  /** An fp8 weight stored one byte per value, four to a 32-bit word (its kernels decode it). */
  packed?: boolean;
  /** A bf16 weight stored two bytes per value, two to a 32-bit word (element 2k in the low half; exact). */
  bf16Pairs?: boolean;
  /**
   * An input a cache_append grows in place: the axis, the length it grows to (its buffer needs room
   * for that many rows), and the symbol that carries the buffer's actual rows to the kernels.
   */
  grows?: { axis: number; rows: DimTerms; capacity: string };
}

/** A kernel's launch: its shader, bindings, sizes and grid. */
export interface ArtifactLaunch {
  /** The kernel function or op name. */
  name: string;
  wgsl: string;
  workgroupSize: number;
  /** The storage slot bound at each binding, in order (a split weight has one binding per part). */
  bindings: { slot: number; part: number; write: boolean }[];
  uniforms: { name: string; dim: DimTerms }[];
  grid: { dim: DimTerms; per: number };
  /** A kernel launched right after this one for the same step (a split computation's merge; its scratch is a slot of its own). */
  then?: ArtifactLaunch;
}

export interface ArtifactKernel extends ArtifactLaunch {
  /** Where it comes from: scope and DSL location. */
  label: string;
  fusion: string;
  /**
   * Reads only weights, constants and what earlier load-time kernels wrote, at sizes fixed at
   * compile time (a weight quantized at load): the host runs it once, when it loads the graph, and
   * keeps what it writes on the GPU.
   */
  atLoad?: boolean;
  /**
   * Another kernel for the same step, launched instead when `dim` comes to at most `max` at run time
   * (few rows, where the tiled kernel's tiles would stand mostly empty: a decode step's experts).
   */
  few?: { dim: DimTerms; max: number; launch: ArtifactLaunch };
}

export interface WgslArtifact {
  format: "lingc-wgsl-1";
  model: string;
  graph: string;
  /** The graph's interface and module attributes (what generation reads). */
  signature: GraphSignature;
  profile: string;
  /** Limits above WebGPU's defaults the kernels were compiled for: request them with the device. */
  requiredLimits: Record<string, number>;
  symbols: { name: string; input: string; axis: number }[];
  inputs: { name: string; slot: number }[];
  outputs: { name: string; slot: number }[];
  slots: ArtifactSlot[];
  kernels: ArtifactKernel[];
  /** Bytes the weights take on the GPU (fp8 weights one byte per value plus their scales; the rest four). */
  weightBytes: number;
}

export function evalTerms(terms: DimTerms, bindings: ReadonlyMap<string, number>): number {
  let total = 0;
  for (const [coef, syms] of terms) {
    let v = coef;
    for (const s of syms) {
      const b = bindings.get(s);
      if (b === undefined) throw new Error(`symbol ${s} has no value`);
      v *= b;
    }
    total += v;
  }
  return total;
}
