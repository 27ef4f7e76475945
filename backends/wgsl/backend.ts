/**
 * The WGSL backend for `lingc run|generate|compare --backend wgsl`: compiles each graph of the
 * program (already fused by the target's pipeline) to WGSL against the program's WebGPU profile, and
 * runs it on the WebGPU adapter Dawn finds, with the bound weights.
 */
import { LingcError } from "../../ir/errors";
import { collectWeights } from "../../ir/weights";
import type { WebGpuProfile } from "../../ir/target";
import { requiredLimits } from "../../ir/target/webgpu";
import type { Backend, LoadedModel, Program } from "../backend";
import type { WgslArtifact } from "./artifact";
import { compileWgsl } from "./compile";
import { Op } from "../../ir/module";
import { templateForOp } from "../kernels/gen";
import { WgslGraph } from "./host";
import { SharedWeights } from "./shared-weights";
import { wgslModel } from "./runner";
import { nodeDevice } from "./node";

/** The WebGPU profile a program was compiled for. */
export function webgpuProfile(program: Program): WebGpuProfile {
  const p = program.profile;
  if (p?.kind !== "webgpu") throw new LingcError(`the wgsl backend needs a program compiled for a WebGPU profile (got ${p ? p.name : "none"})`);
  return p;
}

/** Every graph of the program as a WGSL artifact. */
export function compileProgramWgsl(program: Program): WgslArtifact[] {
  const profile = webgpuProfile(program);
  return program.graphs.map((m) => compileWgsl(m, profile));
}

export const wgslBackend: Backend = {
  name: "wgsl",
  summary: "WGSL compute shaders on WebGPU (Dawn in Node; the same host code runs in browsers)",
  target: "wgsl",
  lowers: (name) => templateForOp(new Op(name, [], {}, [], "", undefined)) !== undefined,
  async load(program, weights, options = {}): Promise<LoadedModel> {
    const artifacts = compileProgramWgsl(program);
    const declared = new Map(program.graphs.flatMap((m) => collectWeights(m)).map((w) => [w.name, w.type]));
    const device = await nodeDevice(requiredLimits(webgpuProfile(program)));
    const provide = (name: string) => {
      // An fp8 weight's block scales come with it (HF's `<weight>_scale_inv`).
      const base = name.endsWith("_scale_inv") ? name.slice(0, -"_scale_inv".length) : undefined;
      const scaled = base !== undefined ? declared.get(base) : undefined;
      if (scaled?.quant) return weights.get(base!, scaled).scaled!.scales;
      const type = declared.get(name);
      if (!type) throw new LingcError(`the program declares no weight ${name}`);
      const bits = weights.bf16Bits?.(name, type);
      if (bits) return bits;
      const t = weights.get(name, type);
      return t.data instanceof Float32Array ? t.data : Int32Array.from(t.data);
    };
    // One upload of each weight for all of the model's graphs.
    const shared = new SharedWeights();
    const graphs = await Promise.all(artifacts.map((a) => WgslGraph.load(device, a, provide, shared)));
    return wgslModel(device, graphs, { on: options.profileKernels ?? false }, () => {
      for (const g of graphs) g.destroy();
      device.destroy();
    });
  },
};
