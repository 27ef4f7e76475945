/**
 * The WGSL backend for `lingc run|generate|compare --backend wgsl`: traces the graphs, runs the
 * pass pipeline with fusion, compiles the kernel plan to WGSL against the target profile, and runs
 * it on the WebGPU adapter Dawn finds, with the checkpoint's weights.
 */
import type { LingConfig } from "../../models/config";
import { buildLing2, type GraphKind } from "../../models/ling2";
import { parsePassList, runPasses } from "../../compiler/passes/manager";
import { checkFusionNames } from "../../compiler/passes/fusion";
import { LingcError } from "../../ir/errors";
import { Tensor } from "../../ir/tensor";
import { collectWeights } from "../../ir/weights";
import type { Backend, BackendOptions, LoadedModel } from "../backend";
import { withBoundCheckpoint } from "../bound";
import type { WgslArtifact } from "./artifact";
import { compileWgsl } from "./compile";
import { WgslGraph } from "./host";
import { graphRunner } from "./runner";
import { nodeAdapter, nodeDevice } from "./node";
import { BASELINE, profileFromAdapter, withLimits, type WebGpuProfile } from "./profile";

export const GPU_PIPELINE = "cse,dce,fusion";

export async function resolveProfile(opts: BackendOptions = {}): Promise<WebGpuProfile> {
  const name = opts.targetProfile ?? "baseline";
  let p: WebGpuProfile;
  if (name === "baseline") p = BASELINE;
  else if (name === "adapter") p = profileFromAdapter(await nodeAdapter());
  else throw new LingcError(`unknown target profile '${name}' (baseline or adapter)`);
  return opts.limits?.length ? withLimits(p, opts.limits) : p;
}

/** Traces a graph, runs cse, dce and fusion (minus switched-off fusions) and compiles it to WGSL. */
export function compileGraph(config: LingConfig, graph: GraphKind, profile: WebGpuProfile, noFuse: readonly string[] = []): WgslArtifact {
  checkFusionNames(noFuse);
  const m = buildLing2(config, graph);
  runPasses(m, parsePassList(GPU_PIPELINE), { context: { disabledFusions: new Set(noFuse), maxWorkgroupBytes: profile.maxComputeWorkgroupStorageSize } });
  return compileWgsl(m, profile);
}

export const wgslBackend: Backend & { profileKernels: { on: boolean } } = {
  name: "wgsl",
  summary: "WGSL compute shaders on WebGPU (Dawn in Node; the same host code runs in browsers)",
  profileKernels: { on: false },
  async load(config, checkpointDir, options = {}): Promise<LoadedModel> {
    const profile = await resolveProfile(options);
    return withBoundCheckpoint(config, checkpointDir, async ({ ck, forward, decode, weights }) => {
      const modules = [forward, decode];
      const declared = new Map(modules.flatMap((m) => collectWeights(m)).map((w) => [w.name, w.type]));
      const device = await nodeDevice();
      const provide = (name: string) => {
        const type = declared.get(name);
        if (!type) throw new LingcError(`the model declares no weight ${name}`);
        const t = weights.get(name, type);
        return t.data instanceof Float32Array ? t.data : Int32Array.from(t.data);
      };
      const graphs = await Promise.all(
        (["forward", "decode"] as const).map(async (g) => WgslGraph.load(device, compileGraph(config, g, profile, options.noFuse), provide)),
      );
      const dtypes = new Map<string, Tensor["dtype"]>([["logits", "f32"]]);
      return {
        config,
        forward: graphRunner(graphs[0]!, dtypes, this.profileKernels),
        decode: graphRunner(graphs[1]!, dtypes, this.profileKernels),
        close: () => {
          for (const g of graphs) g.destroy();
          device.destroy();
          ck.close();
        },
      };
    });
  },
};
